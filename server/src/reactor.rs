//! The event loop: `mio` readiness shared by a few threads, shaped like
//! mio's own `tcp_server` example — tokens are table keys, every socket is
//! read and written until `WouldBlock`, and stray events are normal. It knows
//! HTTP only through [`crate::http`] and [`crate::api`], and other threads
//! reach it only through its [`Mailbox`] (a channel plus the `mio::Waker`).
//!
//! One `mio::Poll` holds every socket, and `--reactors` threads serve it
//! (leader/followers): the thread that holds the poll waits in it, keeps the
//! first ready connection for itself and queues the others, and every thread
//! takes work from that queue before it waits again. So a connection never
//! belongs to a thread: when the kernel takes a core away from one thread in
//! the middle of its work (on a machine the load generator or the POS
//! shares), the other thread serves everyone else's requests, and only the
//! one connection in hand waits. With a connection per thread, half of them
//! waited (README, "One poll, any thread").
//!
//! Each connection sits in a [`Gate`]: a mutex and a word of readiness bits.
//! A thread that learns of work for a connection sets the bits and tries the
//! lock; if another thread holds it, that thread finds the bits when it lets
//! go and does the work itself. No thread ever waits for another one's
//! connection, and no event is lost (the argument is on [`Gate::run`]).
//!
//! Between two connections a thread may give its CPU away, so that a client
//! on the same machine reads its answer now rather than at the end of the
//! thread's time slice ([`crate::courtesy`]).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use parking_lot::{Mutex, MutexGuard};

use crate::api::{self, Action};
use crate::courtesy::{Courtesy, RunQueue};
use crate::engine::{
    now_ms, Engine, Job, Outcome, Principal, Reply, Taken, TicketChange, WriteRequest,
};
use crate::fanout::{conn_id, split_conn_id, ConnId, Delivery, Dest, WsRole};
use crate::http::{self, DateCache, Head, HeadError, Method, StreamedEvents};
use crate::ws::{self, close_code, WsEvent, WsReader};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Token of delivery shard `s` (see [`Hub::shards`]): `SHARDS + s`.
const SHARDS: usize = usize::MAX - 1024;
/// Connection keys are 24 bits of a [`ConnId`].
const MAX_KEYS: usize = 0xFF_FFFF;
/// The reactor index in the [`ConnId`]s of the event loop's connections
/// (the C ABI's in-process clients have their own, `local::LOCAL_REACTOR`).
const HUB: usize = 0;

/// A request head begun but not complete within this is answered 408 (SPEC §0).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A keep-alive connection idle this long is closed quietly (SPEC §0).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often deadlines are checked: timeouts fire up to twice this late.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// Stop reading a connection's requests while this much of its output is
/// unsent: a client that pipelines without reading cannot grow our memory.
const MAX_PENDING_OUTPUT: usize = 256 * 1024;
/// A connection's read buffer never holds more than one largest request plus
/// a read's worth.
const MAX_INPUT: usize = http::MAX_HEAD_BYTES + http::MAX_BODY_BYTES + READ_CHUNK;
/// Bytes read per `read` call; also the size of each thread's scratch.
const READ_CHUNK: usize = 16 * 1024;
/// Commands one WebSocket connection may have awaiting their commit before
/// the reactor stops reading it (a console sends one per click).
const MAX_IN_FLIGHT: usize = 64;
/// How long a WebSocket client that is being closed may take to read its
/// close frame before the connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Input read and thrown away after a last answer before the connection is
/// closed anyway (an upload refused from its head, over a LAN, within
/// CLOSE_GRACE).
const LINGER_MAX: usize = 16 << 20;
/// A change the writer has not answered in this long is answered 503 (as a
/// ticket session's command gives up after it): the client is not held for
/// ever by a stuck disk or a lost reply.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// A WebSocket connection with output pending that the socket has taken
/// nothing of for this long is dropped: its client stopped reading (or is
/// gone), and what is queued for it (an initial state, pongs) is let go.
const WS_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// TCP keep-alive on WebSocket connections: the first probe after this much
/// silence, then one every [`KEEPALIVE_INTERVAL`], [`KEEPALIVE_PROBES`] in
/// all; and sent data unacknowledged for [`TCP_USER_TIMEOUT`] ends the
/// connection. So a console whose network went away without a FIN is
/// closed (and its table freed, SPEC §2.5) within about a minute.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 3;
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);
/// After a shutdown request, how long answers still owed may take.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Output buffers above this are released once sent, so a connection that
/// once got a large answer does not keep the memory while idle.
const KEEP_OUTPUT_CAPACITY: usize = 64 * 1024;
/// How much of a long poll answer is copied into the output at a time.
const STREAM_CHUNK: usize = 64 * 1024;

/// Readiness bits of a [`Gate`]: the socket has bytes to read.
const READABLE: u8 = 1;
/// The peer shut down its side (EPOLLRDHUP).
const READ_CLOSED: u8 = 2;
/// Something is to be done (set with every mark, so a mark is never zero).
const RUN: u8 = 4;

/// The close reason for WebSocket clients once a commit has failed.
const HALTED_CLOSE_REASON: &str = "the store failed; restart floorbell";
/// The reason of the 1008 that ends a stream whose access token was revoked.
const REVOKED_CLOSE_REASON: &str = "access token revoked";

/// Messages other threads send the event loop.
#[derive(Debug)]
pub enum ReactorMsg {
    /// A change submitted by connection `token` is committed (or failed).
    Completed {
        /// Table key of the connection.
        token: usize,
        /// Unique id of the connection (the key may have been reused).
        conn_id: u64,
        /// What happened.
        outcome: Outcome,
    },
    /// Frames of a committed ticket-board change for the WebSocket
    /// connections (one `Arc`, shared with the in-process clients).
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

    /// The most connections it lets in.
    pub fn max(&self) -> usize {
        self.max
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
    /// When the change went to the writer.
    since: Instant,
    keep_alive: bool,
    /// The request was for `/api/v4/…` (SPEC §1), whose errors have their
    /// own JSON.
    qr_api: bool,
    /// A `HEAD` (a read answered after a commit): the answer's head only.
    head_only: bool,
    /// A read (`Action::AfterCommit`), not a change.
    read: bool,
}

/// What an upgraded connection is (SPEC §2).
struct WsConn {
    /// The endpoint it came in on.
    role: WsRole,
    /// Reassembly of fragmented messages.
    reader: WsReader,
    /// When the fragmented message being reassembled began.
    message_started: Option<Instant>,
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
    /// `/api/v2/websocket` only: the name of the access token it was
    /// authenticated with (`None` for the admin token): revoking that token
    /// closes the stream.
    token: Option<Box<str>>,
    /// The client's close frame has arrived: once the answering one is
    /// out the closing handshake is complete, and the server closes the
    /// TCP connection at once (RFC 6455 §7.1.1) instead of lingering.
    close_received: bool,
}

/// One client connection.
struct Conn {
    stream: TcpStream,
    /// The client's address (a gateway token's `ip_address`, SPEC §3.2).
    peer: Option<std::net::IpAddr>,
    /// Unique in the event loop, so a late completion for a closed connection
    /// whose table key was reused is recognised and dropped.
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
    /// Last write progress (or the accept).
    last_written: Instant,
    /// The peer sent FIN: answer what is complete, then close.
    peer_closed: bool,
    /// Close once the output is written.
    close_after_write: bool,
    /// After the last answer, the write side is shut and input is read and
    /// discarded until the client closes (RFC 9112 §9.6): the bytes
    /// discarded so far (see [`Worker::linger`]).
    lingered: Option<usize>,
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
    /// A connection just accepted at `now`.
    fn new(stream: TcpStream, peer: Option<std::net::IpAddr>, id: u64, now: Instant) -> Self {
        Conn {
            stream,
            peer,
            id,
            input: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            awaiting: None,
            continue_sent: false,
            request_started: None,
            last_active: now,
            last_written: now,
            peer_closed: false,
            close_after_write: false,
            lingered: None,
            unread: true,
            read_closed: false,
            queue: VecDeque::new(),
            queued: 0,
            initial: 0,
            queue_front_started: false,
            streamed: None,
            ws: None,
        }
    }

