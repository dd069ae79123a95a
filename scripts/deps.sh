#!/usr/bin/env bash
# Installs (as root) or names (otherwise) what building and testing quiver needs.
set -euo pipefail
# A private runtime directory silences Mesa's warnings (the Makefile sets one).
if [ -n "${XDG_RUNTIME_DIR:-}" ]; then
    mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi

if ! command -v cargo >/dev/null; then
    echo "error: cargo not found; install Rust with rustup (https://rustup.rs)" >&2
    exit 1
fi
for c in fmt clippy; do
    if ! cargo "$c" --version >/dev/null 2>&1; then
        comp=${c/fmt/rustfmt}
        if command -v rustup >/dev/null && rustup component add "$comp"; then continue; fi
        echo "error: cargo $c is missing; run: rustup component add $comp" >&2
        exit 1
    fi
done

# System tools the tests use: tar and gzip (datasets, gzip import), C and C++ compilers for -sys crates.
missing=()
command -v tar >/dev/null || missing+=(tar)
command -v gzip >/dev/null || missing+=(gzip)
command -v cc >/dev/null || missing+=(gcc)
# A C++ compiler for usearch, the ANN index's library (compiled by its crate).
command -v c++ >/dev/null || missing+=(g++)
# Vulkan loader and Mesa's lavapipe: the WGSL kernels are tested on it.
ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1' || missing+=(libvulkan1)
ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers)
# HDF5, for PyTorch-BigGraph's files (`export --format pbg`, `import-model`); found with pkg-config.
command -v pkg-config >/dev/null || missing+=(pkg-config)
pkg-config --exists hdf5 2>/dev/null || missing+=(libhdf5-dev)
# A real browser for the explorer's tests (driven by Playwright for Python).
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        echo "error: missing packages: ${missing[*]} (as root: apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi
