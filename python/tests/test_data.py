"""Data in and out of the Python package: pandas, polars, Arrow, Parquet,
NPY, PyTorch-BigGraph checkpoints, networkx and PyTorch Geometric, each
against the CLI's answer or numpy."""

import os

import numpy as np
import pytest

import quiver
from test_quiver import cli, social

def test_add_edges_from_numpy_and_pandas(tmp_path):
    with social(tmp_path / "db") as db:
        before = db.stats()["edges"]
        with pytest.raises(TypeError, match="one length"):
            db.add_edges("User", ["a", "b"], "Follows", "User", ["c"])
        with pytest.raises(quiver.StorageError, match="destination type Item, not User"):
            db.add_edges("User", ["a"], "Likes", "User", ["b"])
        with pytest.raises(quiver.StorageError, match="unknown relation"):
            db.add_edges("User", ["a"], "Nope", "User", ["b"])
        assert db.stats()["edges"] == before
        pd = pytest.importorskip("pandas")
        df = pd.DataFrame({"s": ["x1", "x2"], "d": ["x2", "x3"], "w": [0.5, 2.0]})
        assert db.add_edges("User", df.s, "Follows", "User", df.d, weights=df.w)["edges_changed"] == 2
        out = db.query("MATCH (a:User {key: 'x1'})-[f]->(b) RETURN b.key, f.weight").to_pandas()
        assert list(out["b.key"]) == ["x2"] and list(out["f.weight"]) == [0.5]


def test_import_errors_name_the_place_and_store_nothing(tmp_path):
    good, bad = tmp_path / "good.tsv", tmp_path / "bad.tsv"
    good.write_text("a\tr\tb\nb\tr\tc\n")
    bad.write_text("a\tr\tb\nb\tr\n")
    with quiver.open(tmp_path / "db") as db:
        with pytest.raises(quiver.StorageError, match=r"bad\.tsv:2"):
            db.import_files([bad])
        assert db.stats()["edges"] == 0
        assert db.import_files([good])["edges_added"] == 2
        assert db.import_files([bad], skip_bad=True)["skipped"] == 1


def test_rows_come_out_as_numpy_arrow_and_polars(tmp_path):
    import pyarrow as pa
    import polars as pl

    with social(tmp_path / "db") as db:
        rows = db.query("MATCH (a:User)-[f:Likes]->(i:Item) RETURN a.key AS who, i, f.weight AS w ORDER BY who, w")
        t = rows.to_arrow()
        assert isinstance(t, pa.Table) and t.column_names == ["who", "i", "w"] and t.num_rows == len(rows)
        assert t.column("who").to_pylist() == [r["who"] for r in rows]
        assert t.column("i").to_pylist() == [r["i"] for r in rows]
        p = rows.to_polars()
        assert isinstance(p, pl.DataFrame) and p.columns == ["who", "i", "w"]
        assert p["w"].to_list() == pytest.approx([r["w"] for r in rows])
        assert rows.to_pandas().equals(t.to_pandas())
        nums = db.query("MATCH (a:User)-[f:Likes]->() RETURN f.weight, 2 ORDER BY f.weight").to_numpy()
        assert nums.dtype == np.float64 and nums.shape == (len(rows), 2) and (nums[:, 1] == 2).all()
        assert rows.to_numpy().dtype == object and rows.to_numpy().shape == (len(rows), 3)


