#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECS seconds each, from the
# committed seeds plus what earlier runs found (corpus/, not committed).
# A crash stops the run and leaves its input in artifacts/TARGET/.
#
#   bash fuzz/run.sh                 # every target, 60 s each
#   SECS=600 bash fuzz/run.sh http_request
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). The sanitizer build needs
# nightly flags: on a stable toolchain RUSTC_BOOTSTRAP=1 allows them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
SECS=${SECS:-60}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(http_request ws_frames qr_event wire_texts)
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    echo "== $t ($SECS s)"
    status=0
    # Inputs up to past the limits each target checks (a WebSocket message
    # is refused over 64 KiB).
    case "$t" in ws_frames) max_len=70000 ;; *) max_len=8192 ;; esac
    RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECS" -max_len="$max_len" -print_final_stats=1 >"corpus/$t.log" 2>&1 ||
        status=$?
    grep -E "^(==[0-9]+==ERROR|SUMMARY|thread .* panicked|stat::number_of_executed_units|stat::peak_rss_mb)|Done [0-9]+ runs" "corpus/$t.log" || true
    if [ "$status" != 0 ]; then
        grep -A4 "panicked" "corpus/$t.log" >&2 || tail -n 20 "corpus/$t.log" >&2
        echo "$t: failed (exit $status), the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
done
