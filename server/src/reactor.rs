//! The event loop: one `mio::Poll` per thread, shaped like mio's own
//! `tcp_server` example — tokens are slab keys, every socket is read and
//! written until `WouldBlock`, and stray events are normal. It knows HTTP only
//! through [`crate::http`] and [`crate::api`], and other threads reach it only
//! through its [`Mailbox`] (a channel plus the loop's `mio::Waker`).
//!
//! Several reactors run side by side, each with its own `SO_REUSEPORT`
//! listening socket on the same port, so the kernel spreads connections over
//! them and no connection ever moves between threads (see README, "Why one
//! reactor per core").

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::api::{self, Action};
use crate::engine::{now_ms, Engine, Job, Outcome, Reply, TicketChange};
use crate::fanout::{conn_id, split_conn_id, Delivery, Dest, WsRole};
use crate::http::{self, DateCache, Head, HeadError, Method, StreamedEvents};
use crate::ws::{self, close_code, WsEvent, WsReader};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// A request head begun but not complete within this is answered 408 (SPEC §0).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A keep-alive connection idle this long is closed quietly (SPEC §0).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often deadlines are checked: timeouts fire up to this much late.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// Stop reading a connection's requests while this much of its output is
/// unsent: a client that pipelines without reading cannot grow our memory.
const MAX_PENDING_OUTPUT: usize = 256 * 1024;
/// A connection's read buffer never holds more than one largest request plus
/// a read's worth.
const MAX_INPUT: usize = http::MAX_HEAD_BYTES + http::MAX_BODY_BYTES + READ_CHUNK;
/// Bytes read per `read` call; also the size of the reactor's shared scratch.
const READ_CHUNK: usize = 16 * 1024;
/// Commands one WebSocket connection may have awaiting their commit before
/// the reactor stops reading it (a console sends one per click).
const MAX_IN_FLIGHT: usize = 64;
/// How long a WebSocket client that is being closed may take to read its
/// close frame before the connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// After a shutdown request, how long answers still owed may take.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Output buffers above this are released once sent, so a connection that
/// once got a large answer does not keep the memory while idle.
const KEEP_OUTPUT_CAPACITY: usize = 64 * 1024;
/// How much of a long poll answer is copied into the output at a time.
const STREAM_CHUNK: usize = 64 * 1024;

/// Messages other threads send a reactor.
#[derive(Debug)]
pub enum ReactorMsg {
    /// A change submitted by connection `token` is committed (or failed).
    Completed {
        /// Slab key of the connection.
        token: usize,
        /// Unique id of the connection (the key may have been reused).
        conn_id: u64,
        /// What happened.
        outcome: Outcome,
    },
    /// Frames of a committed ticket-board change for this reactor's
    /// WebSocket connections (one `Arc` shared by every reactor).
    Deliver(Arc<Delivery>),
    /// Stop accepting, finish what is owed, exit.
    Shutdown,
}

/// How other threads reach a reactor.
pub struct Mailbox {
    tx: Sender<ReactorMsg>,
    waker: Waker,
}

impl Mailbox {
    /// Queues a message without waking the loop (batch, then [`Mailbox::wake`]).
    pub fn post(&self, msg: ReactorMsg) {
        let _ = self.tx.send(msg);
    }

    /// Wakes the loop so it reads its messages.
    pub fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            tracing::error!(error = %e, "cannot wake a reactor");
        }
    }
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mailbox")
    }
}

/// Counts open connections across all reactors (SPEC §0's cap).
#[derive(Debug)]
pub struct ConnectionCap {
    open: AtomicUsize,
    max: usize,
}

impl ConnectionCap {
    /// A cap of `max` connections.
    pub fn new(max: usize) -> Self {
        ConnectionCap {
            open: AtomicUsize::new(0),
            max,
        }
    }

    fn try_acquire(&self) -> bool {
        // Relaxed: a counter, no data is published through it.
        if self.open.fetch_add(1, Ordering::Relaxed) < self.max {
            true
        } else {
            self.open.fetch_sub(1, Ordering::Relaxed);
            false
        }
    }

