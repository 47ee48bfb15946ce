#!/usr/bin/env bash
# Webhook deliveries per second (SPEC §3.6) to one healthy local receiver,
# then with a dead receiver (answers the registration's HEAD, never a POST)
# registered beside it: `webhook-rate` (benches/load/webhook_rate.rs)
# starts a release floorbell on a fresh data directory and the receivers on
# 127.0.0.1, makes CHANGES order changes over keep-alive HTTP (pipelined)
# twice — live, and as a backlog the receiver drains once every change is
# acknowledged — and measures deliveries/s at the receiver until all of them
# arrived. Exits non-zero when a change was lost, repeated or reordered.
#
#   bash benches/load/webhook_rate.sh                 # CHANGES=5000
#   CHANGES=1000 bash benches/load/webhook_rate.sh
#   SKIP_BUILD=1 bash benches/load/webhook_rate.sh    # use target/release as is
#
# Only 127.0.0.1; the tool's loops are bounded (CHANGES, TIMEOUT seconds).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CHANGES=${CHANGES:-5000} ORDERS=${ORDERS:-20} PIPELINE=${PIPELINE:-32}
TIMEOUT=${TIMEOUT:-60}
bin=${FLOORBELL_BIN:-$root/target/release/floorbell}
tool=${WEBHOOK_RATE_BIN:-$root/target/release/webhook-rate}
if [ -z "${SKIP_BUILD:-}" ]; then
    (cd "$root" && cargo build --release -p floorbell-server -p floorbell-benches \
        --bin floorbell --bin webhook-rate)
fi
[ -x "$bin" ] || { echo "no floorbell binary at $bin" >&2; exit 2; }
[ -x "$tool" ] || { echo "no webhook-rate binary at $tool" >&2; exit 2; }

status=0
for mode in healthy dead; do
    extra=()
    [ "$mode" = dead ] && extra=(--dead)
    echo "=== $mode"
    "$tool" --floorbell "$bin" --changes "$CHANGES" --orders "$ORDERS" \
        --pipeline "$PIPELINE" --timeout "$TIMEOUT" "${extra[@]}" || status=$?
done
exit "$status"
