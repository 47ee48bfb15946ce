"""Reads a floorbell data directory after `benches/load/publish.sh` killed
the server, independently of floorbell's code, and checks that nothing
acknowledged was lost.

    python3 check_store.py DATA_DIR REQUESTS ACKED_FILE

* The event log's segments (`DATA_DIR/events/events-*.log`): records of
  len u32 | CRC-32 u32 | payload (epoch u64 | seq u64 | hash u32 |
  time_ms u64 | JSON), all little-endian, one run of consecutive seqs per
  segment; reading a segment stops at its first record that is not whole
  (a prepared segment is zero-filled past its last record).
* SQLite's `meta` table: `qr_next_seq` (the next seq, written at times),
  `qr_expired_before` (records below it are gone, even if a spare segment
  still holds them) and `event_hash_key` (the secret of the 4-round Feistel
  permutation that turns a seq into its hash: core/src/ring/hash.rs).

Checks: the store numbered at least REQUESTS events (every acknowledged
one, the script's own first publish included: no slack). Every hash in
ACKED_FILE (one hex hash per line; empty for wrk, which does not read
bodies) decodes to a distinct seq below the next one, every stored record
carries the hash of its seq, and every acknowledged event not older than
the oldest record still in the log is there, with its hash. The ring keeps
the newest 2^18 events, so the older ones can only be checked by number.
"""

import glob
import sqlite3
import struct
import sys
import zlib

MASK16 = 0xFFFF


def rounds_of(secret):
    """HashKey::from_secret: four little-endian u32 words of the u128."""
    return [(secret >> (32 * i)) & 0xFFFFFFFF for i in range(4)]


def f(half, key):
    h = ((half ^ key) * 0x9E3779B1) & 0xFFFFFFFF
    h ^= h >> 15
    h = (h * 0x85EBCA77) & 0xFFFFFFFF
    return h >> 16


def encode(rounds, seq):
    v = seq & 0xFFFFFFFF
    left, right = v >> 16, v & MASK16
    for k in rounds:
        left, right = right, left ^ f(right, k)
    return (left << 16) | right


def decode(rounds, hash_):
    left, right = hash_ >> 16, hash_ & MASK16
    for k in reversed(rounds):
        left, right = right ^ f(left, k), left
    return (left << 16) | right


def records(data_dir):
    """seq -> hash of every whole record in the segments."""
    found = {}
    for path in glob.glob(data_dir + "/events/events-*.log"):
        data, at, epoch, last = open(path, "rb").read(), 0, None, None
        while at + 8 <= len(data):
            n, crc = struct.unpack_from("<II", data, at)
            payload = data[at + 8:at + 8 + n]
            if n < 28 or len(payload) < n or zlib.crc32(payload) != crc:
                break
            e, seq, hash_ = struct.unpack_from("<QQI", payload)
            if (epoch is not None and e != epoch) or (last is not None and seq != last + 1):
                break
            found[seq] = hash_
            epoch, last, at = e, seq, at + 8 + n
    return found


def main():
    data_dir, requests, acked_file = sys.argv[1:4]
    requests = int(requests)
    db = sqlite3.connect(data_dir + "/floorbell.db")
    meta = dict(db.execute("select key, value from meta"))
    rounds = rounds_of(int(meta["event_hash_key"], 16))
    expired_before = int(meta.get("qr_expired_before", 0))
    stored = {s: h for s, h in records(data_dir).items() if s >= expired_before}
    next_seq = max([int(meta.get("qr_next_seq", 0))] + [s + 1 for s in stored])
    failures = []
    wrong = [s for s, h in stored.items() if h != encode(rounds, s)]
    if wrong:
        failures.append(f"{len(wrong)} stored records carry another seq's hash (first seq {wrong[0]})")
    if next_seq < requests:
        failures.append(f"{next_seq} events numbered, {requests} acknowledged")
    lines = [line.strip() for line in open(acked_file) if line.strip()]
    bad = [line for line in lines if len(line) != 8]
    if bad:
        failures.append(f"{len(bad)} acknowledged hashes are not 8 hex digits (first {bad[0]!r})")
    acked = [int(line, 16) for line in lines if len(line) == 8]
    if acked and next_seq >= 1 << 32:
        failures.append("more than 2^32 events: hashes no longer name one seq")
    seqs = [decode(rounds, h) for h in acked]
    if len(set(seqs)) != len(seqs):
        failures.append(f"{len(seqs) - len(set(seqs))} hashes acknowledged twice")
    beyond = [s for s in seqs if s >= next_seq]
    if beyond:
        failures.append(f"{len(beyond)} acknowledged events beyond the newest committed one")
    oldest = min(stored) if stored else next_seq
    kept = [s for s in seqs if s >= oldest]
    missing = [s for s in kept if s not in stored]
    if missing:
        failures.append(f"{len(missing)} acknowledged events missing from the log (first seq {min(missing)})")
    found = len(kept) - len(missing)
    by_record = f", {found} of {len(acked)} acknowledged hashes found in it" if acked else ""
    print(f"events committed: {next_seq} ({requests} acknowledged; "
          f"the log holds seqs {oldest}..{next_seq - 1}{by_record})")
    for failure in failures:
        print("store check failed: " + failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
