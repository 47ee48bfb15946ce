//! `orders-fanout`: order changes per second fanned out to N authenticated
//! `/api/v2/websocket` clients (SPEC §3.2–§3.5), with time-to-all p50/p99
//! and server CPU per delivered frame.
//!
//! ```text
//! orders-fanout --url http://127.0.0.1:PORT --admin-token ADMIN \
//!     [--clients 1000] [--changes 2000] [--duration 30] [--rate 0] \
//!     [--server-pid PID]
//! ```
//!
//! 1. A gateway token: `POST /api/v2/button` (admin), then
//!    `GET /api/v2/accesstoken/generate` (or `--token`).
//! 2. One thread, one `mio` poll, N WebSocket clients, each authenticated by
//!    `Authorization: Bearer TOKEN` on its handshake (or `--auth-frame`:
//!    a first `{"accesstoken":…}` frame); each must receive `ACTIVE_ORDERS`
//!    first.
//! 3. `--orders` orders created (`POST /api/v2/activeorders`), delivered to
//!    every client before the measured phase starts.
//! 4. The measured phase: `--changes` changes (bounded by `--duration` too),
//!    each a page (`POST …/{name}/page`) or a move (`PUT …/{name}` with a new
//!    `locationName`), on `--conns` keep-alive connections, closed-loop (the
//!    next change after the 2xx) or, with `--rate R`, at R changes/s in total
//!    (requests pipelined; latencies then count from the scheduled time).
//! 5. Every change's `seq` (from its answer) is matched with the frames: its
//!    time-to-all is when the LAST of the N clients read it minus its send
//!    time. Server CPU is `/proc/PID/stat` utime+stime of `--server-pid`
//!    around the measured phase, divided by the frames delivered.
//!
//! Correctness: every client must get every change (the creates included)
//! exactly once, in `seq` order, with the type its request implies
//! (`ORDER_CREATED`, `ORDER_PAGED`, `ORDER_MODIFIED`); a client closed by the
//! server, a gap, a duplicate or a reordering is a failure: exit 1. A setup
//! problem (server unreachable, a refused handshake, a non-2xx) exits 2.
//! Only 127.0.0.1; every loop is bounded in count and time.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "orders-fanout",
    about = "Order changes fanned out to N /api/v2/websocket clients: changes/s, time-to-all, server CPU per frame"
)]
struct Args {
    /// The server, `http://127.0.0.1:PORT` (loopback only).
    #[arg(long)]
    url: String,
    /// The admin token (`Authorization: Bearer …` on `POST /api/v2/button`
    /// and the order writes).
    #[arg(long, env = "FLOORBELL_ADMIN_TOKEN")]
    admin_token: String,
    /// A gateway token to use instead of pressing the button for a new one.
    #[arg(long)]
    token: Option<String>,
    /// Send the order writes with the gateway token (SECURED) instead of
    /// the admin token.
    #[arg(long)]
    writes_with_gateway_token: bool,
    /// WebSocket clients.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Authenticate with a first `{"accesstoken":…}` text frame instead of
    /// the handshake's `Authorization` header.
    #[arg(long)]
    auth_frame: bool,
    /// Orders created before the measured phase (names `name-base`, …).
    #[arg(long, default_value_t = 20)]
    orders: usize,
    /// The first order name (names are 1–6 digits).
    #[arg(long, default_value_t = 1)]
    name_base: u32,
    /// Measured changes at most.
    #[arg(long, default_value_t = 2000)]
    changes: usize,
    /// Measured phase at most this many seconds.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Changes per second in total (pipelined, open loop); 0: closed loop.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Keep-alive HTTP connections performing the changes (each owns
    /// every conns-th order).
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Requests in flight per connection at most with --rate.
    #[arg(long, default_value_t = 256)]
    pipeline: usize,
    /// Percentage of changes that are pages (the rest are moves).
    #[arg(long, default_value_t = 50)]
    page_percent: u32,
    /// Tables a move picks from (`locationName` "1" … "N").
    #[arg(long, default_value_t = 40)]
    tables: u32,
    /// The server's pid, for its CPU time from /proc/PID/stat.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds for all clients to connect and receive ACTIVE_ORDERS.
    #[arg(long, default_value_t = 30.0)]
    connect_timeout: f64,
    /// Seconds for the last changes to reach every client.
    #[arg(long, default_value_t = 15.0)]
    drain_timeout: f64,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 128)]
    connect_batch: usize,
}

/// Nanoseconds since the tool started (one clock for every thread).
fn now_ns() -> u64 {
    static T0: OnceLock<Instant> = OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 86_400.0))
}

// ---------------------------------------------------------------------------
// HTTP/1.1 client (blocking, keep-alive, pipelining-capable)

struct HttpAnswer {
    status: u16,
    body: Vec<u8>,
}

/// Reads responses in order from one connection.
struct ResponseReader {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
}

impl ResponseReader {
    fn read_response(&mut self) -> Result<HttpAnswer, String> {
        let mut scratch = [0u8; 16 * 1024];
        // Bounded: each round reads more bytes or fails (read timeout set).
        for _ in 0..100_000 {
            let parsed = {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.buf) {
                    Ok(httparse::Status::Complete(head_len)) => {
                        let mut length = 0usize;
                        for h in resp.headers.iter() {
                            if h.name.eq_ignore_ascii_case("content-length") {
                                length = std::str::from_utf8(h.value)
                                    .ok()
                                    .and_then(|v| v.trim().parse().ok())
                                    .ok_or("bad Content-Length in an answer")?;
                            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                                return Err("chunked answers are not expected".into());
                            }
                        }
                        Some((resp.code.unwrap_or(0), head_len, length))
                    }
                    Ok(httparse::Status::Partial) => None,
                    Err(e) => return Err(format!("unparsable HTTP answer: {e}")),
                }
            };
            if let Some((status, head_len, length)) = parsed {
                if self.buf.len() >= head_len + length {
                    let body = self.buf[head_len..head_len + length].to_vec();
                    self.buf.drain(..head_len + length);
                    if (100..200).contains(&status) {
                        continue;
                    }
                    return Ok(HttpAnswer { status, body });
                }
            }
            match self.stream.read(&mut scratch) {
                Ok(0) => return Err("the server closed the HTTP connection".into()),
                Ok(n) => self.buf.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading an HTTP answer: {e}")),
            }
        }
        Err("an HTTP answer that never ends".into())
    }
}

