//! `publish-load`: a closed-loop HTTP load generator for durable publishes
//! (`POST /api/v4/events`), the second client of `benches/load/publish.sh`
//! (`CLIENT=publish-load`).
//!
//! ```text
//! publish-load --addr 127.0.0.1:PORT [--connections 64] [--threads 2] \
//!     [--duration 10] [--token benchadmin] [--expect 201] [--acked FILE]
//! ```
//!
//! It does what `publish.lua` asks of wrk: `--connections` keep-alive
//! connections, each with exactly one request in flight (no pipelining), the
//! same 40 waiter calls (one per table, formatted once) in turn, every answer
//! read whole (head parsed with `httparse`, body by its `Content-Length`) and
//! counted only when its status is `--expect` (201 Created); latency from the
//! request's write to its answer's last byte. It prints wrk's `RESULT` line
//! (so publish.sh reads either client) plus a `CLIENT` line with its own CPU
//! per request, and exits 1 if any answer had another status, timed out or
//! lost its connection. With `--acked FILE` it writes the hash of every
//! acknowledged event (`"hash":"0x…"` of each 201's body), one per line, so
//! publish.sh can look each one up in the store.
//!
//! Why a second client: on the two shared cores of the team's machine the
//! load generator and the server split the CPU, and wrk spends ~15–18 µs on
//! each request (its event loop re-arms write interest with two
//! `epoll_ctl`s per request, and calls into Lua). This client pays a write
//! and a read per request and one `epoll_wait` per wake-up, so more of the
//! two cores is left to the server. The server's work is the same with
//! either client, and publish.sh checks the store the same way.
//!
//! Only loopback addresses; the run ends after `--duration` seconds.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

#[derive(Parser, Debug)]
#[command(
    name = "publish-load",
    about = "Closed-loop durable publishes (POST /api/v4/events), one request in flight per connection"
)]
struct Args {
    /// The server, a loopback address (127.0.0.1:PORT).
    #[arg(long)]
    addr: SocketAddr,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Client threads; the connections are shared out among them.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// The admin token (SPEC §1.3's POST needs it).
    #[arg(long, env = "ADMIN_TOKEN", default_value = "benchadmin")]
    token: String,
    /// The status that counts as done (the team harness's floor answers 200).
    #[arg(long, default_value_t = 201)]
    expect: u16,
    /// Write the hash of each acknowledged event here, one per line.
    #[arg(long)]
    acked: Option<std::path::PathBuf>,
}

/// An answer that has not finished within this long counts as a timeout
/// (wrk's default).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer head + body accepted; floorbell's 201 is ~300 bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// The 40 requests of publish.lua, byte for byte in their bodies.
fn requests(token: &str) -> Vec<Vec<u8>> {
    (0..40)
        .map(|i| {
            let body = format!(
                "{{\"code\":\"waiter_call\",\"table\":{},\"invoice\":null,\"order\":null,\
                 \"table_repr\":{{\"id\":{},\"name\":\"Стол {i}\",\"max_guests\":4}}}}",
                1_000_000 + i,
                1_000_000 + i,
            );
            format!(
                "POST /api/v4/events HTTP/1.1\r\nHost: localhost\r\n\
                 Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect()
}

/// What one thread counted.
struct Tally {
    ok: u64,
    /// Hashes of the acknowledged events, when asked for (`--acked`).
    acked: Option<Vec<u32>>,
    err_status: u64,
    err_timeout: u64,
    err_conn: u64,
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            ok: 0,
            acked: None,
            err_status: 0,
            err_timeout: 0,
            err_conn: 0,
            // 1 µs to 60 s, three significant digits.
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
        }
    }
}

/// One keep-alive connection and its request in flight.
struct Conn {
    stream: TcpStream,
    /// Index of the request in flight (into the 40).
    request: usize,
    /// Bytes of that request already written.
    written: usize,
    /// When its first byte was written; `None` between requests.
    sent_at: Option<Instant>,
    timed_out: bool,
    input: Vec<u8>,
}

enum Answer {
    /// Not all of it yet.
    Partial,
    /// A whole answer: its status, where its body starts, and how many
    /// bytes of input it used.
    Whole(u16, usize, usize),
    /// Not HTTP, or too big.
    Bad,
}

/// The event hash in a publish answer's body
/// (`{"result":true,"data":{"hash":"0x…"}}`, SPEC §1.2).
fn answer_hash(body: &[u8]) -> Option<u32> {
    const KEY: &[u8] = b"\"hash\":\"0x";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let hex = std::str::from_utf8(body.get(at..at + 8)?).ok()?;
    u32::from_str_radix(hex, 16).ok()
}

/// Whether `input` starts with a whole HTTP/1.1 answer.
fn answer(input: &[u8]) -> Answer {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(input) {
        Ok(httparse::Status::Complete(head)) => {
            let length = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                });
            match (response.code, length) {
                (Some(code), Some(length)) if head + length <= MAX_ANSWER => {
                    if input.len() >= head + length {
                        Answer::Whole(code, head, head + length)
                    } else {
                        Answer::Partial
                    }
                }
                _ => Answer::Bad,
            }
        }
        Ok(httparse::Status::Partial) if input.len() < MAX_ANSWER => Answer::Partial,
        _ => Answer::Bad,
    }
}

