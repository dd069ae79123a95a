#!/usr/bin/env bash
# Vendors the explorer's front-end libraries (ui/vendor/) from the npm
# registry at pinned versions and checks them against ui/vendor/SHA256SUMS.
# The files are committed; building quiver needs neither npm nor Node.
# Run with --update to rewrite SHA256SUMS after changing a version here.
set -euo pipefail
cd "$(dirname "$0")/../ui/vendor"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fetch() { # package version file-in-package target licence-target
    (cd "$tmp" && npm pack --silent "$1@$2" >/dev/null && mkdir -p "$1" && tar xzf "$1-$2.tgz" -C "$1")
    cp "$tmp/$1/package/$3" "$4"
    cp "$tmp/$1/package/LICENSE" "$5"
}
fetch cytoscape 3.35.0 dist/cytoscape.min.js cytoscape.min.js LICENSE.cytoscape
fetch uplot 1.6.32 dist/uPlot.iife.min.js uPlot.iife.min.js LICENSE.uplot
fetch uplot 1.6.32 dist/uPlot.min.css uPlot.min.css LICENSE.uplot
if [ "${1:-}" = --update ]; then
    sha256sum cytoscape.min.js uPlot.iife.min.js uPlot.min.css > SHA256SUMS
fi
sha256sum -c SHA256SUMS
