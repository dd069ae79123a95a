#!/usr/bin/env python3
"""Filtered Hits@10 of a trained model on a knowledge graph's test split, both
directions, from the exact scan and from the model's ANN index: the queries
h + r and t + r' go through `db.search` (exact=True, then the index), asking
for 10 + the known answers of each query and dropping the known ones but the
target, so the index is judged on what link prediction ranks.

  python bench/ann_kg.py --data DIR --db DB --model M [--type Entity]

DIR holds train.txt, valid.txt and test.txt (head<TAB>relation<TAB>tail); the
model must have reciprocal relations (the default).
"""
import argparse
import collections
import json
import os

import quiver


def triples(path):
    with open(path) as f:
        return [tuple(line.rstrip("\r\n").split("\t")) for line in f if line.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--type", default="Entity")
    args = ap.parse_args()
    tr, va, te = (triples(os.path.join(args.data, f"{s}.txt")) for s in ("train", "valid", "test"))
    tails, heads = collections.defaultdict(set), collections.defaultdict(set)
    for h, r, t in tr + va + te:
        tails[(h, r)].add(t)
        heads[(t, r)].add(h)
    out = {"bench": "quiver_ann_kg", "model": args.model}
    with quiver.open(args.db) as db:
        keys, emb = db.embeddings(args.model, args.type)
        names, rel_rows = db.relation_vectors(args.model)
        row = {k: i for i, k in enumerate(keys)}
        rel = {n: i for i, n in enumerate(names)}
        out["index"] = db.create_index(args.model, args.type)[args.type]["settings"]
        for exact in (True, False):
            hits = n = 0
            for h, r, t in te:
                if h not in row or t not in row or r not in rel:
                    continue
                for q, target, known in ((emb[row[h]] + rel_rows[rel[r]], t, tails[(h, r)]),
                                         (emb[row[t]] + rel_rows[rel[r + " (head)"]], h, heads[(t, r)])):
                    found, _ = db.search(args.model, args.type, q, k=10 + len(known), exact=exact)
                    ranked = [x for x in found[0] if x is not None and (x == target or x not in known)][:10]
                    hits += target in ranked
                    n += 1
            out["exact_hits@10" if exact else "index_hits@10"] = round(hits / n, 4)
        out["queries"] = n
    print(json.dumps(out))


if __name__ == "__main__":
    main()
