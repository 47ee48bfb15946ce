#!/usr/bin/env bash
# A soak: one release floorbell under every kind of client at once for
# DURATION seconds, its memory, descriptors and threads sampled every
# SAMPLE seconds. The clients, all on 127.0.0.1, each checking its answers:
#
#   * publish-load (benches/load/publish_load.rs): durable QR publishes on 4
#     connections, closed loop, so the event ring fills to its 2^18 events
#     within the first minute and evicts from then on (retention 60 s);
#   * orders-fanout (benches/load/orders_fanout.rs): rounds of 100 gateway
#     WebSocket clients connecting, taking the snapshot and every order
#     change (150 a second, 20 s a round), then leaving;
#   * soak_clients.py: a QR poller on the hash chain, ticket rounds with
#     staff consoles and displays coming and going, gateway WebSocket
#     clients that read nothing for 120 s (SPEC §3.5: closed with 1013
#     once the server's socket buffer and then --ws-max-queue, here 64 KiB,
#     are full), connections opened and closed, 431s, 400s, 404s, and
#     requests left half-sent until their 408.
#
# It fails when a client saw a wrong answer, when the server died or does
# not answer afterwards or exits non-zero on SIGTERM, or when the server
# kept growing after the warm-up: the largest RSS of the last third of the
# run may exceed that of the middle third by at most GROWTH_PCT percent
# plus 8 MiB, and the descriptors and threads of the last third may not
# exceed the middle third's by more than the clients' own churn allows.
# Orders, tickets and gateway tokens are kept for --history-days by design;
# the run makes a few thousand, well inside that slack.
#
#   bash benches/load/soak.sh                   # DURATION=600
#   DURATION=120 bash benches/load/soak.sh
#   SKIP_BUILD=1 bash benches/load/soak.sh      # use target/release as is
#
# Needs bash 5.1 and python3 with websocket-client (pip install
# websocket-client). The first client that fails stops the others. Prints
# the samples' summary and a SOAK line; the samples stay in $SAMPLES
# (default: a temporary file, removed). After a failure the clients'
# output and the server's log and data directory are kept (the path is
# printed).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${DURATION:-600} SAMPLE=${SAMPLE:-2} GROWTH_PCT=${GROWTH_PCT:-10}
[[ $DURATION =~ ^[1-9][0-9]*$ ]] && [ "$DURATION" -ge 30 ] ||
    { echo "DURATION is a whole number of seconds, at least 30" >&2; exit 2; }
((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] >= 501)) ||
    { echo "soak.sh needs bash 5.1 or later (wait -n -p)" >&2; exit 2; }
bin=${FLOORBELL_BIN:-$root/target/release/floorbell}
publish_load=${PUBLISH_LOAD_BIN:-$root/target/release/publish-load}
fanout=${FANOUT_BIN:-$root/target/release/orders-fanout}
if [ -z "${SKIP_BUILD:-}" ]; then
    (cd "$root" && cargo build --quiet --release -p floorbell-server -p floorbell-benches \
        --bin floorbell --bin publish-load --bin orders-fanout)
fi
python3 -c 'import websocket' 2>/dev/null ||
    { echo "soak.sh needs websocket-client (pip install websocket-client)" >&2; exit 2; }