    fn release(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An answer that waits for the writer thread.
#[derive(Debug, Clone, Copy)]
struct Awaiting {
    keep_alive: bool,
}

/// What an upgraded connection is (SPEC §2).
struct WsConn {
    /// The endpoint it came in on.
    role: WsRole,
    /// Reassembly of fragmented messages.
    reader: WsReader,
    /// Receives broadcasts (set when its initial state is delivered).
    active: bool,
    /// Commands sent to the board whose replies are not delivered yet: at
    /// [`MAX_IN_FLIGHT`] the connection is not read until some are, so a
    /// client that floods commands cannot grow the writer's queue without
    /// bound while the disk is slow.
    in_flight: usize,
    /// `/api/v2/websocket` only: until when the client may authenticate
    /// (SPEC §3.4); `None` once it has (or for the ticket endpoints).
    auth_deadline: Option<Instant>,
}

/// One client connection.
struct Conn {
    stream: TcpStream,
    /// The client's address (a gateway token's `ip_address`, SPEC §3.2).
    peer: Option<std::net::IpAddr>,
    /// Unique within the reactor, so a late completion for a closed connection
    /// whose slab key was reused is recognised and dropped.
    id: u64,
    /// Unparsed input; empty (and unallocated) between requests.
    input: Vec<u8>,
    /// Output not yet written, from `out_pos`.
    out: Vec<u8>,
    out_pos: usize,
    /// A change of this connection is with the writer: read and parse nothing
    /// more until its answer is written (answers keep request order).
    awaiting: Option<Awaiting>,
    /// `100 Continue` was sent for the request being received.
    continue_sent: bool,
    /// When the first byte of the incomplete request arrived.
    request_started: Option<Instant>,
    /// Last read or write progress.
    last_active: Instant,
    /// The peer sent FIN: answer what is complete, then close.
    peer_closed: bool,
    /// Close once the output is written.
    close_after_write: bool,
    /// The socket may hold bytes not read yet: set by a readable event,
    /// cleared by a short read or WouldBlock. With edge-triggered readiness
    /// a later arrival raises a new event, so a connection that was drained
    /// is not read again until then (answering a commit or a broadcast costs
    /// no `read` that would only say WouldBlock).
    unread: bool,
    /// The peer shut down its side (EPOLLRDHUP): read until end of file even
    /// after a short read, so a request sent with its FIN is answered and the
    /// connection closed at once, not after the idle timeout.
    read_closed: bool,
    /// Shared frames to write after `out` (WebSocket connections); the front
    /// one may be partly written already.
    queue: VecDeque<Bytes>,
    /// Bytes in `queue` (bounded by `--ws-max-queue`, SPEC §3.5).
    queued: usize,
    /// Of `queued`, the bytes of the client's initial state (a staff
    /// console's `taken` and one `new` per waiting ticket, a display's
    /// board) not written yet: they do not count against the bound, which
    /// is for a client that falls behind the changes after it.
    initial: usize,
    /// The front frame of `queue` is partly written.
    queue_front_started: bool,
    /// Set once upgraded to WebSocket.
    ws: Option<Box<WsConn>>,
    /// The rest of a long poll answer, copied into `out` as it drains;
    /// nothing else is written or parsed until it is all out.
    streamed: Option<Box<StreamedEvents>>,
}

impl Conn {
    /// Output not yet written.
    fn unsent(&self) -> usize {
        self.out.len() - self.out_pos + self.queued + self.streamed.as_ref().map_or(0, |s| s.left())
    }
}

/// One event loop and its connections.
pub struct Reactor {
    poll: Poll,
    listener: Option<TcpListener>,
    mailbox: Arc<Mailbox>,
    rx: Receiver<ReactorMsg>,
    conns: Slab<Conn>,
    engine: Arc<Engine>,
    cap: Arc<ConnectionCap>,
    date: DateCache,
    next_conn_id: u64,
    /// Reads land here first; only a partial request is copied into the
    /// connection, so an idle connection holds no input buffer.
    scratch: Box<[u8]>,
    shutting_down: Option<Instant>,
    /// The time when the current poll returned: timestamps for the 10 s and
    /// 60 s timeouts need no finer clock, and reading it once per wake-up
    /// keeps clock reads off the per-request path.
    now: Instant,
    /// Working memory of the request handlers.
    handler_scratch: api::Scratch,
    /// Decoded WebSocket events of the current read (kept, like the scratch).
    ws_events: Vec<WsEvent>,
    /// Connections written to by the delivery being handled (kept buffer).
    touched: Vec<usize>,
    /// This reactor's index (part of every [`crate::fanout::ConnId`]).
    index: usize,
    /// `--ws-max-queue`.
    ws_max_queue: usize,
}

impl Reactor {
    /// A reactor around an already bound, non-blocking listening socket.
    ///
    /// # Errors
    ///
    /// When the OS refuses the poll instance or the waker.
    pub fn new(
        index: usize,
        listener: std::net::TcpListener,
        engine: Arc<Engine>,
        cap: Arc<ConnectionCap>,
    ) -> io::Result<(Reactor, Arc<Mailbox>)> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let mailbox = Arc::new(Mailbox { tx, waker });
        let ws_max_queue = usize::try_from(engine.config().ws_max_queue).unwrap_or(usize::MAX);
        let reactor = Reactor {
            poll,
            listener: Some(listener),
            mailbox: Arc::clone(&mailbox),
            rx,
            conns: Slab::new(),
            engine,
            cap,
            date: DateCache::default(),
            next_conn_id: 0,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            shutting_down: None,
            now: Instant::now(),
            handler_scratch: api::Scratch::default(),
            ws_events: Vec::new(),
            touched: Vec::new(),
            ws_max_queue,
            index,
        };
        Ok((reactor, mailbox))
    }

    /// Runs until a [`ReactorMsg::Shutdown`] has been handled.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now() + SWEEP_INTERVAL;
        loop {
            let timeout = next_sweep.saturating_duration_since(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, "poll failed; reactor stops");
                break;
            }
            self.now = Instant::now();
            self.date.refresh(SystemTime::now());
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => self.read_mailbox(),
                    Token(key) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            if let Some(conn) = self.conns.get_mut(key) {
                                conn.unread = true;
                                conn.read_closed |= event.is_read_closed();
                            }
                        }
                        self.drive(key)
                    }
                }
            }
            let now = Instant::now();
            if now >= next_sweep {
                next_sweep = now + SWEEP_INTERVAL;
                self.sweep(now);
            }
            if let Some(since) = self.shutting_down {
                let owed = self.conns.iter().any(|(_, c)| {
                    c.awaiting.is_some() || c.out_pos < c.out.len() || c.streamed.is_some()
                });
                if !owed || since.elapsed() > SHUTDOWN_GRACE {
                    break;
                }
            }
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.close(key);
        }
    }

    fn accept_all(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let (mut stream, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: log and wait for the next readiness
                    // rather than spinning.
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            };
            if !self.cap.try_acquire() {
                // Best effort, never blocking: the socket is fresh, so a small
                // answer fits its send buffer.
                let body = br#"{"status":503,"message":"too many connections"}"#;
                let mut out = Vec::new();
                http::write_response(&mut out, 503, body, true, false, &self.date);
                let _ = stream.write(&out);
                continue;
            }
            let _ = stream.set_nodelay(true);
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                tracing::warn!(error = %e, "cannot register a connection");
                self.cap.release();
                continue;
            }
            self.next_conn_id += 1;
            entry.insert(Conn {
                stream,
                peer: Some(peer.ip()),
                id: self.next_conn_id,
                input: Vec::new(),
                out: Vec::new(),
                out_pos: 0,
                awaiting: None,
                continue_sent: false,
                request_started: None,
                last_active: self.now,
                peer_closed: false,
                close_after_write: false,
                unread: true,
                read_closed: false,
                queue: VecDeque::new(),
                queued: 0,
                initial: 0,
                queue_front_started: false,
                streamed: None,
                ws: None,
            });
        }
    }

    fn read_mailbox(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                ReactorMsg::Completed {
                    token,
                    conn_id,
                    outcome,
                } => {
                    let Some(conn) = self.conns.get_mut(token) else {
                        continue;
                    };
                    if conn.id != conn_id {
                        continue;
                    }
                    let Some(awaiting) = conn.awaiting.take() else {
                        continue;
                    };
                    let (status, body) = api::answer(outcome);
                    let close = !awaiting.keep_alive;
                    http::write_response(&mut conn.out, status, &body, close, false, &self.date);
                    conn.close_after_write |= close;
                    self.drive(token);
                }
                ReactorMsg::Deliver(delivery) => self.deliver(&delivery),
                ReactorMsg::Shutdown => {
                    if let Some(mut listener) = self.listener.take() {
                        let _ = self.poll.registry().deregister(&mut listener);
                    }
                    self.shutting_down.get_or_insert_with(Instant::now);
                    // WebSocket clients are told why (1001) before the close.
                    let keys: Vec<usize> = self
                        .conns
                        .iter()
                        .filter(|(_, c)| c.ws.is_some())
                        .map(|(k, _)| k)
                        .collect();
                    for key in keys {
                        queue_close(
                            &mut self.conns[key],
                            close_code::GOING_AWAY,
                            "server shutting down",
                        );
                        self.drive(key);
                    }
                }
            }
        }
    }

    /// Makes all the progress connection `key` allows: write what is owed,
    /// answer what is complete, read what has arrived; until it would block.
    fn drive(&mut self, key: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if flush(conn, self.now).is_err() {
                return self.close(key);
            }
            let unsent = conn.unsent();
            if conn.close_after_write {
                if unsent == 0 {
                    return self.close(key);
                }
                return; // wait for writable
            }
            if conn.awaiting.is_some() || unsent > MAX_PENDING_OUTPUT || conn.streamed.is_some() {
                return; // resumed by the completion or the next writable event
            }
            // Answer requests already buffered (pipelining).
            if !conn.input.is_empty() {
                let mut input = std::mem::take(&mut conn.input);
                let out_before = self.conns[key].out.len();
                let used = self.process(key, &mut input);
                let conn = &mut self.conns[key];
                // An answer written without using input (a refusal decided by
                // the head, a `100 Continue`) must be flushed too: a head that
                // arrived in two reads once left it unsent for ever.
                let answered = conn.out.len() > out_before || conn.close_after_write;
                input.drain(..used);
                if used > 0 && !input.is_empty() {
                    conn.request_started = Some(self.now);
                }
                conn.input = input;
                if conn.input.is_empty() {
                    conn.request_started = None;
                    conn.input = Vec::new(); // release the buffer while idle
                }
                if used > 0 || answered {
                    continue; // flush, then maybe more
                }
            }
            let conn = &mut self.conns[key];
            if conn.peer_closed {
                if conn.unsent() == 0 {
                    return self.close(key);
                }
                return;
            }
            if conn.input.len() >= MAX_INPUT {
                return; // process() answered or will answer; never read past the cap
            }
            if !conn.unread
                || conn
                    .ws
                    .as_ref()
                    .is_some_and(|w| w.in_flight >= MAX_IN_FLIGHT)
            {
                return;
            }
            // Read what has arrived.
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    conn.peer_closed = true;
                    continue;
                }
                Ok(n) => {
                    conn.last_active = self.now;
                    // A short read drained the socket: with edge-triggered
                    // readiness, bytes that arrive later raise a new event, so
                    // the read that would only say WouldBlock is skipped (one
                    // syscall less per request; nginx does the same).
                    conn.unread = n == self.scratch.len() || conn.read_closed;
                    if conn.input.is_empty() {
                        // Fast path: answer straight from the scratch buffer and
                        // keep only a partial request.
                        let mut scratch = std::mem::take(&mut self.scratch);
                        let used = self.process(key, &mut scratch[..n]);
                        let conn = &mut self.conns[key];
                        if used < n {
                            conn.input.extend_from_slice(&scratch[used..n]);
                            conn.request_started.get_or_insert(self.now);
                        }
                        self.scratch = scratch;
                    } else {
                        let scratch = &self.scratch[..n];
                        conn.input.extend_from_slice(scratch);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.unread = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(key),
            }
        }
    }

    /// Answers the complete requests at the start of `buf`; returns how many
    /// bytes they took. Stops at an incomplete request, at a change handed to
    /// the writer, or when the answer closes the connection.
    fn process(&mut self, key: usize, buf: &mut [u8]) -> usize {
        let mut used = 0;
        let now = now_ms();
        loop {
            let conn = &mut self.conns[key];
            if conn.awaiting.is_some()
                || conn.close_after_write
                || conn.unsent() > MAX_PENDING_OUTPUT
                || conn.streamed.is_some()
            {
                return used;
            }
            if let Some(ws) = conn.ws.as_ref() {
                if ws.in_flight >= MAX_IN_FLIGHT {
                    return used;
                }
                return used + self.process_ws(key, &mut buf[used..]);
            }
            let rest = &mut buf[used..];
            if rest.is_empty() {
                return used;
            }
            let head = match http::parse_head(rest) {
                Ok(Some(head)) => head,
                Ok(None) => return used,
                Err(e) => {
                    let (status, message) = e.status();
                    let path = sniff_path(rest);
                    let body = http::error_body(path, status, message);
                    http::write_response(&mut conn.out, status, &body, true, false, &self.date);
                    conn.close_after_write = true;
                    if e == HeadError::TooLarge {
                        tracing::debug!("request head over the limit");
                    }
                    return used;
                }
            };
            // Refusals decided by the head alone are answered before the body
            // arrives, and close the connection (the body is not read).
            let early = api::check_body_size(&head, rest)
                .or_else(|| api::check_auth(&self.engine, &head, rest, conn.peer));
            if let Some(Action::Respond { status, body }) = early {
                let head_only = head.method == Method::Head;
                http::write_response(
                    &mut conn.out,
                    status,
                    body.as_slice(),
                    true,
                    head_only,
                    &self.date,
                );
                conn.close_after_write = true;
                return used;
            }
            let total = head.head_len + head.body_len;
            if rest.len() < total {
                if head.expect_continue && !conn.continue_sent {
                    conn.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    conn.continue_sent = true;
                }
                return used;
            }
            conn.continue_sent = false;
            let action = api::handle(
                &self.engine,
                &head,
                &mut rest[..total],
                now,
                &mut self.handler_scratch,
            );
            used += total;
            self.act(key, &head, action);
        }
    }

    /// Carries out what the API decided for one request.
    fn act(&mut self, key: usize, head: &Head, action: Action) {
        let conn = &mut self.conns[key];
        let close = !head.keep_alive || conn.peer_closed;
        let head_only = head.method == Method::Head;
        match action {
            Action::Respond { status, body } => {
                http::write_response(
                    &mut conn.out,
                    status,
                    body.as_slice(),
                    close,
                    head_only,
                    &self.date,
                );
                conn.close_after_write |= close;
            }
            Action::Asset(asset) => {
                crate::pages::write(&mut conn.out, &asset, close, head_only, &self.date);
                conn.close_after_write |= close;
            }
            Action::Events => {
                conn.streamed = http::write_events(
                    &mut conn.out,
                    &mut self.handler_scratch.events,
                    close,
                    head_only,
                    &self.date,
                )
                .map(Box::new);
                conn.close_after_write |= close;
            }
            Action::Upgrade {
                role,
                accept,
                authorization,
            } => {
                conn.out.extend_from_slice(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
                );
                conn.out.extend_from_slice(accept.as_bytes());
                conn.out.extend_from_slice(b"\r\n\r\n");
                conn.ws = Some(Box::new(WsConn {
                    role,
                    reader: WsReader::default(),
                    active: false,
                    in_flight: 0,
                    auth_deadline: None,
                }));
                conn.request_started = None;
                let id = conn_id(self.index, key, conn.id);
                if role != WsRole::Orders {
                    self.engine
                        .ticket_change(TicketChange::Opened { conn: id, role });
                    return;
                }
                // SPEC §3.4: a header on the handshake, or the first frame.
                match authorization {
                    Some(value) => {
                        let ip = conn.peer.map(|p| p.to_string());
                        if self.engine.gateway_auth(&value, ip.as_deref()).is_some() {
                            self.engine.orders_subscribe(id);
                        } else {
                            queue_close(conn, close_code::POLICY, "invalid access token");
                        }
                    }
                    None => {
                        let timeout = self.engine.config().ws_auth_timeout;
                        if let Some(ws) = conn.ws.as_mut() {
                            ws.auth_deadline = Some(self.now + timeout);
                        }
                    }
                }
            }
            Action::Write(request) => {
                let reply = Reply::Reactor {
                    mailbox: Arc::clone(&self.mailbox),
                    token: key,
                    conn_id: conn.id,
                };
                conn.awaiting = Some(Awaiting { keep_alive: !close });
                if let Err(job) = self.engine.submit(Job { request, reply }) {
                    drop(job);
                    conn.awaiting = None;
                    let body = floorbell_core::qr::error_json("the server is shutting down");
                    http::write_response(&mut conn.out, 503, &body, true, head_only, &self.date);
                    conn.close_after_write = true;
                }
            }
        }
    }

    /// Fires the request and idle timeouts.
    fn sweep(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            if conn.awaiting.is_some() {
                continue;
            }
            if let Some(ws) = conn.ws.as_mut() {
                // A WebSocket client may stay idle for ever; one that does
                // not read its close frame is dropped after a grace period.
                if conn.close_after_write && now.duration_since(conn.last_active) >= CLOSE_GRACE {
                    expired.push((key, true));
                } else if ws.auth_deadline.is_some_and(|d| now >= d) {
                    // SPEC §3.4: silence past --ws-auth-timeout.
                    ws.auth_deadline = None;
                    queue_close(conn, close_code::POLICY, "authentication timeout");
                    expired.push((key, false));
                }
                continue;
            }
            if conn.streamed.is_some() {
                // A long answer still going out: nothing may be written
                // before its end, and a client that stopped taking it is
                // dropped once idle.
                if now.duration_since(conn.last_active) >= IDLE_TIMEOUT {
                    expired.push((key, true));
                }
                continue;
            }
            if conn.close_after_write {
                // A last answer the client does not take (it stopped reading,
                // its window is full): dropped after a grace period without
                // progress, like a WebSocket close frame. Neither timeout
                // below covers it.
                if now.duration_since(conn.last_active) >= CLOSE_GRACE {
                    expired.push((key, true));
                }
                continue;
            }
            if let Some(started) = conn.request_started {
                if now.duration_since(started) >= REQUEST_TIMEOUT {
                    let path = sniff_path(&conn.input);
                    let body =
                        http::error_body(path, 408, "request not completed within 10 seconds");
                    http::write_response(&mut conn.out, 408, &body, true, false, &self.date);
                    conn.close_after_write = true;
                    conn.input = Vec::new();
                    expired.push((key, false));
                    continue;
                }
            } else if now.duration_since(conn.last_active) >= IDLE_TIMEOUT {
                expired.push((key, true));
            }
        }
        for (key, quietly) in expired {
            if quietly {
                self.close(key);
            } else {
                self.drive(key);
            }
        }
    }

    fn close(&mut self, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.cap.release();
            if let Some(ws) = conn.ws.as_ref().filter(|w| w.role != WsRole::Orders) {
                let id = conn_id(self.index, key, conn.id);
                self.engine.ticket_change(TicketChange::Closed {
                    conn: id,
                    role: ws.role,
                });
            }
        }
    }

    /// Writes what connection `key` owes, without reading (a broadcast must
    /// not cost every receiver a `read` that would only say WouldBlock).
    fn write_out(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if flush(conn, self.now).is_err() || (conn.close_after_write && conn.unsent() == 0) {
            self.close(key);
        }
    }

    /// Handles the WebSocket frames at the start of `buf`; returns the bytes
    /// they took.
    fn process_ws(&mut self, key: usize, buf: &mut [u8]) -> usize {
        let conn = &mut self.conns[key];
        let Some(ws) = conn.ws.as_mut() else { return 0 };
        let role = ws.role;
        let mut events = std::mem::take(&mut self.ws_events);
        let used = ws.reader.decode(buf, &mut events);
        let id = conn_id(self.index, key, conn.id);
        for event in events.drain(..) {
            match event {
                WsEvent::Text(text) if role == WsRole::Orders => self.orders_text(key, id, &text),
                WsEvent::Text(text) => {
                    if let Some(ws) = self.conns[key].ws.as_mut() {
                        ws.in_flight += 1;
                    }
                    self.engine.ticket_change(TicketChange::Text {
                        conn: id,
                        role,
                        text,
                    });
                }
                WsEvent::Pong(frame) => {
                    let conn = &mut self.conns[key];
                    queue_frame(conn, frame, self.ws_max_queue);
                }
                WsEvent::Closed(code) => {
                    // Echo the client's code (RFC 6455 §5.5.1), then close.
                    queue_close(&mut self.conns[key], code.unwrap_or(close_code::NORMAL), "");
                }
                WsEvent::Fail(code, reason) => {
                    tracing::debug!(code, reason, "closing a WebSocket client");
                    let conn = &mut self.conns[key];
                    let authenticating = conn
                        .ws
                        .as_ref()
                        .is_some_and(|ws| ws.auth_deadline.is_some());
                    if authenticating && code == close_code::UNSUPPORTED {
                        // Anything but the token frame fails authentication
                        // (SPEC §3.4: 1008), a binary frame included.
                        queue_close(
                            conn,
                            close_code::POLICY,
                            "expected {\"accesstoken\":\"TOKEN\"}",
                        );
                    } else {
                        queue_close(conn, code, reason);
                    }
                }
            }
        }
        self.ws_events = events;
        used
    }

    /// A text frame on `/api/v2/websocket`: before authentication it must be
    /// `{"accesstoken":"TOKEN"}` with a valid token, or the connection is
    /// closed with 1008 at once (SPEC §3.4); afterwards frames are ignored
    /// (the stream is one-way).
    fn orders_text(&mut self, key: usize, id: u64, text: &str) {
        let conn = &mut self.conns[key];
        let Some(ws) = conn.ws.as_mut() else { return };
        if ws.auth_deadline.is_none() {
            return;
        }
        ws.auth_deadline = None;
        let token = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("accesstoken")?.as_str().map(str::to_owned));
        let ip = conn.peer.map(|p| p.to_string());
        match token {
            Some(t)
                if self
                    .engine
                    .gateway_principal(t.as_bytes(), ip.as_deref())
                    .is_some() =>
            {
                self.engine.orders_subscribe(id);
            }
            Some(_) => queue_close(conn, close_code::POLICY, "invalid access token"),
            None => queue_close(
                conn,
                close_code::POLICY,
                "expected {\"accesstoken\":\"TOKEN\"}",
            ),
        }
    }

    /// Queues a committed change's frames to this reactor's receivers and
    /// writes them out.
    fn deliver(&mut self, delivery: &Delivery) {
        let mine = |id: u64| {
            let (reactor, key, serial) = split_conn_id(id);
            (reactor == self.index).then_some((key, serial))
        };
        if let Some((key, serial)) = delivery.activate.and_then(mine) {
            if let Some(conn) = self.conns.get_mut(key).filter(|c| c.id as u32 == serial) {
                if let Some(ws) = conn.ws.as_mut() {
                    ws.active = true;
                }
            }
        }
        let mut resume = None;
        if let Some((key, serial)) = delivery.reply_to.and_then(mine) {
            if let Some(conn) = self.conns.get_mut(key).filter(|c| c.id as u32 == serial) {
                if let Some(ws) = conn.ws.as_mut() {
                    // Reading stopped at the bound resumes below it.
                    let was = ws.in_flight;
                    ws.in_flight = was.saturating_sub(1);
                    if was >= MAX_IN_FLIGHT && ws.in_flight < MAX_IN_FLIGHT {
                        resume = Some(key);
                    }
                }
            }
        }
        let mut touched = std::mem::take(&mut self.touched);
        for (dest, frame) in &delivery.messages {
            match *dest {
                Dest::Conn(id) => {
                    let Some((key, serial)) = mine(id) else {
                        continue;
                    };
                    if let Some(conn) = self
                        .conns
                        .get_mut(key)
                        .filter(|c| c.id as u32 == serial && c.ws.is_some())
                    {
                        if delivery.activate == Some(id) {
                            queue_initial(conn, frame.clone());
                        } else {
                            queue_frame(conn, frame.clone(), self.ws_max_queue);
                        }
                        touched.push(key);
                    }
                }
                Dest::AllStaff | Dest::AllStaffExcept(_) | Dest::AllDisplays | Dest::AllOrders => {
                    let (want, except) = match *dest {
                        Dest::AllDisplays => (WsRole::Display, None),
                        Dest::AllOrders => (WsRole::Orders, None),
                        Dest::AllStaffExcept(id) => (WsRole::Staff, mine(id)),
                        _ => (WsRole::Staff, None),
                    };
                    for (key, conn) in self.conns.iter_mut() {
                        let Some(ws) = conn.ws.as_ref() else { continue };
                        if ws.role != want || !ws.active || except == Some((key, conn.id as u32)) {
                            continue;
                        }
                        queue_frame(conn, frame.clone(), self.ws_max_queue);
                        touched.push(key);
                    }
                }
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for &key in &touched {
            self.write_out(key);
        }
        touched.clear();
        self.touched = touched;
        if let Some(key) = resume {
            self.drive(key);
        }
    }
}

/// The path of a request line, as far as it can be read, for the error shape.
fn sniff_path(buf: &[u8]) -> &[u8] {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or(b"");
    let mut parts = line.split(|&b| b == b' ');
    let _method = parts.next();
    let target = parts.next().unwrap_or(b"");
    target.split(|&b| b == b'?').next().unwrap_or(b"")
}

/// Queues a close frame after what is queued and stops the connection's
/// input; once written, the connection closes. A connection already closing
/// keeps its first close frame.
fn queue_close(conn: &mut Conn, code: u16, reason: &str) {
    if conn.close_after_write {
        return;
    }
    let frame = ws::close_frame(code, reason);
    conn.queued += frame.len();
    conn.queue.push_back(frame);
    conn.close_after_write = true;
}

/// Queues a shared frame for a WebSocket client. Past `max_queue` unsent
/// bytes the client is not keeping up: its backlog is dropped and it is
/// closed with 1013 (SPEC §3.5), so it never holds memory without bound or
/// slows anyone else.
fn queue_frame(conn: &mut Conn, frame: Bytes, max_queue: usize) {
    if conn.close_after_write {
        return;
    }
    // A frame that arrives when nothing is waiting is always taken, even if
    // it alone passes the bound (a large ACTIVE_ORDERS snapshot): only a
    // backlog says the client is slow, and refusing the snapshot would close
    // every reconnect too. The initial state does not count either.
    let backlog = conn.queued - conn.initial;
    if backlog > 0 && backlog + frame.len() > max_queue {
        // Keep a partly written frame whole, drop the rest.
        let partial = !conn.queue.is_empty() && conn.queue_front_started;
        let front = if partial {
            conn.queue.pop_front()
        } else {
            None
        };
        conn.queue.clear();
        conn.queued = 0;
        conn.initial = 0;
        if let Some(f) = front {
            conn.queued += f.len();
            conn.queue.push_back(f);
        }
        queue_close(
            conn,
            close_code::TRY_AGAIN_LATER,
            "client too slow; reconnect to resynchronise",
        );
        return;
    }
    conn.queued += frame.len();
    conn.queue.push_back(frame);
}

/// Queues a frame of the client's initial state: taken whatever its size
/// (a console must get every waiting ticket, SPEC §2.2, however many the
/// kiosks made), and outside the bound of [`queue_frame`].
fn queue_initial(conn: &mut Conn, frame: Bytes) {
    if conn.close_after_write {
        return;
    }
    conn.queued += frame.len();
    conn.initial += frame.len();
    conn.queue.push_back(frame);
}

/// Writes as much pending output as the socket takes.
fn flush(conn: &mut Conn, now: Instant) -> io::Result<()> {
    loop {
        while conn.out_pos < conn.out.len() {
            match conn.stream.write(&conn.out[conn.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    conn.out_pos += n;
                    conn.last_active = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        conn.out_pos = 0;
        conn.out.clear();
        // The next chunk of a long answer, once the last one is out.
        match conn.streamed.as_mut() {
            Some(rest) => {
                if rest.refill(&mut conn.out, STREAM_CHUNK) {
                    conn.streamed = None;
                }
            }
            None => break,
        }
    }
    if conn.out.capacity() > KEEP_OUTPUT_CAPACITY {
        conn.out = Vec::new();
    }
    // Then the shared frames, several per system call.
    while !conn.queue.is_empty() {
        let mut slices = [IoSlice::new(&[]); 64];
        let mut n = 0;
        for (slot, frame) in slices.iter_mut().zip(conn.queue.iter()) {
            *slot = IoSlice::new(frame);
            n += 1;
        }
        let written = match conn.stream.write_vectored(&slices[..n]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(w) => w,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        conn.last_active = now;
        conn.queued -= written;
        // The initial state was queued before any change after it.
        conn.initial = conn.initial.saturating_sub(written).min(conn.queued);
        let mut left = written;
        while left > 0 {
            let front = conn
                .queue
                .front_mut()
                .expect("written bytes came from queued frames");
            if front.len() <= left {
                left -= front.len();
                conn.queue.pop_front();
                conn.queue_front_started = false;
            } else {
                bytes::Buf::advance(front, left);
                conn.queue_front_started = true;
                left = 0;
            }
        }
    }
    // An idle display holds no queue memory (SPEC goal: ≤ 1 KiB per idle
    // connection).
    if conn.queue.capacity() > 0 {
        conn.queue = VecDeque::new();
    }
    Ok(())
}