def test_load_takes_dataframes_and_arrow_through_the_bulk_import(tmp_path):
    import pandas as pd
    import polars as pl
    import pyarrow as pa

    edges = pd.DataFrame({"user": ["u1", "u2", "u1"], "rel": ["Likes", "Likes", "Follows"],
                          "to": ["i1", "i1", "u2"], "w": [2.0, 0.5, 1.0],
                          "dst": ["Item", "Item", "User"]})
    with quiver.open(tmp_path / "db") as db:
        r = db.load(edges, head="user", relation="rel", tail="to", src_type="User", dst_type="dst",
                    weight="w", create_types=True)
        assert r["edges_added"] == 3 and r["nodes_added"] == 3
        rows = db.query("MATCH (a:User)-[f]->(b) RETURN a.key, type(f), b.key, f.weight ORDER BY a.key, b.key").rows
        assert rows == [("u1", "Likes", "i1", 2.0), ("u1", "Follows", "u2", 1.0), ("u2", "Likes", "i1", 0.5)]
        with pytest.raises(KeyError, match="no column 'nope'"):
            db.load(edges, head="nope", src_type="User", dst_type="Item")
        with pytest.raises(TypeError, match="both src_type and dst_type"):
            db.load(edges, head="user", src_type="User")
    with quiver.open(tmp_path / "kg") as db:
        triples = {"head": ["a", "b,q", "t\tt"], "relation": ["r", "r", "s"], "tail": ["c", 'd"x', "a"]}
        for data in (pd.DataFrame(triples), pl.DataFrame(triples), pa.table(triples), triples):
            db.load(data)
        assert sorted(db.query("MATCH (a)-[r]->(b) RETURN a.key, b.key").rows) == [
            ("a", "c"), ("b,q", 'd"x'), ("t\tt", "a")]
        with pytest.raises(quiver.StorageError, match="row 2:1: empty head key"):
            db.load({"head": ["x", ""], "relation": ["r", "r"], "tail": ["y", "z"]})
        assert db.query("MATCH (n {key: 'x'}) RETURN count(*)").rows == [(0,)]
    # The same graph as the file import.
    edges_file = tmp_path / "kg.tsv"
    edges_file.write_text("a\tr\tc\nb\tr\td\n")
    with quiver.open(tmp_path / "f") as f, quiver.open(tmp_path / "d") as d:
        f.import_files([edges_file])
        d.load(pd.read_csv(edges_file, sep="\t", names=["head", "relation", "tail"]))
        q = "MATCH (a)-[r]->(b) RETURN a.key, type(r), b.key ORDER BY a.key"
        assert f.query(q).rows == d.query(q).rows


def test_import_files_reads_parquet_as_the_tsv_import(tmp_path):
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    typed = pa.table({"src_type": ["User", "User", "User"], "src_key": [1, 2, 1], "relation": ["Likes", "Likes", "Follows"],
                      "dst_type": ["Item", "Item", "User"], "dst_key": ["i1", "i1", "2"], "weight": [2.0, 0.5, 1.0],
                      "ts": [10, 11, 12]})
    pq.write_table(typed, tmp_path / "typed.parquet", row_group_size=2)
    pl.from_arrow(typed).write_parquet(tmp_path / "typed-zstd.pq")  # found by its magic bytes, not its name
    (tmp_path / "typed.tsv").write_text("".join(
        f"{a}\t{b}\t{c}\t{d}\t{e}\t{w}\n" for a, b, c, d, e, w, _ in zip(*typed.to_pydict().values())))
    q = "MATCH (a)-[r]->(b) RETURN a.key, type(r), b.key, r.weight ORDER BY a.key, type(r)"
    with quiver.open(tmp_path / "tsv") as t:
        t.import_files([tmp_path / "typed.tsv"], create_types=True)
        want = t.query(q).rows
    for name in ("typed.parquet", "typed-zstd.pq"):
        with quiver.open(tmp_path / name.replace(".", "-")) as db:
            r = db.import_files([tmp_path / name], create_types=True)
            assert r["edges_added"] == 3 and db.query(q).rows == want
    with quiver.open(tmp_path / "kg") as db:
        pq.write_table(pa.table({"tail": ["c", "d"], "relation": ["r", "s"], "head": ["a", "b"]}), tmp_path / "kg.parquet")
        db.import_files([tmp_path / "kg.parquet"])
        assert db.query("MATCH (a)-[r]->(b) RETURN a.key, type(r), b.key ORDER BY a.key").rows == [
            ("a", "r", "c"), ("b", "s", "d")]
        # A null key names its row and column; nothing is stored.
        pq.write_table(pa.table({"head": ["x", None], "relation": ["r", "r"], "tail": ["y", "z"]}), tmp_path / "null.parquet")
        with pytest.raises(quiver.StorageError, match=r"null.parquet:2:1: `head` is null"):
            db.import_files([tmp_path / "null.parquet"])
        assert db.query("MATCH (n {key: 'x'}) RETURN count(*)").rows == [(0,)]
        pq.write_table(pa.table({"from": ["a"], "to": ["b"]}), tmp_path / "cols.parquet")
        with pytest.raises(quiver.StorageError, match="needs the columns head, relation, tail .* this file has from, to"):
            db.import_files([tmp_path / "cols.parquet"])
        pq.write_table(pa.table({"head": [["a"]], "relation": ["r"], "tail": ["b"]}), tmp_path / "nested.parquet")
        with pytest.raises(quiver.StorageError, match="column `head` is nested"):
            db.import_files([tmp_path / "nested.parquet"])
        (tmp_path / "torn.parquet").write_bytes((tmp_path / "kg.parquet").read_bytes()[:40])
        with pytest.raises(quiver.StorageError, match="torn.parquet"):
            db.import_files([tmp_path / "torn.parquet"])


