#!/usr/bin/env python3
"""Chooses the default score, loss, dimension and relation balance on real
graphs of both kinds, on validation only (issue 29), and reports the
held-out graphs and the test figures of the choice once.

The rule, fixed before the runs: every point below is trained with the
defaults otherwise (validation and early stopping included: at most 50
epochs, patience 3); on each selection graph its validation MRR is divided
by the best point's on that graph; the point with the highest mean of those
ratios is the default.

- Knowledge graphs: `quiver train DB --valid valid.txt --patience 3`
  (validation MRR on the published validation split).
- Social networks: `quiver eval recall DB --relation R --target R` (10% of
  R's node pairs held out as test, then 5% of R's other edges held out as
  validation; validation MRR on those). The test recall is printed only for
  the chosen point, beside the same settings trained on R alone.

    bench/realnets.py WORK            # the graphs, once
    python3 bench/defaults.py WORK [--quiver target/release/quiver] [--only NAMES]

Prints markdown tables (per point and graph, then the choice's figures).
"""

import argparse
import json
import os
import subprocess
import sys
import time

# Every setting a point varies is given, whatever the defaults are now.
L2M = ["--score", "l2", "--loss", "margin"]
POINTS = {
    "l2-margin-200": L2M + ["--dim", "200"],
    "l2-margin-200-bal0.5": L2M + ["--dim", "200", "--relation-balance", "0.5"],
    "l2-margin-64": L2M + ["--dim", "64"],
    "l2-softmax-200": ["--score", "l2", "--loss", "softmax", "--dim", "200"],
    "dot-softmax-200": ["--score", "dot", "--loss", "softmax", "--dim", "200"],
    "dot-softmax-200-bal0.5": ["--score", "dot", "--loss", "softmax", "--dim", "200", "--relation-balance", "0.5"],
    "dot-softmax-64": ["--score", "dot", "--loss", "softmax", "--dim", "64"],
    "dot-softmax-64-bal0.5": ["--score", "dot", "--loss", "softmax", "--dim", "64", "--relation-balance", "0.5"],
}
SOCIAL = {"lastfm": "Friend", "ciao": "Trusts"}
KGS = ["WN18RR", "codex-s", "FB15k-237"]
HELD_OUT_SOCIAL = {"filmtrust": "Trusts"}
HELD_OUT_KGS = ["codex-m"]


CACHE = {}


def cached(key, compute):
    """Results kept in WORK/defaults-cache.json, so that a rerun (after an
    interruption, or to print the tables again) trains nothing twice."""
    if key not in CACHE:
        CACHE[key] = compute()
        with open(CACHE_PATH, "w") as f:
            json.dump(CACHE, f, indent=1)
    return CACHE[key]


def run(args):
    started = time.time()
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {p.stderr.strip().splitlines()[-1]}")
    return p.stdout, time.time() - started


def db_of(work, name, quiver, typed):
    db = os.path.join(work, name, "db")
    if not os.path.isdir(db):
        extra = ["--create-types"] if typed else []
        run([quiver, "import", db, os.path.join(work, name, "train.txt"), *extra])
    return db


def kg(work, name, quiver, point, flags):
    return cached(f"{name} {point}", lambda: kg_run(work, name, quiver, point, flags))


def kg_run(work, name, quiver, point, flags):
    db = db_of(work, name, quiver, False)
    valid = os.path.join(work, name, "valid.txt")
    _, secs = run([quiver, "train", db, "--model", point, "--force", "--device", "cpu", "--valid", valid, "--patience", "3",
                   *flags])
    out, _ = run([quiver, "models", db])
    line = next(l for l in out.splitlines() if l.startswith(point + ":"))
    v = json.loads(line.split("metrics ", 1)[1])["valid"]
    return {"valid": v["best"], "epoch": v["epoch"], "seconds": secs}


def social(work, name, quiver, rel, point, flags, alone=False):
    return cached(f"{name} {point}{' alone' if alone else ''}",
                  lambda: social_run(work, name, quiver, rel, point, flags, alone))


def social_run(work, name, quiver, rel, point, flags, alone):
    db = db_of(work, name, quiver, True)
    extra = ["--relations", rel] if alone else []
    out, secs = run([quiver, "eval", "recall", db, "--model", point + ("-alone" if alone else ""), "--relation", rel,
                     "--target", rel, "--device", "cpu", "--json", *extra, *flags])
    r = json.loads(out)
    # A relation too small to spare validation edges trains without any.
    v = r["valid"] or {"best": float("nan"), "epoch": None}
    return {"valid": v["best"], "epoch": v["epoch"], "seconds": secs, "test_recall10": dict(r["reports"][0]["recall"])[10]}


