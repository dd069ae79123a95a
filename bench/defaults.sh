#!/bin/sh
# Chooses quiver's default training settings across graphs of several shapes,
# on their validation splits only (issue 17): FB15k-237 and WN18RR from
# ../shared/data, and two TwHIN-like networks from the demo's generator (a
# small dense one, and a larger sparse one). On each graph, `quiver tune`
# trains every point of the grid with the current defaults otherwise; the
# rule: the point whose validation MRR, divided by the best point's on the
# same graph, has the highest mean over the graphs (each graph counts the
# same, whatever its size).
#
#   bench/defaults.sh [DATA_DIR] [WORK_DIR] -- --set KEY=V1,V2 ...
#
# Needs `cargo build --release --workspace`. Prints each graph's table and
# the combined one; nothing is scored on a test split.
set -eu
DATA=${1:-../shared/data}
WORK=${2:-/tmp/quiver-defaults}
shift 2 2>/dev/null || shift $#
[ "${1:-}" = "--" ] && shift
Q=target/release/quiver
B=target/release/quiver-bench
[ -x "$Q" ] && [ -x "$B" ] || { echo "build first: cargo build --release --workspace" >&2; exit 2; }
mkdir -p "$WORK"
graphs=""
for kg in FB15k-237 WN18RR; do
    if [ -f "$DATA/$kg.tar.gz" ]; then
        mkdir -p "$WORK/$kg"
        tar -xzf "$DATA/$kg.tar.gz" -C "$WORK/$kg"
        dir=$(dirname "$(find "$WORK/$kg" -name train.txt | head -1)")
        [ -d "$WORK/$kg/db" ] || "$Q" import "$WORK/$kg/db" "$dir/train.txt" >/dev/null
        graphs="$graphs $kg:$dir"
    else
        echo "skipping $kg: no $DATA/$kg.tar.gz" >&2
    fi
done
make_twhin() {
    name=$1
    shift
    "$B" twhin --out "$WORK/$name" "$@" >/dev/null
    [ -d "$WORK/$name/db" ] || "$Q" import "$WORK/$name/db" "$WORK/$name/train.txt" --create-types >/dev/null
    graphs="$graphs $name:$WORK/$name"
}
make_twhin twhin-small --users 2000
make_twhin twhin-sparse --users 20000 --communities 500 --tweets 1 --follows 3 --engagements 4 --advertisers 200 --seed 7
for g in $graphs; do
    name=${g%%:*}
    dir=${g#*:}
    echo "== $name"
    "$Q" tune "$WORK/$name/db" --valid "$dir/valid.txt" --model defaults --device cpu "$@"
done
python3 - "$WORK" $graphs <<'EOF'
import sys
work, graphs = sys.argv[1], [g.split(":", 1)[0] for g in sys.argv[2:]]
table = {}
for g in graphs:
    with open(f"{work}/{g}/db/defaults.tune.tsv") as f:
        next(f)
        for line in f:
            settings, mrr = line.rstrip("\n").split("\t")[:2]
            table.setdefault(settings, {})[g] = float(mrr)
best = {g: max(row[g] for row in table.values()) for g in graphs}
score = {s: sum(row[g] / best[g] for g in graphs) / len(graphs) for s, row in table.items()}
chosen = max(score, key=score.get)
print("\n| settings | " + " | ".join(graphs) + " | mean of MRR / graph's best |")
print("|---|" + "---|" * (len(graphs) + 1))
for s in sorted(table, key=score.get, reverse=True):
    mark = " (chosen)" if s == chosen else ""
    print(f"| {s}{mark} | " + " | ".join(f"{table[s][g]:.4f}" for g in graphs) + f" | {score[s]:.3f} |")
EOF