    /// Output not yet written.
    fn unsent(&self) -> usize {
        self.out.len() - self.out_pos + self.queued + self.streamed.as_ref().map_or(0, |s| s.left())
    }
}

/// A value that any thread may be asked to work on, and that one thread at
/// a time does: a mutex and a word of pending readiness bits.
struct Gate<T> {
    inner: Mutex<T>,
    ready: AtomicU8,
}

impl<T> Gate<T> {
    fn new(value: T) -> Self {
        Gate {
            inner: Mutex::new(value),
            ready: AtomicU8::new(0),
        }
    }

    /// Records work (`bits` and [`RUN`]) for whoever runs the gate next.
    fn mark(&self, bits: u8) {
        self.ready.fetch_or(bits | RUN, Ordering::SeqCst);
    }

    /// Runs `work` with the value and the bits marked, for as long as bits
    /// are marked and no other thread holds the value.
    ///
    /// Why no mark is lost: a marker stores its bits, then (after a SeqCst
    /// fence) tries the lock; a holder lets go of the lock, then (after a
    /// SeqCst fence) loads the bits. The two fences are ordered one way or
    /// the other. If the marker's comes first, the holder's load sees the
    /// bits and it runs again. If the holder's comes first, the marker's
    /// `try_lock` sees the lock free and it runs the work itself (or a third
    /// thread got the lock in between, and the same holds for that one).
    fn run(&self, mut work: impl FnMut(&mut T, u8)) {
        fence(Ordering::SeqCst);
        loop {
            let Some(mut value) = self.inner.try_lock() else {
                return;
            };
            let bits = self.ready.swap(0, Ordering::SeqCst);
            if bits != 0 {
                work(&mut value, bits);
            }
            drop(value);
            fence(Ordering::SeqCst);
            if self.ready.load(Ordering::SeqCst) == 0 {
                return;
            }
        }
    }

    /// Whether marks are waiting (checked after a blocking `lock` let go).
    fn marked(&self) -> bool {
        fence(Ordering::SeqCst);
        self.ready.load(Ordering::SeqCst) != 0
    }
}

/// What the threads of the event loop share.
pub struct Hub {
    /// The readiness of every socket; the thread that holds it waits in it.
    poll: Mutex<Poll>,
    /// Registers and deregisters sockets from any thread.
    registry: Registry,
    listener: Gate<Option<TcpListener>>,
    /// The connections; a key is an index. Fixed size (`--max-connections`,
    /// at most 2^24), so no thread ever waits for the table to grow.
    conns: Box<[Gate<Option<Box<Conn>>>]>,
    /// Keys free for reuse, and the number of keys ever used.
    free: Mutex<(Vec<usize>, usize)>,
    /// Keys ever used (`free.1`), readable without the lock.
    used: AtomicUsize,
    /// Tokens with marked work that no thread has taken yet.
    work_tx: Sender<usize>,
    work_rx: Receiver<usize>,
    mailbox: Arc<Mailbox>,
    mail: Gate<Receiver<ReactorMsg>>,
    /// Deliveries, split by key: shard `s` serves the keys `k % n == s`, so
    /// `n` threads share a broadcast to thousands of displays, and each
    /// shard applies its deliveries in order (one thread at a time).
    shards: Box<[Shard]>,
    engine: Arc<Engine>,
    cap: Arc<ConnectionCap>,
    next_conn_id: AtomicU64,
    next_sweep: Mutex<Instant>,
    /// When a shutdown was asked for.
    shutting_down: Mutex<Option<Instant>>,
    /// Set with `shutting_down`, readable without the lock: no HTTP request
    /// is begun from then on (see [`Worker::drive`]).
    draining: AtomicBool,
    /// Every thread leaves at its next turn.
    stopped: AtomicBool,
    /// Threads still running: the last one closes the connections.
    running: AtomicUsize,
    /// `--ws-max-queue`.
    ws_max_queue: usize,
    /// What streamed poll answers hold, all connections together.
    stream_budget: Arc<http::StreamBudget>,
}

/// One shard of the deliveries.
struct Shard {
    gate: Gate<()>,
    tx: Sender<Arc<Delivery>>,
    rx: Receiver<Arc<Delivery>>,
}

impl Hub {
    /// An event loop around an already bound, non-blocking listening socket,
    /// for `threads` threads (each then calls [`Hub::run`]).
    ///
    /// # Errors
    ///
    /// When the OS refuses the poll instance or the waker.
    pub fn new(
        listener: std::net::TcpListener,
        engine: Arc<Engine>,
        cap: Arc<ConnectionCap>,
        threads: usize,
    ) -> io::Result<(Arc<Hub>, Arc<Mailbox>)> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let mut listener = TcpListener::from_std(listener);
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Waker::new(&registry, WAKER)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let mailbox = Arc::new(Mailbox { tx, waker });
        let (work_tx, work_rx) = crossbeam_channel::unbounded();
        let ws_max_queue = usize::try_from(engine.config().ws_max_queue).unwrap_or(usize::MAX);
        let stream_budget_bytes = engine.config().stream_budget_bytes;
        let keys = cap.max().clamp(1, MAX_KEYS);
        let shards = (0..threads.max(1))
            .map(|_| {
                let (tx, rx) = crossbeam_channel::unbounded();
                Shard {
                    gate: Gate::new(()),
                    tx,
                    rx,
                }
            })
            .collect();
        let hub = Hub {
            poll: Mutex::new(poll),
            registry,
            listener: Gate::new(Some(listener)),
            conns: (0..keys).map(|_| Gate::new(None)).collect(),
            free: Mutex::new((Vec::new(), 0)),
            used: AtomicUsize::new(0),
            work_tx,
            work_rx,
            mailbox: Arc::clone(&mailbox),
            mail: Gate::new(rx),
            shards,
            engine,
            cap,
            next_conn_id: AtomicU64::new(0),
            next_sweep: Mutex::new(Instant::now() + SWEEP_INTERVAL),
            shutting_down: Mutex::new(None),
            draining: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            running: AtomicUsize::new(threads.max(1)),
            ws_max_queue,
            stream_budget: http::StreamBudget::new(stream_budget_bytes),
        };
        Ok((Arc::new(hub), mailbox))
    }

    /// Tells the hub that `n` of the threads it was made for will never
    /// call [`Hub::run`] (their spawn failed).
    pub fn never_started(&self, n: usize) {
        self.running.fetch_sub(n, Ordering::AcqRel);
    }