impl Conn {
    fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = std::net::TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        Ok(Conn {
            stream: TcpStream::from_std(stream),
            request: 0,
            written: 0,
            sent_at: None,
            timed_out: false,
            input: Vec::with_capacity(4096),
        })
    }

    /// Writes what is left of the request in flight; `false` on a broken
    /// connection.
    fn flush(&mut self, requests: &[Vec<u8>]) -> bool {
        let request = &requests[self.request];
        while self.written < request.len() {
            match self.stream.write(&request[self.written..]) {
                Ok(0) => return false,
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Starts request `request`.
    fn send(&mut self, request: usize, requests: &[Vec<u8>]) -> bool {
        self.request = request;
        self.written = 0;
        self.sent_at = Some(Instant::now());
        self.timed_out = false;
        self.flush(requests)
    }
}

/// One thread's loop over `count` connections until `end`.
fn run(
    addr: SocketAddr,
    count: usize,
    first: usize,
    requests: &[Vec<u8>],
    end: Instant,
    expect: u16,
    keep_hashes: bool,
) -> std::io::Result<Tally> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(256);
    let mut tally = Tally::new();
    if keep_hashes {
        tally.acked = Some(Vec::with_capacity(1 << 20));
    }
    let mut conns = Vec::with_capacity(count);
    let mut next = first;
    for i in 0..count {
        let mut conn = Conn::open(addr)?;
        poll.registry().register(
            &mut conn.stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        if !conn.send(next % requests.len(), requests) {
            return Err(std::io::Error::other("the server closed a new connection"));
        }
        next += 1;
        conns.push(conn);
    }
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let now = Instant::now();
        if now >= end {
            return Ok(tally);
        }
        let wait = (end - now).min(Duration::from_millis(100));
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            let i = event.token().0;
            let mut broken = false;
            if event.is_writable() && !conns[i].flush(requests) {
                broken = true;
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                // Read until the answer is whole or the socket is empty. One
                // request is in flight, so once its answer is whole nothing
                // more arrives before the next request: its answer (or a
                // close) raises a new edge.
                loop {
                    let conn = &mut conns[i];
                    match answer(&conn.input) {
                        Answer::Whole(code, body, used) => {
                            let Some(sent) = conn.sent_at.take() else {
                                // An answer to no request.
                                broken = true;
                                break;
                            };
                            if code == expect {
                                if let Some(acked) = &mut tally.acked {
                                    let Some(hash) = answer_hash(&conn.input[body..used]) else {
                                        // Acknowledged, but not with a hash.
                                        tally.err_status += 1;
                                        broken = true;
                                        break;
                                    };
                                    acked.push(hash);
                                }
                                tally.ok += 1;
                                let micros = sent.elapsed().as_micros() as u64;
                                tally.latency.saturating_record(micros.max(1));
                            } else {
                                tally.err_status += 1;
                            }
                            conn.input.drain(..used);
                            if Instant::now() < end && !conn.send(next % requests.len(), requests) {
                                broken = true;
                            }
                            next += 1;
                            break;
                        }
                        Answer::Bad => {
                            broken = true;
                            break;
                        }
                        Answer::Partial => {}
                    }
                    match conn.stream.read(&mut buf) {
                        Ok(0) => {
                            broken = true;
                            break;
                        }
                        Ok(n) => conn.input.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => {
                            broken = true;
                            break;
                        }
                    }
                }
            }
            if broken {
                // Counted, then replaced by a new connection with a new
                // request, as wrk does.
                tally.err_conn += 1;
                let mut old = std::mem::replace(&mut conns[i], Conn::open(addr)?);
                let _ = poll.registry().deregister(&mut old.stream);
                poll.registry().register(
                    &mut conns[i].stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                if !conns[i].send(next % requests.len(), requests) {
                    return Err(std::io::Error::other("the server closed a new connection"));
                }
                next += 1;
            }
        }
        let now = Instant::now();
        for conn in &mut conns {
            if let Some(sent) = conn.sent_at {
                if !conn.timed_out && now - sent > ANSWER_TIMEOUT {
                    conn.timed_out = true;
                    tally.err_timeout += 1;
                }
            }
        }
    }
}

/// CPU time this process has used (user + system).
fn cpu_time() -> Duration {
    // SAFETY: getrusage(2) fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn main() {
    let args = Args::parse();
    if !args.addr.ip().is_loopback() {
        eprintln!(
            "publish-load: only loopback addresses ({} is not)",
            args.addr
        );
        std::process::exit(2);
    }
    if args.threads == 0
        || args.connections < args.threads
        || !args.duration.is_finite()
        || args.duration <= 0.0
    {
        eprintln!("publish-load: need threads ≥ 1, connections ≥ threads, duration > 0");
        std::process::exit(2);
    }
    let requests = requests(&args.token);
    let start = Instant::now();
    let cpu_start = cpu_time();
    let end = start + Duration::from_secs_f64(args.duration);
    let results: Vec<std::io::Result<Tally>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..args.threads)
            .map(|t| {
                let count = args.connections / args.threads
                    + usize::from(t < args.connections % args.threads);
                let requests = &requests;
                let (expect, keep) = (args.expect, args.acked.is_some());
                scope.spawn(move || run(args.addr, count, t * 7, requests, end, expect, keep))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a client thread panicked"))
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_time() - cpu_start;
    let mut total = Tally::new();
    let mut acked = Vec::new();
    for result in results {
        match result {
            Ok(t) => {
                acked.extend(t.acked.unwrap_or_default());
                total.ok += t.ok;
                total.err_status += t.err_status;
                total.err_timeout += t.err_timeout;
                total.err_conn += t.err_conn;
                total
                    .latency
                    .add(&t.latency)
                    .expect("same histogram bounds");
            }
            Err(e) => {
                eprintln!("publish-load: {e}");
                std::process::exit(2);
            }
        }
    }
    if let Some(path) = &args.acked {
        let mut text = String::with_capacity(acked.len() * 11);
        for hash in &acked {
            text.push_str(&format!("{hash:08x}\n"));
        }
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("publish-load: {}: {e}", path.display());
            std::process::exit(2);
        }
    }
    // Only the acknowledged requests count (any other answer fails the run).
    let answered = total.ok + total.err_status;
    println!(
        "RESULT rps={:.1} p50_us={} p99_us={} requests={} err_status={} err_timeout={}",
        total.ok as f64 / elapsed,
        total.latency.value_at_quantile(0.50),
        total.latency.value_at_quantile(0.99),
        total.ok,
        total.err_status,
        total.err_timeout,
    );
    println!(
        "CLIENT cpu_us_per_request={:.1} connection_errors={}",
        cpu.as_secs_f64() * 1e6 / answered.max(1) as f64,
        total.err_conn,
    );
    if total.err_status + total.err_timeout + total.err_conn > 0 {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_whole_only_with_its_whole_body() {
        let whole = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello";
        for cut in 0..whole.len() {
            assert!(
                matches!(answer(&whole[..cut]), Answer::Partial),
                "cut at {cut}"
            );
        }
        let body = whole.len() - 5;
        assert!(matches!(answer(whole), Answer::Whole(201, b, n) if b == body && n == whole.len()));
        // The next answer's bytes are not part of this one.
        let mut two = whole.to_vec();
        two.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\n");
        assert!(matches!(answer(&two), Answer::Whole(201, _, n) if n == whole.len()));
    }

    #[test]
    fn the_hash_is_read_from_a_publish_answer() {
        assert_eq!(
            answer_hash(br#"{"result":true,"data":{"hash":"0xd8833dd3"}}"#),
            Some(0xd883_3dd3)
        );
        assert_eq!(
            answer_hash(br#"{"result":true,"data":{"hash":"0xd883"}}"#),
            None
        );
        assert_eq!(
            answer_hash(br#"{"result":true,"data":{"hash":"0xzz833dd3"}}"#),
            None
        );
        assert_eq!(answer_hash(br#"{"result":false,"error":"x"}"#), None);
    }

    #[test]
    fn an_answer_without_a_length_or_too_big_is_bad() {
        assert!(matches!(
            answer(b"HTTP/1.1 201 Created\r\n\r\n"),
            Answer::Bad
        ));
        assert!(matches!(answer(b"garbage\r\n\r\n"), Answer::Bad));
        let huge = format!("HTTP/1.1 201 Created\r\nContent-Length: {MAX_ANSWER}\r\n\r\n");
        assert!(matches!(answer(huge.as_bytes()), Answer::Bad));
        assert!(matches!(answer(&vec![b'x'; MAX_ANSWER]), Answer::Bad));
    }

    #[test]
    fn the_requests_are_publish_lua_s() {
        let requests = requests("t0k");
        assert_eq!(requests.len(), 40);
        let text = String::from_utf8(requests[7].clone()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /api/v4/events HTTP/1.1\r\n"));
        assert!(head.contains("\r\nAuthorization: Bearer t0k\r\n"));
        assert!(head.ends_with(&format!("Content-Length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["table"], 1_000_007);
        assert_eq!(json["table_repr"]["name"], "Стол 7");
    }
}
