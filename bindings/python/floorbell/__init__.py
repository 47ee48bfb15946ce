"""floorbell for Python: a pure-ctypes binding of the C ABI (include/floorbell.h).

The shared library is found through the FLOORBELL_LIB environment variable,
else in the workspace's target/debug or target/release folder, else by the
system loader (libfloorbell.so on its search path).

The API mirrors the C ABI call for call::

    with floorbell.Engine("/var/lib/pos/floorbell", 'admin-token = "s3cret"') as fb:
        h = fb.publish_event({"code": "waiter_call", "table": 3})
        updates = fb.events_since(None)["data"]["updates"]
        port = fb.serve("127.0.0.1:0")
        with fb.session("kiosk") as kiosk:
            print(kiosk.command("new guest@example.com Anna"))
        order = fb.start_order({"name": "66", "orderType": "TO_GO"})
        fb.page_order(order["uuid"])
        fb.clear_order("66")

Every failed call raises :class:`FloorbellError`, whose ``status`` is the
C status (:class:`Status`) and whose message is floorbell's last error.

Ownership: strings floorbell hands out are copied into Python ``str`` and
freed at once with ``floorbell_string_free``; the engine handle is freed by
:meth:`Engine.close` (also on ``with`` exit, at garbage collection and at
interpreter exit). The wrapper refuses any call after close itself, since the
C handle is gone then.

Threads: an engine may be used from several Python threads; ``close`` waits
for calls in progress. Subscriber callbacks run on floorbell's callback
thread (``floorbell-callbacks``), never on the caller's thread.
"""

from __future__ import annotations

import atexit
import ctypes
import enum
import json
import os
import sys
import threading
import traceback
import weakref
from pathlib import Path
from typing import Any, Callable, Optional, Union

__all__ = [
    "version",
    "load_library",
    "Status",
    "FloorbellError",
    "Engine",
    "Session",
    "CHANGE_KINDS",
]

_ROOT = Path(__file__).resolve().parents[3]


def _candidates() -> list[str]:
    env = os.environ.get("FLOORBELL_LIB")
    if env:
        return [env]
    found = [str(_ROOT / "target" / kind / "libfloorbell.so") for kind in ("debug", "release")]
    return [p for p in found if Path(p).exists()] + ["libfloorbell.so"]


class Status(enum.IntEnum):
    """``floorbell_status``: the numbers are the header's and never move."""

    OK = 0
    INVALID_ARGUMENT = 1
    NULL_POINTER = 2
    INVALID_UTF8 = 3
    NOT_FOUND = 4
    CONFLICT = 5
    IN_USE = 6
    STORE = 7
    CLOSED = 8
    IO = 9
    WRONG_STATE = 10
    BUFFER_TOO_SMALL = 11
    QUEUED = 12
    PANIC = 99


#: ``floorbell_change`` numbers → the kind string a callback receives.
CHANGE_KINDS: dict[int, str] = {1: "event", 2: "ticket", 3: "order", 4: "lagged"}


class FloorbellError(Exception):
    """A floorbell call failed: ``status`` says how, the message says why."""

    def __init__(self, status: Union[Status, int], message: str) -> None:
        try:
            status = Status(status)
        except ValueError:  # a code newer than this binding
            pass
        self.status = status
        self.message = message
        name = status.name if isinstance(status, Status) else str(status)
        super().__init__(f"{message} ({name})" if message else name)


# The C callback type: (user_data, kind, data, length).
_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)