def test_export_and_import_models_from_python_match_the_cli(tmp_path):
    import polars as pl

    path = tmp_path / "db"
    with social(path) as db:
        db.train("m", {"dim": 8, "epochs": 2, "threads": 1}, device="cpu", progress=False, valid="none")
        assert db.export("m", tmp_path / "py") == 6  # User, Item, _relations: a matrix and keys each
        with pytest.raises(quiver.Error, match="exists"):
            db.export("m", tmp_path / "py")
        with pytest.raises(quiver.Error, match="inside database"):
            db.export("m", path / "out")
        with pytest.raises(quiver.Error, match="only L2 models have a PBG counterpart"):
            db.export("m", tmp_path / "pbg", format="pbg-checkpoint")  # a dot model
        assert db.export("m", tmp_path / "m.parquet", format="parquet") == str(tmp_path / "m.parquet")
        users, rows = db.embeddings("m", "User")
        # Round trips: the same rows back under a new name, from either layout.
        assert db.import_model("back", tmp_path / "py", score="l2") == {"Item": 10, "User": len(users)}
        assert db.import_model("pq", tmp_path / "m.parquet", format="parquet") == {"User": len(users), "Item": 10}
        for name in ("back", "pq"):
            k, r = db.embeddings(name, "User")
            assert list(k) == list(users) and np.array_equal(r, rows)
        frame = pl.read_parquet(tmp_path / "m.parquet")
        assert frame.columns == ["type", "key", "embedding"] and frame.height == len(users) + 10
        assert np.array_equal(np.array(frame.filter(pl.col("type") == "User")["embedding"].to_list(), np.float32), rows)
    # The CLI writes the same files from the same model.
    cli("export", path, "--model", "m", "--format", "npy", "--out", tmp_path / "cli")
    for f in sorted(os.listdir(tmp_path / "cli")):
        assert (tmp_path / "cli" / f).read_bytes() == (tmp_path / "py" / f).read_bytes(), f


def test_graph_out_as_arrays_networkx_and_pyg(tmp_path):
    import networkx as nx

    with social(tmp_path / "db") as db:
        db.train("m", {"dim": 8, "epochs": 1, "threads": 1}, device="cpu", progress=False, valid="none")
        users, items = db.node_keys("User"), db.node_keys("Item")
        src, dst, w = db.edge_index("Likes")
        assert src.dtype == np.int64 and w.dtype == np.float32 and len(src) == len(dst) == len(w)
        # Against Cypher's answer, edge by edge.
        want = sorted(db.query("MATCH (a:User)-[r:Likes]->(b) RETURN a.key, b.key, r.weight").rows)
        got = sorted((users[a], items[b], float(x)) for a, b, x in zip(src, dst, w))
        assert got == [(a, b, pytest.approx(x)) for a, b, x in want]
        g = db.to_networkx(model="m")
        assert isinstance(g, nx.MultiDiGraph)
        assert g.number_of_nodes() == len(users) + len(items)
        assert g.number_of_edges() == db.stats()["edges"]
        _, rows = db.embeddings("m", "User")
        assert np.array_equal(g.nodes[("User", users[3])]["embedding"], rows[3])
        a, b = users[src[0]], items[dst[0]]
        assert g.edges[("User", a), ("Item", b), "Likes"]["weight"] == pytest.approx(float(w[0]))
        # A query's subgraph: its nodes and edges only.
        q = "MATCH (a:User {key: $k})-[f:Follows]->(b) RETURN a, f, b"
        sub = db.to_networkx(q, {"k": "u1"})
        follows = db.query("MATCH (a:User {key: 'u1'})-[:Follows]->(b) RETURN DISTINCT b.key").rows
        assert sub.number_of_edges() == len(follows)
        assert set(sub.nodes) == {("User", "u1")} | {("User", k) for (k,) in follows}
        assert db.execute("MATCH (a:User {key: $k}) RETURN a.key", {"k": "u1"}).rows == [("u1",)]
        try:
            import torch_geometric  # noqa: F401
        except ImportError:
            with pytest.raises(ImportError):
                db.to_pyg()
            return
        data = db.to_pyg(model="m")
        assert data["User"].num_nodes == len(users) and data["User"].x.shape == (len(users), 8)
        e = data["User", "Likes", "Item"]
        assert e.edge_index.shape == (2, len(src)) and (e.edge_index[0].numpy() == src).all()
        sub = db.to_pyg(q, {"k": "u1"}, model="m")
        assert sub["User"].node_keys[0] == "u1" and sub["User"].x.shape == (len(follows) + 1, 8)


