#!/usr/bin/env bash
# The device check for a session lent a GPU machine (see the device tool's
# README): the machine has no Rust toolchain and no network, so everything is
# built here and carried.
#
#   scripts/gpu-check.sh prepare      # here: builds and stages devbin/ and .gl/
#   then the device tool's `run` with carry [".gl", "devbin"] and the command
#   `bash scripts/gpu-check.sh run`   # there: kernel checks, then timings
#
# `run` writes gpu-tests.log and gpu.json to $OUT (or devbin/out).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
prepare)
    grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >>.git/info/exclude
    grep -qx '/devbin/' .git/info/exclude 2>/dev/null || echo /devbin/ >>.git/info/exclude
    rm -rf devbin && mkdir -p devbin
    cargo build --release -p quiver-bench
    cp target/release/quiver-bench devbin/
    # The GPU tests: the engine's unit tests (the training step) and tests/gpu.rs.
    for t in --lib "--test gpu"; do
        # shellcheck disable=SC2086
        exe=$(cargo test --release -p quiver-engine $t --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))/\1/p' | tail -1)
        cp "$exe" "devbin/$(basename "$exe")"
    done
    strip devbin/quiver-bench devbin/quiver_engine-* devbin/gpu-*
    # The data travels compressed (the carry limit is 64 MiB) and is unpacked there.
    cp ../shared/data/FB15k-237.tar.gz devbin/
    if [ ! -d .gl ] || [ -z "$(ls .gl/*.deb 2>/dev/null)" ]; then
        mkdir -p .gl /tmp/amd64/partial
        o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
        # shellcheck disable=SC2086
        apt-get $o update >/dev/null
        # shellcheck disable=SC2086
        (cd .gl && apt-get $o download libvulkan1 >/dev/null)
    fi
    du -sh devbin .gl
    ;;
run)
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
        export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    fi
    mkdir -p devbin/fb && tar -xzf devbin/FB15k-237.tar.gz -C devbin/fb
    out=${OUT:-devbin/out}
    mkdir -p "$out"
    export QUIVER_ADAPTER=${QUIVER_ADAPTER:-nvidia}
    # A missing adapter fails the kernel checks instead of skipping them.
    export QUIVER_REQUIRE_GPU=1
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$out/gpu-tests.log" 2>&1 || true
    # Kernel checks against the CPU first: timings mean nothing if these fail.
    # (The naga test reads shaders/ at its build path; naga needs no GPU anyway.)
    for exe in devbin/quiver_engine-* devbin/gpu-*; do
        "$exe" --skip every_shader --nocapture >>"$out/gpu-tests.log" 2>&1
    done
    ./devbin/quiver-bench gpu --data devbin/fb --epochs "${EPOCHS:-3}" >"$out/gpu.json" 2>>"$out/gpu-tests.log"
    cat "$out/gpu.json"
    ;;
*)
    echo "usage: $0 prepare | run" >&2
    exit 2
    ;;
esac