    /// Serves until a [`ReactorMsg::Shutdown`] has been handled and what was
    /// owed is written (or the grace period is over). Called by each thread.
    pub fn run(&self) {
        let mut worker = Worker::new();
        let mut events = Events::with_capacity(1024);
        while !self.stopped.load(Ordering::Acquire) {
            // Work the other threads queued.
            while let Ok(token) = self.work_rx.try_recv() {
                self.serve(&mut worker, token);
            }
            // Then wait for readiness: one thread at a time.
            let mine = {
                let mut poll = self.poll.lock();
                if !self.work_rx.is_empty() || self.stopped.load(Ordering::Acquire) {
                    continue;
                }
                if let Err(e) = poll.poll(&mut events, Some(SWEEP_INTERVAL)) {
                    if e.kind() != io::ErrorKind::Interrupted {
                        tracing::error!(error = %e, "poll failed; the event loop stops");
                        self.stop();
                    }
                    continue;
                }
                let mut mine = None;
                for event in events.iter() {
                    let token = event.token().0;
                    let mut bits = 0;
                    if event.is_readable() || event.is_error() {
                        bits |= READABLE;
                    }
                    if event.is_read_closed() {
                        bits |= READABLE | READ_CLOSED;
                    }
                    self.gate_mark(token, bits);
                    // The first for this thread, the rest for any thread.
                    if mine.is_none() {
                        mine = Some(token);
                    } else {
                        let _ = self.work_tx.send(token);
                    }
                }
                mine
            };
            match mine {
                Some(token) => self.serve(&mut worker, token),
                None => worker.tick(),
            }
            self.housekeeping(&mut worker);
        }
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            for key in 0..self.used.load(Ordering::Acquire) {
                let mut entry = self.conns[key].inner.lock();
                worker.close(self, key, &mut entry);
            }
        }
    }

    /// Does the work on `token`, then pauses when it is time to give the
    /// CPU away (see [`crate::courtesy`]).
    fn serve(&self, w: &mut Worker, token: usize) {
        w.tick();
        self.dispatch(w, token);
        if w.courtesy.served() && w.run_queue.someone_waits() {
            let before = Instant::now();
            std::thread::sleep(crate::courtesy::PAUSE);
            w.courtesy.paused(before.elapsed());
        }
    }

    /// Every thread leaves its loop (the one in the poll is woken).
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.mailbox.wake();
    }

    fn gate_mark(&self, token: usize, bits: u8) {
        match Token(token) {
            LISTENER => self.listener.mark(bits),
            WAKER => self.mail.mark(bits),
            Token(s) if s >= SHARDS => {
                if let Some(shard) = self.shards.get(s - SHARDS) {
                    shard.gate.mark(bits);
                }
            }
            Token(key) => {
                if let Some(gate) = self.conns.get(key) {
                    gate.mark(bits);
                }
            }
        }
    }

    /// Queues work on `token` for any thread.
    fn schedule(&self, token: usize) {
        self.gate_mark(token, 0);
        let _ = self.work_tx.send(token);
    }

    /// Does the work marked on `token`'s gate, unless another thread is.
    fn dispatch(&self, w: &mut Worker, token: usize) {
        match Token(token) {
            LISTENER => self
                .listener
                .run(|listener, _| w.accept_all(self, listener)),
            WAKER => self.mail.run(|rx, _| w.read_mailbox(self, rx)),
            Token(s) if s >= SHARDS => {
                if let Some(shard) = self.shards.get(s - SHARDS) {
                    let index = s - SHARDS;
                    shard.gate.run(|(), _| {
                        while let Ok(delivery) = shard.rx.try_recv() {
                            w.deliver(self, &delivery, index);
                        }
                    });
                }
            }
            Token(key) => self.run_conn(w, key),
        }
    }

    fn run_conn(&self, w: &mut Worker, key: usize) {
        let Some(gate) = self.conns.get(key) else {
            return;
        };
        gate.run(|entry, bits| {
            if let Some(conn) = entry.as_deref_mut() {
                if bits & READABLE != 0 {
                    conn.unread = true;
                }
                if bits & READ_CLOSED != 0 {
                    conn.read_closed = true;
                }
            }
            w.drive(self, key, entry);
        });
    }

    /// Runs `f` on connection `key`'s entry, waiting for a thread that
    /// holds it, then does the work other threads marked meanwhile (they
    /// left it to the holder). Every lock of a connection outside
    /// [`Gate::run`] goes through here or [`Hub::try_with_conn`], so no path
    /// forgets that (but the last thread's close of everything at exit).
    fn with_conn<R>(
        &self,
        w: &mut Worker,
        key: usize,
        f: impl FnOnce(&mut Worker, &mut Option<Box<Conn>>) -> R,
    ) -> Option<R> {
        let entry = self.conns.get(key)?.inner.lock();
        Some(self.let_go(w, key, entry, f))
    }

    /// [`Hub::with_conn`] unless another thread holds the connection (then
    /// `None`, and that thread is working on it anyway).
    fn try_with_conn<R>(
        &self,
        w: &mut Worker,
        key: usize,
        f: impl FnOnce(&mut Worker, &mut Option<Box<Conn>>) -> R,
    ) -> Option<R> {
        let entry = self.conns.get(key)?.inner.try_lock()?;
        Some(self.let_go(w, key, entry, f))
    }

    fn let_go<R>(
        &self,
        w: &mut Worker,
        key: usize,
        mut entry: MutexGuard<'_, Option<Box<Conn>>>,
        f: impl FnOnce(&mut Worker, &mut Option<Box<Conn>>) -> R,
    ) -> R {
        let r = f(w, &mut entry);
        drop(entry);
        // The work other threads marked while the entry was held.
        if self.conns[key].marked() {
            self.run_conn(w, key);
        }
        r
    }

    /// Timeouts, and the end of a shutdown.
    fn housekeeping(&self, w: &mut Worker) {
        if let Some(mut next) = self.next_sweep.try_lock() {
            if w.now >= *next {
                *next = w.now + SWEEP_INTERVAL;
                drop(next);
                w.sweep(self);
            }
        }
        let since = *self.shutting_down.lock();
        if let Some(since) = since {
            let owed = (0..self.used.load(Ordering::Acquire)).any(|key| {
                self.try_with_conn(w, key, |_, entry| {
                    entry.as_deref().is_some_and(|c| {
                        c.awaiting.is_some() || c.out_pos < c.out.len() || c.streamed.is_some()
                    })
                })
                // Another thread is working on it.
                .unwrap_or(true)
            });
            if !owed || since.elapsed() > SHUTDOWN_GRACE {
                self.stop();
            }
        }
    }

    /// A free key, if the table has one.
    fn take_key(&self) -> Option<usize> {
        let mut free = self.free.lock();
        if let Some(key) = free.0.pop() {
            return Some(key);
        }
        if free.1 < self.conns.len() {
            free.1 += 1;
            self.used.store(free.1, Ordering::Release);
            return Some(free.1 - 1);
        }
        None
    }

    fn give_key(&self, key: usize) {
        self.free.lock().0.push(key);
    }
}

/// What one thread of the event loop keeps for itself.
struct Worker {
    date: DateCache,
    /// Reads land here first; only a partial request is copied into the
    /// connection, so an idle connection holds no input buffer.
    scratch: Box<[u8]>,
    /// When the thread last came back to work: timestamps for the 10 s and
    /// 60 s timeouts need no finer clock.
    now: Instant,
    /// Working memory of the request handlers.
    handler_scratch: api::Scratch,
    /// The head of a poll answer written through (kept buffer).
    head_buf: Vec<u8>,
    /// Decoded WebSocket events of the current read (kept, like the scratch).
    ws_events: Vec<WsEvent>,
    /// Keys a delivery concerns (kept buffer).
    targets: Vec<usize>,
    /// When to give the CPU away.
    courtesy: Courtesy,
    /// Whether a pause would give the CPU to anyone.
    run_queue: RunQueue,
    /// A descriptor held for the moment the process runs out of them: let
    /// go to accept a waiting connection and answer it 503 (the poll is
    /// edge-triggered, so a connection left in the backlog would get no
    /// readiness again), then taken back.
    spare: Option<std::fs::File>,
}

