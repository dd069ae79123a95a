#!/usr/bin/env python3
"""Who to follow through the ANN index with the graph filter inside the search:
for sampled users, the top-k of u + Follows among Users that u does not follow
yet (`neighbors(relation=..., exclude_connected=True)`), through the index and
exactly; reports that every answer has k rows and none is followed, recall@k
against the exact filtered answer, and single-call latency filtered and not.

  python bench/ann_filtered.py --db DB --model M [--users 1000] [--k 10]

DB holds a TwHIN-like network (`quiver-bench twhin`) with a trained model M
whose User rows are indexed (`quiver index DB --model M --type User`).
"""
import argparse
import json
import random
import statistics
import time

import quiver


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = {"bench": "quiver_ann_filtered", "k": args.k}
    with quiver.open(args.db) as db:
        n = db.query("MATCH (u:User) RETURN count(u) AS n").rows[0][0]
        rng = random.Random(args.seed)
        users = [f"u{rng.randrange(n)}" for _ in range(args.users)]
        nb = lambda u, **kw: db.neighbors(args.model, "User", [u], k=args.k, relation="Follows", **kw)
        nb(users[0])  # loads the model and maps the index
        lat = {"filtered": [], "unfiltered": []}
        hits = short = followed = degree = 0
        for u in users:
            exact, _ = nb(u, exclude_connected=True, exact=True)
            t = time.perf_counter()
            found, _ = nb(u, exclude_connected=True)
            lat["filtered"].append(time.perf_counter() - t)
            t = time.perf_counter()
            nb(u)
            lat["unfiltered"].append(time.perf_counter() - t)
            got = [x for x in found[0] if x is not None]
            short += len(got) < args.k
            hits += len(set(got) & set(exact[0]))
            follows = {r[0] for r in db.query(
                "MATCH (:User {key: $u})-[:Follows]->(v) RETURN v.key", {"u": u}).rows}
            degree += len(follows)
            followed += len(follows & set(got))
        out.update({
            "users": n, "sampled": len(users), "mean_follows": degree / len(users),
            "answers_short_of_k": short, "followed_in_answers": followed,
            "recall_vs_exact_filtered": round(hits / (args.k * len(users)), 4),
            **{f"{w}_p50_us": round(statistics.median(v) * 1e6, 1) for w, v in lat.items()},
        })
    print(json.dumps(out))


if __name__ == "__main__":
    main()