# The server's data directory and log, and the clients' output.
work=$(mktemp -d)
data=$work/data
out=$work/stdout
samples=${SAMPLES:-$work/samples}
pid=
jobs_pids=()
status=0
# Each background job in a process group of its own (so stopping one stops
# the client it is running too).
set -m
stop_jobs() {
    for p in "${jobs_pids[@]}"; do kill -- "-$p" 2>/dev/null || true; done
}
cleanup() {
    stop_jobs
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    if [ "$status" = 0 ]; then
        rm -rf "$work"
    else
        echo "kept for a look: $work" >&2
        [ -z "${SAMPLES:-}" ] || cp "$samples" "$work/" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'status=130; exit 130' INT TERM

admin=soak-admin-$$ qr=soak-qr-$$
"$bin" serve --listen 127.0.0.1:0 --data-dir "$data" --admin-token "$admin" --qr-token "$qr" \
    --no-mdns --event-retention 60 --ws-max-queue 65536 >"$out" 2>"$work/server.log" &
pid=$!
for _ in $(seq 100); do grep -q '^listening on ' "$out" && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$out")
[ -n "$url" ] || { echo "floorbell did not start" >&2; cat "$work/server.log" >&2; exit 2; }
echo "floorbell $url (pid $pid), $DURATION s"

# One gateway token for every gateway client (one press, one token).
curl -sf -X POST -H "Authorization: Bearer $admin" "$url/api/v2/button" >/dev/null
gateway=$(curl -sf "$url/api/v2/accesstoken/generate" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"]["token"])')

start=$(date +%s)
deadline=$((start + DURATION))

# The samples: seconds, RSS (KiB), descriptors, threads, and of the RSS
# the anonymous memory (KiB: the heap, against mapped files).
(
    while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do
        rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
        anon=$(awk '/^RssAnon/ {print $2}' "/proc/$pid/status")
        fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
        threads=$(awk '/^Threads/ {print $2}' "/proc/$pid/status")
        echo "$(($(date +%s) - start)) $rss $fds $threads $anon"
        sleep "$SAMPLE"
    done >"$samples"
) &
jobs_pids+=($!)

# A loop of rounds of a bounded client until the deadline; fails at the
# first failed round.
rounds() { # NAME COMMAND...
    local name=$1 n=0 left
    shift
    while left=$((deadline - $(date +%s))) && [ "$left" -gt 5 ]; do
        n=$((n + 1))
        if ! "$@" "$n" "$left" >"$work/$name.out" 2>&1; then
            echo "$name round $n failed:" >&2
            tail -n 20 "$work/$name.out" >&2
            return 1
        fi
    done
    echo "$name: $n rounds"
}
publish_round() { # N LEFT
    "$publish_load" --addr "${url#http://}" --connections 4 --threads 1 \
        --duration "$(($2 < 20 ? $2 : 20))" --token "$admin" --expect 201
}
fanout_round() { # N LEFT
    "$fanout" --url "$url" --admin-token "$admin" --token "$gateway" \
        --clients 100 --orders 5 --name-base $(($1 * 10)) --rate 150 --changes 3000 \
        --duration "$(($2 < 20 ? $2 : 20))" --server-pid "$pid"
}
rounds publish publish_round &
publish_job=$!
rounds fanout fanout_round &
fanout_job=$!
python3 "$root/benches/load/soak_clients.py" --url "$url" --qr-token "$qr" \
    --admin-token "$admin" --gateway-token "$gateway" --duration "$DURATION" &
clients_job=$!
jobs_pids+=("$publish_job" "$fanout_job" "$clients_job")

# The clients as they finish; the first failure stops the others.
pending=("$publish_job" "$fanout_job" "$clients_job")
while [ "${#pending[@]}" -gt 0 ]; do
    finished=
    job_status=0
    wait -n -p finished "${pending[@]}" || job_status=$?
    [ -n "$finished" ] || break
    for i in "${!pending[@]}"; do [ "${pending[$i]}" != "$finished" ] || unset "pending[$i]"; done
    pending=("${pending[@]}")
    if [ "$job_status" != 0 ] && [ "$status" = 0 ]; then
        status=1
        echo "a client failed; stopping the others" >&2
        for p in "${pending[@]}"; do kill -- "-$p" 2>/dev/null || true; done
    fi
done
kill -- "-${jobs_pids[0]}" 2>/dev/null || true

# Still serving, and a clean stop within 30 s.
if ! kill -0 "$pid" 2>/dev/null; then
    echo "floorbell died during the soak" >&2
    status=1
elif ! curl -sf --max-time 10 "$url/api/v2" >/dev/null; then
    echo "floorbell does not answer after the soak" >&2
    status=1
fi
kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
    echo "floorbell did not stop within 30 s of SIGTERM" >&2
    kill -KILL "$pid" 2>/dev/null || true
    status=1
fi
server_status=0
wait "$pid" || server_status=$?
pid=
if [ "$server_status" -ne 0 ]; then
    echo "floorbell exited $server_status:" >&2
    tail -n 20 "$work/server.log" >&2
    status=1
fi
warnings=$(grep -c -E ' (WARN|ERROR) ' "$work/server.log" || true)
echo "server log: $warnings warn/error lines"
grep -E ' (WARN|ERROR) ' "$work/server.log" | head -n 5 || true

# Memory, descriptors and threads: the middle third against the last.
awk -v d="$DURATION" -v pct="$GROWTH_PCT" '
    { t = $1; if (t < d / 3) next
      third = (t < 2 * d / 3) ? 2 : 3
      if ($2 > rss[third]) rss[third] = $2
      if ($3 > fds[third]) fds[third] = $3
      if ($4 > thr[third]) thr[third] = $4
      if (first == "") first = $2; last = $2 }
    END {
      printf "RSS (MiB): after warm-up %.1f, middle third max %.1f, last third max %.1f, end %.1f\n",
          first / 1024, rss[2] / 1024, rss[3] / 1024, last / 1024
      printf "descriptors max: middle %d, last %d; threads max: middle %d, last %d\n",
          fds[2], fds[3], thr[2], thr[3]
      bad = 0
      if (rss[2] == 0 || rss[3] == 0) { print "too few samples"; bad = 1 }
      if (rss[3] > rss[2] * (1 + pct / 100) + 8192) { print "RSS kept growing"; bad = 1 }
      if (fds[3] > fds[2] + 64) { print "descriptors kept growing"; bad = 1 }
      if (thr[3] > thr[2] + 2) { print "threads kept growing"; bad = 1 }
      exit bad
    }' "$samples" || status=1
echo "SOAK duration=${DURATION}s status=$([ "$status" = 0 ] && echo ok || echo FAILED)"
exit "$status"