def load_library() -> ctypes.CDLL:
    """Loads libfloorbell and declares the signatures of its functions."""
    errors = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            break
        except OSError as e:
            errors.append(f"{path}: {e}")
    else:
        raise OSError("cannot load libfloorbell: " + "; ".join(errors))

    c_char_p, c_void_p, c_int = ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int
    P = ctypes.POINTER

    def sig(name: str, args: list, res: Any = c_int) -> None:
        f = getattr(lib, name)
        f.argtypes = args
        f.restype = res

    # Static string owned by the library: c_char_p copies it, nothing to free.
    sig("floorbell_version", [], c_char_p)
    sig("floorbell_engine_open", [c_char_p, c_char_p, P(c_void_p)])
    sig("floorbell_engine_close", [c_void_p])
    sig("floorbell_engine_serve", [c_void_p, c_char_p, P(ctypes.c_uint16)])
    sig("floorbell_engine_stop_serving", [c_void_p])
    sig("floorbell_engine_publish_event", [c_void_p, c_char_p, c_char_p])
    sig("floorbell_engine_submit_event", [c_void_p, c_char_p])
    # Strings handed out are read through c_void_p (so ctypes does not copy
    # and lose the pointer) and freed with floorbell_string_free.
    sig("floorbell_engine_events_since", [c_void_p, c_char_p, P(c_void_p), P(ctypes.c_size_t)])
    sig("floorbell_engine_staff_add", [c_void_p, c_char_p, P(c_void_p)])
    sig("floorbell_engine_staff_remove", [c_void_p, c_char_p])
    sig("floorbell_session_open", [c_void_p, c_char_p, P(ctypes.c_uint64)])
    sig("floorbell_session_command", [c_void_p, ctypes.c_uint64, c_char_p, P(c_void_p)])
    sig("floorbell_session_close", [c_void_p, ctypes.c_uint64])
    sig("floorbell_engine_subscribe", [c_void_p, _CALLBACK, c_void_p, P(ctypes.c_uint64)])
    sig("floorbell_engine_unsubscribe", [c_void_p, ctypes.c_uint64])
    sig("floorbell_engine_press_button", [c_void_p])
    sig("floorbell_engine_order_start", [c_void_p, c_char_p, P(c_void_p)])
    sig("floorbell_engine_order_modify", [c_void_p, c_char_p, c_char_p, P(c_void_p)])
    sig("floorbell_engine_order_page", [c_void_p, c_char_p, ctypes.c_bool, P(c_void_p)])
    sig("floorbell_engine_order_clear", [c_void_p, c_char_p, P(c_void_p)])
    sig("floorbell_engine_orders_clear_all", [c_void_p, P(ctypes.c_size_t)])
    sig("floorbell_engine_orders_active", [c_void_p, P(c_void_p)])
    sig("floorbell_string_free", [c_void_p], None)
    sig("floorbell_last_error_length", [], ctypes.c_size_t)
    sig("floorbell_last_error_message", [c_char_p, ctypes.c_size_t], ctypes.c_size_t)
    return lib


_lib: Optional[ctypes.CDLL] = None
_lib_lock = threading.Lock()


def _library() -> ctypes.CDLL:
    global _lib
    with _lib_lock:
        if _lib is None:
            _lib = load_library()
        return _lib


def version() -> str:
    """The library's version, ``MAJOR.MINOR.PATCH``."""
    return _library().floorbell_version().decode("utf-8")


def _last_error(lib: ctypes.CDLL) -> str:
    """This thread's last error message (floorbell keeps one per thread)."""
    n = lib.floorbell_last_error_length()
    if n == 0:
        return ""
    buf = ctypes.create_string_buffer(n + 1)
    written = lib.floorbell_last_error_message(buf, n + 1)
    return buf.raw[:written].decode("utf-8", errors="replace")


def _check(lib: ctypes.CDLL, status: int) -> None:
    if status != Status.OK:
        raise FloorbellError(status, _last_error(lib))


def _take_string(lib: ctypes.CDLL, ptr: ctypes.c_void_p, length: Optional[int] = None) -> str:
    """Copies a string floorbell handed out, then frees it."""
    if not ptr.value:
        return ""
    try:
        raw = ctypes.string_at(ptr.value, length) if length is not None else ctypes.string_at(ptr.value)
        return raw.decode("utf-8")
    finally:
        lib.floorbell_string_free(ptr)


