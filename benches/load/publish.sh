#!/usr/bin/env bash
# Durable publish throughput: floorbell (release build) on a fresh data
# directory, a client (wrk, or CLIENT) posting events over C keep-alive
# connections for D, then a restart-free check that every acknowledged
# event is in the store.
#
#   bash benches/load/publish.sh            # C=64 D=10s
#   C=16 D=5s bash benches/load/publish.sh
#   LOG_LEVEL=debug …                       # the writer logs its batch sizes
#   FLOOR_BIN=…/bench/floor-mio/target/release/floor-mio bash …
#       # then also the floor: the team harness's floor-mio answering every
#       # POST with the bytes of a real floorbell answer, same wrk command
#   CLIENT=publish-load bash …
#       # the load from benches/load/publish_load.rs instead of wrk: the
#       # same requests and connections, a write and a read per request
#
# Both clients print one RESULT line; the script adds the CPU the server and
# the client each spent per request (/proc/PID/stat).
#
# Only 127.0.0.1; either client stops by itself after D (publish-load takes
# D in seconds: 10s, 5s).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
C=${C:-64} D=${D:-10s} THREADS=${THREADS:-2} CLIENT=${CLIENT:-wrk}
bin=${FLOORBELL_BIN:-$root/target/release/floorbell}
[ -x "$bin" ] || (cd "$root" && cargo build --release -p floorbell-server)
case "$CLIENT" in
wrk) command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; } ;;
publish-load)
    tool=${PUBLISH_LOAD_BIN:-$root/target/release/publish-load}
    [ -x "$tool" ] || (cd "$root" && cargo build --release -p floorbell-benches --bin publish-load) ;;
*) echo "CLIENT is wrk or publish-load" >&2; exit 2 ;;
esac
data=$(mktemp -d)
out=$(mktemp)
floor_pid=
trap 'kill "$pid" $floor_pid 2>/dev/null || true; rm -rf "$data" "$data.log" "$out" "$out.body"' EXIT
ticks=$(getconf CLK_TCK)

# The URL a just-started server printed to $out ("listening on URL").
listening() {
    for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.1; done
    sed -n 's/^listening on //p' "$out" | head -n 1
}

# The client's CPU time in ticks so far, read from /proc/PID/stat when it
# exits (the shell's children's times: wrk and publish-load run as its
# only children here).
children_ticks() {
    awk '{print $16+$17}' "/proc/$$/stat"
}

# CLIENT on URL for D, then the CPU the process PID and the client used per
# request (LABEL names the server); leaves the count of completed requests
# in $requests.
load() { # PID URL LABEL
    local cpu0 cpu1 kids0 kids1 result
    cpu0=$(awk '{print $14+$15}' "/proc/$1/stat")
    kids0=$(children_ticks)
    if [ "$CLIENT" = wrk ]; then
        result=$(ADMIN_TOKEN=benchadmin wrk -t"$THREADS" -c"$C" -d"$D" -s "$root/benches/load/publish.lua" "$2" | grep '^RESULT')
    else
        result=$("$tool" --addr "${2#http://}" --connections "$C" --threads "$THREADS" \
            --duration "${D%s}" --token benchadmin | grep '^RESULT')
    fi
    kids1=$(children_ticks)
    cpu1=$(awk '{print $14+$15}' "/proc/$1/stat")
    echo "$result"
    requests=$(echo "$result" | sed 's/.*requests=\([0-9]*\).*/\1/')
    awk -v c=$((cpu1 - cpu0)) -v k=$((kids1 - kids0)) -v t="$ticks" -v n="$requests" \
        -v label="$3" -v client="$CLIENT" \
        'BEGIN { printf "%s: %.1f us (%s: %.1f us per request)\n", label, c / t * 1e6 / n, client, k / t * 1e6 / n }'
}

"$bin" serve --listen 127.0.0.1:0 --data-dir "$data" --qr-token benchqr \
    --admin-token benchadmin --no-mdns --log-level "${LOG_LEVEL:-info}" >"$out" 2>"$data.log" &
pid=$!
url=$(listening)
[ -n "$url" ] || { echo "floorbell did not start" >&2; cat "$data.log" >&2; exit 1; }
# One real answer, for the floor's body (and a check that publishing works).
curl -sf -X POST -H "Authorization: Bearer benchadmin" -H "Content-Type: application/json" \
    --data '{"code":"waiter_call","table":1}' "$url/api/v4/events" >"$out.body"
load "$pid" "$url" "server CPU per durable publish"
kill -TERM "$pid"; wait "$pid" || true
# The ring keeps the newest 2^18 events (older ones leave the store with
# them), so the check is on what was ever committed: one past the newest
# event in the event log's segments (read here independently of floorbell:
# records of len | CRC-32 | epoch | seq | ...), or SQLite's qr_next_seq if
# that is higher, against the client's count of completed requests.
stored=$(python3 -c "
import glob, sqlite3, struct, sys, zlib
top = -1
for path in glob.glob(sys.argv[1] + '/events/events-*.log'):
    data, at, epoch, last = open(path, 'rb').read(), 0, None, None
    while at + 8 <= len(data):
        n, crc = struct.unpack_from('<II', data, at)
        payload = data[at + 8:at + 8 + n]
        if n < 28 or len(payload) < n or zlib.crc32(payload) != crc:
            break
        e, seq = struct.unpack_from('<QQ', payload)
        if (epoch is not None and e != epoch) or (last is not None and seq != last + 1):
            break
        epoch, last, at = e, seq, at + 8 + n
    if last is not None:
        top = max(top, last)
meta = sqlite3.connect(sys.argv[1] + '/floorbell.db').execute(
    \"select value from meta where key='qr_next_seq'\").fetchone()
print(max(int(meta[0]) if meta else 0, top + 1))" "$data")
echo "events committed: $stored ($CLIENT counted $requests completed requests)"
[ "$stored" -ge "$requests" ] || { echo "fewer events committed than acknowledged" >&2; exit 1; }
if [ -n "${FLOOR_BIN:-}" ]; then
    "$FLOOR_BIN" --listen 127.0.0.1:0 --body "$out.body" >"$out" 2>/dev/null &
    floor_pid=$!
    floor_url=$(listening)
    [ -n "$floor_url" ] || { echo "floor-mio did not start" >&2; exit 1; }
    echo -n "floor: "
    load "$floor_pid" "$floor_url" "floor CPU per request"
fi