fn http_request(
    method: &str,
    path: &str,
    host: &str,
    auth: Option<&str>,
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(a) = auth {
        let _ = write!(head, "Authorization: Bearer {a}\r\n");
    }
    if let Some(b) = body {
        let _ = write!(
            head,
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        );
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if let Some(b) = body {
        out.extend_from_slice(b);
    }
    out
}

/// One keep-alive connection used request by request.
struct Http {
    writer: std::net::TcpStream,
    reader: ResponseReader,
    host: String,
}

impl Http {
    fn connect(addr: SocketAddr) -> Result<Self, String> {
        let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let reader = ResponseReader {
            stream: stream.try_clone().map_err(|e| e.to_string())?,
            buf: Vec::new(),
        };
        Ok(Http {
            writer: stream,
            reader,
            host: addr.to_string(),
        })
    }

    fn call(
        &mut self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<HttpAnswer, String> {
        let req = http_request(method, path, &self.host, auth, body);
        self.writer
            .write_all(&req)
            .map_err(|e| format!("{method} {path}: {e}"))?;
        self.reader
            .read_response()
            .map_err(|e| format!("{method} {path}: {e}"))
    }
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
    s.into_owned()
}

/// `POST /api/v2/button`, then `GET /api/v2/accesstoken/generate` → 201.
fn gateway_token(addr: SocketAddr, admin: &str) -> Result<String, String> {
    let mut http = Http::connect(addr)?;
    let a = http.call("POST", "/api/v2/button", Some(admin), Some(b""))?;
    if a.status != 200 {
        return Err(format!(
            "POST /api/v2/button answered {}: {}",
            a.status,
            snippet(&a.body)
        ));
    }
    let a = http.call("GET", "/api/v2/accesstoken/generate", None, None)?;
    if a.status != 201 {
        return Err(format!(
            "GET /api/v2/accesstoken/generate answered {}: {}",
            a.status,
            snippet(&a.body)
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&a.body).map_err(|e| format!("token answer: {e}"))?;
    v.get("token")
        .and_then(|t| t.get("token"))
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("no token.token in {}", snippet(&a.body)))
}

// ---------------------------------------------------------------------------
// The WebSocket clients

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Created = 1,
    Paged = 2,
    Modified = 3,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Created => "ORDER_CREATED",
            Kind::Paged => "ORDER_PAGED",
            Kind::Modified => "ORDER_MODIFIED",
        }
    }
}

/// What the clients saw of one `seq`.
#[derive(Clone, Copy, Debug)]
struct SeqStat {
    count: u32,
    first_ns: u64,
    last_ns: u64,
    kind: Kind,
    kind_conflict: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    NotStarted,
    Connecting,
    Upgrading,
    Open,
    Closed,
}

struct Client {
    stream: Option<TcpStream>,
    phase: Phase,
    key: String,
    /// Bytes to send (the handshake, an auth frame, pongs) and how many went.
    out: Vec<u8>,
    out_pos: usize,
    inbuf: Vec<u8>,
    /// A fragmented message being reassembled.
    fragments: Option<Vec<u8>>,
    st: MsgState,
}

/// What one client has seen (apart from its buffers, so a message can be
/// handled while it still lies in the input buffer).
#[derive(Default)]
struct MsgState {
    snapshot: bool,
    snapshot_count: u64,
    last_seq: u64,
    received: u64,
    order_errors: u64,
}

/// State the client thread and the others share.
struct Shared {
    /// 0 connecting, 1 every client has its snapshot, 2 setup failed.
    setup: AtomicU8,
    ready: AtomicUsize,
    /// The lowest last `seq` over the open clients.
    min_seen: AtomicU64,
    /// Once set (not u64::MAX): stop when every open client has this seq.
    target: AtomicU64,
    abort: AtomicBool,
}

struct ClientConfig {
    addr: SocketAddr,
    token: String,
    clients: usize,
    auth_frame: bool,
    connect_timeout: Duration,
    drain_timeout: Duration,
    connect_batch: usize,
    hard_deadline: Instant,
}

#[derive(Default)]
struct ClientReport {
    stats: HashMap<u64, SeqStat>,
    connect_secs: f64,
    /// Per client: (received, order errors, closed early).
    per_client: Vec<(u64, u64, bool)>,
    snapshot_counts: (u64, u64),
    failures: usize,
    failure_samples: Vec<String>,
    drained: bool,
}

struct Fleet {
    cfg: ClientConfig,
    poll: Poll,
    clients: Vec<Client>,
    stats: HashMap<u64, SeqStat>,
    scratch: Vec<u8>,
    in_progress: usize,
    ready: usize,
    failures: usize,
    failure_samples: Vec<String>,
    mask_state: u64,
}

const MAX_MESSAGE: usize = 16 << 20;

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn digits_at(p: &[u8]) -> Option<u64> {
    let end = p
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(p.len());
    if end == 0 || end > 19 {
        return None;
    }
    std::str::from_utf8(&p[..end]).ok()?.parse().ok()
}

fn number_after(p: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(p, key)? + key.len();
    digits_at(&p[at..])
}

