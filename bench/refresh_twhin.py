#!/usr/bin/env python3
"""Refresh on the TwHIN-like demo network (issue 31): who-to-follow recall
after new users arrive and old users follow more.

`quiver-bench twhin --out DIR` writes the network (train.txt typed edges,
test.txt held-out triples). Held back from training: every edge of the last
5% of users (new users) and 5% of the other Follows edges; the model is
trained on the rest with the defaults, the held-back edges are inserted, and
then (a) the old model as is (new users get cold-start rows), (b)
`db.refresh` with its defaults, (c) a full retrain warm-started from the old
model with the same epochs; each validating on the same held-out edges (the
defaults' split) and keeping its best epoch (the refresh: or the old model);
one thread, so that runs repeat. Recall@10 of the test split's Follows edges
(translation, the source's existing follows excluded), overall and for the
test edges whose source is new or gained follows; wall time of (b) and (c).

    python3 bench/refresh_twhin.py DIR      # DIR from quiver-bench twhin
"""
import json
import os
import random
import shutil
import sys
import time

import quiver


def recall(db, model, pairs):
    if not pairs:
        return float("nan")
    keys, _ = db.neighbors(model, "User", [u for u, _ in pairs], k=10, relation="Follows", exclude_connected=True)
    return sum(v in row for (_, v), row in zip(pairs, keys)) / len(pairs)


def main():
    d = sys.argv[1]
    lines = open(os.path.join(d, "train.txt")).read().splitlines()
    users = sorted({l.split("\t")[1] for l in lines if l.startswith("User\t")}, key=lambda k: int(k[1:]))
    new_users = set(users[-len(users) // 20:])
    rng = random.Random(3)
    held, kept = [], []
    for l in lines:
        f = l.split("\t")
        is_new = (f[0] == "User" and f[1] in new_users) or (f[3] == "User" and f[4] in new_users)
        (held if is_new or (f[2] == "Follows" and rng.random() < 0.05) else kept).append(l)
    old_f, new_f = os.path.join(d, "refresh-old.txt"), os.path.join(d, "refresh-new.txt")
    open(old_f, "w").write("\n".join(kept) + "\n")
    open(new_f, "w").write("\n".join(held) + "\n")
    changed = {f.split("\t")[1] for f in held if f.split("\t")[2] == "Follows"}
    test = [l.split("\t") for l in open(os.path.join(d, "test.txt")).read().splitlines()]
    follows = [(h, t) for h, r, t in test if r == "Follows"]
    touched = [(h, t) for h, t in follows if h in changed or h in new_users]
    out = {"users": len(users), "new_users": len(new_users), "held_back_edges": len(held),
           "test_follows": len(follows), "test_follows_touched": len(touched)}
    path = os.path.join(d, "refresh.qdb")
    shutil.rmtree(path, ignore_errors=True)
    with quiver.open(path) as db:
        db.import_files([old_f], create_types=True)
        t = time.time()
        base = db.train("base", {"threads": 1}, progress=False, device="cpu")
        out["base_train_s"] = round(time.time() - t, 1)
        epochs = len(base["history"])
        db.import_files([new_f], create_types=True)
        out["a_cold"] = {"recall@10": recall(db, "base", follows), "touched": recall(db, "base", touched)}
        t = time.time()
        r = db.refresh("base", "refreshed", threads=1)
        out["b_refresh"] = {"recall@10": recall(db, "refreshed", follows), "touched": recall(db, "refreshed", touched),
                            "seconds": round(time.time() - t, 1), "edges_per_epoch": r["history"][0]["edges"]}
        t = time.time()
        config = next(m for m in db.models() if m["name"] == "base")["settings"]["config"]
        settings = {k: v for k, v in config.items() if v is not None and k != "validation"}
        settings.update({"warm_start": "base", "epochs": epochs})
        db.train("warm", settings, progress=False, device="cpu")
        out["c_warm"] = {"recall@10": recall(db, "warm", follows), "touched": recall(db, "warm", touched),
                         "seconds": round(time.time() - t, 1), "epochs": epochs}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
