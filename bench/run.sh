#!/usr/bin/env bash
# `make bench`: quiver's storage figures beside LadybugDB's (Kùzu's maintained fork) and oxigraph's on the
# same data in one run, with ratios. Needs ../shared (data and anchor scripts)
# for the side-by-side part; without it, quiver's own figures on synthetic data.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
shared="$root/../shared"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out="${BENCH_OUT:-$root/target/bench}"
mkdir -p "$out"
SYNTHETIC_EDGES=${SYNTHETIC_EDGES:-5000000}

cargo build --release -p quiver-bench >&2

data_args=()
if [ -f "$shared/data/FB15k-237.tar.gz" ]; then
    mkdir -p "$work/FB15k-237"
    tar -xzf "$shared/data/FB15k-237.tar.gz" -C "$work/FB15k-237"
    data_args=(--data "$work/FB15k-237")
else
    echo "note: $shared/data not found; quiver's figures on synthetic data only" >&2
fi

anchors=()
if [ ${#data_args[@]} -gt 0 ] && [ -d "$shared/anchors" ]; then
    venv="$root/bench/venv"
    # Everything every anchor needs (../shared/anchors/README.md), or no bench:
    # a column that silently vanished would make the ratios lie.
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" && "$venv/bin/pip" install -q pykeen torchbiggraph "setuptools<81" ladybug kuzu \
            pyoxigraph h5py faiss-cpu hnswlib usearch numpy \
            || { echo "error: could not install the anchors' packages into $venv" >&2; rm -rf "$venv"; exit 1; }
    fi
    if [ -x "$venv/bin/python" ]; then
        for a in kuzu_graph oxigraph_store pbg_transe pykeen_transe ann_search; do
            case $a in
                pbg_transe) extra=(--epochs 5 --eval) ;;
                pykeen_transe) extra=(--train-budget 0 --timing-epochs 5 --no-eval) ;;
                *) extra=() ;;
            esac
            echo "running anchor $a ..." >&2
            if "$venv/bin/python" "$shared/anchors/$a.py" "${data_args[@]}" "${extra[@]}" 2>"$out/$a.log" | tail -n 1 >"$out/$a.json"; then
                anchors+=("$out/$a.json")
            else
                echo "error: anchor $a failed (see $out/$a.log)" >&2
                exit 1
            fi
        done
    fi
fi

