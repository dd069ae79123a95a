"""Per-direction filtered MRR of an exported TransE (L1) model, and where the
entities ranked above each answer come from: the triple's own two partitions
("home") or the others ("foreign"), for P partitions of `ceil(n / P)` rows.

usage: python bench/intruders.py EXPORT_DIR DATA_DIR [--head] [--partitions P] [--sample N]
(EXPORT_DIR from `quiver export DB --model M --format npy --out EXPORT_DIR`;
DATA_DIR holds train.txt, valid.txt, test.txt; reciprocal models only for --head)
"""
import argparse
import collections

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("export")
ap.add_argument("data")
ap.add_argument("--head", action="store_true", help="rank heads with the reciprocal relations")
ap.add_argument("--partitions", type=int, default=4)
ap.add_argument("--sample", type=int, default=1500)
a = ap.parse_args()

E = np.load(f"{a.export}/Entity.npy")
R = np.load(f"{a.export}/_relations.npy")
ent = {l.split("\t")[1].strip(): int(l.split("\t")[0]) for l in open(f"{a.export}/Entity.keys.tsv")}
rel = {l.split("\t")[1].strip(): int(l.split("\t")[0]) for l in open(f"{a.export}/_relations.keys.tsv")}
forward = len(R) // 2


def load(name):
    out = []
    for line in open(f"{a.data}/{name}"):
        h, r, t = line.strip().split("\t")
        if h in ent and t in ent:
            out.append((ent[h], rel[r], ent[t]))
    return out


known = collections.defaultdict(set)
for name in ["train.txt", "valid.txt", "test.txt"]:
    for h, r, t in load(name):
        known[(h, r)].add(t)
        known[(t, r + forward)].add(h)
test = load("test.txt")
if a.head:
    test = [(t, r + forward, h) for h, r, t in test]
pick = np.random.default_rng(0).choice(len(test), min(a.sample, len(test)), replace=False)
n = len(E)
part = np.arange(n) // -(-n // a.partitions)
ranks, home, foreign, home_n, foreign_n = [], 0, 0, 0, 0
for k in pick:
    q, r, answer = test[k]
    s = -np.abs(E[q] + R[r] - E).sum(1)
    above = s > s[answer]
    above[list(known[(q, r)])] = False
    ranks.append(above.sum() + 1)
    mine = np.isin(part, [part[q], part[answer]])
    home += (above & mine).sum()
    foreign += (above & ~mine).sum()
    home_n += mine.sum()
    foreign_n += (~mine).sum()
ranks = np.array(ranks)
m = len(pick)
print(f"{'heads' if a.head else 'tails'}: MRR {np.mean(1 / ranks):.4f}, MR {ranks.mean():.1f}; "
      f"entities above the answer per query: home {home / m:.1f}, foreign {foreign / m:.1f} "
      f"(rate {home / home_n:.4f} vs {foreign / foreign_n:.4f})")
