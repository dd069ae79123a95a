"""quiver: an embedded graph database with a built-in embedding engine.

    import quiver
    with quiver.open("social.db") as db:
        db.query("CREATE NODE TYPE User; CREATE RELATION TYPE Follows (User -> User)")
        db.add_edges("User", ["alice", "bob"], "Follows", "User", ["bob", "carol"])
        db.train(model="m", config={"dim": 16, "epochs": 5})
        keys, vectors = db.embeddings("m", "User")

Everything runs in quiver's Rust core (`quiver._native`); this module adds
Python conveniences: context managers, result rows as dicts (and pandas),
and a progress bar while training.
"""

from __future__ import annotations

import builtins
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

if TYPE_CHECKING:  # names in annotations only; each is imported where it is used
    import numpy as np
    import networkx
    import numpy.typing as npt

# Mesa's Vulkan drivers print "error: XDG_RUNTIME_DIR is invalid or not set"
# when the GPU is probed without one (device="auto" on a CPU-only machine):
# a private directory per user, as the command line gives itself.
if not os.environ.get("XDG_RUNTIME_DIR") and hasattr(os, "getuid"):
    _xdg = os.path.join(__import__("tempfile").gettempdir(), f"quiver-xdg-{os.getuid()}")
    try:
        os.makedirs(_xdg, mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = _xdg
    except OSError:
        pass

from . import _graph, _native
from ._native import (
    ConfigError,
    CorruptionError,
    EngineError,
    Error,
    LockedError,
    QueryError,
    QuerySyntaxError,
    StorageError,
)

__version__ = _native.__version__
__all__ = [
    "open",
    "connect",
    "Database",
    "Client",
    "Rows",
    "Prepared",
    "Error",
    "QuerySyntaxError",
    "QueryError",
    "StorageError",
    "CorruptionError",
    "LockedError",
    "EngineError",
    "ConfigError",
]

from ._client import Client, connect
from ._progress import _Progress
from ._rows import Rows

Prepared = _native.Prepared


def open(path: Union[str, "os.PathLike[str]", None] = None) -> "Database":
    """Opens the database at `path`, creating it if missing; with None or
    ":memory:", a temporary database removed when it is closed (for tests
    and notebooks). Raises LockedError when another process holds it, and
    StorageError for an empty path."""
    return Database(path)


class Database:
    """An open quiver database; use it as a context manager or call close()."""

    def __init__(self, path: Union[str, "os.PathLike[str]", None] = None):
        self._temp = None
        if path is None or path == ":memory:":
            import shutil
            import tempfile
            import weakref

            self._temp = tempfile.mkdtemp(prefix="quiver-")
            path = os.path.join(self._temp, "db")
            # Removed on close, or when the handle is collected.
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._temp, True)
        self._db = _native.Database(os.fspath(path))

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"quiver.Database({self._db.path!r}{', closed' if self._db.closed else ''})"

    @property
    def path(self) -> str:
        """The database directory."""
        return self._db.path

    def close(self) -> None:
        """Closes the database (a temporary one is removed); later calls raise quiver.Error."""
        self._db.close()
        if self._temp is not None:
            self._cleanup()

    # Queries

    def query(self, text: str, params: Optional[Dict[str, Any]] = None) -> Rows:
        """Runs `;`-separated statements (one commit each) and returns the
        last one's rows. Parameters may be None, bool, int, float, str,
        lists and dicts (`UNWIND $rows AS row ...` writes a batch)."""
        return Rows(*self._db.query(text, params))

    def prepare(self, text: str) -> Prepared:
        """Parses a statement once, for `execute` with different parameters."""
        return self._db.prepare(text)

    def execute(self, prepared: Union[Prepared, str], params: Optional[Dict[str, Any]] = None) -> Rows:
        """Runs a statement from `prepare` with `params` ($name values);
        raises QueryError as `query` does. A string is run as `query` runs
        it (LadybugDB's and Kùzu's `conn.execute(text)`).

            p = db.prepare("MATCH (u:User {key: $k})-->(v) RETURN v.key")
            db.execute(p, {"k": "alice"}).rows
        """
        if isinstance(prepared, str):
            return self.query(prepared, params)
        return Rows(*self._db.execute(prepared, params))

    def execute_many(self, text: str, rows: Sequence[Dict[str, Any]]) -> Rows:
        """Runs `text` once per row as ONE statement and one commit:
        `UNWIND $rows AS row` followed by `text`, in which `row` is the map."""
        return self.query(f"UNWIND $rows AS row {text}", {"rows": list(rows)})

    # Bulk loading

    def add_edges(self, src_type: str, src_keys: Any, relation: str, dst_type: str, dst_keys: Any,
                  weights: Any = None) -> Dict[str, int]:
        """Inserts edges src_keys[i] -relation-> dst_keys[i] in one atomic
        batch (lists, numpy arrays or pandas columns; nodes created as needed)."""
        return self._db.add_edges(src_type, src_keys, relation, dst_type, dst_keys, weights)

    def import_files(
        self,
        paths: Sequence[Union[str, "os.PathLike[str]"]],
        skip_bad: bool = False,
        create_types: bool = False,
        node_type: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Imports edge lists as `quiver import` does (TSV, CSV, gzip, or
        Parquet with columns head, relation, tail or src_type, src_key,
        relation, dst_type, dst_key[, weight]); a bad line raises
        StorageError with file:line:column (Parquet: file:row:column) and
        nothing is stored.
        `create_types` creates the node and relation types typed lines name;
        `node_type` is the type of plain triples' nodes (default Entity)."""
        return self._db.import_files([os.fspath(p) for p in paths], skip_bad, create_types, node_type)

    def load(
        self,
        data: Any,
        head: str = "head",
        relation: str = "relation",
        tail: str = "tail",
        src_type: Optional[str] = None,
        dst_type: Optional[str] = None,
        weight: Optional[str] = None,
        node_type: Optional[str] = None,
        create_types: bool = False,
    ) -> Dict[str, Any]:
        """Imports the edges of a pandas or polars DataFrame, a pyarrow Table
        or a dict of columns, many relations at once, through the same bulk
        path as `import_files` (one atomic import; a bad row raises with its
        1-based row number as the line). `head`, `relation`, `tail` name the key and
        relation columns; `src_type` / `dst_type`, each a column name or one
        type name for every row, make the edges typed (with `create_types`,
        unknown types are created); without them every node is of
        `node_type` (Entity). `weight` names a weight column. Needs pyarrow.

            db.load(df, head="user", relation="rel", tail="item",
                    src_type="User", dst_type="Item", create_types=True)
        """
        import tempfile

        import pyarrow as pa

        if hasattr(data, "to_arrow"):  # polars
            table = data.to_arrow()
        elif isinstance(data, pa.Table):
            table = data
        elif isinstance(data, dict):
            table = pa.table(data)
        else:  # pandas
            table = pa.Table.from_pandas(data, preserve_index=False)
        n = table.num_rows

        def column(name: str) -> "pa.Array":
            if name not in table.column_names:
                raise KeyError(f"load: no column {name!r} (columns: {table.column_names})")
            return table.column(name).cast(pa.string())

        def of_type(spec: str) -> "pa.Array":
            return column(spec) if spec in table.column_names else pa.array([spec] * n, pa.string())

        if (src_type is None) != (dst_type is None):
            raise TypeError("load: give both src_type and dst_type, or neither")
        if src_type is not None and dst_type is not None:
            cols = {"src_type": of_type(src_type), "src_key": column(head), "relation": column(relation),
                    "dst_type": of_type(dst_type), "dst_key": column(tail)}
            if weight is not None:
                cols["weight"] = table.column(weight).cast(pa.float32())
        else:
            if weight is not None:
                raise TypeError("load: weights need typed edges (src_type and dst_type)")
            cols = {"head": column(head), "relation": column(relation), "tail": column(tail)}
        with tempfile.TemporaryDirectory(prefix="quiver-load-") as tmp:
            path = os.path.join(tmp, "edges.parquet")
            import pyarrow.parquet as pq

            # Uncompressed: the file lives for one import.
            pq.write_table(pa.table(cols), path, compression="none")
            try:
                return self.import_files([path], create_types=create_types, node_type=node_type)
            except StorageError as e:
                # The file is ours; its rows are the data's.
                raise StorageError(str(e).replace(f"{path}:", "row ")) from None

    # Training and evaluation

    def train(
        self,
        model: str = "default",
        config: Union[None, Dict[str, Any], str, "os.PathLike[str]"] = None,
        device: str = "auto",
        progress: bool = True,
        resume: bool = False,
        valid: Any = None,
        eval_every: Optional[int] = None,
        patience: Optional[int] = None,
        metric: Optional[str] = None,
        target: Optional[str] = None,
        overwrite: bool = False,
        auto: bool = False,
        budget: float = 600.0,
    ) -> Dict[str, Any]:
        """Trains TransE (or resumes a stopped run) with the GIL released.
        The model is scored on validation triples every `eval_every` epochs
        (default 1), the best is kept as the model, and `patience` scorings
        without improvement (by `metric`, mrr or hits@10) end the run. The
        triples are `valid` (a file; patience 0 by default) or, without it,
        a seeded sample of the graph's own edges held out of training (about
        5%, at most 5,000, a pair's edges together; patience 3; `target`: only
        that relation's edges, e.g. "Follows"); `valid="none"`: no validation
        (10 epochs unless the config says). `valid` may also be a
        (heads, relations, tails) tuple or a DataFrame (columns head,
        relation, tail, or its first three).
        A model of that name is an error unless `overwrite` (or `resume`).
        With `auto`, the settings `quiver train --auto` tries (the defaults,
        relation balance, L2 with the margin loss and d = 64, ...) are
        trained one after another on the same held-out edges, none started
        after `budget` seconds, and the best is kept; the result adds
        `trials` (settings, best validation score, epoch kept, seconds) and
        `chosen` (its index).
        Returns {model, last_epoch, history: per epoch {epoch, loss,
        mean_loss (per edge), edges, seconds}, validation: per scoring
        {epoch, mrr, hits@10}, held_out: edges held out as validation}.
        `config`: a dict of TrainConfig fields or a path to a TOML file.
        With `progress`, a bar shows epoch, loss, edges/s and the ETA
        (tqdm's, in terminals and notebooks, when tqdm is installed).
        Ctrl-C stops at the next bucket boundary; the model stays resumable
        (`resume=True`) and KeyboardInterrupt is raised."""
        if config is not None and not isinstance(config, dict):
            config = os.fspath(config)
        if hasattr(valid, "columns"):  # a pandas or polars DataFrame
            names = list(valid.columns)
            cols = ["head", "relation", "tail"] if {"head", "relation", "tail"} <= set(names) else names[:3]
            valid = tuple(list(valid[c]) for c in cols)
        elif isinstance(valid, os.PathLike):
            valid = os.fspath(valid)
        bar = _Progress() if progress else None
        try:
            return self._db.train(model, config, device, resume, bar.update if bar else None,
                                  valid, eval_every, patience, metric, target, overwrite, auto, budget)
        finally:
            if bar:
                bar.close()

    def refresh(
        self,
        model: str = "default",
        new_name: Optional[str] = None,
        epochs: Optional[int] = None,
        replay: Optional[float] = None,
        drift_penalty: Optional[float] = None,
        threads: int = 0,
    ) -> Dict[str, Any]:
        """A new version of `model` brought up to date with the writes since
        it was trained, as `quiver refresh`: trained (warm started from it,
        held near it by `drift_penalty`) for `epochs` on the edges added since
        and `replay` old edges per added one at the nodes the change touched;
        new nodes start from their neighbours' rows; its ANN indexes are
        carried over. `new_name` defaults to "MODEL@2" (then @3, ...); the old
        model stays until dropped. `models()` says what changed since each
        model was trained ("since"). Returns {model: the new name, history}.
        Ctrl-C stops it resumably (`train(new_name, resume=True)`)."""
        return self._db.refresh(model, new_name, epochs, replay, drift_penalty, threads)

    def evaluate(
        self,
        model: str,
        test: Union[str, "os.PathLike[str]", Tuple[Sequence[str], Sequence[str], Sequence[str]]],
        filter: Sequence[Union[str, "os.PathLike[str]"]] = (),
        device: str = "cpu",
    ) -> Dict[str, Any]:
        """Filtered MRR and Hits@k, both directions, realistic ties: the same
        dict as `quiver eval --json` (and stored with the model). `test` is a
        file of head<TAB>relation<TAB>tail lines or (heads, relations, tails)."""
        if not isinstance(test, tuple):
            test = os.fspath(test)
        return self._db.evaluate(model, test, [os.fspath(f) for f in filter], device)

    # Embeddings

    def embeddings(self, model: str, node_type: str) -> Tuple[List[str], "npt.NDArray[np.float32]"]:
        """(keys, matrix): the node type's keys in row order and a float32
        numpy array [n, d] that owns the rows loaded from the model (no
        further copy)."""
        return self._db.embeddings(model, node_type)

    def relation_vectors(self, model: str) -> Tuple[List[str], "npt.NDArray[np.float32]"]:
        """(row names, float32 array [rows, d]): a row per relation, then, for
        a model with reciprocal relations (the default), a row `NAME (head)`
        per relation for predicting heads (t + r′ ≈ h)."""
        return self._db.relation_vectors(model)

    def embedding(self, model: str, node_type: str, key: str) -> "npt.NDArray[np.float32]":
        """One node's row; inferred from its neighbours for nodes created after training."""
        return self._db.embedding(model, node_type, key)

    def neighbors(
        self,
        model: str,
        node_type: str,
        nodes: Sequence[str],
        k: int = 10,
        metric: str = "model",
        relation: Optional[str] = None,
        exclude_connected: bool = False,
        quantized: bool = False,
        device: str = "cpu",
        exact: bool = False,
        ef: Optional[int] = None,
    ) -> Tuple["npt.NDArray[Any]", "npt.NDArray[np.float32]"]:
        """Top-k for a batch of nodes: (keys, scores), numpy arrays [len(nodes), k]
        (keys of dtype object; None / nan pad rows with fewer than k). The
        model's index of the target type is searched when it has a current one
        (``create_index``; ``ef`` sets the search breadth) unless ``exact``."""
        import numpy as np

        keys, scores = self._db.neighbors(
            model, node_type, nodes, k, metric, relation, exclude_connected, quantized, device, exact, ef
        )
        # k past the target type's rows is cut to them (as the CLI does).
        return np.array(keys, dtype=object).reshape(scores.shape), scores

    def search(self, model: str, node_type: str, queries: Any, k: int = 10, exact: bool = False,
               ef: Optional[int] = None) -> Tuple["npt.NDArray[Any]", "npt.NDArray[np.float32]"]:
        """The k best nodes of ``node_type`` for arbitrary query vectors
        (float32 [n, d], or one vector [d]): (keys, scores), numpy arrays
        [n, k], scores being the model's own. Uses the model's index of the
        type when it has a current one unless ``exact``; ``ef`` is the
        search breadth (the index's default when None)."""
        import numpy as np

        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q.reshape(1, -1)
        if q.ndim != 2:
            raise ValueError(f"queries must be [n, d] or [d], not {q.ndim}-dimensional")
        keys, scores = self._db.search(model, node_type, q, k, exact, ef)
        return np.array(keys, dtype=object).reshape(scores.shape), scores

    def import_embeddings(self, model: str, node_type: str, keys: Any, array: Any, score: str = "dot",
                          create_nodes: bool = False) -> int:
        """Stores vectors from anywhere (a text encoder, another trainer) as
        ``node_type``'s rows of ``model``: ``array`` float32 [len(keys), d],
        row i for node ``keys[i]``. The model is created when missing (other
        types' rows and relation vectors zero) and otherwise replaced in one
        change with these rows (its indexes go with the old version). ``score``
        is how searches compare them: dot, l2 or cosine (rows stored at unit
        length). Keys not in the database are an error naming the first,
        unless ``create_nodes``. Returns how many of the type's nodes have no
        row (zeros)."""
        import numpy as np

        a = np.ascontiguousarray(array, dtype=np.float32)
        if a.ndim != 2:
            raise ValueError(f"array must be [n, d], not {a.ndim}-dimensional")
        return self._db.import_embeddings(model, node_type, keys, a, score, create_nodes)

    def export(self, model: str, path: Union[str, "os.PathLike[str]"], format: str = "npy",
               force: bool = False, partitions: int = 1) -> Union[int, str]:
        """Writes the model's rows to ``path``.

        ``npy`` and ``tsv`` are the layouts ``quiver export`` writes into the
        directory ``path`` (``TYPE.npy`` float32 with ``TYPE.keys.tsv``, or
        ``TYPE.tsv``, per node type and ``_relations``); returns the file count.
        ``parquet`` writes one file ``path`` with columns ``type``, ``key`` and
        ``embedding`` (fixed-size lists of float32) for every node type, as
        ``pl.read_parquet`` and ``pd.read_parquet`` read it (needs pyarrow);
        returns the path. Existing files are refused unless ``force``, and no
        file goes inside a database. ``pbg-checkpoint`` writes the directory
        ``path`` as ``quiver export --format pbg-checkpoint`` does (PyTorch-
        BigGraph's ``init_path``, ``partitions`` per node type; L2 models;
        needs h5py); returns the file count.

            db.export("m", "out/", format="npy")
            db.export("m", "m.parquet", format="parquet")
        """
        if format == "parquet":
            import numpy as np
            import pyarrow as pa
            import pyarrow.parquet as pq

            path = os.fspath(path)
            if os.path.exists(path) and not force:
                raise StorageError(f"{path} exists (force=True overwrites it)")
            parts = []
            for t in self.stats()["node_types"]:
                keys, rows = self.embeddings(model, t["name"])
                flat = pa.array(np.ascontiguousarray(rows, dtype=np.float32).reshape(-1))
                parts.append(pa.table({"type": pa.array([t["name"]] * len(keys), pa.string()),
                                       "key": pa.array(keys, pa.string()),
                                       "embedding": pa.FixedSizeListArray.from_arrays(flat, rows.shape[1])}))
            tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.tmp")
            pq.write_table(pa.concat_tables(parts), tmp)
            os.replace(tmp, path)
            return path
        if format == "pbg-checkpoint":
            import h5py

            hdf5, text = self._db.pbg_checkpoint(model, os.fspath(path), partitions, force)
            os.makedirs(path, exist_ok=True)
            for name, datasets in hdf5:
                with h5py.File(os.path.join(path, name), "w") as f:
                    f.attrs["format_version"] = 1
                    for key, array, state_dict_key in datasets:
                        ds = f.create_dataset(key, data=array)
                        if state_dict_key is not None:
                            ds.attrs["state_dict_key"] = state_dict_key
            for name, content in text:  # the version file last
                with builtins.open(os.path.join(path, name), "w") as t:
                    t.write(content)
            return len(hdf5) + len(text)
        return self._db.export_model(model, os.fspath(path), format, force)

    def import_model(self, model: str, path: Union[str, "os.PathLike[str]"], format: str = "npy",
                     score: str = "dot", create_nodes: bool = False) -> Dict[str, int]:
        """Stores vectors written by ``export`` (or by any tool in that
        layout) as ``model``: ``npy`` reads the directory ``path`` as ``quiver
        import-model --format npy`` does; ``parquet`` reads a file with
        columns ``type``, ``key`` and ``embedding``; ``pbg`` reads a
        PyTorch-BigGraph checkpoint directory as ``quiver import-model`` does
        (every count, name and shape checked against the database; needs
        h5py). ``score`` is how searches
        compare the rows (dot, l2 or cosine); keys not in the database are an
        error naming the first, unless ``create_nodes``. Returns the rows
        stored per node type.

            db.import_model("text", "vectors.parquet", format="parquet", score="cosine")
        """
        if format == "parquet":
            import numpy as np
            import pyarrow.compute as pc
            import pyarrow.parquet as pq

            table = pq.read_table(os.fspath(path), columns=["type", "key", "embedding"])
            out = {}
            for name in pc.unique(table.column("type")).to_pylist():
                part = table.filter(pc.equal(table.column("type"), name))
                vectors = part.column("embedding").combine_chunks()
                rows = np.asarray(vectors.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
                rows = rows.reshape(len(part), -1) if len(part) else rows.reshape(0, 0)
                self.import_embeddings(model, name, part.column("key").to_pylist(), rows, score, create_nodes)
                out[name] = len(part)
            return out
        if format == "pbg":
            import h5py
            import numpy as np

            def read(file: str, key: str, values: bool) -> Any:
                with h5py.File(file, "r") as f:
                    if key not in f:
                        return None
                    ds = f[key]
                    if ds.dtype != np.float32:
                        raise TypeError(f"values of type {ds.dtype}; PBG writes float32")
                    return np.ascontiguousarray(ds[()], dtype=np.float32).reshape(-1) if values else tuple(ds.shape)

            self._db.import_pbg(model, os.fspath(path), read)
            return {t["name"]: t["nodes"] for t in self.stats()["node_types"]}
        if format != "npy":
            raise ValueError(f"import_model: format {format!r}: expected npy, parquet or pbg")
        return {t: n for t, n, _ in self._db.import_npy(model, os.fspath(path), score, create_nodes)}

    def node_keys(self, node_type: str) -> List[Optional[str]]:
        """The node type's keys in id order (None where a node was deleted):
        the row order of ``embeddings`` and the indices of ``edge_index``."""
        return self._db.node_keys(node_type)

    def edge_index(self, relation: str) -> Tuple["npt.NDArray[np.int64]", "npt.NDArray[np.int64]", "npt.NDArray[np.float32]"]:
        """A relation's edges as numpy arrays (source ids, destination ids,
        weights), ids being positions in ``node_keys`` of the relation's types.

            src, dst, w = db.edge_index("Follows")
        """
        return self._db.edge_index(relation)

    def to_networkx(self, query: Optional[str] = None, params: Optional[Dict[str, Any]] = None,
                    model: Optional[str] = None) -> "networkx.MultiDiGraph":
        """The graph, or the nodes and edges a query returns, as a networkx
        MultiDiGraph: nodes are ``(type, key)`` with attributes ``type``,
        ``key`` and, with ``model``, ``embedding`` (the model's row); edges
        are keyed by relation, with ``relation`` and (whole graph) ``weight``.
        Needs networkx.

            g = db.to_networkx("MATCH (a:User {key: $k})-[f:Follows]->(b) RETURN a, f, b", {"k": "u1"})
        """
        return _graph.to_networkx(self, query, params, model)

    def to_pyg(self, query: Optional[str] = None, params: Optional[Dict[str, Any]] = None,
               model: Optional[str] = None) -> Any:
        """The graph, or the nodes and edges a query returns, as a PyTorch
        Geometric ``HeteroData``: per node type ``num_nodes``, ``node_keys`` (row
        i's key) and, with ``model``, ``x`` (the model's rows); per
        (source type, relation, destination type) ``edge_index`` [2, E] and
        (whole graph) ``edge_weight``. Needs torch and torch_geometric.

            data = db.to_pyg(model="m")
            data["User", "Follows", "User"].edge_index
        """
        return _graph.to_pyg(self, query, params, model)

    def create_index(
        self,
        model: str,
        node_type: Optional[str] = None,
        quantization: str = "f32",
        connectivity: int = 16,
        expansion_add: int = 200,
        expansion_search: int = 96,
        threads: int = 0,
    ) -> Dict[str, Any]:
        """Builds and stores the model's approximate nearest-neighbour index
        (HNSW) of ``node_type`` (every type when None), as ``quiver index``;
        returns what was stored per type. Ctrl-C stops it, storing nothing."""
        return self._db.create_index(model, node_type, quantization, connectivity, expansion_add, expansion_search, threads)

    # Administration

    def stats(self) -> Dict[str, Any]:
        """Counts per node type and relation, degrees and disk use: the
        object `quiver stats --json` prints."""
        return self._db.stats()

    def check(self) -> Dict[str, Any]:
        """Verifies every segment's checksum and the graph's consistency, as
        `quiver check`; raises StorageError naming the first problem."""
        return self._db.check()

    def models(self) -> List[Dict[str, Any]]:
        """The stored models, one dict each: name, settings, whether finished,
        metrics (validation curve and the last evaluation), and "since": the
        edges and nodes added and deleted since the graph state it was
        trained on (None when it has no record of it)."""
        return self._db.models()

    def drop_model(self, name: str) -> None:
        """Removes model `name` and its parts (index and int8 copies
        included); raises StorageError when there is none."""
        self._db.drop_model(name)

    def recall(
        self,
        model: str,
        relation: str,
        holdout: float = 0.1,
        k: Sequence[int] = (10, 20, 50),
        method: str = "translation",
        config: Union[None, Dict[str, Any], str, "os.PathLike[str]"] = None,
        seed: int = 0,
        device: str = "auto",
        train: bool = True,
    ) -> Dict[str, Any]:
        """Recall@K of held-out edges, as `quiver eval recall --json` reports
        it: trains `model` without `holdout` of the relation's edges (unless
        `train=False`), then ranks by translation or kNN."""
        if config is not None and not isinstance(config, dict):
            config = os.fspath(config)
        return self._db.recall(model, relation, holdout, list(k), method, config, seed, device, train)

    def quantize(self, model: str) -> Dict[str, int]:
        """Stores an int8 copy per node type (for `neighbors(quantized=True)`)."""
        return self._db.quantize(model)
