#!/usr/bin/env python3
"""Shortest paths and two-hop path counts: quiver and LadybugDB through their
Python APIs on FB15k-237 train, in one window, on the same random draws.

LadybugDB is loaded as ../shared/anchors/kuzu_graph.py loads it (Entity with
a name key, one LINK table with the relation as a property). Both run the
same queries as prepared statements, 200 warm-up runs then --queries runs:

- shortest: a shortest path between two entities drawn uniformly (random.
  Random(7)), either direction, at most 10 hops, its length
  (quiver `shortestPath((a)-[*..10]-(b))`, LadybugDB `-[* SHORTEST 1..10]-`);
  the lengths must agree (pairs without a path give no row in both);
- two_hop_count: `MATCH (a {key: $s})-->()-->(c) RETURN count(*)` for heads
  drawn uniformly, the counts must agree.
Prints one JSON object with the medians and p99s of each and the ratios.
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time

import ladybug
import quiver


def lat_stats(ts):
    ts = sorted(ts)
    n = len(ts)
    return {"n": n, "median_us": round(statistics.median(ts) * 1e6, 1),
            "p99_us": round(ts[min(n - 1, int(0.99 * n))] * 1e6, 1)}


def timed(run, params, warmup):
    out, lat = [], []
    for i, p in enumerate(params):
        t = time.perf_counter()
        r = run(p)
        if i >= warmup:
            lat.append(time.perf_counter() - t)
            out.append(r)
    return lat_stats(lat), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    work = tempfile.mkdtemp()
    train = os.path.join(args.data, "train.txt")
    triples = [tuple(l.rstrip("\n").split("\t")) for l in open(train, encoding="utf-8") if l.strip()]
    ents = sorted({h for h, _, _ in triples} | {t for _, _, t in triples})
    heads = sorted({h for h, _, _ in triples})
    loops = {}
    for h, _, t in set(triples):
        if h == t:
            loops[h] = loops.get(h, 0) + 1
    rng = random.Random(args.seed)
    n = args.warmup + args.queries
    pairs = [(rng.choice(ents), rng.choice(ents)) for _ in range(n)]
    starts = [rng.choice(heads) for _ in range(n)]

    # LadybugDB, loaded as the anchor loads it.
    ent_csv, link_csv = os.path.join(work, "entities.csv"), os.path.join(work, "links.csv")
    with open(ent_csv, "w") as f:
        f.write("name\n" + "".join(e + "\n" for e in ents))
    with open(link_csv, "w") as f:
        f.write("from,to,rel\n" + "".join(f"{h},{t},{r}\n" for h, r, t in triples))
    lb = ladybug.Database(os.path.join(work, "lb"))
    conn = ladybug.Connection(lb)
    conn.execute("CREATE NODE TABLE Entity(name STRING, PRIMARY KEY(name))")
    conn.execute("CREATE REL TABLE LINK(FROM Entity TO Entity, rel STRING)")
    conn.execute(f"COPY Entity FROM '{ent_csv}' (HEADER=true)")
    conn.execute(f"COPY LINK FROM '{link_csv}' (HEADER=true)")
    lb_short = conn.prepare("MATCH p = (a:Entity {name: $s})-[:LINK* SHORTEST 1..10]-(b:Entity {name: $t}) "
                            "RETURN length(p)")
    lb_two = conn.prepare("MATCH (a:Entity {name: $s})-[:LINK]->(:Entity)-[:LINK]->(c:Entity) RETURN count(*)")
    lb_two_with = conn.prepare("MATCH (a:Entity {name: $s})-[:LINK]->(m:Entity) WITH m "
                               "MATCH (m)-[:LINK]->(c:Entity) RETURN count(*)")

    db = quiver.open(os.path.join(work, "q"))
    db.import_files([train])
    q_short = db.prepare("MATCH p = shortestPath((a:Entity {key: $s})-[*..10]-(b:Entity {key: $t})) RETURN length(p)")
    q_two = db.prepare("MATCH (a:Entity {key: $s})-->()-->(c) RETURN count(*)")

    def first(rows):
        return rows[0][0] if rows else None

    res = {}
    for name, q_run, l_run, params in [
        ("shortest", lambda p: first(db.execute(q_short, {"s": p[0], "t": p[1]}).rows),
         lambda p: first(conn.execute(lb_short, {"s": p[0], "t": p[1]}).get_all()), pairs),
        ("two_hop_count", lambda s: first(db.execute(q_two, {"s": s}).rows),
         lambda s: first(conn.execute(lb_two, {"s": s}).get_all()), starts),
    ]:
        q_stats, q_out = timed(q_run, params, args.warmup)
        l_stats, l_out = timed(l_run, params, args.warmup)
        # The same pair at the same length (a pair with no path gives no row
        # in quiver and none, or length 0 for a == b, in LadybugDB); the same
        # count, less the walks that take a self-loop twice, which LadybugDB
        # matches and openCypher's relationship uniqueness does not.
        differ = [(p, a, b) for p, a, b in zip(params[args.warmup:], q_out, l_out)
                  if a != b and not (a is None and b in (None, 0))
                  and not (name == "two_hop_count" and b - a == loops.get(p, 0))]
        # LadybugDB 0.22's two-hop count(*) sometimes disagrees with its own
        # count of the same walks through a WITH (/m/0342h: 28,221 against
        # 28,305): such a start is checked against the latter.
        if name == "two_hop_count":
            own = [(p, a, b) for p, a, b in differ
                   if first(conn.execute(lb_two_with, {"s": p}).get_all()) - loops.get(p, 0) == a]
            res["ladybug_two_hop_count_disagrees_with_itself"] = [p for p, _, _ in own]
            differ = [d for d in differ if d not in own]
        if differ:
            print(f"{name}: {len(differ)} answers differ, e.g. {differ[:3]}", file=sys.stderr)
            sys.exit(1)
        res[name] = {"quiver": q_stats, "ladybug": l_stats,
                     "ratio_median": round(l_stats["median_us"] / q_stats["median_us"], 2),
                     "answered": sum(a is not None for a in q_out)}
        print(name, res[name], file=sys.stderr, flush=True)
    print(json.dumps({"bench": "paths", "quiver": quiver.__version__, "ladybug": ladybug.__version__,
                      "python": sys.version.split()[0], "queries": args.queries, **res}))


if __name__ == "__main__":
    main()
