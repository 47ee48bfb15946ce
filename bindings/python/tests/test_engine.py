"""The engine through ctypes: publish and read back, status numbers, and
every kind of bad call raising FloorbellError without changing anything."""

import gc
import json
import re
import threading
import time
import weakref
from pathlib import Path

import pytest

import floorbell
from floorbell import FloorbellError, Status
from _support import CONFIG, HASH, TIMEOUT, Collector

HEADER = Path(__file__).resolve().parents[3] / "include" / "floorbell.h"


def updates(fb, since=None):
    answer = fb.events_since(since)
    assert answer["result"] is True, answer
    return answer["data"]["updates"]


def test_status_mirrors_the_header_numbers():
    header = dict(
        (name, int(num)) for name, num in re.findall(r"FLOORBELL_STATUS_([A-Z0-9_]+) = (\d+)", HEADER.read_text())
    )
    assert header, "no FLOORBELL_STATUS_* in the header"
    assert {s.name: s.value for s in Status} == header


def test_publish_and_read_back(engine):
    assert updates(engine) == []
    h1 = engine.publish_event({"code": "waiter_call", "table": 5})
    h2 = engine.publish_event('{"code":"save_order","order":{"dish":"Борщ","qty":2}}')
    assert HASH.fullmatch(h1) and HASH.fullmatch(h2) and h1 != h2, (h1, h2)

    everything = updates(engine)
    assert [e["hash"] for e in everything] == [h1, h2]
    assert everything[0] == {
        "hash": h1,
        "code": "waiter_call",
        "table": 5,
        "invoice": None,
        "order": None,
        "table_repr": None,
    }
    assert everything[1]["order"] == {"dish": "Борщ", "qty": 2}
    assert updates(engine, "none") == everything
    # After a known hash: only what came later; unknown hash: everything.
    assert [e["hash"] for e in updates(engine, h1)] == [h2]
    assert updates(engine, h2) == []
    assert updates(engine, "0x00000000") == everything


def test_bad_calls_raise_with_the_reason_and_change_nothing(engine):
    h = engine.publish_event({"code": "waiter_call", "table": 1})
    before = engine.events_since()

    with pytest.raises(FloorbellError) as e:
        engine.publish_event("{not json")
    assert e.value.status is Status.INVALID_ARGUMENT
    assert "JSON" in str(e.value), str(e.value)

    with pytest.raises(FloorbellError) as e:
        engine.publish_event({"code": "Bad Code!"})
    assert e.value.status is Status.INVALID_ARGUMENT and e.value.message

    with pytest.raises(FloorbellError) as e:
        engine.publish_event({"code": "waiter_call", "table": "five"})
    assert e.value.status is Status.INVALID_ARGUMENT and e.value.message

    with pytest.raises(FloorbellError) as e:
        engine.publish_event(b'{"code":"waiter_call","x":"\xff\xfe"}')
    assert e.value.status is Status.INVALID_UTF8
    assert "UTF-8" in e.value.message

    with pytest.raises(FloorbellError) as e:
        engine.session("chef")
    assert e.value.status is Status.INVALID_ARGUMENT
    assert '"chef"' in e.value.message

    with pytest.raises(FloorbellError) as e:
        engine.unsubscribe(424242)
    assert e.value.status is Status.NOT_FOUND and "424242" in e.value.message

    with pytest.raises(FloorbellError) as e:
        engine.serve("not an address")
    assert e.value.status is Status.INVALID_ARGUMENT

    with pytest.raises(FloorbellError) as e:
        engine.stop_serving()
    assert e.value.status is Status.WRONG_STATE

    with pytest.raises(FloorbellError) as e:
        engine.remove_staff("Nobody")
    assert e.value.status is Status.NOT_FOUND

    assert engine.events_since() == before
    assert [u["hash"] for u in before["data"]["updates"]] == [h]