def _json_text(value: Union[dict, str, bytes]) -> Union[str, bytes]:
    """A JSON body: a dict is serialized (UTF-8, not ASCII-escaped); text and
    bytes pass through as given, so a caller can hand floorbell bad JSON."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value


def _utf8(text: Union[str, bytes], what: str) -> bytes:
    """Strings in: UTF-8 bytes (``bytes`` pass through unchanged, so a caller
    can hand floorbell bytes it will reject)."""
    if isinstance(text, bytes):
        return text
    if not isinstance(text, str):
        raise TypeError(f"{what} must be str, not {type(text).__name__}")
    return text.encode("utf-8")


# Set while a subscriber callback runs on this thread (close must not run there).
_in_callback = threading.local()

# Every open engine, closed at interpreter exit so no callback thread calls
# into a finalizing interpreter.
_open_engines: "weakref.WeakSet[Engine]" = weakref.WeakSet()


# Engines collected on a floorbell callback thread (see Engine.__del__):
# the thread closing each, and what its callbacks need until that close
# returns (the native engine may call them until then).
_orphans: list = []
_orphans_lock = threading.Lock()


def _close_orphan(lib: ctypes.CDLL, handle: int, keep: list) -> None:
    try:
        lib.floorbell_engine_close(handle)
    finally:
        with _orphans_lock:
            _orphans.remove(keep)


@atexit.register
def _close_all() -> None:
    for engine in list(_open_engines):
        try:
            engine.close()
        except Exception:
            pass
    with _orphans_lock:
        closing = [keep[0] for keep in _orphans if keep[0].ident is not None]
    for thread in closing:
        thread.join(timeout=30)


class Engine:
    """An open engine: one data directory (``floorbell_engine_open``).

    ``config`` is None or the text of a floorbell TOML config file
    (``qr-token = "…"``, ``admin-token = "…"``, ``tables = 16``, …).
    A context manager: ``with Engine(dir) as fb:`` closes on exit.
    """

    def __init__(self, data_dir: Union[str, os.PathLike], config: Optional[str] = None) -> None:
        self._lib = _library()
        self._handle: Optional[int] = None
        # Calls in progress, so close waits for them (the C contract: close
        # only when no other call on the engine runs).
        # A plain Lock (entered from C, cheaply, on every call) under the
        # Condition that close waits on.
        self._lock = threading.Lock()
        self._state = threading.Condition(self._lock)
        self._busy = 0
        self._closed = False
        # Subscription id → [callback object, still wanted, running]. The
        # ctypes function object must outlive every call floorbell may still
        # make through it. Unsubscribe from any other thread returns only
        # after the callback has returned (the C contract), so the object is
        # let go then. Unsubscribed from inside its own callback, it is still
        # on the stack: it waits in `_retired` until the next callback starts
        # on the (single) callback thread, or the engine closes.
        self._subscriptions: dict[int, list] = {}
        self._retired: list = []
        handle = ctypes.c_void_p()
        _check(
            self._lib,
            self._lib.floorbell_engine_open(
                _utf8(os.fspath(data_dir), "data_dir"),
                None if config is None else _utf8(config, "config"),
                ctypes.byref(handle),
            ),
        )
        self._handle = handle.value
        _open_engines.add(self)

    # -- lifetime ---------------------------------------------------------

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stops serving, ends sessions, commits, frees the handle. Closing
        again does nothing. Must not be called from a subscriber callback."""
        if getattr(_in_callback, "active", False):
            raise FloorbellError(Status.WRONG_STATE, "close() called from a floorbell callback")
        with self._state:
            if self._closed:
                return
            self._closed = True
            while self._busy:
                self._state.wait()
            handle, self._handle = self._handle, None
        _open_engines.discard(self)
        if handle:
            status = self._lib.floorbell_engine_close(handle)
        else:
            status = Status.OK
        self._subscriptions.clear()
        self._retired.clear()
        _check(self._lib, status)

    def __del__(self) -> None:
        if getattr(self, "_closed", True):
            return
        if getattr(_in_callback, "active", False):
            # Collected on a floorbell callback thread (this engine's own, or
            # another's): close would join that thread. Another thread closes
            # it, and the callback objects are kept alive until that close
            # returns: the collector clears this object's dicts once this
            # returns, and the native engine may still call them.
            self._closed = True
            handle, self._handle = self._handle, None
            keep: list = [None, list(self._subscriptions.values()), list(self._retired)]
            thread = threading.Thread(
                target=_close_orphan, args=(self._lib, handle, keep), name="floorbell-close", daemon=True
            )
            keep[0] = thread
            with _orphans_lock:
                _orphans.append(keep)
            try:
                thread.start()
            except RuntimeError:
                pass  # no new thread (interpreter exit): left open, callbacks kept
            return
        try:
            self.close()
        except Exception:
            pass

    def _enter(self) -> int:
        with self._lock:
            if self._closed or not self._handle:
                raise FloorbellError(Status.CLOSED, "the engine is closed")
            self._busy += 1
            return self._handle

    def _leave(self) -> None:
        with self._lock:
            self._busy -= 1
            # Only close waits on the condition, and it sets _closed first.
            if self._busy == 0 and self._closed:
                self._state.notify_all()

    def _call(self, fn: Callable[..., int], *args: Any) -> None:
        handle = self._enter()
        try:
            _check(self._lib, fn(handle, *args))
        finally:
            self._leave()

    # -- QR events (SPEC §1) ---------------------------------------------

    def publish_event(self, event: Union[dict, str, bytes]) -> str:
        """Publishes a QR event and returns its hash (``0x`` + 8 hex
        digits) once it is on disk."""
        out = ctypes.create_string_buffer(11)
        self._call(self._lib.floorbell_engine_publish_event, _utf8(_json_text(event), "event"), out)
        return out.value.decode("ascii")

    def submit_event(self, event: Union[dict, str, bytes]) -> None:
        """Validates a QR event and queues it for the store without waiting
        for the commit (``floorbell_engine_submit_event``). It is published
        with the next group commit; a subscriber hears it (with its hash)
        only then. A bad event raises at once and queues nothing."""
        handle = self._enter()
        try:
            status = self._lib.floorbell_engine_submit_event(handle, _utf8(_json_text(event), "event"))
            if status != Status.QUEUED:  # accepted, not yet on disk: not an error
                _check(self._lib, status)
        finally:
            self._leave()

    def events_since(self, hash: Optional[str] = None) -> dict:
        """The retained events after ``hash`` (None, ``"none"`` or an unknown
        hash: all of them), parsed: ``{"result": True, "data": {"updates": […]}}``."""
        ptr = ctypes.c_void_p()
        length = ctypes.c_size_t()
        self._call(
            self._lib.floorbell_engine_events_since,
            None if hash is None else _utf8(hash, "hash"),
            ctypes.byref(ptr),
            ctypes.byref(length),
        )
        return json.loads(_take_string(self._lib, ptr, length.value))

    # -- serving ------------------------------------------------------------

    def serve(self, listen: str = "127.0.0.1:0") -> int:
        """Serves the HTTP and WebSocket protocols in-process; returns the port."""
        port = ctypes.c_uint16()
        self._call(self._lib.floorbell_engine_serve, _utf8(listen, "listen"), ctypes.byref(port))
        return port.value

    def stop_serving(self) -> None:
        self._call(self._lib.floorbell_engine_stop_serving)

    # -- ticket board (SPEC §2) --------------------------------------------

    def add_staff(self, name: str) -> str:
        """Creates a staff account; returns its token (shown only now)."""
        ptr = ctypes.c_void_p()
        self._call(self._lib.floorbell_engine_staff_add, _utf8(name, "name"), ctypes.byref(ptr))
        return _take_string(self._lib, ptr)

    def remove_staff(self, name: str) -> None:
        self._call(self._lib.floorbell_engine_staff_remove, _utf8(name, "name"))

    def session(self, role: str) -> "Session":
        """Opens a ticket-board session: ``"kiosk"``, ``"staff"`` or ``"display"``."""
        sid = ctypes.c_uint64()
        self._call(self._lib.floorbell_session_open, _utf8(role, "role"), ctypes.byref(sid))
        return Session(self, sid.value, role)

    # -- table-tracking gateway (SPEC §3) -----------------------------------
    #
    # Orders are addressed by ``name`` (while active) or ``uuid``. Each write
    # returns after the change is on disk, with the order as the HTTP API
    # shows it (``{"elapsedTime": …, "uuid": …, "seq": …, "created": …,
    # "orderType": …, "locationName": …, "state": …, "stateStarted": …,
    # "name": …}``). Refusals raise FloorbellError: INVALID_ARGUMENT (HTTP
    # 400), NOT_FOUND (404), CONFLICT (409), with the HTTP message.

    def press_button(self) -> None:
        """Presses the gateway button: for 120 s, one
        ``GET /api/v2/accesstoken/generate`` gets a token."""
        self._call(self._lib.floorbell_engine_press_button)

    def _order_call(self, fn: Callable[..., int], *args: Any) -> dict:
        ptr = ctypes.c_void_p()
        self._call(fn, *args, ctypes.byref(ptr))
        return json.loads(_take_string(self._lib, ptr))["activeorder"]

    def start_order(self, order: Union[dict, str, bytes]) -> dict:
        """Starts an order: ``{"name": "66", "orderType": "TO_GO",
        "locationName": "22"}`` (``locationName`` optional), as
        ``POST /api/v2/activeorders``. Returns the new order."""
        return self._order_call(self._lib.floorbell_engine_order_start, _utf8(_json_text(order), "order"))

    def modify_order(self, key: str, changes: Union[dict, str, bytes]) -> dict:
        """Changes an active order's ``orderType`` and/or ``locationName``
        (``""`` un-locates it), as ``PUT /api/v2/activeorders/{key}``."""
        return self._order_call(
            self._lib.floorbell_engine_order_modify, _utf8(key, "key"), _utf8(_json_text(changes), "changes")
        )

    def page_order(self, key: str, tracking: bool = True) -> dict:
        """Pages the order's guest (``POST /api/v2/activeorders/{key}/page``)."""
        return self._order_call(self._lib.floorbell_engine_order_page, _utf8(key, "key"), bool(tracking))

    def clear_order(self, key: str) -> dict:
        """Clears an order (``DELETE /api/v2/activeorders/{key}``); returns
        it, ``state`` now ``"cleared"``."""
        return self._order_call(self._lib.floorbell_engine_order_clear, _utf8(key, "key"))

    def clear_orders(self) -> int:
        """Clears every active order in one commit; returns how many."""
        count = ctypes.c_size_t()
        self._call(self._lib.floorbell_engine_orders_clear_all, ctypes.byref(count))
        return count.value

    def active_orders(self) -> list:
        """The active orders, oldest first (``GET /api/v2/activeorders``'s items)."""
        ptr = ctypes.c_void_p()
        self._call(self._lib.floorbell_engine_orders_active, ctypes.byref(ptr))
        return json.loads(_take_string(self._lib, ptr))["items"]

    # -- subscribers -------------------------------------------------------

    def subscribe(self, callback: Callable[[str, str], None]) -> int:
        """Calls ``callback(kind, text)`` for every committed change, kind
        ``"event"``, ``"ticket"`` or ``"order"``, on floorbell's callback
        thread. A callback that falls too far behind (``callback-queue-bytes``)
        gets ``("lagged", "N")`` in place of the N changes it missed, and
        resynchronises from there. An exception in the callback is printed to stderr and
        otherwise ignored. Returns the subscription id."""
        if not callable(callback):
            raise TypeError("callback must be callable")
        entry: list = [None, True, False]
        retired = self._retired

        def trampoline(_user: Optional[int], kind: int, data: Optional[int], length: int) -> None:
            # Whatever unsubscribed itself in an earlier call has returned
            # from its function object by now: let it go.
            if retired:
                retired.clear()
            if not entry[1]:
                return  # unsubscribed: a change already in flight
            _in_callback.active = True
            entry[2] = True
            try:
                text = ctypes.string_at(data, length).decode("utf-8", errors="replace") if data else ""
                callback(CHANGE_KINDS.get(kind, str(kind)), text)
            except BaseException:
                traceback.print_exc(file=sys.stderr)
            finally:
                entry[2] = False
                _in_callback.active = False

        entry[0] = _CALLBACK(trampoline)
        sub = ctypes.c_uint64()
        self._call(self._lib.floorbell_engine_subscribe, entry[0], None, ctypes.byref(sub))
        self._subscriptions[sub.value] = entry
        return sub.value

    def unsubscribe(self, subscription: int) -> None:
        """Ends a subscription; its callback is not called after this returns."""
        self._call(self._lib.floorbell_engine_unsubscribe, ctypes.c_uint64(subscription))
        entry = self._subscriptions.pop(subscription, None)
        if entry is not None:
            entry[1] = False
            if entry[2]:
                # Called from inside this very callback (floorbell waits for
                # a running callback otherwise, so it would have returned):
                # its function object is still executing.
                self._retired.append(entry)

    def __repr__(self) -> str:
        return f"<floorbell.Engine {'closed' if self._closed else 'open'}>"


