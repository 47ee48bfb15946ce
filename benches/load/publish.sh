#!/usr/bin/env bash
# Durable publish throughput: floorbell (release build) on a fresh data
# directory, a client (wrk, or CLIENT) posting events over C keep-alive
# connections for D; then the server is killed with SIGKILL and its store
# is read back here, independently of floorbell: it must hold at least as
# many events as were acknowledged, and with CLIENT=publish-load every
# acknowledged event itself, by its hash (the ring keeps the newest 2^18
# events: older ones must at least have been numbered before the newest
# stored one). The client has stopped by then, so this shows that what was
# acknowledged was committed, not the order of answer and commit under a
# crash: tests/durability.rs kills the server while publishes are in
# flight for that.
#
#   bash benches/load/publish.sh            # C=64 D=10s
#   C=16 D=5s bash benches/load/publish.sh
#   LOG_LEVEL=debug …                       # the writer logs its batch sizes
#   FLOOR_BIN=…/bench/floor-mio/target/release/floor-mio bash …
#       # then also the floor: the team harness's floor-mio answering every
#       # POST with the bytes of a real floorbell answer, same wrk command
#   SERVER_ARGS="--reactors 1" bash …      # more flags for floorbell serve
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
# The binaries are built (a no-op when up to date), never measured stale.
if [ -n "${FLOORBELL_BIN:-}" ]; then bin=$FLOORBELL_BIN; else
    bin=$root/target/release/floorbell
    (cd "$root" && cargo build --quiet --release -p floorbell-server --bin floorbell)
fi
case "$CLIENT" in
wrk) command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; } ;;
publish-load)
    if [ -n "${PUBLISH_LOAD_BIN:-}" ]; then tool=$PUBLISH_LOAD_BIN; else
        tool=$root/target/release/publish-load
        (cd "$root" && cargo build --quiet --release -p floorbell-benches --bin publish-load)
    fi ;;
*) echo "CLIENT is wrk or publish-load" >&2; exit 2 ;;
esac
data=$(mktemp -d)
out=$(mktemp)
floor_pid=
pid=
trap 'kill -9 $pid $floor_pid 2>/dev/null || true; rm -rf "$data" "$data.log" "$out" "$out.body" "$out.acked" "$out.client"' EXIT
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

# CLIENT on URL for D (expecting STATUS), then the CPU the process PID and
# the client used per request (LABEL names the server); leaves the count of
# completed requests in $requests. Fails, showing the client's output, when
# the client failed or counted an error or no request at all.
load() { # PID URL LABEL STATUS
    local cpu0 cpu1 kids0 kids1 result status=0
    cpu0=$(awk '{print $14+$15}' "/proc/$1/stat")
    kids0=$(children_ticks)
    if [ "$CLIENT" = wrk ]; then
        ADMIN_TOKEN=benchadmin wrk -t"$THREADS" -c"$C" -d"$D" -s "$root/benches/load/publish.lua" \
            "$2" >"$out.client" 2>&1 || status=$?
    else
        "$tool" --addr "${2#http://}" --connections "$C" --threads "$THREADS" \
            --duration "${D%s}" --token benchadmin --expect "$4" --acked "$out.acked" \
            >"$out.client" 2>&1 || status=$?
    fi
    kids1=$(children_ticks)
    cpu1=$(awk '{print $14+$15}' "/proc/$1/stat")
    result=$(grep '^RESULT' "$out.client" || true)
    requests=$(echo "$result" | sed -n 's/.*requests=\([0-9]*\).*/\1/p')
    if [ "$status" != 0 ] || [ -z "$requests" ] || [ "$requests" = 0 ] ||
        ! echo "$result" | grep -q 'err_status=0 err_timeout=0\( \|$\)' ||
        echo "$result" | grep -q 'err_conn=[1-9]'; then
        echo "the $CLIENT run failed (exit $status):" >&2
        cat "$out.client" >&2
        exit 1
    fi
    echo "$result"
    awk -v c=$((cpu1 - cpu0)) -v k=$((kids1 - kids0)) -v t="$ticks" -v n="$requests" \
        -v label="$3" -v client="$CLIENT" \
        'BEGIN { printf "%s: %.1f us (%s: %.1f us per request)\n", label, c / t * 1e6 / n, client, k / t * 1e6 / n }'
}

"$bin" serve --listen 127.0.0.1:0 --data-dir "$data" --qr-token benchqr \
    --admin-token benchadmin --no-mdns --log-level "${LOG_LEVEL:-info}" ${SERVER_ARGS:-} >"$out" 2>"$data.log" &
pid=$!
url=$(listening)
[ -n "$url" ] || { echo "floorbell did not start" >&2; cat "$data.log" >&2; exit 1; }
# One real answer, for the floor's body (and a check that publishing works).
curl -sf -X POST -H "Authorization: Bearer benchadmin" -H "Content-Type: application/json" \
    --data '{"code":"waiter_call","table":1}' "$url/api/v4/events" >"$out.body"
load "$pid" "$url" "server CPU per durable publish" 201
kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=
# The curl event above was acknowledged too (wrk reads no bodies: only
# its hash is checked then).
[ "$CLIENT" = wrk ] && : >"$out.acked"
sed -n 's/.*"hash":"0x\([0-9a-f]\{8\}\)".*/\1/p' "$out.body" >>"$out.acked"
python3 "$root/benches/load/check_store.py" "$data" $((requests + 1)) "$out.acked" ||
    { echo "server log:" >&2; tail -n 20 "$data.log" >&2; exit 1; }
if [ -n "${FLOOR_BIN:-}" ]; then
    "$FLOOR_BIN" --listen 127.0.0.1:0 --body "$out.body" >"$out" 2>/dev/null &
    floor_pid=$!
    floor_url=$(listening)
    [ -n "$floor_url" ] || { echo "floor-mio did not start" >&2; exit 1; }
    echo -n "floor: "
    load "$floor_pid" "$floor_url" "floor CPU per request" 200
fi
