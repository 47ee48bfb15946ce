"""A ticket driven through ticket-board sessions (SPEC §2), exact replies,
and the broadcasts a subscriber hears."""

import re

import pytest

from floorbell import FloorbellError, Status
from _support import Collector

TICKET = r'\{"id":0,"email":"ann@example\.com","name":"Ann Lee","staff":"%s","start":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ","end":"%s"\}'
OPEN_END = "1970-01-01T00:00:00Z"


def test_a_ticket_through_sessions(engine):
    seen = Collector()
    engine.subscribe(seen)
    token = engine.add_staff("Anna")
    assert re.fullmatch(r"\S{16,}", token), token
    with pytest.raises(FloorbellError) as e:
        engine.add_staff("Anna")
    assert e.value.status is Status.CONFLICT

    with engine.session("kiosk") as kiosk, engine.session("staff") as staff, engine.session("display"):
        reply = kiosk.command("new ann@example.com Ann Lee")
        assert re.fullmatch("success new " + TICKET % (r"\{\}", OPEN_END), reply), reply
        assert kiosk.command("query ann@example.com") == "success query Ann Lee"
        assert kiosk.command("query who@example.com") == "error query visitor email does not exist"

        assert staff.command("accept 0") == "error accept you do not have a table chosen"
        assert staff.command("pick 0 not-a-token") == (
            "error pick the provided token does not belong to any staff member"
        )
        assert staff.command(f"pick 0 {token}") == "success pick 0"
        assert staff.command("accept 9") == "error accept ticket id does not exist"
        assert staff.command("accept 0") == "success claimed 0"
        assert staff.command("complete 0") == "success complete 0"
        assert staff.command("complete 0") == (
            "error complete the ticket has already been completed or cancelled"
        )
        assert staff.command("dance") == "error dance malformed command"

    # The broadcasts, in commit order (the staff session's close unpicks).
    seen.wait_for(lambda k, t: t == "unpick 0")
    tickets = seen.texts("ticket")
    assert tickets[0] == "pick 0" or re.fullmatch("new " + TICKET % (r"\{\}", OPEN_END), tickets[0]), tickets
    assert [t for t in tickets if not t.startswith(("new ", "claimed {"))] == [
        "pick 0",
        "claimed 0 0",
        "complete 0",
        "unpick 0",
    ], tickets
    assert any(re.fullmatch("claimed " + TICKET % ("Anna", OPEN_END), t) for t in tickets), tickets

    engine.remove_staff("Anna")
    with engine.session("staff") as staff:
        assert staff.command(f"pick 1 {token}") == (
            "error pick the provided token does not belong to any staff member"
        )