/// One message from the server, for one client.
fn on_message(
    c: &mut MsgState,
    stats: &mut HashMap<u64, SeqStat>,
    t: u64,
    p: &[u8],
) -> Result<(), String> {
    const SEQ: &[u8] = b"\"seq\":";
    if !c.snapshot {
        if !p.starts_with(b"{\"type\":\"ACTIVE_ORDERS\"") {
            return Err(format!(
                "first message is not ACTIVE_ORDERS: {}",
                snippet(p)
            ));
        }
        c.snapshot = true;
        c.snapshot_count = number_after(p, b"\"count\":").unwrap_or(0);
        // Every later change has a higher seq than any order in the snapshot.
        let mut rest = p;
        while let Some(i) = find(rest, SEQ) {
            rest = &rest[i + SEQ.len()..];
            if let Some(s) = digits_at(rest) {
                c.last_seq = c.last_seq.max(s);
            }
        }
        return Ok(());
    }
    // `type` stands after `stateStarted` (README, "Decisions where the spec is silent", Gateway): a key of the
    // top-level object, so preceded by a comma (inside a string value its
    // quotes would be escaped).
    let kind = if find(p, b",\"type\":\"ORDER_PAGED\"").is_some() {
        Kind::Paged
    } else if find(p, b",\"type\":\"ORDER_MODIFIED\"").is_some() {
        Kind::Modified
    } else if find(p, b",\"type\":\"ORDER_CREATED\"").is_some() {
        Kind::Created
    } else {
        return Err(format!("unexpected message: {}", snippet(p)));
    };
    let seq = number_after(p, SEQ).ok_or_else(|| format!("no seq in {}", snippet(p)))?;
    c.received += 1;
    if seq <= c.last_seq {
        c.order_errors += 1;
    } else {
        c.last_seq = seq;
    }
    let s = stats.entry(seq).or_insert(SeqStat {
        count: 0,
        first_ns: t,
        last_ns: t,
        kind,
        kind_conflict: false,
    });
    s.count += 1;
    s.last_ns = s.last_ns.max(t);
    s.kind_conflict |= s.kind != kind;
    Ok(())
}

impl Fleet {
    fn fail(&mut self, i: usize, why: String) {
        let c = &mut self.clients[i];
        if c.phase == Phase::Closed {
            return;
        }
        if matches!(c.phase, Phase::Connecting | Phase::Upgrading)
            || (c.phase == Phase::Open && !c.st.snapshot)
        {
            self.in_progress -= 1;
        }
        c.phase = Phase::Closed;
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        c.inbuf = Vec::new();
        self.failures += 1;
        if self.failure_samples.len() < 10 {
            self.failure_samples.push(format!("client {i}: {why}"));
        }
    }

