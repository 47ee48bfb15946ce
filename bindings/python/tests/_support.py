"""Helpers for the binding tests: the test tokens, a real HTTP client with
timeouts, and a collector that waits on a condition instead of sleeping."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from typing import Callable, Optional

# The tokens every test engine uses (SPEC §1.1 `token` header, admin Bearer).
QR_TOKEN = "pq"
ADMIN_TOKEN = "pa"
CONFIG = f'qr-token = "{QR_TOKEN}"\nadmin-token = "{ADMIN_TOKEN}"\nno-mdns = true\n'

HASH = re.compile(r"0x[0-9a-f]{8}")
TIMEOUT = 10.0

# A client that never goes through a proxy from the environment: every
# request is for 127.0.0.1 itself.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method: str, port: int, path: str, headers: dict, body: Optional[bytes] = None) -> tuple[int, dict]:
    """One request to 127.0.0.1:port with urllib; (status, parsed JSON body)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method, headers=headers)
    try:
        with _OPENER.open(req, timeout=TIMEOUT) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


class Collector:
    """A subscriber callback that records (kind, text, thread id) and lets
    the test wait until a matching change arrives."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, str, int]] = []
        self._cond = threading.Condition()

    def __call__(self, kind: str, text: str) -> None:
        with self._cond:
            self.changes.append((kind, text, threading.get_ident()))
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[str, str], bool], timeout: float = TIMEOUT) -> tuple[str, str, int]:
        with self._cond:
            found: list = []

            def match() -> bool:
                found[:] = [c for c in self.changes if pred(c[0], c[1])]
                return bool(found)

            if not self._cond.wait_for(match, timeout):
                raise AssertionError(f"no matching change within {timeout}s; got {self.changes!r}")
            return found[0]

    def texts(self, kind: str) -> list[str]:
        with self._cond:
            return [t for k, t, _ in self.changes if k == kind]
