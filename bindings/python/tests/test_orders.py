"""The table-tracking gateway through ctypes (SPEC §3.2–§3.4): an order
driven through start / modify / page / clear, its callbacks, bad calls that
raise and change nothing, the button, an order changed over HTTP reaching a
callback, and events submitted without waiting."""

import ctypes
import json
import re
import threading

import pytest

import floorbell
from floorbell import FloorbellError, Status
from _support import ADMIN_TOKEN, CONFIG, HASH, Collector, http

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
SUMMARY_KEYS = [
    "elapsedTime",
    "uuid",
    "seq",
    "created",
    "orderType",
    "locationName",
    "state",
    "stateStarted",
    "name",
]


def order_changes(seen):
    return [json.loads(t) for t in seen.texts("order")]


def without_elapsed(orders):
    return [{k: v for k, v in o.items() if k != "elapsedTime"} for o in orders]


def test_an_order_through_the_binding(engine):
    seen = Collector()
    engine.subscribe(seen)
    assert engine.active_orders() == []

    order = engine.start_order({"name": "66", "orderType": "TO_GO"})
    assert list(order) == SUMMARY_KEYS, order
    assert UUID.fullmatch(order["uuid"]) and TIMESTAMP.fullmatch(order["created"])
    assert (order["name"], order["orderType"], order["locationName"], order["state"]) == ("66", "TO_GO", "", "started")

    located = engine.modify_order(order["uuid"], {"locationName": "22"})
    assert (located["state"], located["locationName"], located["seq"]) == ("located", "22", order["seq"] + 1)
    assert engine.modify_order("66", {"orderType": "TO_GO"})["seq"] == located["seq"], "no change, no seq"
    paged = engine.page_order("66")
    assert paged["seq"] == located["seq"] + 1
    assert engine.page_order(order["uuid"], tracking=False)["seq"] == paged["seq"] + 1
    assert [o["uuid"] for o in engine.active_orders()] == [order["uuid"]]

    cleared = engine.clear_order("66")
    assert cleared["state"] == "cleared" and cleared["uuid"] == order["uuid"]
    assert engine.active_orders() == []

    engine.start_order({"name": "1", "orderType": "ON_PREMISE", "locationName": "3"})
    engine.start_order('{"name":"2","orderType":"ON_PREMISE"}')
    assert [o["name"] for o in engine.active_orders()] == ["1", "2"]
    assert engine.clear_orders() == 2
    assert engine.clear_orders() == 0
    assert engine.active_orders() == []

    # start, modify, 2 pages, clear, 2 starts, 2 cleared by clear-all.
    seen.wait_for(lambda k, t: len(seen.texts("order")) >= 9)
    changes = order_changes(seen)
    assert [c["type"] for c in changes] == [
        "ORDER_CREATED",
        "ORDER_MODIFIED",
        "ORDER_PAGED",
        "ORDER_PAGED",
        "ORDER_MODIFIED",
        "ORDER_CREATED",
        "ORDER_CREATED",
        "ORDER_MODIFIED",
        "ORDER_MODIFIED",
    ]
    # `type` before `name`, where the seed's webhook example has it.
    assert [list(c) for c in changes] == [SUMMARY_KEYS[:-1] + ["type", "name"]] * 9
    seqs = [c["seq"] for c in changes]
    assert seqs == list(range(seqs[0], seqs[0] + 9)), seqs
    assert changes[4]["state"] == "cleared"


def test_bad_order_calls_raise_with_the_reason_and_change_nothing(engine):
    order = engine.start_order({"name": "66", "orderType": "TO_GO", "locationName": "4"})
    before = without_elapsed(engine.active_orders())

    def refused(status, call, says=None):
        with pytest.raises(FloorbellError) as e:
            call()
        assert e.value.status is status, e.value
        assert e.value.message, "no message"
        if says is not None:
            assert says in e.value.message, e.value.message

    refused(Status.CONFLICT, lambda: engine.start_order({"name": "66", "orderType": "TO_GO"}), "66")
    refused(Status.INVALID_ARGUMENT, lambda: engine.start_order('{"name":"67",'), "JSON")
    refused(Status.INVALID_ARGUMENT, lambda: engine.start_order("[]"))
    refused(Status.INVALID_ARGUMENT, lambda: engine.start_order({"name": "67"}), "orderType")
    refused(Status.INVALID_ARGUMENT, lambda: engine.start_order({"name": "abc", "orderType": "TO_GO"}), "name")
    refused(Status.INVALID_ARGUMENT, lambda: engine.modify_order("66", {"orderType": "TAKEAWAY"}), "orderType")
    refused(Status.INVALID_ARGUMENT, lambda: engine.modify_order("66", {"locationName": 5}), "locationName")
    unknown = "3f2c1b0a-9d8e-4f7a-8b6c-5d4e3f2a1b0c"
    refused(Status.NOT_FOUND, lambda: engine.modify_order(unknown, {"locationName": "1"}))
    refused(Status.NOT_FOUND, lambda: engine.page_order(unknown))
    refused(Status.NOT_FOUND, lambda: engine.clear_order(unknown))
    refused(Status.NOT_FOUND, lambda: engine.clear_order("999"))
    refused(Status.INVALID_UTF8, lambda: engine.clear_order(b"6\xff"), "UTF-8")
    refused(Status.INVALID_UTF8, lambda: engine.start_order(b'{"name":"68","orderType":"TO_GO","x":"\xfe"}'), "UTF-8")
    assert without_elapsed(engine.active_orders()) == before

    # A NULL handle or argument at the C level: NULL_POINTER, not a crash.
    lib = floorbell.load_library()
    out = ctypes.c_void_p()
    assert lib.floorbell_engine_order_start(None, b"{}", ctypes.byref(out)) == Status.NULL_POINTER
    assert lib.floorbell_engine_press_button(None) == Status.NULL_POINTER
    assert lib.floorbell_engine_orders_active(None, ctypes.byref(out)) == Status.NULL_POINTER
    assert not out.value, "out written on failure"

    # Cleared: by name it is gone (404), by uuid it is history (409).
    engine.clear_order(order["uuid"])
    refused(Status.NOT_FOUND, lambda: engine.page_order("66"))
    refused(Status.CONFLICT, lambda: engine.modify_order(order["uuid"], {"locationName": "5"}))