    fn start(&mut self, i: usize) {
        let mut stream = match TcpStream::connect(self.cfg.addr) {
            Ok(s) => s,
            Err(e) => {
                self.clients[i].phase = Phase::Connecting;
                self.in_progress += 1;
                return self.fail(i, format!("connect: {e}"));
            }
        };
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.clients[i].phase = Phase::Connecting;
            self.in_progress += 1;
            return self.fail(i, format!("register: {e}"));
        }
        let c = &mut self.clients[i];
        c.key = tungstenite::handshake::client::generate_key();
        let mut req = format!(
            "GET /api/v2/websocket HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
            self.cfg.addr, c.key
        );
        if !self.cfg.auth_frame {
            let _ = write!(req, "Authorization: Bearer {}\r\n", self.cfg.token);
        }
        req.push_str("\r\n");
        c.out = req.into_bytes();
        c.out_pos = 0;
        c.stream = Some(stream);
        c.phase = Phase::Connecting;
        self.in_progress += 1;
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift64*
        let mut x = self.mask_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.mask_state = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) as u32).to_le_bytes()
    }

    /// Appends a masked client frame to client i's output.
    fn queue_frame(&mut self, i: usize, opcode: u8, payload: &[u8]) {
        let mask = self.next_mask();
        let out = &mut self.clients[i].out;
        out.push(0x80 | opcode);
        if payload.len() < 126 {
            out.push(0x80 | payload.len() as u8);
        } else if payload.len() <= 0xffff {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(k, b)| b ^ mask[k % 4]));
    }

    /// Writes what client i has to send; Err on a broken connection.
    fn flush(&mut self, i: usize) -> Result<(), String> {
        let c = &mut self.clients[i];
        let Some(stream) = c.stream.as_mut() else {
            return Ok(());
        };
        while c.out_pos < c.out.len() {
            match stream.write(&c.out[c.out_pos..]) {
                Ok(0) => return Err("write returned 0".into()),
                Ok(n) => c.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        c.out.clear();
        c.out_pos = 0;
        Ok(())
    }

    fn on_event(&mut self, i: usize, writable: bool, readable: bool) {
        if self.clients[i].phase == Phase::Connecting && writable {
            let stream = self.clients[i].stream.as_mut().expect("stream");
            match stream.take_error() {
                Ok(Some(e)) | Err(e) => return self.fail(i, format!("connect: {e}")),
                Ok(None) => {}
            }
            match stream.peer_addr() {
                Ok(_) => {
                    let _ = stream.set_nodelay(true);
                    self.clients[i].phase = Phase::Upgrading;
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.fail(i, format!("connect: {e}")),
            }
        }
        if matches!(self.clients[i].phase, Phase::Upgrading | Phase::Open) {
            if let Err(e) = self.flush(i) {
                return self.fail(i, e);
            }
        }
        if readable && matches!(self.clients[i].phase, Phase::Upgrading | Phase::Open) {
            self.read(i);
        }
    }

    fn read(&mut self, i: usize) {
        // Edge-triggered: read until WouldBlock or a short read (bounded per
        // event so one client cannot starve the others; the rest comes next
        // round).
        for _ in 0..64 {
            let c = &mut self.clients[i];
            let Some(stream) = c.stream.as_mut() else {
                return;
            };
            match stream.read(&mut self.scratch) {
                Ok(0) => {
                    let why = if c.st.snapshot {
                        "the server closed the connection"
                    } else {
                        "the server closed the connection before ACTIVE_ORDERS"
                    };
                    return self.fail(i, why.into());
                }
                Ok(n) => {
                    let t = now_ns();
                    c.inbuf.extend_from_slice(&self.scratch[..n]);
                    if let Err(e) = self.parse(i, t) {
                        return self.fail(i, e);
                    }
                    // A short read emptied the socket's receive queue; on
                    // Linux the next arrival raises a new edge (tokio relies
                    // on the same), so the read that would say WouldBlock is
                    // saved: one system call per frame fewer.
                    if n < self.scratch.len() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(i, format!("read: {e}")),
            }
        }
        // Not drained: poll again (level re-arm by re-registering).
        if let Some(s) = self.clients[i].stream.as_mut() {
            let _ = self.poll.registry().reregister(
                s,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            );
        }
    }

    fn parse(&mut self, i: usize, t: u64) -> Result<(), String> {
        if self.clients[i].phase == Phase::Upgrading {
            let c = &mut self.clients[i];
            let Some(end) = find(&c.inbuf, b"\r\n\r\n") else {
                if c.inbuf.len() > 64 * 1024 {
                    return Err("handshake answer too long".into());
                }
                return Ok(());
            };
            let head_len = end + 4;
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            resp.parse(&c.inbuf[..head_len])
                .map_err(|e| format!("handshake answer: {e}"))?;
            let code = resp.code.unwrap_or(0);
            if code != 101 {
                return Err(format!(
                    "handshake answered {code}: {}",
                    snippet(&c.inbuf[head_len..])
                ));
            }
            let expected = tungstenite::handshake::derive_accept_key(c.key.as_bytes());
            let accept = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
                .map(|h| h.value);
            if accept != Some(expected.as_bytes()) {
                return Err("bad Sec-WebSocket-Accept".into());
            }
            c.inbuf.drain(..head_len);
            c.phase = Phase::Open;
            if self.cfg.auth_frame {
                let msg = format!("{{\"accesstoken\":\"{}\"}}", self.cfg.token);
                self.queue_frame(i, 0x1, msg.as_bytes());
                self.flush(i)?;
            }
        }
        let mut pos = 0;
        let mut pongs: Vec<Vec<u8>> = Vec::new();
        let result = loop {
            let c = &mut self.clients[i];
            let buf = &c.inbuf[pos..];
            if buf.len() < 2 {
                break Ok(());
            }
            let (b0, b1) = (buf[0], buf[1]);
            if b1 & 0x80 != 0 {
                break Err("a masked frame from the server".to_string());
            }
            if b0 & 0x70 != 0 {
                break Err("RSV bits set in a server frame".to_string());
            }
            let (len, hl) = match b1 & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
                127 if buf.len() >= 10 => (
                    u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")),
                    10,
                ),
                126 | 127 => break Ok(()),
                l => (l as u64, 2),
            };
            if len > MAX_MESSAGE as u64 {
                break Err(format!("a {len}-byte frame"));
            }
            let len = len as usize;
            if buf.len() < hl + len {
                break Ok(());
            }
            let payload = &buf[hl..hl + len];
            let fin = b0 & 0x80 != 0;
            let was_snapshot = c.st.snapshot;
            let r = match b0 & 0x0f {
                0x1 if c.fragments.is_some() => Err("a new message inside a fragmented one".into()),
                0x1 if fin => on_message(&mut c.st, &mut self.stats, t, payload),
                0x1 => {
                    c.fragments = Some(payload.to_vec());
                    Ok(())
                }
                0x0 => match c.fragments.as_mut() {
                    None => Err("a continuation without a message".into()),
                    Some(f) => {
                        f.extend_from_slice(payload);
                        if f.len() > MAX_MESSAGE {
                            Err("a message over 16 MiB".into())
                        } else if fin {
                            let f = c.fragments.take().expect("fragments");
                            on_message(&mut c.st, &mut self.stats, t, &f)
                        } else {
                            Ok(())
                        }
                    }
                },
                0x8 => {
                    let code = if payload.len() >= 2 {
                        u16::from_be_bytes([payload[0], payload[1]])
                    } else {
                        1005
                    };
                    let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or(&[]));
                    Err(format!("the server closed with {code} {reason}"))
                }
                0x9 => {
                    pongs.push(payload.to_vec());
                    Ok(())
                }
                0xA => Ok(()),
                op => Err(format!("unexpected opcode {op:#x}")),
            };
            if let Err(e) = r {
                break Err(e);
            }
            if !was_snapshot && c.st.snapshot {
                self.ready += 1;
                self.in_progress -= 1;
            }
            pos += hl + len;
        };
        let c = &mut self.clients[i];
        c.inbuf.drain(..pos);
        result?;
        if !pongs.is_empty() {
            for p in pongs {
                self.queue_frame(i, 0xA, &p);
            }
            self.flush(i)?;
        }
        Ok(())
    }

    fn min_seen(&self) -> u64 {
        self.clients
            .iter()
            .filter(|c| c.phase == Phase::Open && c.st.snapshot)
            .map(|c| c.st.last_seq)
            .min()
            .unwrap_or(u64::MAX)
    }
}

fn run_clients(cfg: ClientConfig, shared: Arc<Shared>) -> ClientReport {
    let n = cfg.clients;
    let poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            shared.setup.store(2, Ordering::SeqCst);
            return ClientReport {
                failures: 1,
                failure_samples: vec![format!("mio poll: {e}")],
                ..Default::default()
            };
        }
    };
    let mut fleet = Fleet {
        poll,
        clients: (0..n)
            .map(|_| Client {
                stream: None,
                phase: Phase::NotStarted,
                key: String::new(),
                out: Vec::new(),
                out_pos: 0,
                inbuf: Vec::new(),
                fragments: None,
                st: MsgState::default(),
            })
            .collect(),
        stats: HashMap::with_capacity(4096),
        scratch: vec![0u8; 64 * 1024],
        in_progress: 0,
        ready: 0,
        failures: 0,
        failure_samples: Vec::new(),
        mask_state: 0x9E37_79B9_7F4A_7C15 ^ now_ns(),
        cfg,
    };
    let mut events = Events::with_capacity(1024);
    let started = Instant::now();
    let connect_deadline = started + fleet.cfg.connect_timeout;
    let mut next = 0usize;
    let mut setup_done = false;
    let mut connect_secs = 0.0;
    let mut drain_deadline: Option<Instant> = None;
    let mut drained = false;
    loop {
        let now = Instant::now();
        if now > fleet.cfg.hard_deadline {
            fleet.failures += 1;
            fleet
                .failure_samples
                .push("the client thread's hard deadline passed".into());
            break;
        }
        if !setup_done {
            while next < n && fleet.in_progress < fleet.cfg.connect_batch {
                fleet.start(next);
                next += 1;
            }
        }
        if let Err(e) = fleet.poll.poll(&mut events, Some(Duration::from_millis(5))) {
            if e.kind() != io::ErrorKind::Interrupted {
                fleet.failures += 1;
                fleet.failure_samples.push(format!("poll: {e}"));
                break;
            }
        }
        for ev in events.iter() {
            let i = ev.token().0;
            fleet.on_event(
                i,
                ev.is_writable() || ev.is_error(),
                ev.is_readable() || ev.is_read_closed() || ev.is_error(),
            );
        }
        shared.ready.store(fleet.ready, Ordering::Relaxed);
        if !setup_done {
            if fleet.ready == n {
                setup_done = true;
                connect_secs = started.elapsed().as_secs_f64();
                shared.min_seen.store(fleet.min_seen(), Ordering::SeqCst);
                shared.setup.store(1, Ordering::SeqCst);
            } else if fleet.failures > 0 || Instant::now() > connect_deadline {
                if fleet.failures == 0 {
                    fleet.failures += 1;
                    fleet.failure_samples.push(format!(
                        "only {} of {n} clients had ACTIVE_ORDERS after {:?}",
                        fleet.ready, fleet.cfg.connect_timeout
                    ));
                }
                shared.setup.store(2, Ordering::SeqCst);
                break;
            }
            continue;
        }
        let min = fleet.min_seen();
        shared.min_seen.store(min, Ordering::SeqCst);
        if shared.abort.load(Ordering::SeqCst) {
            break;
        }
        let target = shared.target.load(Ordering::SeqCst);
        if target != u64::MAX {
            let deadline = *drain_deadline.get_or_insert(Instant::now() + fleet.cfg.drain_timeout);
            if min >= target {
                drained = true;
                break;
            }
            if Instant::now() > deadline {
                fleet.failures += 1;
                fleet.failure_samples.push(format!(
                    "after {:?} some clients still lacked changes up to seq {target} (lowest seen {min})",
                    fleet.cfg.drain_timeout
                ));
                break;
            }
        }
    }
    let lo = fleet
        .clients
        .iter()
        .filter(|c| c.st.snapshot)
        .map(|c| c.st.snapshot_count)
        .min()
        .unwrap_or(0);
    let hi = fleet
        .clients
        .iter()
        .filter(|c| c.st.snapshot)
        .map(|c| c.st.snapshot_count)
        .max()
        .unwrap_or(0);
    ClientReport {
        per_client: fleet
            .clients
            .iter()
            .map(|c| (c.st.received, c.st.order_errors, c.phase == Phase::Closed))
            .collect(),
        stats: std::mem::take(&mut fleet.stats),
        connect_secs,
        snapshot_counts: (lo, hi),
        failures: fleet.failures,
        failure_samples: std::mem::take(&mut fleet.failure_samples),
        drained,
    }
}

