#!/usr/bin/env bash
# Order changes fanned out to N authenticated /api/v2/websocket clients
# (SPEC §3.2-§3.5): floorbell (release build) on a fresh data directory,
# `orders-fanout` (benches/load/orders_fanout.rs) connecting N clients,
# creating ORDERS orders and then making CHANGES changes (pages and moves),
# closed-loop or at RATE changes/s, matching every change's seq in the
# frames. Prints changes/s, frames/s, time-to-all p50/p99/max and server
# CPU per delivered frame; exits non-zero when a client missed, repeated or
# reordered a change.
#
#   bash benches/load/orders_fanout.sh                   # N=1000 CHANGES=2000
#   N=200 CHANGES=500 bash benches/load/orders_fanout.sh
#   RATE=500 CONNS=4 bash benches/load/orders_fanout.sh  # open loop
#   SKIP_BUILD=1 bash benches/load/orders_fanout.sh      # use target/release as is
#
# Only 127.0.0.1; the tool's loops are bounded (CHANGES and DURATION seconds).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
N=${N:-1000} CHANGES=${CHANGES:-2000} DURATION=${DURATION:-30}
ORDERS=${ORDERS:-20} RATE=${RATE:-0} CONNS=${CONNS:-1}
PAGE_PERCENT=${PAGE_PERCENT:-50}
EXTRA_ARGS=${EXTRA_ARGS:-}
FLOORBELL_ARGS=${FLOORBELL_ARGS:---no-mdns}
bin=${FLOORBELL_BIN:-$root/target/release/floorbell}
tool=${FANOUT_BIN:-$root/target/release/orders-fanout}
if [ -z "${SKIP_BUILD:-}" ]; then
    (cd "$root" && cargo build --release -p floorbell-server -p floorbell-benches \
        --bin floorbell --bin orders-fanout)
fi
[ -x "$bin" ] || { echo "no floorbell binary at $bin" >&2; exit 2; }
[ -x "$tool" ] || { echo "no orders-fanout binary at $tool" >&2; exit 2; }

# Both ends hold N sockets.
need=$((N + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi

data=$(mktemp -d)
out=$(mktemp)
admin=bench-admin-$$
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$data" "$out"
}
trap cleanup EXIT
# shellcheck disable=SC2086 # FLOORBELL_ARGS is a list of flags
"$bin" serve --listen 127.0.0.1:0 --data-dir "$data" --admin-token "$admin" \
    $FLOORBELL_ARGS >"$out" 2>"$data/server.log" &
pid=$!
for _ in $(seq 100); do grep -q '^listening on ' "$out" && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$out")
[ -n "$url" ] || { echo "floorbell did not start" >&2; cat "$data/server.log" >&2; exit 2; }
echo "floorbell $url (pid $pid), data $data"

status=0
# shellcheck disable=SC2086 # EXTRA_ARGS is a list of flags
"$tool" --url "$url" --admin-token "$admin" --server-pid "$pid" \
    --clients "$N" --orders "$ORDERS" --changes "$CHANGES" --duration "$DURATION" \
    --rate "$RATE" --conns "$CONNS" --page-percent "$PAGE_PERCENT" $EXTRA_ARGS \
    | tee "$data/result.txt" || status=$?

rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo "?")
kill -TERM "$pid"
server_status=0
wait "$pid" || server_status=$?
pid=
if [ "$server_status" -ne 0 ]; then
    echo "floorbell exited $server_status" >&2
    [ "$status" -ne 0 ] || status=3
fi

echo "---"
echo "summary: N=$N CHANGES=$CHANGES RATE=$RATE CONNS=$CONNS ORDERS=$ORDERS (server RSS at the end: ${rss} KiB)"
grep -E '^(connect|changes|delivered|time-to-all|time-to-first|server CPU|load generator|machine|correctness)' "$data/result.txt" || true
if [ "$status" -ne 0 ]; then
    echo "FAILED (orders-fanout exit $status)" >&2
    tail -n 20 "$data/server.log" >&2 || true
fi
exit "$status"