def test_pbg_checkpoint_from_python_is_read_back_by_the_cli(tmp_path):
    import h5py

    path = tmp_path / "db"
    triples = tmp_path / "kg.tsv"
    triples.write_text("".join(f"e{i}\tr{i % 3}\te{(i * 7 + 1) % 50}\n" for i in range(400)))
    with quiver.open(path) as db:
        db.import_files([triples])
        db.train("m", {"dim": 8, "epochs": 2, "score": "l2", "threads": 1}, device="cpu", progress=False, valid="none")
        n = db.export("m", tmp_path / "py", format="pbg-checkpoint", partitions=2)
        assert n == 2 + 1 + 2  # two partitions of Entity, model.v1.h5, config.json, the version file
        with pytest.raises(quiver.Error, match="exists"):
            db.export("m", tmp_path / "py", format="pbg-checkpoint", partitions=2)
        with pytest.raises(quiver.Error, match="inside database"):
            db.export("m", path / "x", format="pbg-checkpoint")
        keys, rows = db.embeddings("m", "Entity")
        _, rels = db.relation_vectors("m")
    # The CLI writes the same datasets, and reads Python's checkpoint back as the same model.
    cli("export", path, "--model", "m", "--format", "pbg-checkpoint", "--partitions", "2", "--out", tmp_path / "cli")
    for name in sorted(os.listdir(tmp_path / "cli")):
        if name.endswith(".h5"):
            with h5py.File(tmp_path / "cli" / name) as a, h5py.File(tmp_path / "py" / name) as b:
                assert a.attrs["format_version"] == b.attrs["format_version"] == 1
                keys_a, keys_b = [], []
                a.visititems(lambda k, v: keys_a.append(k) if isinstance(v, h5py.Dataset) else None)
                b.visititems(lambda k, v: keys_b.append(k) if isinstance(v, h5py.Dataset) else None)
                assert keys_a == keys_b
                for k in keys_a:
                    assert np.array_equal(a[k][()], b[k][()]), (name, k)
                    assert a[k].attrs.get("state_dict_key") == b[k].attrs.get("state_dict_key")
        else:
            assert (tmp_path / "cli" / name).read_text() == (tmp_path / "py" / name).read_text()
    cli("import-model", path, tmp_path / "py", "--model", "back")
    with quiver.open(path) as db:
        # And Python reads the CLI's checkpoint back (h5py), checked as the CLI checks it.
        assert db.import_model("pyback", tmp_path / "cli", format="pbg") == {"Entity": 400}
        for name in ("back", "pyback"):
            k, r = db.embeddings(name, "Entity")
            assert list(k) == list(keys) and np.array_equal(r, rows)
            assert np.array_equal(db.relation_vectors(name)[1], rels)
        with h5py.File(tmp_path / "cli" / "embeddings_Entity_1.v1.h5", "r+") as f:
            data = f["embeddings"][()].astype(np.float64)
            del f["embeddings"]
            f["embeddings"] = data
        with pytest.raises(quiver.Error, match="embeddings_Entity_1.v1.h5: .*float32"):
            db.import_model("bad", tmp_path / "cli", format="pbg")
        assert "bad" not in [m["name"] for m in db.models()]
