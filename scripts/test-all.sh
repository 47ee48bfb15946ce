#!/usr/bin/env bash
# Every test of the project: the Rust workspace (unit, property and
# end-to-end tests against the real binary), the C-ABI header check, and the
# binding tests. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== cargo test --workspace"
cargo test --workspace

echo "== include/floorbell.h matches cbindgen's output"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
cbindgen --quiet --config ffi/cbindgen.toml --output "$tmp" ffi
if ! diff -u include/floorbell.h "$tmp"; then
    echo "include/floorbell.h is stale: run cbindgen --config ffi/cbindgen.toml --output include/floorbell.h ffi" >&2
    exit 1
fi

echo "== bindings"
cargo build -p floorbell-ffi
bash bindings/c/test.sh
python3 -m pytest -q bindings/python
bash bindings/csharp/test.sh

echo "== built-in pages in headless Chromium (tests/browser)"
node tests/browser/run.mjs

echo "all tests passed"
