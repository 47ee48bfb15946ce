"""Per-call cost of publishing through the Python binding (issue 7's "the
same through the Python binding"), with the ≈300-byte event of the Rust
benches (benches/lib.rs `payment_event`).

    cargo build --release -p floorbell-ffi
    FLOORBELL_LIB=target/release/libfloorbell.so python3 bindings/python/bench.py

Each figure is per call: the best and the median of REPEAT timeit runs of
NUMBER calls, the variants' runs interleaved (so a drift of the machine
touches them alike):

* ``submit_event (store excluded)``: ``Engine.submit_event`` with the event
  as ``str`` — the wrapper, ctypes, and ``floorbell_engine_submit_event``
  (validation, serialization, hand-off to the store writer, no wait for the
  commit). Between runs (untimed) a blocking publish waits until the writer
  has committed everything submitted, so no run waits for the store.
* ``submit_event, dict``: the same with a ``dict`` (adds ``json.dumps``).
* ``ctypes submit (no wrapper)``: the bare ctypes call of
  ``floorbell_engine_submit_event`` with pre-encoded bytes: what the
  wrapper's checks and encoding add is the difference.
* ``publish_event (store included)``: ``Engine.publish_event`` from one
  thread: one commit (transaction and fsync) per call.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import floorbell  # noqa: E402

NUMBER = int(os.environ.get("NUMBER", "2000"))
REPEAT = int(os.environ.get("REPEAT", "7"))
PUBLISH_NUMBER = int(os.environ.get("PUBLISH_NUMBER", "300"))


def payment_event(i: int) -> str:
    """benches/lib.rs's payment_event, byte for byte."""
    t = 1000000 + i % 40
    return (
        '{"code":"online_payment","table":%d,"invoice":null,"order":{"guid":"{F4CE1102-50DC-48F7-A8E0-%012X}",'
        '"sum":186.0,"table":{"id":%d,"name":"6"},"waiter":{"id":9001,"name":"Система"},'
        '"dishes":[{"id":1000041,"name":"Блюдо","price":150.0,"count":1.0}]},"table_repr":null}' % (t, i, t)
    )


def interleaved(variants, between) -> dict:
    """Runs each (name, fn, number) REPEAT times, round-robin, calling
    `between` (untimed) after each run; µs per call of every run, by name."""
    runs: dict = {name: [] for name, _, _ in variants}
    for _ in range(REPEAT):
        for name, fn, number in variants:
            runs[name].append(timeit.timeit(fn, number=number) / number * 1e6)
            between()
    return runs


def main() -> None:
    event = payment_event(7)
    assert 280 <= len(event.encode()) <= 340, len(event.encode())
    as_dict = json.loads(event)
    as_bytes = event.encode()
    print(f"library: {os.environ.get('FLOORBELL_LIB', '(found by floorbell._candidates)')}")
    print(f"event: {len(as_bytes)} bytes; {REPEAT} runs of each, interleaved")
    with tempfile.TemporaryDirectory() as tmp, floorbell.Engine(Path(tmp) / "data", "no-mdns = true\n") as fb:
        def drain() -> None:
            fb.publish_event(event)  # returns after its commit, which follows theirs

        lib, handle = fb._lib, fb._handle
        drain()
        runs = interleaved(
            [
                ("submit_event (store excluded)", lambda: fb.submit_event(event), NUMBER),
                ("submit_event, dict", lambda: fb.submit_event(as_dict), NUMBER),
                ("ctypes submit (no wrapper)", lambda: lib.floorbell_engine_submit_event(handle, as_bytes), NUMBER),
                ("publish_event (store included)", lambda: fb.publish_event(event), PUBLISH_NUMBER),
            ],
            drain,
        )
    for name, us in runs.items():
        best, median = min(us), statistics.median(us)
        print(f"{name:<34} best {best:8.2f} µs/call   median {median:8.2f} µs/call  ({1e6 / best:,.0f} calls/s at best)")


if __name__ == "__main__":
    main()
