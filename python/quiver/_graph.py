"""The graph, or a query's subgraph, for networkx and PyTorch Geometric."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

if TYPE_CHECKING:
    import networkx
    import numpy as np
    import numpy.typing as npt

    from . import Database


def subgraph(db: "Database", query: Optional[str], params: Optional[Dict[str, Any]]) -> Tuple[
        Dict[str, List[Optional[str]]], Dict[Tuple[str, str, str], Tuple[Any, Any, Any]]]:
    """(keys per node type, (src, dst, weights or None) per relation) of
    the whole graph, or of the nodes and edges in a query's result."""
    import numpy as np

    rels = {r["name"]: (r["from"], r["to"]) for r in db.stats()["relations"]}
    if query is None:
        keys = {t["name"]: db.node_keys(t["name"]) for t in db.stats()["node_types"]}
        return keys, {(f, r, t): db.edge_index(r) for r, (f, t) in rels.items()}
    where: Dict[Tuple[str, str], int] = {}
    keys = {}
    found: Dict[Tuple[str, str, str], List[Tuple[int, int]]] = {}

    def node(ty: str, key: str) -> int:
        if (ty, key) not in where:
            where[(ty, key)] = len(keys.setdefault(ty, []))
            keys[ty].append(key)
        return where[(ty, key)]

    def visit(v: Any) -> None:
        if isinstance(v, list):
            for x in v:
                visit(x)
        elif isinstance(v, dict) and set(v) == {"type", "key"}:
            node(v["type"], v["key"])
        elif isinstance(v, dict) and set(v) == {"type", "src", "dst"}:
            f, t = rels[v["type"]]
            found.setdefault((f, v["type"], t), []).append((node(f, v["src"]), node(t, v["dst"])))

    for row in db.query(query, params).rows:
        for v in row:
            visit(v)
    edges = {}
    for k, pairs in found.items():
        a = np.array(sorted(set(pairs)), dtype=np.int64).reshape(-1, 2)
        edges[k] = (a[:, 0], a[:, 1], None)
    return keys, edges

def features(db: "Database", model: str, node_type: str, keys: List[Optional[str]], whole: bool) -> "npt.NDArray[np.float32]":
    rows_keys, rows = db.embeddings(model, node_type)
    if whole:
        return rows
    at = {k: i for i, k in enumerate(rows_keys)}
    return rows[[at[k] for k in keys if k is not None]]


def to_networkx(db: "Database", query: Optional[str], params: Optional[Dict[str, Any]],
                model: Optional[str]) -> "networkx.MultiDiGraph":
    """`Database.to_networkx`."""
    import networkx as nx

    keys, edges = subgraph(db, query, params)
    g = nx.MultiDiGraph()
    for ty, ks in keys.items():
        vectors = features(db, model, ty, ks, query is None) if model else None
        for i, k in enumerate(ks):
            if k is not None:
                g.add_node((ty, k), type=ty, key=k, **({} if vectors is None else {"embedding": vectors[i]}))
    for (f, r, t), (src, dst, weight) in edges.items():
        for j, (a, b) in enumerate(zip(src.tolist(), dst.tolist())):
            attrs = {"relation": r} if weight is None else {"relation": r, "weight": float(weight[j])}
            g.add_edge((f, keys[f][a]), (t, keys[t][b]), key=r, **attrs)
    return g


def to_pyg(db: "Database", query: Optional[str], params: Optional[Dict[str, Any]], model: Optional[str]) -> Any:
    """`Database.to_pyg`."""
    import torch
    from torch_geometric.data import HeteroData

    keys, edges = subgraph(db, query, params)
    data = HeteroData()
    for ty, ks in keys.items():
        data[ty].num_nodes = len(ks)
        data[ty].node_keys = ks
        if model:
            data[ty].x = torch.from_numpy(features(db, model, ty, ks, query is None).copy())
    for (f, r, t), (src, dst, weight) in edges.items():
        data[f, r, t].edge_index = torch.stack([torch.from_numpy(src), torch.from_numpy(dst)])
        if weight is not None:
            data[f, r, t].edge_weight = torch.from_numpy(weight)
    return data
