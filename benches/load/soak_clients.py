#!/usr/bin/env python3
"""The Python side of `benches/load/soak.sh`: for --duration seconds, the
clients a venue's floor has besides the publishers and the order consoles
(which soak.sh runs with publish-load and orders-fanout), each checking
every answer it gets:

* a QR-menu poller following the hash chain (SPEC §1.1);
* a ticket round (SPEC §2): a kiosk's `new`, a staff member's `accept` and
  `complete`, at a bounded rate, with the staff console reconnecting now and
  then and a display connecting, reading its state and leaving;
* slow readers: gateway WebSocket clients (SPEC §3.4) that never read, held
  while the order changes fan out, then read to their end;
* HTTP churn and abuse: connections opened and closed without a request,
  431s, 400s, 404s, and requests left half-sent until their 408.

Prints one `SOAK-CLIENTS` line of counts; exits 1 after the first wrong
answer (printing it). Needs `websocket-client` (pip install
websocket-client). Only 127.0.0.1.
"""

import argparse
import collections
import http.client
import json
import re
import socket
import sys
import threading
import time
import urllib.parse

import websocket  # websocket-client

HASH = re.compile(r"0x[0-9a-f]{8}\Z")


class Failed(Exception):
    pass


class Soak:
    def __init__(self, args):
        self.args = args
        url = urllib.parse.urlsplit(args.url)
        if url.hostname != "127.0.0.1":
            raise SystemExit("soak_clients: only 127.0.0.1")
        self.host, self.port = url.hostname, url.port
        self.deadline = time.monotonic() + args.duration
        self.counts = {}
        self.lock = threading.Lock()
        self.failure = None

    def running(self):
        return self.failure is None and time.monotonic() < self.deadline

    def count(self, what, n=1):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + n

    def most(self, what, n):
        with self.lock:
            self.counts[what] = max(self.counts.get(what, 0), n)

    def fail(self, message):
        with self.lock:
            if self.failure is None:
                self.failure = message
        raise Failed(message)

    def http(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=15)

    def call(self, conn, method, path, body=None, headers=None):
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, answer.read()

    def ws(self, path, headers=None, sockopt=()):
        return websocket.create_connection(
            f"ws://{self.host}:{self.port}{path}",
            timeout=15,
            header=headers or [],
            sockopt=sockopt,
        )

    # -- SPEC §1.1: the hash chain -------------------------------------------

    def poller(self):
        conn = self.http()
        last = "none"
        headers = {"token": self.args.qr_token}
        # Hashes seen lately. An answer after a retained hash holds only
        # newer events; after an expired one (the poller fell behind) the
        # whole window again, so seen events may come back, but only as the
        # answer's start.
        recent, recent_order = set(), collections.deque()
        while self.running():
            status, body = self.call(conn, "GET", f"/api/v4/events?hash={last}", headers=headers)
            if status != 200:
                self.fail(f"poll: {status} {body[:200]!r}")
            answer = json.loads(body)
            events = answer.get("data", {}).get("updates") if answer.get("result") else None
            if not isinstance(events, list):
                self.fail(f"poll: no updates: {body[:200]!r}")
            hashes = [e.get("hash", "") for e in events]
            for h in hashes:
                if not HASH.match(h):
                    self.fail(f"poll: bad hash {h!r}")
            if hashes and hashes[0] == last:
                self.fail(f"poll: the events after {last} start with {last}")
            seen = 0
            while seen < len(hashes) and hashes[seen] in recent:
                seen += 1
            if any(h in recent for h in hashes[seen:]):
                self.fail(f"poll: an event seen before in the middle of the events after {last}")
            if seen:
                self.count("poll_resyncs")
            for h in hashes[seen:]:
                recent.add(h)
                recent_order.append(h)
                if len(recent_order) > 300_000:
                    recent.discard(recent_order.popleft())
            if events:
                last = events[-1]["hash"]
            self.count("polls")
            self.count("polled_events", len(events))
            self.most("poll_most_events", len(events))
            time.sleep(0.02)

    # -- SPEC §2: tickets ----------------------------------------------------

    @staticmethod
    def reply(ws, prefix):
        """The next frame starting with `prefix`, skipping broadcasts."""
        while True:
            frame = ws.recv()
            if frame.startswith(prefix):
                return frame
            if frame.startswith(("success", "error")):
                raise Failed(f"expected {prefix!r}, got {frame!r}")

    def tickets(self):
        conn = self.http()
        admin = {"Authorization": f"Bearer {self.args.admin_token}"}
        status, body = self.call(
            conn, "POST", "/api/tickets/staff", json.dumps({"name": "soak-staff"}), admin
        )
        if status != 201:
            self.fail(f"staff account: {status} {body!r}")
        token = json.loads(body)["token"]
        kiosk = self.ws("/ws/kiosk")
        staff = None
        rounds = 0
        while self.running():
            try:
                if staff is None:
                    # Tables 1 and 2 in turn: the table of the console
                    # just closed is freed when the server sees the close.
                    table = rounds // 50 % 2 + 1
                    staff = self.ws("/ws/staff")
                    staff.send(f"pick {table} {token}")
                    self.reply(staff, f"success pick {table}")
                    self.count("staff_connections")
                kiosk.send(f"new soak{rounds % 500}@example.com Soak Visitor {rounds}")
                new = self.reply(kiosk, "success new ")
                ticket = json.loads(new[len("success new "):])
                tid = ticket["id"]
                staff.send(f"accept {tid}")
                self.reply(staff, f"success claimed {tid}")
                staff.send(f"complete {tid}")
                self.reply(staff, f"success complete {tid}")
                self.count("tickets")
                rounds += 1
                if rounds % 50 == 0:
                    staff.close()
                    staff = None
                if rounds % 20 == 0:
                    display = self.ws("/ws/display")
                    display.settimeout(0.2)
                    leave = time.monotonic() + 1
                    try:
                        while time.monotonic() < leave:
                            display.recv()
                    except websocket.WebSocketTimeoutException:
                        pass
                    display.close()
                    self.count("displays")
            except Failed as e:
                self.fail(f"tickets: {e}")
            time.sleep(1.0 / self.args.ticket_rate)
        if staff is not None:
            staff.close()
        kiosk.close()

    # -- SPEC §3.5: slow readers ---------------------------------------------

    def slow_reader(self):
        headers = [f"Authorization: Bearer {self.args.gateway_token}"]
        while self.running():
            # A small receive buffer, as on a stalled tablet's Wi-Fi. The
            # server's socket buffer (up to tcp_wmem's 4 MiB) fills first,
            # then its queue for the client; past --ws-max-queue: 1013.
            ws = self.ws(
                "/api/v2/websocket",
                headers,
                sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),),
            )
            end = min(self.deadline, time.monotonic() + self.args.slow_hold)
            while self.running() and time.monotonic() < end:
                time.sleep(0.2)
            # Then read what is there for a few seconds (the changes go on
            # arriving) and leave: the stream's messages in seq order, or
            # its end.
            ws.settimeout(1)
            frames, last_seq, leave = 0, 0, time.monotonic() + 5
            outcome = "slow_readers_kept"
            try:
                while time.monotonic() < leave:
                    frame = ws.recv_frame()
                    if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                        data = frame.data
                        code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                        if code != 1013:
                            self.fail(f"slow reader closed with {code}, not 1013")
                        outcome = "slow_readers_closed_1013"
                        break
                    if frame.opcode != websocket.ABNF.OPCODE_TEXT:
                        continue
                    message = json.loads(frame.data)
                    if message.get("type") != "ACTIVE_ORDERS":
                        if message["seq"] <= last_seq:
                            self.fail(f"slow reader: seq {message['seq']} after {last_seq}")
                        last_seq = message["seq"]
                    frames += 1
            except websocket.WebSocketTimeoutException:
                pass
            except (websocket.WebSocketConnectionClosedException, ConnectionError):
                outcome = "slow_readers_dropped"
            self.count(outcome)
            self.count("slow_reader_frames", frames)
            ws.close()

    # -- SPEC §0: churn and bad requests -------------------------------------

    def raw(self):
        return socket.create_connection((self.host, self.port), timeout=15)

    def expect_status(self, request, status, what):
        s = self.raw()
        s.sendall(request)
        head = s.recv(4096)
        s.close()
        if not head.startswith(f"HTTP/1.1 {status} ".encode()):
            self.fail(f"{what}: expected {status}, got {head[:120]!r}")
        self.count(what)

    def abuse(self):
        half_open = []
        admin = f"Authorization: Bearer {self.args.admin_token}\r\n".encode()
        while self.running():
            s = self.raw()
            s.close()
            self.count("connect_close")
            self.expect_status(
                b"GET /api/v2 HTTP/1.1\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n", 431, "431s"
            )
            body = b'{"code":"waiter_call","table":'
            self.expect_status(
                b"POST /api/v4/events HTTP/1.1\r\n" + admin
                + b"Content-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\n\r\n" + body,
                400,
                "400s",
            )
            self.expect_status(b"GET /no/such/path HTTP/1.1\r\n\r\n", 404, "404s")
            # Half-sent requests, each replaced once it has its 408.
            while len(half_open) < 16:
                h = self.raw()
                h.sendall(b"GET /api/v2 HTTP/1.1\r\nHost: x\r\n")
                h.setblocking(False)
                half_open.append(h)
            for h in list(half_open):
                try:
                    head = h.recv(4096)
                except BlockingIOError:
                    continue
                if not head.startswith(b"HTTP/1.1 408 "):
                    self.fail(f"half-sent request: expected 408, got {head[:120]!r}")
                self.count("408s")
                h.close()
                half_open.remove(h)
            time.sleep(1.0 / self.args.abuse_rate)
        for h in half_open:
            h.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--qr-token", required=True)
    p.add_argument("--admin-token", required=True)
    p.add_argument("--gateway-token", required=True)
    p.add_argument("--duration", type=float, default=600)
    p.add_argument("--ticket-rate", type=float, default=5, help="ticket rounds a second")
    p.add_argument("--abuse-rate", type=float, default=20, help="bad-request rounds a second")
    p.add_argument("--slow-readers", type=int, default=4)
    p.add_argument("--slow-hold", type=float, default=120, help="seconds a slow reader reads nothing")
    args = p.parse_args()
    soak = Soak(args)
    workers = [soak.poller, soak.tickets, soak.abuse] + [soak.slow_reader] * args.slow_readers

    def run(work):
        try:
            work()
        except Failed:
            pass
        except Exception as e:  # a transport error is a failure too
            try:
                soak.fail(f"{work.__name__}: {type(e).__name__}: {e}")
            except Failed:
                pass

    threads = [threading.Thread(target=run, args=(w,), daemon=True) for w in workers]
    for t in threads:
        t.start()
    end = time.monotonic() + args.duration + 60
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    with soak.lock:
        counts = " ".join(f"{k}={v}" for k, v in sorted(soak.counts.items()))
    print(f"SOAK-CLIENTS {counts}", flush=True)
    if soak.failure is not None:
        print(f"soak_clients: {soak.failure}", file=sys.stderr)
        return 1
    if any(t.is_alive() for t in threads):
        print("soak_clients: a client did not stop", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