def test_unknown_session_is_not_found_and_changes_nothing(engine):
    kiosk = engine.session("kiosk")
    kiosk.close()
    with pytest.raises(FloorbellError) as e:
        kiosk.command("new a@b.c Anna")
    assert e.value.status is Status.NOT_FOUND
    assert f"no session {kiosk.id}" in e.value.message
    forged = floorbell.Session(engine, 987654321, "kiosk")
    with pytest.raises(FloorbellError) as e:
        forged.command("new a@b.c Anna")
    assert e.value.status is Status.NOT_FOUND
    # Nothing was created: the first real ticket still gets id 0.
    with engine.session("kiosk") as k:
        assert k.command("new a@b.c Anna").startswith('success new {"id":0,')


def test_a_closed_engine_refuses_calls_without_crashing(tmp_path):
    fb = floorbell.Engine(tmp_path / "d", CONFIG)
    session = fb.session("kiosk")
    fb.close()
    fb.close()  # idempotent
    assert fb.closed
    for call in (
        lambda: fb.publish_event({"code": "waiter_call"}),
        lambda: fb.events_since(),
        lambda: fb.serve(),
        lambda: fb.add_staff("Anna"),
        lambda: fb.session("kiosk"),
        lambda: fb.subscribe(lambda k, t: None),
        lambda: session.command("new a@b.c Anna"),
    ):
        with pytest.raises(FloorbellError) as e:
            call()
        assert e.value.status is Status.CLOSED
        assert "closed" in str(e.value)
    session.close()  # after the engine: nothing to do, no error


def test_open_errors(tmp_path):
    with pytest.raises(FloorbellError) as e:
        floorbell.Engine(tmp_path / "a", "tables = 0")
    assert e.value.status is Status.INVALID_ARGUMENT and "tables" in e.value.message
    with pytest.raises(FloorbellError) as e:
        floorbell.Engine(tmp_path / "b", "no-such-key = 1")
    assert e.value.status is Status.INVALID_ARGUMENT and "no-such-key" in e.value.message
    with floorbell.Engine(tmp_path / "c", CONFIG):
        with pytest.raises(FloorbellError) as e:
            floorbell.Engine(tmp_path / "c", CONFIG)
        assert e.value.status is Status.IN_USE and "in use" in e.value.message
    # Released on close: it opens again.
    floorbell.Engine(tmp_path / "c", CONFIG).close()


def test_change_kinds_mirror_the_header_numbers():
    header = dict(
        (name.lower(), int(num)) for name, num in re.findall(r"FLOORBELL_CHANGE_([A-Z0-9_]+) = (\d+)", HEADER.read_text())
    )
    assert header, "no FLOORBELL_CHANGE_* in the header"
    assert {name: num for num, name in floorbell.CHANGE_KINDS.items()} == header


def test_a_callback_that_falls_behind_is_told_and_can_resync(tmp_path):
    release = threading.Event()
    seen = Collector()

    def slow(kind, text):
        release.wait(TIMEOUT)
        seen(kind, text)

    with floorbell.Engine(tmp_path / "data", CONFIG + "callback-queue-bytes = 2048\n") as fb:
        fb.subscribe(slow)
        hashes = [fb.publish_event({"code": "waiter_call", "table": t}) for t in range(60)]
        release.set()
        _, missed, _ = seen.wait_for(lambda k, t: k == "lagged")
        after = fb.publish_event({"code": "waiter_call", "table": 60})
        seen.wait_for(lambda k, t: after in t)
        kinds = [k for k, _, _ in seen.changes]
        lag = kinds.index("lagged")
        assert kinds == ["event"] * lag + ["lagged"] + ["event"] * (len(kinds) - lag - 1), kinds
        heard = [json.loads(t)["hash"] for k, t, _ in seen.changes if k == "event"]
        # Before the notice the first events published; after it, the ones
        # after those missed (a publish may return before its change reaches
        # the callback thread: then it is heard after the notice).
        assert heard == hashes[:lag] + (hashes + [after])[lag + int(missed) :]
        # The resync: everything after the last event heard before the notice.
        resync = [e["hash"] for e in updates(fb, heard[lag - 1])]
        assert resync == hashes[lag:] + [after]


