#!/usr/bin/env bash
# `make fuzz`: runs every target for FUZZ_SECONDS (default 600) with its corpus
# in fuzz/corpus/TARGET. The toolchain is stable, hence RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
secs=${FUZZ_SECONDS:-600}
for t in import_line decode_records damaged_database query_parse query_exec storage_model; do
    mkdir -p "corpus/$t"
    echo "== fuzzing $t for $secs s" >&2
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=4096
done