def test_a_closed_engine_refuses_order_calls(tmp_path):
    fb = floorbell.Engine(tmp_path / "d", CONFIG)
    fb.close()
    for call in (
        lambda: fb.press_button(),
        lambda: fb.start_order({"name": "1", "orderType": "TO_GO"}),
        lambda: fb.modify_order("1", {}),
        lambda: fb.page_order("1"),
        lambda: fb.clear_order("1"),
        lambda: fb.clear_orders(),
        lambda: fb.active_orders(),
        lambda: fb.submit_event({"code": "waiter_call"}),
    ):
        with pytest.raises(FloorbellError) as e:
            call()
        assert e.value.status is Status.CLOSED and "closed" in str(e.value)


def test_order_callback_for_a_change_made_over_http(engine):
    seen = Collector()
    engine.subscribe(seen)
    port = engine.serve()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}

    status, body = http(
        "POST", port, "/api/v2/activeorders", admin, b'{"name":"501","orderType":"ON_PREMISE","locationName":"9"}'
    )
    assert status == 201, body
    uuid = body["activeorder"]["uuid"]
    kind, text, thread = seen.wait_for(lambda k, t: k == "order" and uuid in t)
    assert thread != threading.get_ident(), "callback ran on the caller's thread"
    change = json.loads(text)
    assert change["type"] == "ORDER_CREATED"
    assert {k: v for k, v in change.items() if k not in ("type", "elapsedTime")} == {
        k: v for k, v in body["activeorder"].items() if k != "elapsedTime"
    }
    assert [o["uuid"] for o in engine.active_orders()] == [uuid]

    # A change through the binding and one over HTTP, in seq order.
    engine.page_order("501")
    status, body = http("PUT", port, f"/api/v2/activeorders/{uuid}", admin, b'{"orderType":"TO_GO"}')
    assert status == 200, body
    seen.wait_for(lambda k, t: k == "order" and '"orderType":"TO_GO"' in t)
    assert [c["type"] for c in order_changes(seen)] == ["ORDER_CREATED", "ORDER_PAGED", "ORDER_MODIFIED"]

    # A refused HTTP change is no change.
    status, body = http("POST", port, "/api/v2/activeorders", admin, b'{"name":"501","orderType":"TO_GO"}')
    assert status == 409, body
    assert len(seen.texts("order")) == 3


def test_the_button_opens_the_token_window(engine):
    port = engine.serve()
    status, body = http("GET", port, "/api/v2/accesstoken/generate", {})
    assert status == 403, body
    engine.press_button()
    status, body = http("GET", port, "/api/v2/accesstoken/generate", {})
    assert status == 201, body
    token = body["token"]["token"]
    assert re.fullmatch(r"[0-9a-f]{48}", token)
    # One token per press; the new token opens the [SECURED] routes.
    assert http("GET", port, "/api/v2/accesstoken/generate", {})[0] == 403
    status, body = http("GET", port, "/api/v2/activeorders", {"Authorization": f"Bearer {token}"})
    assert (status, body) == (200, {"status": 200, "count": 0, "items": []})


def test_submitted_events_reach_subscribers_after_their_commit(engine):
    seen = Collector()
    engine.subscribe(seen)
    for table in range(20):
        engine.submit_event({"code": "waiter_call", "table": table})
    with pytest.raises(FloorbellError) as e:
        engine.submit_event('{"code":')
    assert e.value.status is Status.INVALID_ARGUMENT and "JSON" in e.value.message
    seen.wait_for(lambda k, t: len(seen.texts("event")) >= 20)
    events = [json.loads(t) for t in seen.texts("event")]
    assert [e["table"] for e in events] == list(range(20))
    assert all(HASH.fullmatch(e["hash"]) for e in events)
    assert [u["hash"] for u in engine.events_since()["data"]["updates"]] == [e["hash"] for e in events]
