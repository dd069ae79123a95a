#!/usr/bin/env python3
"""quiver's ANN index from Python, like for like with ../shared/anchors/ann_scale.py run:
`db.search` one query per call on one thread, queries/s at each recall@10.

Runs against the database `quiver-bench ann --dir DIR --db DB` left (model `v`, node type `V`,
keys "0".., already indexed with M 16, ef_construction 200).

  python bench/ann_python.py --dir DIR --db DB [--metric ip|l2] [--ef 16,32,64,96,128,256]
"""
import argparse
import json
import os
import statistics
import time

import numpy as np

import quiver


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--metric", choices=("ip", "l2"), default="ip")
    ap.add_argument("--ef", default="16,32,64,96,128,256")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--target", type=float, default=0.95)
    args = ap.parse_args()
    queries = np.load(os.path.join(args.dir, "queries.npy"))[: args.queries]
    truth = np.load(os.path.join(args.dir, f"truth_{args.metric}.npy"))[: args.queries]
    out = {"bench": "quiver_ann_python", "queries": len(queries), "metric": args.metric, "quiver": []}
    with quiver.open(args.db) as db:
        db.search("v", "V", queries[0], k=10)  # maps the index and loads the model once
        for ef in [int(e) for e in args.ef.split(",")]:
            lat, hits = [], 0
            for i in range(len(queries)):
                t = time.perf_counter()
                keys, _ = db.search("v", "V", queries[i : i + 1], k=10, ef=ef)
                lat.append(time.perf_counter() - t)
                hits += len({int(k) for k in keys[0]} & set(map(int, truth[i][:10])))
            lat.sort()
            out["quiver"].append({
                "ef": ef, "recall@10": round(hits / (10 * len(queries)), 4),
                "single_qps": round(len(queries) / sum(lat), 1),
                "single_median_us": round(statistics.median(lat) * 1e6, 1),
                "single_p99_us": round(lat[int(0.99 * (len(lat) - 1))] * 1e6, 1),
            })
    ok = [r["single_qps"] for r in out["quiver"] if r["recall@10"] >= args.target]
    out["quiver_best_qps_at_target"] = max(ok, default=None)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
