"""The Python package against the Rust core and the `quiver` command line.

Run by `make test` (after `make python` built the wheel) in a fresh venv:
`QUIVER_BIN=target/release/quiver python -m pytest python/tests`.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import quiver

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("QUIVER_BIN", str(ROOT / "target" / "release" / "quiver"))
FB15K = ROOT.parent / "shared" / "data" / "FB15k-237.tar.gz"


def cli(*args, check=True):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"quiver {' '.join(map(str, args))}: {p.stderr}")
    return p


def social(path, users=30, seed=1):
    """A small typed graph: users following users, users liking items."""
    rng = np.random.default_rng(seed)
    db = quiver.open(path)
    db.query("CREATE NODE TYPE User; CREATE NODE TYPE Item; "
             "CREATE RELATION TYPE Follows (User -> User); CREATE RELATION TYPE Likes (User -> Item)")
    src = rng.integers(0, users, users * 4)
    dst = (src + rng.integers(1, users, users * 4)) % users
    db.add_edges("User", [f"u{i}" for i in src], "Follows", "User", [f"u{i}" for i in dst])
    likes = rng.integers(0, 10, users * 2)
    db.add_edges("User", [f"u{i}" for i in rng.integers(0, users, users * 2)], "Likes", "Item",
                 [f"i{i}" for i in likes], weights=rng.uniform(0.5, 3.0, users * 2).astype(np.float32))
    return db


def test_open_query_close(tmp_path):
    with quiver.open(tmp_path / "db") as db:
        db.query("CREATE NODE TYPE User; CREATE RELATION TYPE Follows (User -> User)")
        db.query("CREATE (:User {key: 'alice', age: 31})-[:Follows]->(:User {key: 'bob'})")
        rows = db.query("MATCH (a:User)-[f:Follows]->(b) RETURN a.key, a.age, b, f.weight")
        assert rows.columns == ["a.key", "a.age", "b", "f.weight"]
        assert list(rows) == [{"a.key": "alice", "a.age": 31, "b": {"type": "User", "key": "bob"}, "f.weight": 1.0}]
        assert len(rows) == 1 and rows[0]["a.key"] == "alice"
        p = db.prepare("MATCH (a:User {key: $k})-->(b) RETURN b.key")
        assert db.execute(p, {"k": "alice"}).rows == [("bob",)]
    assert "closed" in repr(db)
    with pytest.raises(quiver.Error, match="closed"):
        db.query("RETURN 1")


def test_parameters_of_every_kind(tmp_path):
    with quiver.open(tmp_path / "db") as db:
        r = db.query("RETURN $n, $x, $s, $b, $none, $l, $m, $np",
                     {"n": 3, "x": 2.5, "s": "é", "b": True, "none": None, "l": [1, [2, "x"]],
                      "m": {"a": 1, "b": {"c": None}}, "np": np.int64(7)})
        assert r.rows == [(3, 2.5, "é", True, None, [1, [2, "x"]], {"a": 1, "b": {"c": None}}, 7)]
        with pytest.raises(TypeError, match="parameter"):
            db.query("RETURN $o", {"o": object()})


def test_batch_writes_as_one_statement(tmp_path):
    with quiver.open(tmp_path / "db") as db:
        db.query("CREATE NODE TYPE User; CREATE RELATION TYPE Follows (User -> User)")
        rows = [{"src": f"u{i}", "dst": f"u{(i + 1) % 100}", "w": i / 10} for i in range(100)]
        r = db.execute_many("MERGE (s:User {key: row.src}) MERGE (t:User {key: row.dst}) "
                            "MERGE (s)-[f:Follows]->(t) ON CREATE SET f.weight = row.w", rows)
        assert r[0] == {"nodes_created": 100, "nodes_deleted": 0, "edges_changed": 100, "properties_set": 100}
        assert db.stats()["edges"] == 100
        # A failing row commits nothing.
        with pytest.raises(quiver.QueryError):
            db.execute_many("MERGE (u:User {key: row.k})", [{"k": "new"}, {"k": 5}])
        assert db.query("MATCH (u:User {key: 'new'}) RETURN u").rows == []


def test_syntax_errors_carry_line_and_column(tmp_path):
    with quiver.open(tmp_path / "db") as db:
        with pytest.raises(quiver.QuerySyntaxError) as e:
            db.query("MATCH (a)\nRETRUN a")
        assert (e.value.line, e.value.column) == (2, 1)
        with pytest.raises(quiver.QuerySyntaxError, match="unknown node type"):
            db.query("MATCH (a:Nope) RETURN a")


def test_locked_by_another_process(tmp_path):
    path = tmp_path / "db"
    quiver.open(path).close()
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import quiver, sys, time
        db = quiver.open({str(path)!r}); print("open", flush=True); time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "open"
        with pytest.raises(quiver.LockedError, match=str(path)):
            quiver.open(path)
    finally:
        child.kill()
        child.wait()


def test_a_panic_becomes_quiver_error():
    with pytest.raises(quiver.Error, match="internal error"):
        quiver._native._panic_for_test()


def test_train_evaluate_embeddings_neighbors_match_the_cli(tmp_path):
    path = tmp_path / "db"
    test = tmp_path / "test.tsv"
    test.write_text("u1\tFollows\tu2\nu3\tFollows\tu4\nu5\tLikes\ti1\n")
    with social(path) as db:
        out = db.train("m", {"dim": 16, "epochs": 4, "threads": 1, "seed": 3}, device="cpu", progress=False)
        assert out["model"] == "m" and out["last_epoch"]["epoch"] == 3
        with pytest.raises(quiver.ConfigError, match="unknown field"):
            db.train("bad", {"dimm": 3}, device="cpu", progress=False)
        [m] = [m for m in db.models() if m["name"] == "m"]
        assert m["finished"] and m["settings"]["config"]["dim"] == 16
        metrics = db.evaluate("m", test)
        arrays = db.evaluate("m", (["u1", "u3", "u5"], ["Follows", "Follows", "Likes"], ["u2", "u4", "i1"]))
        assert {k: metrics[k] for k in ("mrr", "hits@10", "triples")} == {k: arrays[k] for k in ("mrr", "hits@10", "triples")}
        keys, vecs = db.embeddings("m", "User")
        assert vecs.dtype == np.float32 and vecs.shape == (len(keys), 16)
        names, rel = db.relation_vectors("m")
        assert names == ["Follows", "Likes", "Follows (head)", "Likes (head)"] and rel.shape == (4, 16)
        assert np.array_equal(db.embedding("m", "User", keys[3]), vecs[3])
        nk, ns = db.neighbors("m", "User", ["u1", "u2"], k=5)
        assert nk.shape == (2, 5) and ns.shape == (2, 5) and "u1" not in nk[0]
        assert db.quantize("m")["User"] > 0
        qk, _ = db.neighbors("m", "User", ["u1"], k=5, quantized=True)
        assert len(set(qk[0]) & set(nk[0])) >= 3
        assert db.check() == {"ok": True, "problems": []}
        db.train("scratch", {"dim": 4, "epochs": 1}, device="cpu", progress=False)
        db.drop_model("scratch")
        assert [m["name"] for m in db.models()] == ["m"]
        with pytest.raises(quiver.StorageError, match="no model named"):
            db.drop_model("scratch")
    # The same model through the command line.
    assert json.loads(cli("eval", path, "--model", "m", "--test", test, "--json").stdout) | {"seconds": 0} == metrics | {"seconds": 0}
    lines = cli("neighbors", path, "--model", "m", "--node", "User:u1", "--node", "User:u2", "--k", "5", "--json").stdout
    for row, line in zip(nk, lines.splitlines()):
        assert [n["key"] for n in json.loads(line)["neighbors"]] == list(row)
    q = "MATCH (u:User)-[:Likes]->(i) RETURN u.key, i.key, count(*) AS n ORDER BY u.key, i.key"
    cli_rows = json.loads(cli("query", path, "--format", "json", "-e", q).stdout)
    with quiver.open(path) as db:
        assert [dict(r) for r in db.query(q)] == cli_rows


def test_embeddings_view_the_stored_rows_when_they_are_one_part(tmp_path):
    with social(tmp_path / "db") as db:
        db.train("p1", {"dim": 8, "epochs": 2, "threads": 1}, device="cpu", progress=False)
        db.train("p2", {"dim": 8, "epochs": 2, "threads": 1, "partitions": 2}, device="cpu", progress=False)
        keys, mapped = db.embeddings("p1", "User")
        # A read-only view of the memory-mapped part, kept alive by the array.
        assert not mapped.flags.writeable and not mapped.flags.owndata and mapped.base is not None
        with pytest.raises(ValueError):
            mapped[0, 0] = 1.0
        assert np.array_equal(mapped[5], db.embedding("p1", "User", keys[5]))
        _, copied = db.embeddings("p2", "User")
        assert copied.flags.writeable and copied.shape == mapped.shape
    # The view outlives the database handle.
    assert np.isfinite(mapped).all()


def test_recall_of_held_out_edges_matches_the_cli(tmp_path):
    path = tmp_path / "db"
    # `quiver eval recall --model h` evaluates the model `h-holdout`.
    with social(path, users=60) as db:
        r = db.recall("h-holdout", "Follows", holdout=0.2, k=[5, 10], config={"dim": 16, "epochs": 5, "threads": 1},
                      device="cpu")
        assert [k for k, _ in r["recall"]] == [5, 10] and r["held_out"] > 0
        with pytest.raises(quiver.ConfigError, match="holdout"):
            db.recall("h-holdout", "Follows", holdout=0.3, train=False)
    out = json.loads(cli("eval", "recall", path, "--model", "h", "--relation", "Follows", "--holdout", "0.2",
                         "--k", "5,10", "--no-train", "--json").stdout)
    assert out["reports"][0] == r


def test_training_with_validation_keeps_the_best(tmp_path):
    valid = tmp_path / "valid.tsv"
    valid.write_text("u1\tFollows\tu2\nu3\tFollows\tu4\n")
    with social(tmp_path / "db") as db:
        db.train("v", {"dim": 8, "epochs": 4, "threads": 1}, device="cpu", progress=False, valid=valid, eval_every=2)
        [m] = db.models()
        assert m["finished"] and m["metrics"]["valid"]["metric"] == "mrr" and m["metrics"]["valid"]["epoch"] in (2, 4)
        with pytest.raises(quiver.ConfigError, match="expected mrr"):
            db.train("w", {"dim": 8, "epochs": 1}, device="cpu", progress=False, valid=valid, metric="auc")


def test_training_holds_out_its_own_validation_by_default(tmp_path):
    with social(tmp_path / "db", users=800) as db:
        events = []
        r = db._db.train("auto", {"dim": 8, "epochs": 3, "threads": 1}, "cpu", False, events.append,
                         None, None, None, None, "Follows")
        [start] = [e for e in events if e["event"] == "start"]
        assert start["held_out"] > 0 and start["epochs"] == 3 and start["target"] is not None
        assert r["last_epoch"]["epoch"] <= 2
        [m] = db.models()
        v = m["metrics"]["valid"]
        assert v["held_out"] and v["triples"] == start["held_out"] and len(v["curve"]) == 3
        db.train("none", {"dim": 8, "threads": 1}, device="cpu", progress=False, valid="none")
        none = [m for m in db.models() if m["name"] == "none"][0]
        assert "valid" not in (none["metrics"] or {})
        with pytest.raises(quiver.ConfigError, match="need validation"):
            db.train("x", {"dim": 8}, device="cpu", progress=False, valid="none", patience=2)
        with pytest.raises(quiver.Error, match="Nope"):
            db.train("x", {"dim": 8}, device="cpu", progress=False, target="Nope")


def test_train_returns_its_curves_and_takes_validation_as_data(tmp_path):
    import pandas as pd

    with social(tmp_path / "db") as db:
        triples = (["u1", "u3"], ["Follows", "Follows"], ["u2", "u4"])
        r = db.train("t", {"dim": 8, "epochs": 3, "threads": 1}, device="cpu", progress=False, valid=triples)
        assert [h["epoch"] for h in r["history"]] == [0, 1, 2]
        for h in r["history"]:
            assert h["mean_loss"] == pytest.approx(h["loss"] / h["edges"])
        assert [v["epoch"] for v in r["validation"]] == [0, 1, 2] and r["held_out"] == 0
        df = pd.DataFrame({"head": triples[0], "relation": triples[1], "tail": triples[2]})
        r2 = db.train("d", {"dim": 8, "epochs": 3, "threads": 1}, device="cpu", progress=False, valid=df)
        assert [v["mrr"] for v in r2["validation"]] == [v["mrr"] for v in r["validation"]]
        # A model of that name is kept unless overwrite=True.
        with pytest.raises(quiver.ConfigError, match="model `t` exists"):
            db.train("t", {"dim": 8, "epochs": 1}, device="cpu", progress=False)
        db.train("t", {"dim": 8, "epochs": 1}, device="cpu", progress=False, overwrite=True)


def test_train_auto_tries_the_search_points_and_keeps_the_best(tmp_path):
    with social(tmp_path / "db", users=800) as db:
        r = db.train("a", {"dim": 8, "epochs": 2, "threads": 1}, device="cpu", progress=False, auto=True,
                     target="Follows")
        assert len(r["trials"]) == 4 and r["trials"][0]["settings"] == "(the settings as given)"
        best = max(t["best"] for t in r["trials"])
        assert r["trials"][r["chosen"]]["best"] == best
        [m] = [m for m in db.models() if m["name"] == "a"]
        assert m["metrics"]["valid"]["best"] == pytest.approx(best)
        r = db.train("b", {"dim": 8, "epochs": 1}, device="cpu", progress=False, auto=True, budget=0)
        assert len(r["trials"]) == 1
        with pytest.raises(quiver.ConfigError, match="neither resume nor valid"):
            db.train("c", device="cpu", progress=False, auto=True, valid="none")


def test_cold_start_node_gets_an_inferred_embedding(tmp_path):
    with social(tmp_path / "db") as db:
        db.train("m", {"dim": 8, "epochs": 2, "threads": 1}, device="cpu", progress=False)
        db.add_edges("User", ["newcomer"], "Follows", "User", ["u1"])
        v = db.embedding("m", "User", "newcomer")
        assert v.shape == (8,) and np.isfinite(v).all() and np.abs(v).sum() > 0


def test_training_releases_the_gil(tmp_path):
    with social(tmp_path / "db", users=400) as db:
        done = threading.Event()

        def train():
            db.train("m", {"dim": 64, "epochs": 30, "threads": 1}, device="cpu", progress=False)
            done.set()

        t = threading.Thread(target=train)
        t.start()
        queries = 0
        while not done.is_set():
            db.query("MATCH (u:User {key: 'u1'})-->(v) RETURN count(v)")
            queries += 1
        t.join()
        assert queries > 10, f"only {queries} queries ran while training"


def test_ctrl_c_stops_training_and_resume_finishes_it(tmp_path):
    path = tmp_path / "db"
    social(path, users=200).close()
    # The child slows each bucket down so that the signal lands mid-run. A child
    # of a background job inherits SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: it installs one, as a terminal session has.
    script = textwrap.dedent(f"""
        import quiver, signal, time
        signal.signal(signal.SIGINT, signal.default_int_handler)
        db = quiver.open({str(path)!r})
        seen = []
        def on(e):
            if e["event"] == "bucket":
                if not seen:
                    seen.append(1); print("training", flush=True)
                time.sleep(0.02)
        try:
            db._db.train("m", {{"dim": 16, "epochs": 60, "partitions": 2, "threads": 1}}, "cpu", False, on)
            print("finished")
        except KeyboardInterrupt:
            print("interrupted")
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "training"
    time.sleep(0.3)
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=60)
    assert out.strip() == "interrupted"
    with quiver.open(path) as db:
        [m] = db.models()
        assert not m["finished"] and 0 < m["progress"]["epoch"] * 4 + m["progress"]["bucket"] < 240, m
        db.train("m", resume=True, device="cpu", progress=False)
        [m] = db.models()
        assert m["finished"], m


