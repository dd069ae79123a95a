#!/usr/bin/env python3
"""faiss IndexFlatIP at any size, as the ann_search anchor measures it at
14,541 x 200: random standard-normal vectors scaled to unit length, batched
search of all queries (median of 5) and one query per call on one thread.
Prints one JSON line. Usage: faiss_flat.py --n N --dim D --queries Q [--k K]"""
import argparse, json, statistics, time

import faiss
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=1_000_000)
ap.add_argument("--dim", type=int, default=128)
ap.add_argument("--queries", type=int, default=2000)
ap.add_argument("--single", type=int, default=200)
ap.add_argument("--k", type=int, default=10)
a = ap.parse_args()
rng = np.random.default_rng(0)
X = rng.standard_normal((a.n, a.dim), dtype=np.float32)
X /= np.linalg.norm(X, axis=1, keepdims=True)
Q = rng.standard_normal((a.queries, a.dim), dtype=np.float32)
Q /= np.linalg.norm(Q, axis=1, keepdims=True)
index = faiss.IndexFlatIP(a.dim)
index.add(X)
ts = []
for _ in range(5):
    t = time.perf_counter()
    index.search(Q, a.k)
    ts.append(time.perf_counter() - t)
batched = statistics.median(ts)
faiss.omp_set_num_threads(1)
lat = []
for i in range(min(a.single, a.queries)):
    t = time.perf_counter()
    index.search(Q[i:i + 1], a.k)
    lat.append(time.perf_counter() - t)
print(json.dumps({"bench": "faiss_flat", "faiss": faiss.__version__, "n": a.n, "dim": a.dim, "queries": a.queries, "k": a.k,
                  "batched": {"search_s": batched, "qps": a.queries / batched},
                  "single_1thread": {"qps": len(lat) / sum(lat), "median_us": statistics.median(lat) * 1e6}}))
