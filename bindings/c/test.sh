#!/usr/bin/env bash
# Builds the C tests against include/floorbell.h and the debug libfloorbell,
# and runs each under valgrind (any invalid access or leak fails).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
lib="$root/target/debug"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for src in "$root"/bindings/c/test_*.c; do
    name=$(basename "$src" .c)
    cc -std=c11 -Wall -Wextra -Werror -O1 -g -DEXPECTED_VERSION="\"$version\"" \
        -I "$root/include" "$src" -L "$lib" -lfloorbell -Wl,-rpath,"$lib" -o "$out/$name"
    echo "-- $name (valgrind)"
    valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
        "$out/$name"
done