def test_readme_example_in_python(tmp_path):
    with quiver.open(tmp_path / "readme.db") as g:
        g.query("CREATE NODE TYPE User; CREATE RELATION TYPE Follows (User -> User)")
        g.query("CREATE (a:User {key: 'alice'}), (b:User {key: 'bob'}), (c:User {key: 'carol'}), "
                "(a)-[:Follows]->(b), (b)-[:Follows]->(c), (c)-[:Follows]->(b)")
        g.query("CALL quiver.train({dim: 16, epochs: 5})")
        who = g.prepare("MATCH (a:User {key: $k})-[:Follows]->()-[:Follows]->(c) "
                        "WHERE c <> a AND NOT (a)-[:Follows]->(c) "
                        "RETURN DISTINCT c.key AS who, quiver.score(a, 'Follows', c) AS score "
                        "ORDER BY score DESC LIMIT 10")
        rows = g.execute(who, {"k": "alice"})
        assert rows[0]["who"] == "carol"


def test_the_wheel_imports_with_nothing_else_installed(tmp_path):
    wheel = os.environ.get("QUIVER_WHEEL")
    if not wheel:
        pytest.skip("QUIVER_WHEEL not set (make test sets it)")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    py = venv / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], check=True)
    code = (f"import quiver; db = quiver.open({str(tmp_path / 'db')!r}); "
            "print(db.query('RETURN 1 + 1 AS two').rows)")
    assert subprocess.run([py, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[(2,)]"


def test_fb15k237_matches_the_cli(tmp_path):
    if not FB15K.exists():
        pytest.skip(f"{FB15K} not present (a clone without ../shared)")
    import tarfile

    with tarfile.open(FB15K) as t:
        t.extractall(tmp_path, filter="data")
    train = next(tmp_path.rglob("train.txt"))
    with quiver.open(tmp_path / "db") as db:
        report = db.import_files([train])
        assert report["edges_added"] == 272115
        stats = db.stats()
    cli_stats = json.loads(cli("stats", tmp_path / "db", "--json").stdout)
    assert (stats["nodes"], stats["edges"]) == (cli_stats["nodes"], cli_stats["edges"])
    q = "MATCH (a:Entity {key: '/m/027rn'})-->()-->(c) RETURN count(DISTINCT c)"
    with quiver.open(tmp_path / "db") as db:
        ours = db.query(q).rows[0][0]
    assert ours == json.loads(cli("query", tmp_path / "db", "--format", "json", "-e", q).stdout)[0]["count(DISTINCT c)"]


def test_hostile_parameters_are_errors_not_crashes(tmp_path):
    with quiver.open(tmp_path / "db") as db:
        a = []
        a.append(a)
        with pytest.raises(ValueError, match="deep"):
            db.query("RETURN $x", {"x": a})
        deep = cur = {}
        for _ in range(100_000):
            cur["x"] = {}
            cur = cur["x"]
        with pytest.raises(ValueError, match="deep"):
            db.query("RETURN $x", {"x": deep})
        with pytest.raises(OverflowError, match="64 bits"):
            db.query("RETURN $x", {"x": 2**63})
        assert db.query("RETURN $x AS x", {"x": 2**63 - 1})[0]["x"] == 2**63 - 1
        db.query("CREATE NODE TYPE Entity; CREATE RELATION TYPE R (Entity -> Entity)")
        with pytest.raises(TypeError, match="not a str"):
            db.add_edges("Entity", "abc", "R", "Entity", "xyz")
        with pytest.raises(ValueError, match=r"weights\[1\] = 1e300 does not fit"):
            db.add_edges("Entity", ["a", "b"], "R", "Entity", ["b", "c"], weights=[1.0, 1e300])
        assert db.query("MATCH ()-[r]->() RETURN count(r) AS n")[0]["n"] == 0
        with pytest.raises(quiver.ConfigError, match="lr"):
            db.train("m", {"lr": float("nan"), "epochs": 1}, device="cpu", progress=False)
        with pytest.raises(quiver.ConfigError, match="lr"):
            db.train("m", {"lr": "fast"}, device="cpu", progress=False)
        with pytest.raises(quiver.LockedError, match="this one does through another handle"):
            quiver.open(tmp_path / "db")


def test_huge_k_is_cut_to_the_rows(tmp_path):
    with social(tmp_path / "db") as db:
        db.train("m", {"dim": 8, "epochs": 1, "threads": 1}, device="cpu", progress=False)
        for k in (10**9, 2**62):
            keys, scores = db.neighbors("m", "User", ["u1"], k=k)
            assert keys.shape == scores.shape == (1, 30), keys.shape
            assert keys[0, 0] is not None and keys[0, -1] is None


def test_ctrl_c_stops_a_long_query(tmp_path):
    path = tmp_path / "db"
    quiver.open(path).close()
    script = textwrap.dedent(f"""
        import quiver, signal, time
        signal.signal(signal.SIGINT, signal.default_int_handler)
        db = quiver.open({str(path)!r})
        print("querying", flush=True)
        started = time.monotonic()
        try:
            db.query("UNWIND range(1, 1000000) AS x UNWIND range(1, 1000000) AS y WITH x WHERE x < 0 RETURN count(*)")
            print("finished")
        except KeyboardInterrupt:
            print("interrupted", round(time.monotonic() - started, 1))
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "querying"
    time.sleep(0.5)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=60)
    assert out.startswith("interrupted"), out
    assert time.monotonic() - sent < 2.0


def test_closing_from_a_callback_is_an_error_not_a_deadlock(tmp_path):
    path = tmp_path / "db"
    social(path).close()
    script = textwrap.dedent(f"""
        import quiver
        db = quiver.open({str(path)!r})
        def on(e):
            db.close()
        try:
            db._db.train("m", {{"dim": 8, "epochs": 1, "threads": 1}}, "cpu", False, on)
            print("trained")
        except quiver.Error as e:
            print("refused" if "inside one of this database's calls" in str(e) else e)
        db.close()
        print("closed", "closed" in repr(db))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["refused", "closed", "True"], out


def test_day_one_defects_of_the_second_python_round(tmp_path, monkeypatch):
    import pickle

    import pandas as pd

    with quiver.open(tmp_path / "db") as db:
        db.query("CREATE NODE TYPE User; CREATE RELATION TYPE F (User -> User)")
        df = pd.DataFrame({"s": ["a", "b"], "d": ["b", "c"]})
        # A DataFrame where keys were expected iterates its column names.
        with pytest.raises(TypeError, match=r"src_keys: .* not a DataFrame"):
            db.add_edges("User", df, "F", "User", ["x", "y"])
        with pytest.raises(quiver.StorageError, match="not a finite number ≥ 0"):
            db.add_edges("User", ["a"], "F", "User", ["b"], weights=[-1.0])
        db.add_edges("User", df["s"], "F", "User", df["d"])
        assert db.query("MATCH ()-[r]->() RETURN count(r) AS n")[0]["n"] == 2
        # Exceptions carry their public names and survive pickling (joblib, multiprocessing).
        with pytest.raises(quiver.QueryError) as caught:
            db.query("UNWIND [1] AS x RETURN x / 0")
        e = caught.value
        assert type(e).__name__ == "QueryError" and type(e).__module__ == "quiver"
        again = pickle.loads(pickle.dumps(e))
        assert type(again) is quiver.QueryError and str(again) == str(e)
    for cls in (quiver.StorageError, quiver.EngineError, quiver.LockedError, quiver.ConfigError):
        assert cls.__module__ == "quiver" and not cls.__name__.endswith("_")
        assert type(pickle.loads(pickle.dumps(cls("x")))) is cls
    # An empty path leaves nothing behind; ":memory:" and None are temporary.
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(quiver.StorageError, match="empty path"):
        quiver.open("")
    assert sorted(os.listdir(tmp_path)) == before
    for path in (":memory:", None):
        db = quiver.open(path)
        where = db.path
        db.query("CREATE NODE TYPE T; CREATE (:T {key: 'a'})")
        assert db.query("MATCH (n:T) RETURN count(n) AS n")[0]["n"] == 1
        db.close()
        assert not os.path.exists(where)
    assert not os.path.exists(tmp_path / ":memory:")


def test_no_gpu_probe_noise_on_a_cpu_machine(tmp_path):
    social(tmp_path / "db").close()
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    script = textwrap.dedent(f"""
        import quiver
        with quiver.open({str(tmp_path / "db")!r}) as db:
            db.train("m", {{"dim": 8, "epochs": 1}}, device="auto", progress=False)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "XDG_RUNTIME_DIR" not in out.stderr, out.stderr


def test_a_type_or_relation_the_model_never_saw_is_a_clear_error(tmp_path):
    with social(tmp_path / "db") as db:
        db.train("m", {"dim": 8, "epochs": 1, "threads": 1}, device="cpu", progress=False)
        db.query("CREATE NODE TYPE Tag; CREATE RELATION TYPE Tagged (User -> Tag); CREATE RELATION TYPE Knows (User -> User)")
        db.query("MATCH (u:User {key: 'u1'}) CREATE (u)-[:Tagged]->(:Tag {key: 't1'})")
        said = "no rows of node type `Tag`"
        for call in (
            lambda: db.embeddings("m", "Tag"),
            lambda: db.embedding("m", "Tag", "t1"),
            lambda: db.neighbors("m", "Tag", ["t1"]),
            lambda: db.query("MATCH (t:Tag {key: 't1'}) RETURN quiver.embed(t, 'm')"),
            lambda: db.query("MATCH (t:Tag {key: 't1'}) CALL quiver.nearest(t, 3, 'm') YIELD node RETURN node"),
        ):
            with pytest.raises(quiver.Error, match=said):
                call()
        with pytest.raises(quiver.Error, match="no vector for relation `Knows`"):
            db.query("MATCH (a:User {key: 'u1'}), (b:User {key: 'u2'}) RETURN quiver.score(a, 'Knows', b, 'm')")
        # What the model did see still answers.
        assert db.embedding("m", "User", "u1").shape == (8,)
        assert db.query("MATCH (a:User {key: 'u1'}), (b:User {key: 'u2'}) RETURN quiver.score(a, 'Follows', b, 'm') AS s")[0]["s"] is not None


def test_search_against_a_numpy_brute_force(tmp_path):
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(20, 16)).astype(np.float32) * 2
    vecs = (centers[rng.integers(0, 20, 3000)] + rng.normal(size=(3000, 16))).astype(np.float32)
    keys = [f"i{i}" for i in range(len(vecs))]
    with quiver.open(tmp_path / "db") as db:
        with pytest.raises(quiver.Error, match="Item"):
            db.import_embeddings("v", "Item", keys, vecs)  # no such type yet
        db.query("CREATE NODE TYPE Item")
        with pytest.raises(quiver.Error, match="i0"):
            db.import_embeddings("v", "Item", keys, vecs)  # no such nodes yet
        assert db.import_embeddings("v", "Item", keys, vecs, score="dot", create_nodes=True) == 0
        built = db.create_index("v", "Item")
        assert built["Item"]["rows"] == len(vecs)
        queries = (centers[rng.integers(0, 20, 100)] + rng.normal(size=(100, 16))).astype(np.float32)
        truth = np.argsort(-(queries @ vecs.T), axis=1)[:, :10]
        found, scores = db.search("v", "Item", queries, k=10, ef=128)
        assert found.shape == (100, 10) and scores.shape == (100, 10)
        hits = sum(len({int(k[1:]) for k in f} & set(t)) for f, t in zip(found, truth))
        assert hits / 1000 >= 0.9
        # Scores are the model's own: the dot products of the keys found.
        for q, f, s in zip(queries, found, scores):
            np.testing.assert_allclose(s, vecs[[int(k[1:]) for k in f]] @ q, rtol=1e-5)
        exact, _ = db.search("v", "Item", queries, k=10, exact=True)
        assert [[int(k[1:]) for k in row] for row in exact] == truth.tolist()
        one, _ = db.search("v", "Item", queries[0], k=5)
        assert one.shape == (1, 5)
        with pytest.raises(quiver.Error, match="columns"):
            db.search("v", "Item", np.zeros((1, 7), dtype=np.float32))
        # Neighbours of stored nodes go through the index too, never the node itself.
        nk, _ = db.neighbors("v", "Item", ["i0"], k=5)
        assert "i0" not in list(nk[0])


def test_every_public_name_has_a_docstring():
    import inspect

    missing = []
    for name in dir(quiver):
        obj = getattr(quiver, name)
        if name.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not (obj.__doc__ or "").strip():
            missing.append(name)
        if inspect.isclass(obj) and obj.__module__.startswith("quiver"):
            for attr, f in vars(obj).items():
                if not attr.startswith("_") and (callable(f) or isinstance(f, property)):
                    if not (f.__doc__ or "").strip():
                        missing.append(f"{name}.{attr}")
    assert missing == []


def test_models_count_changes_and_refresh_makes_a_new_version(tmp_path):
    with social(tmp_path / "db") as db:
        db.train("m", {"dim": 8, "epochs": 2, "threads": 1}, device="cpu", progress=False, valid="none")
        assert db.models()[0]["since"] == {"edges_added": 0, "edges_deleted": 0, "nodes_added": 0, "nodes_deleted": 0}
        db.query("CREATE (:User {key: 'newcomer'})")
        db.query("MATCH (a:User {key: 'newcomer'}), (b:User {key: 'u1'}) CREATE (a)-[:Follows]->(b)")
        since = {m["name"]: m["since"] for m in db.models()}["m"]
        assert since == {"edges_added": 1, "edges_deleted": 0, "nodes_added": 1, "nodes_deleted": 0}
        r = db.refresh("m", epochs=2, threads=1)
        assert r["model"] == "m@2" and [h["epoch"] for h in r["history"]] == [0, 1]
        # The added edge and (replay 1) about one old edge at its ends.
        assert 1 <= r["history"][0]["edges"] <= 5
        by_name = {m["name"]: m for m in db.models()}
        assert by_name["m@2"]["since"]["edges_added"] == 0 and by_name["m"]["since"]["edges_added"] == 1
        assert db.embedding("m@2", "User", "newcomer").shape == (8,)
        with pytest.raises(quiver.ConfigError, match="nothing changed"):
            db.refresh("m@2")
        with pytest.raises(quiver.ConfigError, match="exists"):
            db.refresh("m", new_name="m@2")


def test_a_write_past_refresh_after_refreshes_in_the_background(tmp_path):
    import time

    with social(tmp_path / "db") as db:
        db.train("m", {"dim": 8, "epochs": 2, "threads": 1, "refresh_after": 2}, device="cpu", progress=False,
                 valid="none")
        db.add_edges("User", ["u1"], "Follows", "User", ["newcomer"])
        time.sleep(0.3)
        assert [m["name"] for m in db.models()] == ["m"]
        db.query("CREATE (:User {key: 'late'})")
        db.query("MATCH (a:User {key: 'late'}), (b:User {key: 'u2'}) CREATE (a)-[:Follows]->(b)")
        for _ in range(300):
            by_name = {m["name"]: m for m in db.models()}
            if by_name.get("m@2", {}).get("finished"):
                break
            time.sleep(0.05)
        assert by_name["m@2"]["finished"] and by_name["m@2"]["since"]["edges_added"] == 0
        assert db.embedding("m@2", "User", "late").shape == (8,)