// ---------------------------------------------------------------------------
// The changes

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Create,
    Page,
    Move,
}

impl Op {
    fn kind(self) -> Kind {
        match self {
            Op::Create => Kind::Created,
            Op::Page => Kind::Paged,
            Op::Move => Kind::Modified,
        }
    }
}

#[derive(Clone, Debug)]
struct Change {
    op: Op,
    /// When it was due (`--rate`) or sent (closed loop).
    origin_ns: u64,
    answered_ns: u64,
    seq: u64,
}

struct OrderState {
    name: String,
    location: u32,
}

struct Plan {
    addr: SocketAddr,
    auth: String,
    changes: usize,
    rate: f64,
    pipeline: usize,
    page_percent: u32,
    tables: u32,
    start_ns: u64,
    deadline: Instant,
    issued: AtomicUsize,
    stop: AtomicBool,
}

impl Plan {
    /// The next change slot and when it is due, or None when the budget
    /// (count or time) is spent.
    fn next(&self) -> Option<(usize, u64)> {
        if self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline {
            return None;
        }
        let i = self.issued.fetch_add(1, Ordering::Relaxed);
        if i >= self.changes {
            return None;
        }
        let due = if self.rate > 0.0 {
            self.start_ns + (i as f64 * 1e9 / self.rate) as u64
        } else {
            0
        };
        Some((i, due))
    }