def kg_test(work, name, quiver, point, flags):
    """Trains `point` if it is not there, then its filtered test figures."""
    db = db_of(work, name, quiver, False)
    out, _ = run([quiver, "models", db])
    if not any(l.startswith(point + ":") for l in out.splitlines()):
        CACHE.pop(f"{name} {point}", None)
        kg(work, name, quiver, point, flags)
    return cached(f"{name} {point} test", lambda: json.loads(run([
        quiver, "eval", db, "--model", point, "--test", os.path.join(work, name, "test.txt"),
        "--filter", os.path.join(work, name, "valid.txt"), "--json", "--device", "cpu"])[0]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("work")
    p.add_argument("--quiver", default="target/release/quiver")
    p.add_argument("--data", default="../shared/data", help="FB15k-237 and WN18RR archives")
    p.add_argument("--only", help="comma-separated graphs (default: all)")
    a = p.parse_args()
    global CACHE_PATH
    CACHE_PATH = os.path.join(a.work, "defaults-cache.json")
    if os.path.exists(CACHE_PATH):
        with open(CACHE_PATH) as f:
            CACHE.update(json.load(f))
    for kgname in ["FB15k-237", "WN18RR"]:
        d = os.path.join(a.work, kgname)
        if not os.path.isfile(os.path.join(d, "valid.txt")):
            os.makedirs(d, exist_ok=True)
            run(["tar", "-xzf", os.path.join(a.data, f"{kgname}.tar.gz"), "-C", d])
    graphs = list(SOCIAL) + KGS
    if a.only:
        graphs = [g for g in graphs if g in a.only.split(",")]
    table = {}
    for g in graphs:
        for point, flags in POINTS.items():
            if g in SOCIAL:
                r = social(a.work, g, a.quiver, SOCIAL[g], point, flags)
            else:
                r = kg(a.work, g, a.quiver, point, flags)
            table.setdefault(point, {})[g] = r
            print(f"{g} {point}: valid MRR {r['valid']:.4f} (epoch {r['epoch']}, {r['seconds']:.0f} s)", file=sys.stderr,
                  flush=True)
    best = {g: max(table[pt][g]["valid"] for pt in table) for g in graphs}
    score = {pt: sum(table[pt][g]["valid"] / best[g] for g in graphs) / len(graphs) for pt in table}
    print("| point | " + " | ".join(graphs) + " | mean of valid / best |")
    print("|---" * (len(graphs) + 2) + "|")
    for pt in sorted(table, key=lambda pt: -score[pt]):
        cells = [f"{table[pt][g]['valid']:.4f} (ep {table[pt][g]['epoch']}, {table[pt][g]['seconds']:.0f} s)" for g in graphs]
        print(f"| {pt} | " + " | ".join(cells) + f" | {score[pt]:.3f} |")
    chosen = max(score, key=score.get)
    print(f"\nchosen: {chosen} {' '.join(POINTS[chosen])}")
    print("\n| graph | whole network recall@10 (test) | relation alone | ratio |")
    print("|---|---|---|---|")
    for g, rel in {**SOCIAL, **HELD_OUT_SOCIAL}.items():
        if a.only and g not in a.only.split(","):
            continue
        whole = table.get(chosen, {}).get(g) or social(a.work, g, a.quiver, rel, chosen, POINTS[chosen])
        alone = social(a.work, g, a.quiver, rel, chosen, POINTS[chosen], alone=True)
        print(f"| {g}{' (held out)' if g in HELD_OUT_SOCIAL else ''} | {whole['test_recall10']:.4f} | "
              f"{alone['test_recall10']:.4f} | {whole['test_recall10'] / max(alone['test_recall10'], 1e-9):.2f} |")
    print("\n`quiver train --auto` (its points judged on the relation's held-out edges, `--target`):\n")
    print("| graph | whole network recall@10 (test) | relation alone | ratio |")
    print("|---|---|---|---|")
    for g, rel in {**SOCIAL, **HELD_OUT_SOCIAL}.items():
        if a.only and g not in a.only.split(","):
            continue
        try:
            whole = social(a.work, g, a.quiver, rel, "auto", ["--auto"])
            alone = social(a.work, g, a.quiver, rel, "auto", ["--auto"], alone=True)
        except RuntimeError as e:
            print(f"| {g} | {str(e).split('error: ')[-1]} | | |")
            continue
        print(f"| {g}{' (held out)' if g in HELD_OUT_SOCIAL else ''} | {whole['test_recall10']:.4f} | "
              f"{alone['test_recall10']:.4f} | {whole['test_recall10'] / max(alone['test_recall10'], 1e-9):.2f} |")
    print("\n| knowledge graph | test MRR | test Hits@10 | training (validation included) |")
    print("|---|---|---|---|")
    for g in KGS + HELD_OUT_KGS:
        if a.only and g not in a.only.split(","):
            continue
        t = kg_test(a.work, g, a.quiver, chosen, POINTS[chosen])
        secs = CACHE.get(f"{g} {chosen}", {}).get("seconds")
        took = f"{secs:.0f} s" if secs is not None else "(not recorded)"
        print(f"| {g}{' (held out)' if g in HELD_OUT_KGS else ''} | {t['mrr']:.4f} | {t['hits@10']:.4f} | {took} |")


if __name__ == "__main__":
    main()