echo "running quiver-bench ..." >&2
./target/release/quiver-bench storage "${data_args[@]}" --synthetic-edges "$SYNTHETIC_EDGES" >"$out/quiver_storage.json"
train_json=()
if [ ${#data_args[@]} -gt 0 ]; then
    ./target/release/quiver-bench train "${data_args[@]}" --epochs 5 >"$out/quiver_train.json"
    ./target/release/quiver-bench query "${data_args[@]}" --queries 20000 >"$out/quiver_query.json"
    ./target/release/quiver-bench fof --queries 5000 >"$out/quiver_fof.json"
    # quiver through Python, measured as the LadybugDB anchor measures itself.
    if [ -x "${venv:-}/bin/python" ]; then
        make -s python
        "$venv/bin/pip" install -q --force-reinstall --no-deps target/wheels/quiver-*.whl
        "$venv/bin/python" bench/python_query.py "${data_args[@]}" >"$out/quiver_python.json"
        train_json+=("$out/quiver_python.json")
        # Shortest paths and two-hop path counts beside LadybugDB, same draws.
        "$venv/bin/python" -W ignore bench/paths.py "${data_args[@]}" >"$out/quiver_paths.json"
        train_json+=("$out/quiver_paths.json")
    fi
    ./target/release/quiver-bench unwind --rows 100000 >"$out/quiver_unwind.json"
    ./target/release/quiver-bench coldstart "${data_args[@]}" >"$out/quiver_coldstart.json"
    train_json+=("$out/quiver_train.json" "$out/quiver_query.json" "$out/quiver_fof.json" "$out/quiver_unwind.json" "$out/quiver_coldstart.json")
fi

# Refresh against a warm-started retrain of the same epochs (issue 31): 200k
# nodes, 1M power-law edges, 1% of them inserted after training.
cargo build --release --bin quiver >&2
./target/release/quiver-bench refresh --quiver ./target/release/quiver >"$out/quiver_refresh.json"
train_json+=("$out/quiver_refresh.json")

# Exact top-10 (issue 5), beside faiss IndexFlatIP on the same kind of data in this run.
./target/release/quiver-bench knn >"$out/quiver_knn.json"
./target/release/quiver-bench knn --n 1000000 --dim 128 --queries 1000 >"$out/quiver_knn_1m.json"
train_json+=("$out/quiver_knn.json" "$out/quiver_knn_1m.json")
if [ -x "${venv:-}/bin/python" ] && "$venv/bin/python" -c "import faiss" 2>/dev/null; then
    "$venv/bin/python" bench/faiss_flat.py --n 14541 --dim 200 --queries 2000 >"$out/faiss_flat.json"
    "$venv/bin/python" bench/faiss_flat.py --n 1000000 --dim 128 --queries 1000 --single 50 >"$out/faiss_flat_1m.json"
    anchors+=("$out/faiss_flat.json" "$out/faiss_flat_1m.json")
fi

# The ANN index (issue 28) through the database, from Rust and from Python, beside
# hnswlib, faiss HNSW and usearch on the same vectors (ann_scale.py, M 16,
# ef_construction 200, one query at a time). ANN_N=1000000 is the issue's size
# (about 30 minutes on 2 cores); the default is quicker.
if [ -x "${venv:-}/bin/python" ] && [ -f "$shared/anchors/ann_scale.py" ]; then
    ann="$work/ann"
    "$venv/bin/python" "$shared/anchors/ann_scale.py" generate --n "${ANN_N:-100000}" --dim 128 --out "$ann" >&2
    ./target/release/quiver-bench ann --dir "$ann" --db "$ann/db" >"$out/quiver_ann.json"
    "$venv/bin/python" bench/ann_python.py --dir "$ann" --db "$ann/db" >"$out/quiver_ann_python.json"
    "$venv/bin/python" "$shared/anchors/ann_scale.py" run --dir "$ann" --ef 16,32,64,96,128,256 >"$out/ann_scale.json"
    train_json+=("$out/quiver_ann.json" "$out/quiver_ann_python.json")
    anchors+=("$out/ann_scale.json")
fi

# The scale run (issue 3): SCALE=1 make bench. About 25 minutes on 2 cores and
# 12 GB of disk under target/ (QUIVER_SCALE_DIR moves it).
if [ "${SCALE:-0}" = 1 ]; then
    cargo build --release --bin quiver >&2
    QUIVER_SCALE_DIR=${QUIVER_SCALE_DIR:-$root/target} ./target/release/quiver-bench scale --quiver ./target/release/quiver >"$out/quiver_scale.json"
    train_json+=("$out/quiver_scale.json")
fi

python3 - "$out/quiver_storage.json" "${train_json[@]}" "${anchors[@]}" <<'PY'
import json, sys, platform, datetime
q = json.load(open(sys.argv[1]))
anchors = {}
for p in sys.argv[2:]:
    try:
        d = json.load(open(p)); anchors[d["bench"]] = d
    except Exception as e:
        print(f"note: could not read {p}: {e}")
print(f"# storage bench, {datetime.date.today()}, {platform.machine()}, {open('/proc/cpuinfo').read().count('processor')} cores")
def row(name, ours, theirs, unit, word="faster"):
    ratio = ""
    if ours is not None and theirs is not None and ours > 0:
        ratio = f"{theirs / ours:.2f}x {word}"
    fmt = lambda v: "-" if v is None else f"{v:.3f}"
    print(f"| {name} | {fmt(ours)} | {fmt(theirs)} | {unit} | {ratio} |")
k = anchors.get("kuzu_graph", {}); o = anchors.get("pyoxigraph_store", {})
if "import_median_s" in q:
    print(f"\nFB15k-237 train: {q['nodes']} nodes, {q['edges']} edges\n")
    print("| measure | quiver | LadybugDB | unit | ratio |\n|---|---|---|---|---|")
    row("bulk import (median of 5)", q["import_median_s"], k.get("load_total_s"), "s")
    row("size on disk", q["db_size_mib"], k.get("db_size_mib"), "MiB", "smaller")
    n = q["out_neighbors_by_relation"]
    kb = k.get("latency", {}).get("b_s_r_?o", {})
    row("(s, r, ?o) p50", n["p50_us"], kb.get("median_us"), "µs")
    row("(s, r, ?o) p99", n["p99_us"], kb.get("p99_us"), "µs")
    if o:
        print("\n| measure | quiver | oxigraph | unit | ratio |\n|---|---|---|---|---|")
        row("bulk import", q["import_median_s"], o.get("bulk_load_s"), "s")
        row("size on disk", q["db_size_mib"], o.get("size_after_bulk_load_mib"), "MiB", "smaller")
        ob = o.get("latency", {}).get("s_p_?o", {})
        row("(s, p, ?o) p50", n["p50_us"], ob.get("median_us"), "µs")
        row("(s, p, ?o) p99", n["p99_us"], ob.get("p99_us"), "µs")
    b = q["bucket_stream"]
    print(f"\nbucket streaming (P={b['partitions']}, {b['bytes']/1e6:.1f} MB): open + verify + read median {b['median_gb_per_s']:.2f} GB/s (min {b['min_gb_per_s']:.2f}); read alone {b['read_only_median_gb_per_s']:.2f} GB/s")
s = q.get("synthetic")
if s:
    print(f"\nsynthetic {s['edges']} edges: import median {s['import_median_s']:.2f} s "
          f"({s['edges']/s['import_median_s']/1e6:.2f} M edges/s), {s['db_size_mib']:.1f} MiB; "
          f"(s, r, ?o) p50 {s['out_neighbors_by_relation']['p50_us']:.3f} µs p99 {s['out_neighbors_by_relation']['p99_us']:.3f} µs; "
          f"bucket streaming ({s['bucket_stream']['bytes']/1e6:.0f} MB) open + verify + read median {s['bucket_stream']['median_gb_per_s']:.2f} GB/s, read alone {s['bucket_stream']['read_only_median_gb_per_s']:.2f} GB/s")
t = anchors.get("quiver_train_cpu")
if t:
    pbg, pk = anchors.get("pbg_transe_cpu", {}), anchors.get("pykeen_transe_cpu", {})
    ps = t["pbg_settings"]
    print(f"\nTransE training on FB15k-237, CPU, {t['threads']} threads, d=200, {t['epochs']} epochs\n")
    print("| measure | quiver | anchor | unit | ratio |\n|---|---|---|---|---|")
    def rate(name, ours, theirs):
        ratio = f"{ours / theirs:.2f}x faster" if theirs else ""
        print(f"| {name} | {ours:,.0f} | {theirs or float('nan'):,.0f} | edges/s | {ratio} |")
    rate("training at PBG's settings (chunks of 50, 50 in-batch + 50 uniform negatives, no self-negatives, L2, margin 1, row Adagrad 0.1)", ps["edges_per_s"], pbg.get("train_edges_per_s"))
    rate("training at PyKEEN's settings (L1, margin 1, Adam 0.001; each edge its own uniform negative per side, PyKEEN one per edge)", t["pykeen_settings"]["edges_per_s"], pk.get("train_pos_triples_per_s"))
    row("filtered evaluation of the test split (both directions)", ps["eval_s"], pbg.get("eval_s"), "s")
    tf, pf = ps["test_filtered"], pbg.get("test_filtered", {}).get("metrics", {})
    print(f"\nafter {t['epochs']} epochs at PBG's settings: quiver MRR {tf['mrr']:.4f} Hits@10 {tf['hits@10']:.4f} (realistic ties); "
          f"PBG MRR {pf.get('mrr', float('nan')):.4f} Hits@10 {pf.get('r10', float('nan')):.4f} (its FilteredRankingEvaluator)")
    print(f"quiver edges/s: PBG settings {ps['edges_per_s']:.0f}, PyKEEN settings {t['pykeen_settings']['edges_per_s']:.0f}; "
          + ", ".join(f"P={k[1:]} {v['edges_per_s']:.0f} ({100 * v['io_share']:.0f}% moving partitions)" for k, v in t["partitions"].items()))
sc = anchors.get("quiver_scale")
if sc:
    f, b = sc["runs"]["fits"], sc["runs"]["scale"]
    print(f"\nscale run: {b['nodes']:,} nodes, {b['edges']:,} edges, d={b['dim']} ({b['embedding_gib']:.2f} GiB of embeddings), P={b['partitions']}, budget {b['budget_mib']} MiB: "
          f"one epoch {b['epoch_wall_s']:.0f} s, {b['edges_per_s']:,.0f} edges/s, peak RSS {b['peak_rss_mib']:,.0f} MiB; "
          f"P=1 on {f['edges']:,} edges: {f['edges_per_s']:,.0f} edges/s (ratio {f['edges_per_s'] / b['edges_per_s']:.2f}x)")
rf = anchors.get("quiver_refresh")
if rf:
    print(f"\nrefresh after {rf['changed']:,} new edges of {rf['edges']:,} ({rf['nodes']:,} nodes, d={rf['dim']}, P={rf['partitions']}, {rf['epochs']} epochs): "
          f"{rf['refresh_s']:.1f} s, peak RSS {rf['refresh_peak_rss_mib']:.0f} MiB; warm-started retrain {rf['warm_retrain_s']:.1f} s, "
          f"{rf['warm_retrain_peak_rss_mib']:.0f} MiB ({100 * rf['refresh_share']:.1f}% of its time)")
qq = anchors.get("quiver_query")
if qq:
    kl = k.get("latency", {})
    print("\nPrepared queries on FB15k-237 (quiver: Rust API `Graph::execute`; LadybugDB: its Python API)\n")
    print("| query | quiver p50 | LadybugDB p50 | quiver p99 | LadybugDB p99 | unit | p50 ratio |\n|---|---|---|---|---|---|---|")
    for name, ours, theirs in [
        ("1-hop out-neighbours, return keys", "a_1hop_out", "a_1hop_out"),
        ("(s, r, ?o)", "b_s_r_?o", "b_s_r_?o"),
        ("(s, ?r, ?o) with relation names", "s_?r_?o", None),
        ("2-hop distinct count", "c_2hop_distinct_count", "c_2hop_distinct_count"),
        ("2-hop path count", "c2_2hop_path_count", "c2_2hop_path_count"),
        ("2-hop distinct ends, return keys", "c3_2hop_distinct_keys", None),
    ]:
        a, b = qq["latency"][ours], kl.get(theirs, {}) if theirs else {}
        ratio = f"{b['median_us'] / a['median_us']:.1f}x faster" if b else ""
        f = lambda v: "-" if v is None else f"{v:.1f}"
        print(f"| {name} | {f(a['median_us'])} | {f(b.get('median_us'))} | {f(a['p99_us'])} | {f(b.get('p99_us'))} | µs | {ratio} |")
qp = anchors.get("quiver_python")
if qp:
    kl = k.get("latency", {})
    print("\nThe same prepared queries Python to Python (quiver's and LadybugDB's Python APIs, same draws)\n")
    print("| query | quiver p50 | LadybugDB p50 | quiver p99 | LadybugDB p99 | unit | p50 ratio |\n|---|---|---|---|---|---|---|")
    for name in ["a_1hop_out", "b_s_r_?o", "c_2hop_distinct_count", "c2_2hop_path_count"]:
        a, b = qp["latency"][name], kl.get(name, {})
        ratio = f"{b['median_us'] / a['median_us']:.1f}x faster" if b else ""
        print(f"| {name} | {a['median_us']:.1f} | {b.get('median_us', '-')} | {a['p99_us']:.1f} | {b.get('p99_us', '-')} | µs | {ratio} |")
    e, nb = qp["embeddings"], qp["neighbors"]
    print(f"\nembeddings() of {e['rows']:,} × {e['dim']} ({e['bytes'] / 2**20:.0f} MiB, view: {e['view']}): median {e['median_ms']:.3f} ms; "
          f"neighbors() of {nb['nodes']:,} nodes, k = {nb['k']}: {nb['python_median_s']:.3f} s vs the Rust API's {nb['rust_median_s']:.3f} s ({nb['ratio']:.2f}x)")
fof = anchors.get("quiver_fof")
if fof:
    print(f"\nFriends of friends not yet followed, ranked by the model, top 10 (the README's query), demo network of {fof['users']:,} users: "
          f"p50 {fof['median_us']:.1f} µs, p99 {fof['p99_us']:.1f} µs over {fof['n']:,} random users")
uw = anchors.get("quiver_unwind")
if uw:
    st = uw["statement"]
    imp = uw["import"]["rows_per_s"]
    print(f"\nA batch of {uw['rows']:,} edges as one statement (`UNWIND $rows` of maps, one commit): "
          f"CREATE {st['create']['rows_per_s']:,.0f} rows/s ({imp / st['create']['rows_per_s']:.1f}x import's time), "
          f"MERGE {st['merge']['rows_per_s']:,.0f} rows/s ({imp / st['merge']['rows_per_s']:.1f}x); "
          f"the same edges through `import`: {imp:,.0f} rows/s (goal: within 3x)")
pa = anchors.get("paths")
if pa:
    print("\nShortest paths and two-hop path counts beside LadybugDB (bench/paths.py, Python to Python, same draws, answers compared)\n")
    print("| query | quiver p50 | LadybugDB p50 | quiver p99 | LadybugDB p99 | p50 ratio |\n|---|---|---|---|---|---|")
    for name in ["two_hop_count", "shortest"]:
        a, b = pa[name]["quiver"], pa[name]["ladybug"]
        print(f"| {name} | {a['median_us']:.1f} µs | {b['median_us']:.1f} µs | {a['p99_us']:.1f} µs | {b['p99_us']:.1f} µs | {pa[name]['ratio_median']:.1f}x |")
knn = [d for d in map(lambda p: json.load(open(p)), [p for p in sys.argv[2:] if "knn" in p or "faiss_flat" in p])]
if knn:
    print("\nExact top-10 by inner product, random unit vectors (quiver: CPU backend; faiss: IndexFlatIP, same run)\n")
    print("| rows × dim | quiver batched q/s | faiss batched q/s | ratio | quiver int8 batched q/s | int8 recall@10 | int8 size | single query p50 quiver / faiss (1 thread) |\n|---|---|---|---|---|---|---|---|")
    for q in [d for d in knn if d["bench"] == "quiver_knn"]:
        f = next((d for d in knn if d["bench"] == "faiss_flat" and d["n"] == q["n"] and d["dim"] == q["dim"]), {})
        fb = f.get("batched", {}).get("qps")
        ratio = f"{q['batched']['qps'] / fb:.2f}x" if fb else ""
        fs = f.get("single_1thread", {}).get("median_us")
        i8 = q["int8"]
        print(f"| {q['n']:,} × {q['dim']} | {q['batched']['qps']:,.0f} | {fb or float('nan'):,.0f} | {ratio} | {i8['batched_qps']:,.0f} | {i8['recall_at_k']:.3f} | {i8['bytes'] / 2**20:.1f} MiB vs {i8['float_bytes'] / 2**20:.1f} MiB | {q['single_1thread']['median_us']:,.0f} / {fs or float('nan'):,.0f} µs |")
cs = anchors.get("quiver_coldstart")
if cs:
    print(f"\ncold start on FB15k-237 ({cs['held_out_entities']} entities held out, {cs['test_triples_touching_them']} test triples touching them, {cs['epochs']} epochs): "
          f"filtered MRR inductive {cs['inductive']['mrr']:.4f}, transductive {cs['transductive']['mrr']:.4f} (ratio {cs['inductive_share_of_transductive']:.2f}), random rows {cs['random']['mrr']:.4f}; "
          f"inferring {cs['inferred_rows']} rows took {cs['infer_s'] * 1e3:.1f} ms")
qa, qp, an = anchors.get("quiver_ann"), anchors.get("quiver_ann_python"), anchors.get("ann_scale")
if qa and an:
    print(f"\nANN index, {qa['n']:,} × {qa['dim']} (ann_scale.py vectors), M 16, ef_construction 200, one query at a time; "
          f"build quiver {qa['build_s']:.0f} s, hnswlib {an.get('hnswlib_build_s', float('nan')):.0f} s, faiss {an.get('faiss_build_s', float('nan')):.0f} s, usearch {an.get('usearch_build_s', float('nan')):.0f} s\n")
    print("| ef | recall@10 quiver | quiver Rust q/s | quiver Python q/s | hnswlib q/s | faiss q/s | usearch q/s |\n|---|---|---|---|---|---|---|")
    at = lambda rows, ef: next((r for r in rows or [] if r["ef"] == ef), {})
    for r in qa["quiver"]:
        cell = lambda rows: f"{at(rows, r['ef']).get('single_qps', float('nan')):,.0f}"
        print(f"| {r['ef']} | {r['recall@10']:.3f} | {r['single_qps']:,.0f} | {cell((qp or {}).get('quiver'))} | "
              f"{cell(an.get('hnswlib'))} | {cell(an.get('faiss_hnsw'))} | {cell(an.get('usearch'))} |")
print(f"\nraw JSON: {sys.argv[1:]}")
PY
