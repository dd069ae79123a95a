#!/usr/bin/env python3
"""Refresh quality on FB15k-237 (issue 31): a model trained with the shipped
config on a seeded 98% of the training edges; the other 2% inserted; then
(a) the old model as is (cold-start rows for new nodes), (b) `quiver refresh`,
(c) a full warm-started retrain with the same epochs, (d) a full retrain
from scratch. Filtered test MRR / Hits@10 on the whole test split and on the
test triples touching a node with new edges, wall time, and the drift
(mean cosine to the old row) of rows no new edge touches.

The refresh's settings (epochs, replay, drift penalty) are chosen on the
validation split among a fixed grid (`GRID`), by filtered validation MRR;
test is measured once, for the chosen point.

    python3 bench/refresh.py DATA_DIR WORK_DIR [--grid-only]

DATA_DIR holds FB15k-237's train.txt, valid.txt, test.txt.
"""
import json
import os
import random
import subprocess
import sys
import time

import numpy as np

Q = os.environ.get("QUIVER", "target/release/quiver")
CONFIG = "configs/fb15k-237.toml"
# (epochs, replay per added edge, drift penalty), fixed before the runs.
GRID = [(e, r, d) for e in (2, 5, 10) for r in (1.0, 4.0) for d in (0.0, 0.01, 0.1)]


def sh(*args):
    started = time.time()
    out = subprocess.run([Q, *map(str, args)], check=True, capture_output=True, text=True)
    return out.stdout, time.time() - started


def evaluate(db, model, test, filt):
    out, _ = sh("eval", db, "--model", model, "--test", test, "--filter", filt, "--json", "--device", "cpu")
    r = json.loads(out.strip().splitlines()[-1])
    return {"mrr": r["mrr"], "hits@10": r["hits@10"]}


def rows(db, model, work):
    out = os.path.join(work, "export-" + model.replace("@", "_"))
    sh("export", db, "--model", model, "--format", "npy", "--out", out, "--force")
    keys = [l.rstrip("\n") for l in open(os.path.join(out, "Entity.keys.tsv"))]
    return dict(zip(keys, np.load(os.path.join(out, "Entity.npy"))))


def main():
    data, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    lines = open(os.path.join(data, "train.txt")).read().splitlines()
    order = list(range(len(lines)))
    random.Random(7).shuffle(order)
    new = set(order[: len(lines) // 50])
    old_f, new_f = os.path.join(work, "train98.txt"), os.path.join(work, "new2.txt")
    open(old_f, "w").write("".join(l + "\n" for i, l in enumerate(lines) if i not in new))
    open(new_f, "w").write("".join(lines[i] + "\n" for i in sorted(new)))
    touched = {x for i in new for x in lines[i].split("\t")[::2]}
    test = os.path.join(data, "test.txt")
    valid = os.path.join(data, "valid.txt")
    touched_test = os.path.join(work, "test-touched.txt")
    tl = [l for l in open(test).read().splitlines() if l.split("\t")[0] in touched or l.split("\t")[2] in touched]
    open(touched_test, "w").write("".join(l + "\n" for l in tl))

    db = os.path.join(work, "db")
    if not os.path.exists(db):
        sh("import", db, old_f)
        _, secs = sh("train", db, "--model", "base", "--config", CONFIG, "--valid", "none")
        print(json.dumps({"base_train_s": secs}), flush=True)
        sh("import", db, new_f)
    res = {"new_edges": len(new), "touched_nodes": len(touched), "touched_test": len(tl)}
    # The grid, on validation.
    best = None
    for e, r, d in GRID:
        name = f"g{e}-{r}-{d}"
        sh("models", db, "--drop", name) if name in sh("models", db)[0] else None
        _, secs = sh("refresh", db, "--model", "base", "--as", name, "--epochs", e, "--replay", r, "--drift-penalty", d)
        v = evaluate(db, name, valid, test)
        print(json.dumps({"point": [e, r, d], "valid": v, "seconds": round(secs, 1)}), flush=True)
        if best is None or v["mrr"] > best[1]["mrr"]:
            best = ((e, r, d), v, name, secs)
    res["chosen"] = {"epochs": best[0][0], "replay": best[0][1], "drift_penalty": best[0][2], "valid": best[1]}
    if "--grid-only" in sys.argv:
        print(json.dumps(res))
        return
    base_rows = rows(db, "base", work)
    untouched = [k for k in base_rows if k not in touched]

    def judged(model, secs):
        m = rows(db, model, work)
        cos = [float(np.dot(base_rows[k], m[k]) / (np.linalg.norm(base_rows[k]) * np.linalg.norm(m[k]) + 1e-12)) for k in untouched]
        return {"test": evaluate(db, model, test, valid), "touched": evaluate(db, model, touched_test, valid),
                "seconds": round(secs, 1), "untouched_cosine": round(float(np.mean(cos)), 4)}

    res["a_cold"] = judged("base", 0.0)
    res["b_refresh"] = judged(best[2], best[3])
    for name, extra in (("c_warm", ["--warm-start", "base"]), ("d_scratch", [])):
        if name not in sh("models", db)[0]:
            _, secs = sh("train", db, "--model", name, "--config", CONFIG, "--valid", "none", *extra)
            res[name + "_train_s"] = secs
        res[name] = judged(name, res.get(name + "_train_s", float("nan")))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
