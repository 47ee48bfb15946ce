#!/usr/bin/env bash
# Builds the C# binding and its test program with mcs and runs it with mono
# against the debug libfloorbell (LD_LIBRARY_PATH=target/debug). Needs
# `cargo build -p floorbell-ffi` first, and mono (mono-mcs, mono-runtime).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here="$root/bindings/csharp"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

mcs -nologo -warnaserror -target:exe -out:"$out/Tests.exe" \
    "$here/Floorbell.cs" "$here/Tests.cs"
echo "-- Tests.exe (mono)"
# The program has its own watchdog; this one catches a hang in the runtime.
FLOORBELL_ROOT="$root" LD_LIBRARY_PATH="$root/target/debug${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    timeout --kill-after=10 180 mono --debug "$out/Tests.exe"
