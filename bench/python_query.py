#!/usr/bin/env python3
"""quiver through its Python API, measured as ../shared/anchors/kuzu_graph.py
measures LadybugDB through its own: the same prepared queries on FB15k-237
train, 2,000 runs after 200 warm-up runs, subjects drawn with
random.Random(7) from the sorted heads, rows fetched as Python objects.

Also: `embeddings()` of a d = 600 model (one partition, so a view of the
mapped rows) and `neighbors()` of 2,000 nodes with k = 10, beside the time
the Rust API takes for the same search (`quiver neighbors`' own figure).
Prints one JSON object.
"""

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time

import quiver


def lat_stats(ts):
    ts = sorted(ts)
    n = len(ts)
    return {"n": n, "median_us": round(statistics.median(ts) * 1e6, 1),
            "p99_us": round(ts[min(n - 1, int(0.99 * n))] * 1e6, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--quiver", default="target/release/quiver", help="the CLI, for the Rust API's neighbour time")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--dim", type=int, default=600)
    args = ap.parse_args()
    work = tempfile.mkdtemp()
    path = os.path.join(work, "db")
    train = os.path.join(args.data, "train.txt")
    triples = [tuple(l.rstrip("\n").split("\t")) for l in open(train, encoding="utf-8") if l.strip()]
    db = quiver.open(path)
    db.import_files([train])
    rng = random.Random(args.seed)
    heads = sorted({h for h, _, _ in triples})
    prepared = {}

    def by_rel(r):
        if r not in prepared:
            prepared[r] = db.prepare(f"MATCH (a:Entity {{key: $s}})-[:`{r}`]->(b) RETURN b.key")
        return prepared[r]

    specs = {
        "a_1hop_out": (lambda: db.prepare("MATCH (a:Entity {key: $s})-->(b) RETURN b.key"), lambda: (None, rng.choice(heads))),
        "b_s_r_?o": (None, lambda: (lambda t: (by_rel(t[1]), t[0]))(rng.choice(triples))),
        "c_2hop_distinct_count": (lambda: db.prepare("MATCH (a:Entity {key: $s})-->()-->(c) RETURN count(DISTINCT c)"),
                                  lambda: (None, rng.choice(heads))),
        "c2_2hop_path_count": (lambda: db.prepare("MATCH (a:Entity {key: $s})-->()-->(c) RETURN count(*)"),
                               lambda: (None, rng.choice(heads))),
    }
    latency = {}
    for name, (make, gen) in specs.items():
        ps = make() if make else None
        for i in range(args.warmup + args.queries):
            p, s = gen()
            if i == args.warmup:
                lat = []
            t = time.perf_counter()
            rows = db.execute(p or ps, {"s": s}).rows
            dt = time.perf_counter() - t
            if i >= args.warmup:
                lat.append(dt)
        latency[name] = lat_stats(lat)
        print(name, latency[name], file=sys.stderr, flush=True)

    # A d = 600 model (one epoch: only its shape matters here).
    t = time.perf_counter()
    db.train("d600", {"dim": args.dim, "epochs": 1, "partitions": 1}, device="cpu", progress=False)
    train_s = time.perf_counter() - t
    emb = []
    for _ in range(21):
        t = time.perf_counter()
        keys, m = db.embeddings("d600", "Entity")
        emb.append(time.perf_counter() - t)
    emb = emb[1:]  # the first call maps and checks the part
    nodes = random.Random(1).sample(heads, 2000)
    nb = []
    for _ in range(4):
        t = time.perf_counter()
        k, s = db.neighbors("d600", "Entity", nodes, k=10, metric="l2")
        nb.append(time.perf_counter() - t)
    nb = nb[1:]  # the first call loads the model into the cache
    db.close()
    # The Rust API's time for the same search, as the CLI reports it (the
    # search alone, after loading the model).
    cmd = [args.quiver, "neighbors", path, "--model", "d600", "--metric", "l2", "--k", "10"]
    for n in nodes:
        cmd += ["--node", f"Entity:{n}"]
    rust = []
    for _ in range(3):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rust.append(float(re.search(r", ([0-9.]+) ms\)", out).group(1)) / 1e3)
    print(json.dumps({
        "bench": "quiver_python", "quiver": quiver.__version__, "python": sys.version.split()[0],
        "latency": latency,
        "embeddings": {"rows": int(m.shape[0]), "dim": int(m.shape[1]), "bytes": int(m.nbytes),
                       "view": not m.flags.owndata, "median_ms": round(statistics.median(emb) * 1e3, 3),
                       "max_ms": round(max(emb) * 1e3, 3)},
        "neighbors": {"nodes": len(nodes), "k": 10, "python_median_s": round(statistics.median(nb), 4),
                      "rust_median_s": round(statistics.median(rust), 4),
                      "ratio": round(statistics.median(nb) / statistics.median(rust), 3)},
        "train_d600_one_epoch_s": round(train_s, 1),
    }))


if __name__ == "__main__":
    main()
