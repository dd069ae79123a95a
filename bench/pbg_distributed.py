#!/usr/bin/env python3
"""FB15k-237 through PyTorch-BigGraph's distributed trainer and back.

`make pbg-distributed` runs this in bench/venv (torchbiggraph, h5py):
  1. quiver imports train.txt and exports it at P = 4 (`quiver export --format pbg`);
  2. PBG trains it in distributed mode, num_machines = 2, as two local ranks
     (gloo on 127.0.0.1, this directory as the shared filesystem);
  3. quiver imports the checkpoint (`quiver import-model`) and evaluates it
     (`quiver eval`: filtered by train, valid and test, both directions);
  4. PBG evaluates the same checkpoint with its FilteredRankingEvaluator
     (the same filter), on the test edges written in the exported layout.
Prints one JSON object with both figures.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--quiver", default="target/release/quiver")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--port", type=int, default=29517)
    args = ap.parse_args()
    q = lambda *a: subprocess.run([args.quiver, *map(str, a)], capture_output=True, text=True, check=True).stdout
    work = tempfile.mkdtemp(prefix="pbg-dist-")
    db, out = os.path.join(work, "db"), os.path.join(work, "pbg")
    q("import", db, os.path.join(args.data, "train.txt"))
    cfg = os.path.join(work, "pbg.toml")
    # PBG's own FB15k-like settings (the anchor's): L2, margin 1, row Adagrad 0.1,
    # chunks of 50 with 50 in-batch and 50 uniform negatives.
    with open(cfg, "w") as f:
        f.write(f"dim = {args.dim}\nepochs = {args.epochs}\nscore = \"l2\"\nloss = \"margin\"\nmargin = 1.0\n"
                "lr = 0.1\nchunk_size = 50\nuniform_negatives = 50\nbatch_negatives = true\nself_negatives = false\n")
    q("export", db, "--format", "pbg", "--partitions", args.partitions, "--config", cfg, "--out", out)

    # The distributed config: the exported one, for two machines.
    dist = os.path.join(out, "config_distributed.py")
    with open(dist, "w") as f:
        f.write("import importlib.util, os\n"
                f"spec = importlib.util.spec_from_file_location('base', {os.path.join(out, 'config.py')!r})\n"
                "base = importlib.util.module_from_spec(spec); spec.loader.exec_module(base)\n"
                "def get_torchbiggraph_config():\n"
                "    c = base.get_torchbiggraph_config()\n"
                f"    c.update(num_machines=2, distributed_init_method='tcp://127.0.0.1:{args.port}', workers=1)\n"
                "    return c\n")
    train = os.path.join(os.path.dirname(sys.executable), "torchbiggraph_train")
    t = time.perf_counter()
    # PBG's RPC unpickles its own classes with torch.load, which torch >= 2.6
    # refuses by default (weights_only); PBG predates that.
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    ranks = [subprocess.Popen([train, "--rank", str(r), dist], stdout=subprocess.DEVNULL, env=env,
                              stderr=open(os.path.join(work, f"rank{r}.log"), "w")) for r in range(2)]
    codes = [p.wait() for p in ranks]
    train_s = time.perf_counter() - t
    if any(codes):
        sys.exit(f"PBG ranks exited with {codes}; logs in {work}")
    ckpt = os.path.join(out, "checkpoints")

    # quiver's evaluation of the imported checkpoint.
    q("import-model", db, ckpt, "--model", "pbg")
    test, valid = os.path.join(args.data, "test.txt"), os.path.join(args.data, "valid.txt")
    ours = json.loads(q("eval", db, "--model", "pbg", "--test", test, "--filter", valid, "--filter", test,
                        "--json").strip().splitlines()[-1])

    # PBG's evaluation of the same model. Its filtered evaluator takes only
    # unpartitioned entities, so the imported model goes back out as a
    # one-partition checkpoint (a bit-exact round trip, tests/pbg.rs) beside
    # a one-partition export of the graph; test and valid edges are written
    # in that layout (triples with an entity missing from train left out, as
    # quiver skips them).
    out1, ckpt1 = os.path.join(work, "pbg1"), os.path.join(work, "pbg1", "checkpoints")
    q("export", db, "--format", "pbg", "--partitions", 1, "--config", cfg, "--out", out1)
    q("export", db, "--model", "pbg", "--format", "pbg-checkpoint", "--partitions", 1, "--out", ckpt1)
    import attr
    import torch
    from torchbiggraph.config import parse_config
    from torchbiggraph.eval import do_eval_and_report_stats
    from torchbiggraph.filtered_eval import FilteredRankingEvaluator
    from torchbiggraph.util import SubprocessInitializer, setup_logging

    spec_cfg = {}
    exec(open(os.path.join(out1, "config.py")).read(), spec_cfg)
    raw = spec_cfg["get_torchbiggraph_config"]()
    P = 1
    where = {}
    for p in range(P):
        for i, k in enumerate(json.load(open(os.path.join(out1, f"entity_names_Entity_{p}.json")))):
            where[k] = (p, i)
    # Edge files number relations as the database does (dynamic_rel_names.json).
    rel_idx = {r: i for i, r in enumerate(json.load(open(os.path.join(out1, "dynamic_rel_names.json"))))}

    def write_split(path, name):
        d = os.path.join(work, name)
        os.makedirs(d, exist_ok=True)
        buckets = {}
        for line in open(path, encoding="utf-8"):
            h, r, t = line.rstrip("\n").split("\t")
            if h in where and t in where and r in rel_idx:
                (i, lh), (j, rt) = where[h], where[t]
                buckets.setdefault((i, j), []).append((lh, rt, rel_idx[r]))
        for i in range(P):
            for j in range(P):
                e = np.array(buckets.get((i, j), []), dtype=np.int64).reshape(-1, 3)
                with h5py.File(os.path.join(d, f"edges_{i}_{j}.h5"), "w") as f:
                    f.attrs["format_version"] = 1
                    for k, col in enumerate(["lhs", "rhs", "rel"]):
                        f.create_dataset(col, data=e[:, k])
        return d

    test_dir, valid_dir = write_split(test, "test_pbg"), write_split(valid, "valid_pbg")
    setup_logging()
    config = parse_config(raw)
    relations = [attr.evolve(r, all_negs=True) for r in config.relations]
    eval_config = attr.evolve(config, edge_paths=[test_dir], relations=relations, num_uniform_negs=0)
    t = time.perf_counter()
    evaluator = FilteredRankingEvaluator(eval_config, [test_dir, valid_dir, out1])
    last = None
    for _, _, stats in do_eval_and_report_stats(eval_config, evaluator=evaluator,
                                                subprocess_init=SubprocessInitializer()):
        last = stats
    theirs = last.to_dict() if hasattr(last, "to_dict") else dict(last.metrics)
    print(json.dumps({
        "bench": "pbg_distributed", "partitions": args.partitions, "machines": 2, "epochs": args.epochs, "dim": args.dim,
        "pbg_train_s": round(train_s, 1), "pbg_eval_s": round(time.perf_counter() - t, 1),
        "quiver_eval": {k: ours[k] for k in ("mrr", "hits@1", "hits@10", "triples", "skipped")},
        "pbg_eval": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in theirs.items()},
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