class Session:
    """A ticket-board session, as if a client connected to ``/ws/ROLE``.

    Made by :meth:`Engine.session`; a context manager that closes the session.
    """

    def __init__(self, engine: Engine, session_id: int, role: str) -> None:
        self.engine = engine
        self.id = session_id
        self.role = role
        self._closed = False

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def command(self, text: str) -> str:
        """Sends one command (``"new a@b.c Anna"``, ``"pick 3 TOKEN"``, …)
        and returns the reply, ``success …`` or ``error …``, after the change
        is on disk. An ``error …`` reply is a normal answer, not an exception."""
        ptr = ctypes.c_void_p()
        self.engine._call(
            self.engine._lib.floorbell_session_command,
            ctypes.c_uint64(self.id),
            _utf8(text, "command"),
            ctypes.byref(ptr),
        )
        return _take_string(self.engine._lib, ptr)

    def close(self) -> None:
        """Closes the session (a staff member's table is unpicked). Closing
        again, or after the engine closed, does nothing."""
        if self._closed or self.engine.closed:
            self._closed = True
            return
        self.engine._call(self.engine._lib.floorbell_session_close, ctypes.c_uint64(self.id))
        self._closed = True

    def __repr__(self) -> str:
        return f"<floorbell.Session {self.role} {self.id}>"
