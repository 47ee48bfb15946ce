#!/usr/bin/env bash
# Builds the C tests (every bindings/c/test_*.c) and the example POS program
# against include/floorbell.h and the debug libfloorbell, and runs each under
# valgrind (any invalid access or leak fails). Needs `cargo build -p
# floorbell-ffi` first.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
lib="$root/target/debug"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

build() { # SOURCE OUTPUT
    cc -std=c11 -Wall -Wextra -Werror -O1 -g -pthread -DEXPECTED_VERSION="\"$version\"" \
        -I "$root/include" "$1" -L "$lib" -lfloorbell -Wl,-rpath,"$lib" -o "$2"
}
grind() {
    # A hung test is killed: no run waits forever. Only definite and indirect
    # leaks are shown and fail the run; "possibly lost" blocks are Rust std's
    # per-thread handles of threads it did not start (the C main thread).
    timeout --kill-after=10 300 valgrind --quiet --error-exitcode=1 --leak-check=full \
        --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect "$@"
}

for src in "$root"/bindings/c/test_*.c; do
    name=$(basename "$src" .c)
    build "$src" "$out/$name"
    echo "-- $name (valgrind)"
    grind "$out/$name"
done

echo "-- example_pos (valgrind)"
build "$root/bindings/c/example_pos.c" "$out/example_pos"
grind "$out/example_pos" "$out/pos-data" 4 >"$out/example.json"
if ! grep -q '"code":"waiter_call","table":4' "$out/example.json"; then
    echo "example_pos printed no waiter call for table 4:" >&2
    cat "$out/example.json" >&2
    exit 1
fi
echo "example_pos printed the waiter call"
