"""Serving in-process: a real HTTP client reads what the binding published,
and a subscriber hears about what an HTTP client published."""

import json
import threading
import urllib.error

import pytest

from floorbell import FloorbellError, Status
from _support import ADMIN_TOKEN, HASH, QR_TOKEN, Collector, http


def test_serve_and_read_the_event_over_http(engine):
    h = engine.publish_event({"code": "waiter_call", "table": 7})
    port = engine.serve("127.0.0.1:0")
    assert 0 < port < 65536

    status, body = http("GET", port, "/api/v4/events?hash=none", {"token": QR_TOKEN})
    assert status == 200, body
    assert [e["hash"] for e in body["data"]["updates"]] == [h]
    assert body == engine.events_since()

    status, body = http("GET", port, "/api/v4/events?hash=none", {"token": "wrong"})
    assert (status, body) == (401, {"result": False, "error": "invalid token"})

    with pytest.raises(FloorbellError) as e:
        engine.serve("127.0.0.1:0")
    assert e.value.status is Status.WRONG_STATE

    engine.stop_serving()
    with pytest.raises(urllib.error.URLError):
        http("GET", port, "/api/v4/events?hash=none", {"token": QR_TOKEN})
    # It serves again after a stop.
    port = engine.serve()
    assert http("GET", port, f"/api/v4/events?hash={h}", {"token": QR_TOKEN}) == (
        200,
        {"result": True, "data": {"updates": []}},
    )


def test_callback_for_an_event_published_over_http(engine):
    seen = Collector()
    sub = engine.subscribe(seen)
    port = engine.serve()

    event = {"code": "online_payment", "table": 12, "invoice": {"sum": 1500}}
    status, body = http(
        "POST",
        port,
        "/api/v4/events",
        {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        json.dumps(event).encode(),
    )
    assert status == 201, body
    h = body["data"]["hash"]
    assert HASH.fullmatch(h)

    kind, text, thread = seen.wait_for(lambda k, t: h in t)
    assert kind == "event"
    assert thread != threading.get_ident(), "callback ran on the caller's thread"
    got = json.loads(text)
    assert got["hash"] == h and got["code"] == "online_payment" and got["invoice"] == {"sum": 1500}
    assert [e["hash"] for e in engine.events_since()["data"]["updates"]] == [h]

    # Without the admin token nothing is published (and nothing is told).
    status, body = http("POST", port, "/api/v4/events", {"Authorization": "Bearer nope"}, b'{"code":"waiter_call"}')
    assert status == 401, body
    engine.unsubscribe(sub)
    assert seen.texts("event") == [text]