def test_callback_survives_garbage_collection_and_stops_after_unsubscribe(engine):
    seen = Collector()
    barrier = Collector()
    sub = engine.subscribe(lambda kind, text: seen(kind, text))  # only the engine holds it
    gc.collect()
    h1 = engine.publish_event({"code": "waiter_call", "table": 2})
    kind, text, _ = seen.wait_for(lambda k, t: h1 in t)
    assert kind == "event"

    engine.unsubscribe(sub)
    with pytest.raises(FloorbellError) as e:
        engine.unsubscribe(sub)
    assert e.value.status is Status.NOT_FOUND
    # Callbacks run in commit order on one thread: once the barrier sees h2,
    # the unsubscribed callback would have seen it too.
    engine.subscribe(barrier)
    h2 = engine.publish_event({"code": "waiter_call", "table": 3})
    barrier.wait_for(lambda k, t: h2 in t)
    assert not any(h2 in t for t in seen.texts("event")), seen.changes


def test_unsubscribed_callbacks_are_let_go(engine):
    # A host that subscribes and unsubscribes again and again (a window
    # opened and closed) must not keep every callback it ever gave.
    refs = []
    for _ in range(200):
        callback = Collector()
        refs.append(weakref.ref(callback))
        engine.unsubscribe(engine.subscribe(callback))
    del callback
    gc.collect()
    assert sum(r() is not None for r in refs) == 0


def test_a_callback_that_unsubscribes_itself_is_let_go_after_it_returns(engine):
    class Once(Collector):
        def __call__(self, kind, text):
            super().__call__(kind, text)
            engine.unsubscribe(self.sub)

    once = Once()
    once.sub = engine.subscribe(once)
    ref = weakref.ref(once)
    h1 = engine.publish_event({"code": "waiter_call", "table": 2})
    once.wait_for(lambda k, t: h1 in t)
    heard = once.changes
    del once
    # The next callback on the (single) callback thread starts after the
    # one that unsubscribed itself returned: from then on it is let go.
    barrier = Collector()
    engine.subscribe(barrier)
    h2 = engine.publish_event({"code": "waiter_call", "table": 3})
    barrier.wait_for(lambda k, t: h2 in t)
    gc.collect()
    assert ref() is None
    assert [t for _, t, _ in heard if h2 in t] == []


class _Holder:
    """A callback that holds its engine: engine → callback → holder → engine."""

    def __init__(self):
        self.engine = None
        self.heard = 0

    def __call__(self, kind, text):
        self.heard += 1


def test_an_engine_collected_on_a_callback_thread_is_closed_and_its_callbacks_kept(tmp_path):
    # Engine A, left to the cycle collector with changes still coming to its
    # callback; the collector then runs on engine B's callback thread. A must
    # be closed from another thread (its directory free again), its
    # callbacks alive until then (the native engine may still call them).
    holder = _Holder()
    a = floorbell.Engine(tmp_path / "a", CONFIG)
    holder.engine = a
    a.subscribe(holder)
    for table in range(2000):
        a.submit_event({"code": "waiter_call", "table": table})
    del a, holder
    collected = threading.Event()

    def collect(kind, text):
        gc.collect()
        collected.set()

    with floorbell.Engine(tmp_path / "b", CONFIG) as b:
        b.subscribe(collect)
        b.publish_event({"code": "waiter_call", "table": 1})
        assert collected.wait(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                again = floorbell.Engine(tmp_path / "a", CONFIG)
                break
            except FloorbellError as e:
                assert e.status is Status.IN_USE, e
                assert time.monotonic() < deadline, "engine A was never closed"
                time.sleep(0.05)
        # Everything A was given is committed by its close.
        with again:
            assert len(updates(again)) == 2000