impl Worker {
    fn new() -> Self {
        Worker {
            date: DateCache::default(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            now: Instant::now(),
            handler_scratch: api::Scratch::default(),
            head_buf: Vec::with_capacity(256),
            ws_events: Vec::new(),
            targets: Vec::new(),
            courtesy: Courtesy::default(),
            run_queue: RunQueue::default(),
            spare: std::fs::File::open("/dev/null").ok(),
        }
    }

    /// Reads the clocks once per turn of work.
    fn tick(&mut self) {
        self.now = Instant::now();
        self.date.refresh(SystemTime::now());
    }

    /// Answers a connection over the cap 503 and closes it. Best effort,
    /// never blocking: the socket is fresh, so a small answer fits its send
    /// buffer.
    fn refuse(&self, stream: TcpStream) {
        let body = br#"{"status":503,"message":"too many connections"}"#;
        let mut out = Vec::new();
        http::write_response(&mut out, 503, body, true, false, &self.date);
        let _ = crate::sockio::write(&stream, &out);
    }

    fn accept_all(&mut self, hub: &Hub, listener: &mut Option<TcpListener>) {
        loop {
            let Some(l) = listener.as_ref() else {
                return;
            };
            let (mut stream, peer) = match l.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    // Out of descriptors (the cap is kept under the limit, so
                    // something else holds them): refuse the waiting
                    // connection with the spare descriptor, and the next.
                    if self.spare.take().is_none() {
                        tracing::warn!(error = %e, "accept failed");
                        return;
                    }
                    if let Ok((stream, _)) = l.accept() {
                        tracing::warn!(error = %e, "out of file descriptors: a connection refused with 503");
                        self.refuse(stream);
                    }
                    self.spare = std::fs::File::open("/dev/null").ok();
                    continue;
                }
                Err(e) => {
                    // Others: log and wait for the next readiness rather
                    // than spinning.
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            };
            let key = if hub.cap.try_acquire() {
                let key = hub.take_key();
                if key.is_none() {
                    hub.cap.release();
                }
                key
            } else {
                None
            };
            let Some(key) = key else {
                self.refuse(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let now = self.now;
            // Readiness that comes while the connection is being set up is
            // run when its entry is let go.
            let registered = hub.with_conn(self, key, |_, entry| {
                hub.registry.register(
                    &mut stream,
                    Token(key),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                let id = hub.next_conn_id.fetch_add(1, Ordering::Relaxed) + 1;
                *entry = Some(Box::new(Conn::new(stream, Some(peer.ip()), id, now)));
                io::Result::Ok(())
            });
            if let Some(Err(e)) = registered {
                tracing::warn!(error = %e, "cannot register a connection");
                hub.cap.release();
                hub.give_key(key);
            }
        }
    }

    fn read_mailbox(&mut self, hub: &Hub, rx: &mut Receiver<ReactorMsg>) {
        while let Ok(msg) = rx.try_recv() {
            match msg {
                ReactorMsg::Completed {
                    token,
                    conn_id,
                    outcome,
                } => {
                    let answered = hub.with_conn(self, token, |w, entry| {
                        let Some(conn) = entry.as_deref_mut().filter(|c| c.id == conn_id) else {
                            return false;
                        };
                        let Some(awaiting) = conn.awaiting.take() else {
                            return false;
                        };
                        let (status, body) = api::answer(outcome, awaiting.qr_api);
                        // While shutting down the connection ends with this
                        // answer (see `drive`): the client is told so.
                        let close = !awaiting.keep_alive || hub.draining.load(Ordering::Acquire);
                        http::write_response(
                            &mut conn.out,
                            status,
                            &body,
                            close,
                            awaiting.head_only,
                            &w.date,
                        );
                        conn.close_after_write |= close;
                        true
                    });
                    if answered == Some(true) {
                        // The write, and whatever the client pipelined behind
                        // the change: for any thread (a batch answers many).
                        hub.schedule(token);
                    }
                }
                ReactorMsg::Deliver(delivery) => {
                    for (s, shard) in hub.shards.iter().enumerate() {
                        let _ = shard.tx.send(Arc::clone(&delivery));
                        hub.schedule(SHARDS + s);
                    }
                }
                ReactorMsg::Shutdown => {
                    if let Some(mut listener) = hub.listener.inner.lock().take() {
                        let _ = hub.registry.deregister(&mut listener);
                    }
                    hub.shutting_down.lock().get_or_insert_with(Instant::now);
                    hub.draining.store(true, Ordering::Release);
                    // WebSocket clients are told why (1001) before the close.
                    self.close_websockets(hub, close_code::GOING_AWAY, "server shutting down");
                }
            }
        }
    }

    /// Queues a close frame with `code` and `reason` to every WebSocket
    /// client and writes it out.
    fn close_websockets(&mut self, hub: &Hub, code: u16, reason: &str) {
        for key in 0..hub.used.load(Ordering::Acquire) {
            hub.with_conn(self, key, |w, entry| {
                if let Some(conn) = entry.as_deref_mut().filter(|c| c.ws.is_some()) {
                    queue_close(conn, code, reason);
                    w.drive(hub, key, entry);
                }
            });
        }
    }

    /// Makes all the progress connection `key` allows: write what is owed,
    /// answer what is complete, read what has arrived; until it would block.
    fn drive(&mut self, hub: &Hub, key: usize, entry: &mut Option<Box<Conn>>) {
        loop {
            let Some(conn) = entry.as_deref_mut() else {
                return;
            };
            if flush(conn, self.now).is_err() {
                return self.close(hub, key, entry);
            }
            let unsent = conn.unsent();
            if conn.close_after_write {
                if unsent > 0 {
                    return; // wait for writable
                }
                if self.linger(conn) {
                    return; // wait for readable, or CLOSE_GRACE
                }
                return self.close(hub, key, entry);
            }
            if conn.awaiting.is_some() || unsent > MAX_PENDING_OUTPUT || conn.streamed.is_some() {
                return; // resumed by the completion or the next writable event
            }
            if conn.ws.is_none() && hub.draining.load(Ordering::Acquire) {
                // Shutting down: the answers owed are finished (above), and
                // no request is begun, so no change is committed after the
                // event loop has stopped answering (a SIGTERM used to leave
                // keep-alive clients' new publishes committed but unanswered
                // once the grace ran out). What a client sent meanwhile was
                // not acted on; the connection just ends, as an idle
                // keep-alive connection may.
                if unsent > 0 {
                    return; // wait for writable
                }
                return self.close(hub, key, entry);
            }
            // Answer requests already buffered (pipelining).
            if !conn.input.is_empty() {
                let mut input = std::mem::take(&mut conn.input);
                let out_before = conn.out.len();
                let used = self.process(hub, key, conn, &mut input);
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
            if conn.peer_closed {
                // What is left is a request the client ended before it was
                // complete (complete ones were answered above): it gets a
                // 400 saying so rather than a silent close (SPEC §0). Blank
                // lines before a request line are not a request.
                if conn.ws.is_none() && !request_line(&conn.input).is_empty() {
                    let body = http::error_body(
                        sniff_path(&conn.input),
                        400,
                        "the connection was closed before the request was complete",
                    );
                    let head_only = sniff_head(&conn.input);
                    http::write_response(&mut conn.out, 400, &body, true, head_only, &self.date);
                    conn.close_after_write = true;
                    conn.input = Vec::new();
                    conn.request_started = None;
                    continue;
                }
                if conn.unsent() == 0 {
                    return self.close(hub, key, entry);
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
            match crate::sockio::read(&conn.stream, &mut self.scratch) {
                Ok(0) => {
                    conn.peer_closed = true;
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
                        let used = self.process(hub, key, conn, &mut scratch[..n]);
                        if used < n {
                            conn.input.extend_from_slice(&scratch[used..n]);
                            conn.request_started.get_or_insert(self.now);
                        }
                        self.scratch = scratch;
                    } else {
                        conn.input.extend_from_slice(&self.scratch[..n]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.unread = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(hub, key, entry),
            }
        }
    }

    /// A last answer is out: whether to keep the connection for now.
    ///
    /// Closing a socket with input unread makes the kernel send a reset,
    /// and a reset can destroy the answer before the client has read it: a
    /// client still sending the body of a refused request (413, 401) may
    /// then see only a broken pipe. So when input is left (RFC 9112 §9.6's
    /// lingering close), the write side is shut (the client sees the end of
    /// the answer) and what arrives is read and thrown away until the
    /// client closes, [`LINGER_MAX`] bytes, or [`CLOSE_GRACE`] without the
    /// client closing (`expired`). HTTP connections with nothing unread
    /// close at once. A WebSocket close frame the server starts always
    /// waits so (RFC 6455 §7.1.1: the server closes the TCP connection after
    /// the client's own close frame): the client's reply, or the rest of a
    /// message refused from its header (1009), would otherwise meet a
    /// closed socket, and the reset could cost the client the close frame
    /// and its code. Once the client's close frame has arrived the
    /// handshake is complete when the answer is out, and the connection
    /// closes at once if nothing is left unread: a ticket console's table
    /// is unpicked when its client says goodbye, not 5 s later when a
    /// client that keeps its socket open is given up on.
    fn linger(&mut self, conn: &mut Conn) -> bool {
        if conn.lingered.is_none() {
            // Nothing left to read either way: closing sends no reset. (A
            // client that sent more after its close frame gets the linger.)
            let nothing_unread = conn.input.is_empty() && !conn.unread;
            let handshake_done = conn.ws.as_ref().is_some_and(|ws| ws.close_received);
            if conn.peer_closed || (nothing_unread && (conn.ws.is_none() || handshake_done)) {
                return false;
            }
            if conn.stream.shutdown(std::net::Shutdown::Write).is_err() {
                return false;
            }
            conn.input = Vec::new();
            conn.lingered = Some(0);
            // The grace period runs from here; discarding is not progress.
            conn.last_active = self.now;
        }
        loop {
            match crate::sockio::read(&conn.stream, &mut self.scratch) {
                Ok(0) => return false,
                Ok(n) => {
                    let lingered = conn.lingered.unwrap_or(0) + n;
                    if lingered > LINGER_MAX {
                        return false;
                    }
                    conn.lingered = Some(lingered);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.unread = false;
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// Answers the complete requests at the start of `buf`; returns how many
    /// bytes they took. Stops at an incomplete request, at a change handed to
    /// the writer, or when the answer closes the connection.
    fn process(&mut self, hub: &Hub, key: usize, conn: &mut Conn, buf: &mut [u8]) -> usize {
        let mut used = 0;
        // The wall clock now, not the turn's: changes are stamped with it
        // (an order's `created`), and a client that keeps pipelining keeps
        // one thread in one turn for as long as it sends.
        let now = now_ms();
        loop {
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
                return used + self.process_ws(hub, key, conn, &mut buf[used..]);
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
                    // A HEAD gets the head of the answer only (RFC 9110
                    // §9.3.2), even when the rest of its head is unusable.
                    let head_only = rest.starts_with(b"HEAD ");
                    http::write_response(&mut conn.out, status, &body, true, head_only, &self.date);
                    conn.close_after_write = true;
                    if e == HeadError::TooLarge {
                        tracing::debug!("request head over the limit");
                    }
                    return used;
                }
            };
            // Refusals decided by the head alone are answered before the body
            // arrives, and close the connection (the body is not read). A
            // request that is all here already (a GET with a wrong token) is
            // skipped instead, and its connection kept like any other's.
            let early = api::check_body_size(&head, rest)
                .or_else(|| api::check_auth(&hub.engine, &head, rest, conn.peer));
            // Saturating: a declared length near usize::MAX must not wrap
            // around to a small total (it is refused below with a 413).
            let total = head.head_len.saturating_add(head.body_len);
            let early = match early {
                Some(action) if rest.len() >= total => {
                    used += total;
                    conn.continue_sent = false;
                    self.act(hub, key, conn, &head, action);
                    continue;
                }
                early => early,
            };
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
            if rest.len() < total {
                if head.expect_continue && !conn.continue_sent {
                    conn.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    conn.continue_sent = true;
                }
                return used;
            }
            conn.continue_sent = false;
            let action = api::handle(
                &hub.engine,
                &head,
                &mut rest[..total],
                now,
                &mut self.handler_scratch,
            );
            used += total;
            self.act(hub, key, conn, &head, action);
        }
    }

    /// Carries out what the API decided for one request.
    fn act(&mut self, hub: &Hub, key: usize, conn: &mut Conn, head: &Head, action: Action) {
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
            Action::NotAllowed { allow, body } => {
                http::write_not_allowed(
                    &mut conn.out,
                    allow,
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
                let events = &mut self.handler_scratch.events;
                // Nothing queued before this answer: straight to the socket.
                let parts =
                    if conn.out.is_empty() && conn.queue.is_empty() && conn.streamed.is_none() {
                        events.short_parts(&mut self.head_buf, close, head_only, &self.date)
                    } else {
                        None
                    };
                if let Some(parts) = parts {
                    // A short answer holds no handles: nothing to let go of.
                    write_through(conn, parts, self.now);
                } else {
                    conn.streamed = events
                        .write(
                            &mut conn.out,
                            close,
                            head_only,
                            &self.date,
                            &hub.stream_budget,
                        )
                        .map(Box::new);
                }
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
                    message_started: None,
                    active: false,
                    in_flight: 0,
                    auth_deadline: None,
                    token: None,
                    close_received: false,
                }));
                conn.request_started = None;
                detect_dead_peer(&conn.stream);
                let id = conn_id(HUB, key, conn.id);
                if role != WsRole::Orders {
                    let taken = hub
                        .engine
                        .ticket_change(TicketChange::Opened { conn: id, role });
                    if taken == Taken::Halted {
                        queue_close(conn, close_code::INTERNAL, HALTED_CLOSE_REASON);
                    }
                    return;
                }
                // SPEC §3.4: a header on the handshake, or the first frame.
                match authorization {
                    Some(value) => {
                        let ip = conn.peer.map(|p| p.to_string());
                        match hub.engine.gateway_auth(&value, ip.as_deref()) {
                            Some(principal) => {
                                if let (Some(ws), Principal::Token(name)) =
                                    (conn.ws.as_mut(), principal)
                                {
                                    ws.token = Some(name);
                                }
                                hub.engine.orders_subscribe(id);
                            }
                            None => queue_close(conn, close_code::POLICY, "invalid access token"),
                        }
                    }
                    None => {
                        let timeout = hub.engine.config().ws_auth_timeout;
                        if let Some(ws) = conn.ws.as_mut() {
                            ws.auth_deadline = Some(self.now + timeout);
                        }
                    }
                }
            }
            Action::AfterCommit { status, body } => {
                let awaiting = Awaiting {
                    since: self.now,
                    keep_alive: !close,
                    qr_api: false,
                    head_only,
                    read: true,
                };
                self.await_store(hub, key, conn, awaiting, |reply| {
                    hub.engine
                        .answer_after_commit(reply, Outcome::Respond { status, body })
                        .is_ok()
                });
            }
            Action::Write(request) => {
                let awaiting = Awaiting {
                    since: self.now,
                    keep_alive: !close,
                    qr_api: matches!(
                        request,
                        WriteRequest::PublishEvent(_) | WriteRequest::PutTable(_)
                    ),
                    head_only,
                    read: false,
                };
                self.await_store(hub, key, conn, awaiting, |reply| {
                    hub.engine.submit(Job { request, reply }).is_ok()
                });
            }
        }
    }

    /// Marks `conn` as awaiting the store thread's answer and hands the
    /// request over with `send`, which is given the way back; when `send`
    /// is refused (shutting down), answers 503 and closes instead.
    fn await_store(
        &self,
        hub: &Hub,
        key: usize,
        conn: &mut Conn,
        awaiting: Awaiting,
        send: impl FnOnce(Reply) -> bool,
    ) {
        let reply = Reply::Reactor {
            mailbox: Arc::clone(&hub.mailbox),
            token: key,
            conn_id: conn.id,
        };
        let (qr_api, head_only) = (awaiting.qr_api, awaiting.head_only);
        conn.awaiting = Some(awaiting);
        if !send(reply) {
            conn.awaiting = None;
            let (status, body) = api::answer(
                Outcome::Unavailable("the server is shutting down".into()),
                qr_api,
            );
            http::write_response(&mut conn.out, status, &body, true, head_only, &self.date);
            conn.close_after_write = true;
        }
    }

    /// Fires the request and idle timeouts. A connection another thread is
    /// working on is skipped: it is not idle, and the next sweep sees it.
    fn sweep(&mut self, hub: &Hub) {
        let now = self.now;
        for key in 0..hub.used.load(Ordering::Acquire) {
            hub.try_with_conn(self, key, |w, entry| {
                let verdict = entry
                    .as_deref_mut()
                    .and_then(|conn| expired(conn, now, &w.date));
                match verdict {
                    Some(true) => w.close(hub, key, entry),
                    Some(false) => w.drive(hub, key, entry),
                    None => {}
                }
            });
        }
    }

    fn close(&mut self, hub: &Hub, key: usize, entry: &mut Option<Box<Conn>>) {
        let Some(mut conn) = entry.take() else {
            return;
        };
        let _ = hub.registry.deregister(&mut conn.stream);
        // Key and place are free before the socket closes: a client that
        // sees the close and connects again finds both (another thread may
        // accept it; it waits for this entry's lock, not for the key).
        hub.give_key(key);
        hub.cap.release();
        if let Some(ws) = conn.ws.as_ref().filter(|w| w.role != WsRole::Orders) {
            hub.engine.ticket_change(TicketChange::Closed {
                conn: conn_id(HUB, key, conn.id),
                role: ws.role,
            });
        }
    }

    /// Handles the WebSocket frames at the start of `buf`; returns the bytes
    /// they took.
    fn process_ws(&mut self, hub: &Hub, key: usize, conn: &mut Conn, buf: &mut [u8]) -> usize {
        let Some(ws) = conn.ws.as_mut() else { return 0 };
        let role = ws.role;
        let mut events = std::mem::take(&mut self.ws_events);
        // A ticket command goes to the board and counts as in flight until
        // its reply: no more are decoded than may be in flight (the rest
        // waits in the input); an orders client's frames are not commands.
        let max_texts = match role {
            WsRole::Orders => usize::MAX,
            _ => MAX_IN_FLIGHT.saturating_sub(ws.in_flight),
        };
        let used = ws.reader.decode(buf, &mut events, max_texts);
        ws.message_started = if ws.reader.is_reassembling() {
            ws.message_started.or(Some(self.now))
        } else {
            None
        };
        let id = conn_id(HUB, key, conn.id);
        for event in events.drain(..) {
            match event {
                WsEvent::Text(text) if role == WsRole::Orders => {
                    self.orders_text(hub, id, conn, &text);
                }
                WsEvent::Text(text) => {
                    if let Some(ws) = conn.ws.as_mut() {
                        ws.in_flight += 1;
                    }
                    let taken = hub.engine.ticket_change(TicketChange::Text {
                        conn: id,
                        role,
                        text,
                    });
                    if taken == Taken::Halted {
                        // Never answered: the client is told why it is let go.
                        queue_close(conn, close_code::INTERNAL, HALTED_CLOSE_REASON);
                    }
                }
                WsEvent::Pong(frame) => queue_frame(conn, frame, hub.ws_max_queue),
                WsEvent::Closed(code) => {
                    // Echo the client's code (RFC 6455 §5.5.1), then close.
                    queue_close(conn, code.unwrap_or(close_code::NORMAL), "");
                    if let Some(ws) = conn.ws.as_mut() {
                        ws.close_received = true;
                    }
                }
                WsEvent::Fail(code, reason) => {
                    tracing::debug!(code, reason, "closing a WebSocket client");
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
    fn orders_text(&mut self, hub: &Hub, id: ConnId, conn: &mut Conn, text: &str) {
        let Some(ws) = conn.ws.as_mut() else { return };
        if ws.auth_deadline.is_none() {
            return;
        }
        ws.auth_deadline = None;
        /// The token frame: an object. Other keys are let be; a second
        /// `accesstoken` is refused (serde's derive does), never taken as
        /// the last one.
        #[derive(serde::Deserialize)]
        struct TokenFrame {
            accesstoken: String,
        }
        let token = text
            .trim_start()
            .starts_with('{') // the derive would take `["TOKEN"]` too
            .then(|| serde_json::from_str::<TokenFrame>(text).ok())
            .flatten()
            .map(|f| f.accesstoken);
        let ip = conn.peer.map(|p| p.to_string());
        let principal = token
            .as_ref()
            .and_then(|t| hub.engine.gateway_principal(t.as_bytes(), ip.as_deref()));
        match (token, principal) {
            (_, Some(principal)) => {
                if let (Some(ws), Principal::Token(name)) = (conn.ws.as_mut(), principal) {
                    ws.token = Some(name);
                }
                hub.engine.orders_subscribe(id);
            }
            (Some(_), None) => queue_close(conn, close_code::POLICY, "invalid access token"),
            (None, None) => queue_close(
                conn,
                close_code::POLICY,
                "expected {\"accesstoken\":\"TOKEN\"}",
            ),
        }
    }

    /// Queues a committed change's frames to the receivers in shard `shard`
    /// and writes them out.
    fn deliver(&mut self, hub: &Hub, delivery: &Delivery, shard: usize) {
        let shards = hub.shards.len();
        let mine = |id: ConnId| {
            let (reactor, key, _) = split_conn_id(id);
            (reactor == HUB && key % shards == shard).then_some(key)
        };
        let broadcast = delivery.halt
            || delivery.revoked.is_some()
            || delivery
                .messages
                .iter()
                .any(|(dest, _)| !matches!(dest, Dest::Conn(_)));
        let mut targets = std::mem::take(&mut self.targets);
        if broadcast {
            targets.extend((shard..hub.used.load(Ordering::Acquire)).step_by(shards));
        } else {
            let named = delivery
                .messages
                .iter()
                .filter_map(|(dest, _)| match *dest {
                    Dest::Conn(id) => Some(id),
                    _ => None,
                });
            targets.extend(
                named
                    .chain(delivery.activate)
                    .chain(delivery.reply_to)
                    .filter_map(mine),
            );
            targets.sort_unstable();
            targets.dedup();
        }
        for &key in &targets {
            hub.with_conn(self, key, |w, entry| {
                let Some(conn) = entry.as_deref_mut().filter(|c| c.ws.is_some()) else {
                    return;
                };
                if delivery.halt {
                    queue_close(conn, close_code::INTERNAL, HALTED_CLOSE_REASON);
                    w.drive(hub, key, entry);
                    return;
                }
                if let Some(revoked) = &delivery.revoked {
                    if conn.ws.as_ref().and_then(|ws| ws.token.as_ref()) == Some(revoked) {
                        queue_close(conn, close_code::POLICY, REVOKED_CLOSE_REASON);
                        w.drive(hub, key, entry);
                    }
                    return;
                }
                let id = conn_id(HUB, key, conn.id);
                if deliver_to(conn, id, delivery, hub.ws_max_queue) {
                    w.drive(hub, key, entry);
                } else if flush(conn, w.now).is_err()
                    || (conn.close_after_write && conn.unsent() == 0)
                {
                    // Written without reading: a broadcast must not cost every
                    // receiver a `read` that would only say WouldBlock.
                    w.close(hub, key, entry);
                }
            });
        }
        targets.clear();
        self.targets = targets;
    }
}

/// Queues what `delivery` holds for the WebSocket connection `id`; true
/// when reading it stopped at [`MAX_IN_FLIGHT`] and may resume.
fn deliver_to(conn: &mut Conn, id: ConnId, delivery: &Delivery, max_queue: usize) -> bool {
    let Some(ws) = conn.ws.as_mut() else {
        return false;
    };
    if delivery.activate == Some(id) {
        ws.active = true;
    }
    let mut resume = false;
    if delivery.reply_to == Some(id) {
        let was = ws.in_flight;
        ws.in_flight = was.saturating_sub(1);
        resume = was >= MAX_IN_FLIGHT && ws.in_flight < MAX_IN_FLIGHT;
    }
    let (role, active) = (ws.role, ws.active);
    for (dest, frame) in &delivery.messages {
        let want = match *dest {
            Dest::Conn(to) => {
                if to == id {
                    if delivery.activate == Some(id) {
                        queue_initial(conn, frame.clone());
                    } else {
                        queue_frame(conn, frame.clone(), max_queue);
                    }
                }
                continue;
            }
            Dest::AllDisplays => role == WsRole::Display,
            Dest::AllOrders => role == WsRole::Orders,
            Dest::AllStaffExcept(except) => role == WsRole::Staff && except != id,
            Dest::AllStaff => role == WsRole::Staff,
        };
        if want && active {
            queue_frame(conn, frame.clone(), max_queue);
        }
    }
    resume
}

/// Whether connection `conn` is past one of its deadlines at `now`:
/// `Some(true)` to close it quietly, `Some(false)` to drive it (an answer
/// or a close frame was queued).
fn expired(conn: &mut Conn, now: Instant, date: &DateCache) -> Option<bool> {
    if let Some(awaiting) = &conn.awaiting {
        if now.duration_since(awaiting.since) < ANSWER_TIMEOUT {
            return None;
        }
        // Not an acknowledgement either way: the change may still commit
        // (its late answer finds nothing awaiting and is dropped).
        let (qr_api, head_only, read) = (awaiting.qr_api, awaiting.head_only, awaiting.read);
        conn.awaiting = None;
        let message = if read {
            tracing::warn!("a read waited 30 s for the store's commit; answered 503");
            "no answer from the store within 30 seconds"
        } else {
            tracing::warn!("a change had no answer from the store within 30 s; answered 503");
            "no answer from the store within 30 seconds; the change may still be committed"
        };
        let (status, body) = api::answer(Outcome::Unavailable(message.into()), qr_api);
        http::write_response(&mut conn.out, status, &body, true, head_only, date);
        conn.close_after_write = true;
        return Some(false);
    }
    let unsent = conn.unsent();
    // Input the server itself holds back (behind output past its bound or a
    // long answer going out, or commands at the in-flight cap) waits for the
    // server, not for the client, and no more is read meanwhile: its 10 s
    // clocks restart from now while the hold lasts, so the client has its
    // whole time once the hold ends (complete pipelined requests once got a
    // 408 behind a slow reader's answers).
    let held = unsent > MAX_PENDING_OUTPUT
        || conn.streamed.is_some()
        || conn
            .ws
            .as_ref()
            .is_some_and(|ws| ws.in_flight >= MAX_IN_FLIGHT);
    if held {
        if conn.request_started.is_some() {
            conn.request_started = Some(now);
        }
        if let Some(ws) = conn.ws.as_mut().filter(|ws| ws.message_started.is_some()) {
            ws.message_started = Some(now);
        }
    }
    let frame_started = conn.request_started.filter(|_| !conn.input.is_empty());
    if let Some(ws) = conn.ws.as_mut() {
        // A WebSocket client may stay idle for ever; one that does not read
        // its close frame is dropped after a grace period.
        if conn.close_after_write && now.duration_since(conn.last_active) >= CLOSE_GRACE {
            return Some(true);
        }
        if ws.auth_deadline.is_some_and(|d| now >= d) {
            // SPEC §3.4: silence past --ws-auth-timeout.
            ws.auth_deadline = None;
            queue_close(conn, close_code::POLICY, "authentication timeout");
            return Some(false);
        }
        if unsent > 0 && now.duration_since(conn.last_written) >= WS_STALL_TIMEOUT {
            return Some(true);
        }
        // A frame, or a fragmented message, begun and not finished: its bytes
        // are not held for ever.
        let begun = match (frame_started, ws.message_started) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if begun.is_some_and(|started| now.duration_since(started) >= REQUEST_TIMEOUT) {
            ws.message_started = None;
            conn.input = Vec::new();
            conn.request_started = None;
            queue_close(
                conn,
                close_code::POLICY,
                "message not completed within 10 seconds",
            );
            return Some(false);
        }
        return None;
    }
    if held {
        // A long poll answer taken slower than the minimum rate: given up
        // (its events hold a share of the stream budget).
        if conn.streamed.as_ref().is_some_and(|s| s.too_slow(now)) {
            tracing::info!(
                rate = http::MIN_STREAM_RATE,
                "a poll answer went out slower than the minimum rate (bytes/s); connection dropped"
            );
            return Some(true);
        }
        // Answers still going out (nothing more is answered before they
        // are): a client that stopped taking them is dropped once idle.
        return (now.duration_since(conn.last_active) >= IDLE_TIMEOUT).then_some(true);
    }
    if conn.close_after_write {
        // A last answer the client does not take (it stopped reading, its
        // window is full): dropped after a grace period without progress,
        // like a WebSocket close frame. Neither timeout below covers it.
        return (now.duration_since(conn.last_active) >= CLOSE_GRACE).then_some(true);
    }
    if let Some(started) = conn.request_started {
        if now.duration_since(started) >= REQUEST_TIMEOUT {
            let path = sniff_path(&conn.input);
            let body = http::error_body(path, 408, "request not completed within 10 seconds");
            let head_only = sniff_head(&conn.input);
            http::write_response(&mut conn.out, 408, &body, true, head_only, date);
            conn.close_after_write = true;
            conn.input = Vec::new();
            return Some(false);
        }
        return None;
    }
    (now.duration_since(conn.last_active) >= IDLE_TIMEOUT).then_some(true)
}

/// The path of a request line, as far as it can be read, for the error shape.
fn sniff_path(buf: &[u8]) -> &[u8] {
    let line = request_line(buf)
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or(b"");
    let mut parts = line.split(|&b| b == b' ');
    let _method = parts.next();
    http::request::path_of_target(parts.next().unwrap_or(b""))
}

/// Whether a request, as far as it can be read, is a `HEAD` (its error
/// answers then carry no body, RFC 9110 §9.3.2).
fn sniff_head(buf: &[u8]) -> bool {
    request_line(buf).starts_with(b"HEAD ")
}

/// `buf` from its request line on: the blank lines a client may send
/// before one (RFC 9112 §2.2) skipped.
fn request_line(buf: &[u8]) -> &[u8] {
    let start = buf
        .iter()
        .position(|b| !b"\r\n".contains(b))
        .unwrap_or(buf.len());
    &buf[start..]
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

/// Turns on the kernel's checks for a peer that went away without a word
/// (see [`KEEPALIVE_IDLE`]). Best effort: a socket that refuses them is
/// still served.
fn detect_dead_peer(stream: &TcpStream) {
    let socket = socket2::SockRef::from(stream);
    let probes = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    if let Err(e) = socket
        .set_tcp_keepalive(&probes)
        .and_then(|()| socket.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT)))
    {
        tracing::debug!(error = %e, "cannot set TCP keep-alive on a WebSocket connection");
    }
}

/// Sends an answer's `parts` with one vectored write when nothing is queued
/// before them, and keeps in `conn.out` what the socket did not take. A
/// short poll answer is not copied into the connection's buffer first: that
/// buffer is cold (one per connection), and the copy, and the store buffer
/// drain it made the next locked instruction pay, were ~3 % of a poll's CPU
/// (session 21). An error other than `WouldBlock` is left for the flush
/// that follows, which meets it again.
fn write_through(conn: &mut Conn, parts: [&[u8]; 3], now: Instant) {
    let slices = parts.map(IoSlice::new);
    let written = crate::sockio::write_vectored(&conn.stream, &slices).unwrap_or(0);
    if written > 0 {
        conn.last_active = now;
        conn.last_written = now;
    }
    keep_unwritten(&mut conn.out, parts, written);
}

/// Appends to `out` what is left of `parts` once their first `written`
/// bytes are sent.
fn keep_unwritten(out: &mut Vec<u8>, parts: [&[u8]; 3], mut written: usize) {
    for part in parts {
        let taken = written.min(part.len());
        out.extend_from_slice(&part[taken..]);
        written -= taken;
    }
}

/// Writes as much pending output as the socket takes.
fn flush(conn: &mut Conn, now: Instant) -> io::Result<()> {
    loop {
        while conn.out_pos < conn.out.len() {
            match crate::sockio::write(&conn.stream, &conn.out[conn.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    conn.out_pos += n;
                    conn.last_active = now;
                    conn.last_written = now;
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
        let written = match crate::sockio::write_vectored(&conn.stream, &slices[..n]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(w) => w,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        conn.last_active = now;
        conn.last_written = now;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// No mark is lost: threads hand items to a gate (push, mark, run) while
    /// other threads hold it; when they are done, some run has taken every
    /// item. Many short rounds, each started together, so the last hand-off
    /// of a round often meets a busy gate: a holder that let go without
    /// looking at the bits again leaves an item behind (checked by breaking
    /// `run` that way).
    #[test]
    fn every_mark_is_run_by_someone() {
        const ROUNDS: usize = 2_000;
        const THREADS: usize = 3;
        const ITEMS: usize = 3;
        let gate = Gate::new(0usize);
        let inbox = Mutex::new(Vec::new());
        let start = std::sync::Barrier::new(THREADS);
        for round in 0..ROUNDS {
            std::thread::scope(|scope| {
                for _ in 0..THREADS {
                    scope.spawn(|| {
                        start.wait();
                        for _ in 0..ITEMS {
                            inbox.lock().push(round);
                            gate.mark(0);
                            gate.run(|taken, bits| {
                                assert_ne!(bits & RUN, 0, "a run sees the mark");
                                *taken += std::mem::take(&mut *inbox.lock()).len();
                                // Hold the gate a little, so others find it busy.
                                for _ in 0..100 {
                                    std::hint::spin_loop();
                                }
                            });
                        }
                    });
                }
            });
            assert!(
                inbox.lock().is_empty(),
                "round {round}: an item was left behind"
            );
        }
        assert_eq!(*gate.inner.lock(), ROUNDS * THREADS * ITEMS);
        assert!(!gate.marked());
    }

    /// A gate that another thread holds is not run by `run` (it returns at
    /// once), and the holder finds the mark when it lets go.
    #[test]
    fn a_busy_gate_leaves_the_mark_to_its_holder() {
        let gate = Gate::new(Vec::new());
        let held = gate.inner.lock();
        gate.mark(READABLE);
        gate.run(|v: &mut Vec<u8>, bits| v.push(bits));
        drop(held);
        assert!(gate.marked());
        gate.run(|v, bits| v.push(bits));
        assert_eq!(*gate.inner.lock(), [READABLE | RUN]);
        assert!(!gate.marked());
    }

    /// A WebSocket connection (`/ws/display`) on a real loopback socket.
    fn ws_conn(now: Instant) -> (Conn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut conn = Conn::new(TcpStream::from_std(server), None, 1, now);
        conn.ws = Some(Box::new(WsConn {
            role: WsRole::Display,
            reader: WsReader::default(),
            message_started: None,
            active: true,
            in_flight: 0,
            auth_deadline: None,
            token: None,
            close_received: false,
        }));
        (conn, client)
    }

    /// A WebSocket client may stay silent for ever, but output the socket
    /// takes nothing of for 60 s is let go with its connection.
    #[test]
    fn a_websocket_stalled_for_60_s_is_dropped_and_an_idle_one_is_not() {
        let t0 = Instant::now();
        let date = DateCache::default();
        let (mut conn, _client) = ws_conn(t0);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(
            expired(&mut conn, later, &date),
            None,
            "idle, nothing pending"
        );
        queue_frame(&mut conn, Bytes::from_static(b"\x81\x01x"), 1 << 20);
        conn.last_written = later - Duration::from_secs(59);
        assert_eq!(
            expired(&mut conn, later, &date),
            None,
            "59 s without progress"
        );
        conn.last_written = later - WS_STALL_TIMEOUT;
        assert_eq!(expired(&mut conn, later, &date), Some(true), "60 s");
    }

    /// What a write through leaves for later is the rest of the parts, in
    /// order, wherever the socket stopped taking them.
    #[test]
    fn an_answer_written_through_in_part_keeps_its_rest_in_order() {
        let parts: [&[u8]; 3] = [b"head+", b"events", b"]}}"];
        let whole = parts.concat();
        for written in 0..=whole.len() {
            let mut out = Vec::new();
            keep_unwritten(&mut out, parts, written);
            assert_eq!(out, whole[written..], "written {written}");
        }
    }

    /// A long poll answer the client takes a little of now and then (never
    /// idle for 60 s) is dropped once it falls under the minimum rate.
    #[test]
    fn a_long_poll_answer_taken_too_slowly_is_dropped() {
        let date = DateCache::default();
        let (mut conn, _client) = ws_conn(Instant::now());
        conn.ws = None;
        let budget = http::StreamBudget::new(http::MAX_STREAMED_BYTES);
        let mut events: Vec<Bytes> = (0..2000).map(|_| Bytes::from(vec![b'1'; 300])).collect();
        let mut out = Vec::new();
        conn.streamed =
            http::write_events(&mut out, &mut events, false, false, &date, &budget).map(Box::new);
        assert!(conn.streamed.is_some(), "600 kB are streamed");
        let t0 = Instant::now();
        for (at, verdict) in [(30, None), (59, None), (61, Some(true))] {
            let now = t0 + Duration::from_secs(at);
            conn.last_active = now; // a byte just went out
            assert_eq!(expired(&mut conn, now, &date), verdict, "{at} s");
        }
    }

    /// A frame or a fragmented message begun 10 s ago gets a 1008 close; an
    /// empty input with a stale start does not.
    #[test]
    fn a_websocket_message_unfinished_for_10_s_is_closed() {
        let t0 = Instant::now();
        let date = DateCache::default();
        let (mut conn, _client) = ws_conn(t0);
        conn.request_started = Some(t0);
        let later = t0 + REQUEST_TIMEOUT;
        assert_eq!(expired(&mut conn, later, &date), None, "no bytes held");
        conn.input = vec![0x81, 0x85];
        assert_eq!(
            expired(&mut conn, later - Duration::from_millis(1), &date),
            None
        );
        assert_eq!(expired(&mut conn, later, &date), Some(false));
        assert!(conn.close_after_write && conn.input.is_empty());

        let (mut conn, _client) = ws_conn(t0);
        conn.ws.as_mut().unwrap().message_started = Some(t0);
        assert_eq!(expired(&mut conn, later, &date), Some(false));
        assert!(conn.close_after_write);
    }

    /// Complete requests held back behind answers a slow client has not
    /// taken yet get no 408: the 10 s clock runs only while the server waits
    /// for the client, and restarts when the hold ends. A client that takes
    /// nothing for 60 s is dropped.
    #[test]
    fn requests_held_behind_unsent_answers_get_no_408() {
        let t0 = Instant::now();
        let date = DateCache::default();
        let (mut conn, _client) = ws_conn(t0);
        conn.ws = None;
        conn.input = b"GET /api/v4/events?hash=none HTTP/1.1\r\n\r\n".to_vec();
        conn.request_started = Some(t0);
        conn.out = vec![b'x'; MAX_PENDING_OUTPUT + 1];
        let held_until = t0 + Duration::from_secs(30);
        assert_eq!(expired(&mut conn, held_until, &date), None, "held 30 s");
        assert_eq!(conn.request_started, Some(held_until), "clock restarted");
        assert!(conn.out.len() == MAX_PENDING_OUTPUT + 1, "no 408 written");
        // The client takes the answers: from then on its 10 s run.
        conn.out.clear();
        conn.last_active = held_until;
        let almost = held_until + REQUEST_TIMEOUT - Duration::from_millis(1);
        assert_eq!(expired(&mut conn, almost, &date), None);
        assert_eq!(
            expired(&mut conn, held_until + REQUEST_TIMEOUT, &date),
            Some(false)
        );
        assert!(conn.out.starts_with(b"HTTP/1.1 408 "));

        // A client that takes nothing at all is dropped once idle.
        let (mut conn, _client) = ws_conn(t0);
        conn.ws = None;
        conn.input = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        conn.request_started = Some(t0);
        conn.out = vec![b'x'; MAX_PENDING_OUTPUT + 1];
        let idle = t0 + IDLE_TIMEOUT;
        assert_eq!(
            expired(&mut conn, idle - Duration::from_millis(1), &date),
            None
        );
        assert_eq!(expired(&mut conn, idle, &date), Some(true));

        // A WebSocket command at the in-flight cap: its message clock
        // restarts too.
        let (mut conn, _client) = ws_conn(t0);
        conn.input = vec![0x81, 0x85];
        conn.request_started = Some(t0);
        let ws = conn.ws.as_mut().unwrap();
        ws.in_flight = MAX_IN_FLIGHT;
        ws.message_started = Some(t0);
        assert_eq!(expired(&mut conn, held_until, &date), None);
        conn.ws.as_mut().unwrap().in_flight = 0;
        assert_eq!(
            expired(&mut conn, held_until + REQUEST_TIMEOUT, &date),
            Some(false)
        );
    }

    /// A change the writer never answers gets a 503 after 30 s, and its
    /// connection closes once that is written.
    #[test]
    fn a_change_without_an_answer_for_30_s_gets_a_503() {
        let t0 = Instant::now();
        let date = DateCache::default();
        let (mut conn, _client) = ws_conn(t0);
        conn.ws = None;
        conn.awaiting = Some(Awaiting {
            since: t0,
            keep_alive: true,
            qr_api: true,
            head_only: false,
            read: false,
        });
        let later = t0 + ANSWER_TIMEOUT;
        assert_eq!(
            expired(&mut conn, later - Duration::from_millis(1), &date),
            None
        );
        assert!(conn.out.is_empty());
        assert_eq!(expired(&mut conn, later, &date), Some(false));
        assert!(conn.awaiting.is_none() && conn.close_after_write);
        let answer = String::from_utf8_lossy(&conn.out).into_owned();
        assert!(
            answer.starts_with("HTTP/1.1 503 ")
                && answer.contains("Connection: close")
                && answer.contains("no answer from the store within 30 seconds"),
            "{answer}"
        );
    }

    /// The connection table's cost per place (README: `--max-connections`).
    #[test]
    fn a_table_place_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Gate<Option<Box<Conn>>>>(), 24);
    }
}