    /// The request for change slot `i` on one of `orders` (round robin by
    /// `turn`), updating that order's location for a move.
    fn request(
        &self,
        i: usize,
        turn: usize,
        orders: &mut [OrderState],
        host: &str,
    ) -> (Op, Vec<u8>) {
        let o = &mut orders[turn % orders.len()];
        let h = splitmix(i as u64);
        if (h % 100) < self.page_percent as u64 {
            let path = format!("/api/v2/activeorders/{}/page", o.name);
            (
                Op::Page,
                http_request("POST", &path, host, Some(&self.auth), Some(b"")),
            )
        } else {
            // A different table every time: a PUT that changes nothing is
            // not a change (SPEC §3.3).
            let tables = self.tables.max(2);
            let mut t = 1 + ((h >> 32) % tables as u64) as u32;
            if t == o.location {
                t = t % tables + 1;
            }
            o.location = t;
            let path = format!("/api/v2/activeorders/{}", o.name);
            let body = format!("{{\"locationName\":\"{t}\"}}");
            (
                Op::Move,
                http_request("PUT", &path, host, Some(&self.auth), Some(body.as_bytes())),
            )
        }
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `seq` of `{"status":S,"activeorder":{…"seq":N…}}` with the expected status.
fn answer_seq(a: &HttpAnswer, expected: u16, what: &str) -> Result<u64, String> {
    if a.status != expected {
        return Err(format!(
            "{what} answered {} (expected {expected}): {}",
            a.status,
            snippet(&a.body)
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&a.body).map_err(|e| format!("{what}: {e}"))?;
    v.get("activeorder")
        .and_then(|o| o.get("seq"))
        .and_then(|s| s.as_u64())
        .ok_or_else(|| format!("{what}: no activeorder.seq in {}", snippet(&a.body)))
}

fn expected_status(op: Op) -> u16 {
    if op == Op::Create {
        201
    } else {
        200
    }
}

/// One connection's share of the measured phase.
fn drive(plan: &Plan, mut orders: Vec<OrderState>) -> Result<Vec<Change>, String> {
    let http = Http::connect(plan.addr)?;
    let host = http.host.clone();
    let Http {
        mut writer,
        mut reader,
        ..
    } = http;
    let mut done = Vec::new();
    if plan.rate <= 0.0 {
        // Closed loop: the next change after the answer.
        let mut turn = 0;
        while let Some((i, _)) = plan.next() {
            let (op, req) = plan.request(i, turn, &mut orders, &host);
            turn += 1;
            let sent = now_ns();
            writer.write_all(&req).map_err(|e| format!("send: {e}"))?;
            let a = reader.read_response()?;
            let answered = now_ns();
            let seq = answer_seq(&a, expected_status(op), &format!("{op:?}"))?;
            done.push(Change {
                op,
                origin_ns: sent,
                answered_ns: answered,
                seq,
            });
        }
        return Ok(done);
    }
    // Open loop: a writer sends on schedule, this thread reads the answers
    // in order (HTTP/1.1 answers pipelined requests in order).
    let (tx, rx) = mpsc::sync_channel::<(Op, u64)>(plan.pipeline.max(1));
    thread::scope(|s| {
        let writer_thread = s.spawn(move || -> Result<(), String> {
            let mut turn = 0;
            while let Some((i, due)) = plan.next() {
                let (op, req) = plan.request(i, turn, &mut orders, &host);
                turn += 1;
                let now = now_ns();
                if due > now {
                    thread::sleep(Duration::from_nanos(due - now));
                }
                // Blocks while `pipeline` requests are unanswered.
                if tx.send((op, due)).is_err() {
                    return Ok(());
                }
                writer.write_all(&req).map_err(|e| format!("send: {e}"))?;
            }
            Ok(())
        });
        let mut result = Ok(());
        // Ends when the writer is done and every answer is read.
        for (op, due) in rx.iter() {
            let a = match reader.read_response() {
                Ok(a) => a,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let answered = now_ns();
            match answer_seq(&a, expected_status(op), &format!("{op:?}")) {
                Ok(seq) => done.push(Change {
                    op,
                    origin_ns: due,
                    answered_ns: answered,
                    seq,
                }),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_err() {
            plan.stop.store(true, Ordering::SeqCst);
            drop(rx);
        }
        let w = writer_thread
            .join()
            .unwrap_or_else(|_| Err("writer thread panicked".into()));
        result.and(w)
    })?;
    Ok(done)
}

// ---------------------------------------------------------------------------
// Measurement helpers

fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14, 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The 1-minute load average: the figures mean little on a busy machine.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn clock_ticks() -> f64 {
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn own_cpu_secs() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
fn raise_nofile(need: u64) -> Result<(), String> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(format!("getrlimit: {}", io::Error::last_os_error()));
    }
    if r.rlim_cur as u64 >= need {
        return Ok(());
    }
    let want = libc::rlimit {
        rlim_cur: need as libc::rlim_t,
        rlim_max: r.rlim_max.max(need as libc::rlim_t),
    };
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } != 0 {
        return Err(format!(
            "RLIMIT_NOFILE is {} (hard {}), {need} needed: {}",
            r.rlim_cur,
            r.rlim_max,
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

fn parse_url(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("--url must be http://127.0.0.1:PORT")?;
    let hostport = rest.split('/').next().unwrap_or("");
    let (host, port) = hostport.rsplit_once(':').ok_or("--url must carry a port")?;
    let port: u16 = port.parse().map_err(|_| "bad port in --url")?;
    let ip: IpAddr = match host {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h.parse().map_err(|_| format!("bad host {h} in --url"))?,
    };
    if ip != IpAddr::V4(Ipv4Addr::LOCALHOST) {
        return Err(format!("only 127.0.0.1 is allowed, not {ip}"));
    }
    Ok(SocketAddr::new(ip, port))
}

// ---------------------------------------------------------------------------

fn main() {
    now_ns();
    let args = Args::parse();
    std::process::exit(match run(&args) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("orders-fanout: {e}");
            2
        }
    });
}

fn run(args: &Args) -> Result<bool, String> {
    let addr = parse_url(&args.url)?;
    if args.clients == 0 || args.orders == 0 || args.conns == 0 {
        return Err("--clients, --orders and --conns must be at least 1".into());
    }
    if args.orders < args.conns {
        return Err("--orders must be at least --conns (each connection owns orders)".into());
    }
    let last_name = args.name_base as u64 + args.orders as u64 - 1;
    if last_name > 999_999 {
        return Err("order names are 1–6 digits: lower --name-base or --orders".into());
    }
    raise_nofile(args.clients as u64 + 2 * args.conns as u64 + 64)?;

    let token = match &args.token {
        Some(t) => t.clone(),
        None => gateway_token(addr, &args.admin_token)?,
    };
    let write_auth = if args.writes_with_gateway_token {
        token.clone()
    } else {
        args.admin_token.clone()
    };

    // The clients.
    let shared = Arc::new(Shared {
        setup: AtomicU8::new(0),
        ready: AtomicUsize::new(0),
        min_seen: AtomicU64::new(0),
        target: AtomicU64::new(u64::MAX),
        abort: AtomicBool::new(false),
    });
    let hard_deadline = Instant::now()
        + secs(args.connect_timeout)
        + secs(args.duration)
        + secs(args.drain_timeout) * 2
        + Duration::from_secs(120);
    let cfg = ClientConfig {
        addr,
        token: token.clone(),
        clients: args.clients,
        auth_frame: args.auth_frame,
        connect_timeout: secs(args.connect_timeout),
        drain_timeout: secs(args.drain_timeout),
        connect_batch: args.connect_batch.max(1),
        hard_deadline,
    };
    let sh = Arc::clone(&shared);
    let client_thread = thread::Builder::new()
        .name("ws-clients".into())
        .spawn(move || run_clients(cfg, sh))
        .map_err(|e| e.to_string())?;
    let abort = |why: String| -> Result<bool, String> {
        shared.abort.store(true, Ordering::SeqCst);
        Err(why)
    };

    // Setup: every client has ACTIVE_ORDERS (the thread has its own deadline).
    let setup_deadline = Instant::now() + secs(args.connect_timeout) + Duration::from_secs(10);
    loop {
        match shared.setup.load(Ordering::SeqCst) {
            0 if Instant::now() < setup_deadline => thread::sleep(Duration::from_millis(2)),
            1 => break,
            _ => {
                shared.abort.store(true, Ordering::SeqCst);
                let report = client_thread.join().map_err(|_| "client thread panicked")?;
                let mut why = format!(
                    "{} of {} clients set up:",
                    shared.ready.load(Ordering::SeqCst),
                    args.clients
                );
                for s in &report.failure_samples {
                    let _ = write!(why, "\n  {s}");
                }
                return Err(why);
            }
        }
    }

    // The orders, created on one connection and delivered before measuring.
    let mut all: Vec<Change> = Vec::new();
    let mut orders: Vec<Vec<OrderState>> = (0..args.conns).map(|_| Vec::new()).collect();
    {
        let mut http = match Http::connect(addr) {
            Ok(h) => h,
            Err(e) => return abort(e),
        };
        for k in 0..args.orders {
            let name = (args.name_base as u64 + k as u64).to_string();
            let body = format!("{{\"name\":\"{name}\",\"orderType\":\"ON_PREMISE\"}}");
            let sent = now_ns();
            let a = match http.call(
                "POST",
                "/api/v2/activeorders",
                Some(&write_auth),
                Some(body.as_bytes()),
            ) {
                Ok(a) => a,
                Err(e) => return abort(e),
            };
            if a.status == 409 {
                return abort(format!(
                    "order {name} is already active: use a fresh --data-dir or another --name-base"
                ));
            }
            let seq = match answer_seq(&a, 201, "create") {
                Ok(s) => s,
                Err(e) => return abort(e),
            };
            all.push(Change {
                op: Op::Create,
                origin_ns: sent,
                answered_ns: now_ns(),
                seq,
            });
            orders[k % args.conns].push(OrderState { name, location: 0 });
        }
    }
    let created_seq = all.iter().map(|c| c.seq).max().unwrap_or(0);
    let wait_deadline = Instant::now() + secs(args.drain_timeout);
    while shared.min_seen.load(Ordering::SeqCst) < created_seq {
        if Instant::now() > wait_deadline || client_thread.is_finished() {
            return abort(format!(
                "the creates (up to seq {created_seq}) did not reach every client within {}s",
                args.drain_timeout
            ));
        }
        thread::sleep(Duration::from_millis(1));
    }

    // The measured phase.
    let cpu0 = args.server_pid.and_then(cpu_ticks);
    let own0 = own_cpu_secs();
    let load0 = load_average();
    let plan = Plan {
        addr,
        auth: write_auth,
        changes: args.changes,
        rate: args.rate,
        pipeline: args.pipeline,
        page_percent: args.page_percent.min(100),
        tables: args.tables,
        start_ns: now_ns(),
        deadline: Instant::now() + secs(args.duration),
        issued: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    };
    let start_ns = plan.start_ns;
    let results: Vec<Result<Vec<Change>, String>> = thread::scope(|s| {
        let handles: Vec<_> = orders
            .into_iter()
            .map(|o| {
                let plan = &plan;
                s.spawn(move || {
                    let r = drive(plan, o);
                    if r.is_err() {
                        plan.stop.store(true, Ordering::SeqCst);
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("driver panicked".into())))
            .collect()
    });
    let mut measured: Vec<Change> = Vec::new();
    let mut driver_errors = Vec::new();
    for r in results {
        match r {
            Ok(v) => measured.extend(v),
            Err(e) => driver_errors.push(e),
        }
    }
    let last_answer_ns = measured
        .iter()
        .map(|c| c.answered_ns)
        .max()
        .unwrap_or(start_ns);
    all.extend(measured.iter().cloned());
    let target = all.iter().map(|c| c.seq).max().unwrap_or(0);
    shared.target.store(target, Ordering::SeqCst);
    let report = client_thread.join().map_err(|_| "client thread panicked")?;
    let cpu1 = args.server_pid.and_then(cpu_ticks);
    let own1 = own_cpu_secs();
    let load1 = load_average();

    // Correctness.
    let n = args.clients as u32;
    let mut problems: Vec<String> = Vec::new();
    for e in &driver_errors {
        problems.push(format!("driver: {e}"));
    }
    problems.extend(report.failure_samples.iter().cloned());
    if report.failures > report.failure_samples.len() {
        problems.push(format!("… {} client failures in all", report.failures));
    }
    let mut seqs: Vec<u64> = all.iter().map(|c| c.seq).collect();
    seqs.sort_unstable();
    let dup_answers = seqs.windows(2).filter(|w| w[0] == w[1]).count();
    if dup_answers > 0 {
        problems.push(format!("{dup_answers} answers repeated a seq"));
    }
    let mut incomplete = 0usize;
    let mut missing = 0u64;
    let mut wrong_kind = 0usize;
    for c in &all {
        match report.stats.get(&c.seq) {
            None => {
                incomplete += 1;
                missing += n as u64;
            }
            Some(s) => {
                if s.count < n {
                    incomplete += 1;
                    missing += (n - s.count) as u64;
                } else if s.count > n {
                    problems.push(format!(
                        "seq {} delivered {} times to {n} clients",
                        c.seq, s.count
                    ));
                }
                if s.kind_conflict || s.kind != c.op.kind() {
                    wrong_kind += 1;
                    if wrong_kind <= 3 {
                        problems.push(format!(
                            "seq {} ({:?}) arrived as {}{}",
                            c.seq,
                            c.op,
                            s.kind.name(),
                            if s.kind_conflict {
                                " and another type"
                            } else {
                                ""
                            }
                        ));
                    }
                }
            }
        }
    }
    if incomplete > 0 {
        problems.push(format!(
            "{incomplete} of {} changes missed by some client ({missing} deliveries missing)",
            all.len()
        ));
    }
    if wrong_kind > 3 {
        problems.push(format!("{wrong_kind} changes arrived with the wrong type"));
    }
    let known: std::collections::HashSet<u64> = seqs.iter().copied().collect();
    let foreign = report.stats.keys().filter(|s| !known.contains(s)).count();
    let order_errors: u64 = report.per_client.iter().map(|p| p.1).sum();
    let bad_clients = report.per_client.iter().filter(|p| p.1 > 0).count();
    if order_errors > 0 {
        problems.push(format!(
            "{order_errors} messages out of seq order or repeated, at {bad_clients} clients"
        ));
    }
    let closed = report.per_client.iter().filter(|p| p.2).count();
    if closed > 0 {
        problems.push(format!("{closed} clients were closed before the end"));
    }
    let expected_each = (all.len() + foreign) as u64;
    let short = report
        .per_client
        .iter()
        .filter(|p| !p.2 && p.0 != expected_each)
        .count();
    if short > 0 {
        problems.push(format!(
            "{short} clients received a number of changes other than {expected_each}"
        ));
    }
    if !report.drained && problems.is_empty() {
        problems.push("the clients did not drain".into());
    }

    // Figures (measured changes only).
    let m = measured.len();
    let mut tta = Vec::with_capacity(m);
    let mut ttf = Vec::with_capacity(m);
    let mut rtt = Vec::with_capacity(m);
    let mut last_delivery_ns = start_ns;
    for c in &measured {
        rtt.push(c.answered_ns.saturating_sub(c.origin_ns));
        if let Some(s) = report.stats.get(&c.seq) {
            ttf.push(s.first_ns.saturating_sub(c.origin_ns));
            if s.count >= n {
                tta.push(s.last_ns.saturating_sub(c.origin_ns));
                last_delivery_ns = last_delivery_ns.max(s.last_ns);
            }
        }
    }
    tta.sort_unstable();
    ttf.sort_unstable();
    rtt.sort_unstable();
    let pages = measured.iter().filter(|c| c.op == Op::Page).count();
    let change_secs = (last_answer_ns.saturating_sub(start_ns)) as f64 / 1e9;
    let deliver_secs = (last_delivery_ns.saturating_sub(start_ns)) as f64 / 1e9;
    let frames = tta.len() as f64 * n as f64;
    let changes_per_s = if change_secs > 0.0 {
        m as f64 / change_secs
    } else {
        0.0
    };
    let frames_per_s = if deliver_secs > 0.0 {
        frames / deliver_secs
    } else {
        0.0
    };
    let ticks = clock_ticks();
    let server_cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some((b.saturating_sub(a)) as f64 / ticks),
        _ => None,
    };
    let own_cpu = own1 - own0;

    let mode = if args.rate > 0.0 {
        format!("at {} changes/s (open loop, pipelined)", args.rate)
    } else {
        "closed loop".to_string()
    };
    println!(
        "orders-fanout: {} clients ({} auth), {} orders, {m} changes {mode} on {} connection(s); {} ACTIVE_ORDERS items at connect",
        args.clients,
        if args.auth_frame { "first-frame" } else { "header" },
        args.orders,
        args.conns,
        if report.snapshot_counts.0 == report.snapshot_counts.1 {
            report.snapshot_counts.0.to_string()
        } else {
            format!("{}–{}", report.snapshot_counts.0, report.snapshot_counts.1)
        }
    );
    println!(
        "connect + handshake + ACTIVE_ORDERS, all clients: {:.3} s",
        report.connect_secs
    );
    println!(
        "changes: {m} ({pages} pages, {} moves) in {change_secs:.3} s = {changes_per_s:.0} changes/s; answer p50 {:.0} µs, p99 {:.0} µs",
        m - pages,
        us(pct(&rtt, 0.50)),
        us(pct(&rtt, 0.99))
    );
    println!("delivered: {frames:.0} frames in {deliver_secs:.3} s = {frames_per_s:.0} frames/s");
    println!(
        "time-to-all ({} → last of {} clients): p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        if args.rate > 0.0 { "due" } else { "send" },
        args.clients,
        us(pct(&tta, 0.50)),
        us(pct(&tta, 0.99)),
        us(pct(&tta, 1.0))
    );
    println!(
        "time-to-first: p50 {:.0} µs, p99 {:.0} µs",
        us(pct(&ttf, 0.50)),
        us(pct(&ttf, 0.99))
    );
    let cpu_per_frame_us = match server_cpu {
        Some(c) if frames > 0.0 => {
            println!(
                "server CPU: {c:.2} s in the measured phase = {:.3} µs per delivered frame ({:.0} µs per change, HTTP write and fan-out together)",
                c * 1e6 / frames,
                c * 1e6 / m.max(1) as f64
            );
            format!("{:.3}", c * 1e6 / frames)
        }
        Some(_) => "nan".into(),
        None => {
            println!("server CPU: not measured (no --server-pid)");
            "nan".into()
        }
    };
    println!(
        "load generator CPU: {own_cpu:.2} s = {:.3} µs per frame",
        if frames > 0.0 {
            own_cpu * 1e6 / frames
        } else {
            0.0
        }
    );
    println!(
        "machine load average (1 min): {load0} at the start, {load1} at the end ({} cores)",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    if foreign > 0 {
        println!("note: {foreign} changes by someone else were seen (not counted)");
    }
    let ok = problems.is_empty();
    if ok {
        println!(
            "correctness: OK: every client got all {} changes ({} creates + {m}) exactly once, in seq order",
            all.len(),
            args.orders
        );
    } else {
        println!("correctness: FAILED");
        for p in &problems {
            println!("  {p}");
        }
    }
    println!(
        "RESULT clients={} changes={m} changes_per_s={changes_per_s:.0} frames_per_s={frames_per_s:.0} tta_p50_us={:.0} tta_p99_us={:.0} tta_max_us={:.0} cpu_per_frame_us={cpu_per_frame_us} connect_s={:.3} ok={}",
        args.clients,
        us(pct(&tta, 0.50)),
        us(pct(&tta, 0.99)),
        us(pct(&tta, 1.0)),
        report.connect_secs,
        ok
    );
    Ok(ok)
}
