//! `webhook-rate`: webhook deliveries per second (SPEC §3.6) to one healthy
//! local receiver, alone or with a dead receiver registered beside it.
//!
//! ```text
//! webhook-rate --floorbell target/release/floorbell [--changes 5000] \
//!     [--dead] [--orders 20] [--pipeline 32] [--timeout 60]
//! ```
//!
//! 1. Starts `floorbell serve --listen 127.0.0.1:0 --no-mdns` on a fresh
//!    data directory (removed at the end) and a fast receiver on
//!    127.0.0.1: one thread per connection, keep-alive, each POST answered
//!    `200` with a small JSON body, its arrival time, `seq` and
//!    `X-Floorbell-Delivery` id recorded.
//! 2. With `--dead`, a dead receiver too: it answers the registration's
//!    `HEAD` (SPEC §3.6 registers only a URL that answers), then reads every
//!    POST and never answers it, holding the connection open.
//! 3. Registers the receiver(s) (`POST /api/v2/register`, admin token),
//!    starts `--orders` orders and waits for their deliveries (warm-up).
//! 4. The measured phase: `--changes` pages (`POST
//!    /api/v2/activeorders/{name}/page`), round-robin over the orders, on
//!    one keep-alive connection, pipelined `--pipeline` at a time; each
//!    answer's `seq` and time are kept.
//! 5. Waits (up to `--timeout` s) until the healthy receiver has every
//!    measured `seq`. Reported: changes/s acknowledged; deliveries/s at the
//!    receiver (K / from the first change sent to the last delivery); the
//!    drain rate after the last acknowledgement; delivery lag (arrival minus
//!    the change's 2xx) p50/p99/max; floorbell's CPU per delivery
//!    (`/proc/PID/stat`).
//!
//! Correctness: the healthy receiver must get every measured change, in
//! `seq` order, and no repeated delivery id (it never fails, so nothing is
//! retried); else exit 1. A setup problem exits 2. Only 127.0.0.1; every
//! loop is bounded in count and time.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "webhook-rate",
    about = "Webhook deliveries per second to a local receiver (SPEC §3.6), optionally beside a dead one"
)]
struct Args {
    /// The floorbell binary (a release build for figures).
    #[arg(long, default_value = "target/release/floorbell")]
    floorbell: PathBuf,
    /// Measured order changes (pages).
    #[arg(long, default_value_t = 5000)]
    changes: usize,
    /// Also register a dead receiver: answers HEAD, never answers a POST.
    #[arg(long)]
    dead: bool,
    /// Orders started before the measured phase (the pages go round-robin).
    #[arg(long, default_value_t = 20)]
    orders: usize,
    /// Requests in flight on the change connection.
    #[arg(long, default_value_t = 32)]
    pipeline: usize,
    /// Seconds to wait for every delivery after the last change.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
}

const ADMIN: &str = "webhook-rate-admin";

/// One POST the healthy receiver read.
#[derive(Clone, Copy)]
struct Arrival {
    at: Instant,
    seq: u64,
    id: u64,
}

/// The floorbell started, so that [`fail`] can stop it: pid and data dir.
static SERVER: Mutex<Option<(u32, PathBuf)>> = Mutex::new(None);

/// Prints `msg`, kills the floorbell started (if any), removes its data and
/// exits with `code`.
fn fail(code: i32, msg: &str) -> ! {
    eprintln!("webhook-rate: {msg}");
    if let Some((pid, data)) = SERVER.lock().ok().and_then(|mut s| s.take()) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
        thread::sleep(Duration::from_millis(100));
        let _ = std::fs::remove_dir_all(data);
    }
    std::process::exit(code)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The number after `"key":` in a JSON text (no full parse: hot path).
fn json_u64(text: &[u8], key: &[u8]) -> Option<u64> {
    let mut pat = Vec::with_capacity(key.len() + 3);
    pat.push(b'"');
    pat.extend_from_slice(key);
    pat.extend_from_slice(b"\":");
    let start = find(text, &pat)? + pat.len();
    let digits: Vec<u8> = text[start..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// One HTTP/1.1 message head + body off a buffered stream: `(head, body)`;
/// `None` on EOF, error or stop.
fn read_message(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    stop: &AtomicBool,
) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 64 * 1024];
    let head_end = loop {
        if let Some(p) = find(buf, b"\r\n\r\n") {
            break p + 4;
        }
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Some((head, body))
}

/// A receiver on 127.0.0.1:0; `healthy` answers every request, a dead one
/// only HEADs.
struct Receiver {
    addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    posts: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// While set, a POST is read and recorded but its answer waits.
    gate: Arc<AtomicBool>,
}

impl Receiver {
    fn start(healthy: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| fail(2, &format!("bind a receiver: {e}")));
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let arrivals = Arc::new(Mutex::new(Vec::with_capacity(1 << 16)));
        let posts = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(AtomicBool::new(false));
        let (a, p, s, g) = (arrivals.clone(), posts.clone(), stop.clone(), gate.clone());
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (a, p, s, g) = (a.clone(), p.clone(), s.clone(), g.clone());
                        thread::spawn(move || serve(stream, healthy, &a, &p, &s, &g));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Receiver {
            addr,
            arrivals,
            posts,
            stop,
            gate,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn count(&self) -> usize {
        self.arrivals.lock().unwrap().len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    mut stream: TcpStream,
    healthy: bool,
    arrivals: &Mutex<Vec<Arrival>>,
    posts: &AtomicUsize,
    stop: &AtomicBool,
    gate: &AtomicBool,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = Vec::with_capacity(8192);
    const OK: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";
    const OK_HEAD: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n";
    while let Some((head, body)) = read_message(&mut stream, &mut buf, stop) {
        if head.starts_with("HEAD ") {
            if stream.write_all(OK_HEAD).is_err() {
                return;
            }
            continue;
        }
        let at = Instant::now();
        posts.fetch_add(1, Ordering::Relaxed);
        if !healthy {
            // Never answer: hold the connection until the tool ends.
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        let seq = json_u64(&body, b"seq").unwrap_or(0);
        let id = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("x-floorbell-delivery")
                    .then(|| v.trim().parse::<u64>().ok())?
            })
            .unwrap_or(u64::MAX);
        arrivals.lock().unwrap().push(Arrival { at, seq, id });
        while gate.load(Ordering::Acquire) && !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_micros(100));
        }
        if stream.write_all(OK).is_err() {
            return;
        }
    }
}

/// A keep-alive client connection to floorbell.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    stop: AtomicBool,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| fail(2, &format!("connect to floorbell: {e}")));
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Client {
            stream,
            buf: Vec::new(),
            stop: AtomicBool::new(false),
        }
    }

    fn request_bytes(method: &str, path: &str, body: &str) -> Vec<u8> {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// `(status, body)` of the next answer.
    fn answer(&mut self) -> (u16, Vec<u8>) {
        let (head, body) = read_message(&mut self.stream, &mut self.buf, &self.stop)
            .unwrap_or_else(|| fail(2, "floorbell closed the connection or timed out"));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, body)
    }

    fn call(&mut self, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
        self.stream
            .write_all(&Client::request_bytes(method, path, body))
            .unwrap_or_else(|e| fail(2, &format!("write to floorbell: {e}")));
        self.answer()
    }
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

/// floorbell, stopped (SIGTERM, then SIGKILL) and its data removed on drop.
struct Floorbell {
    child: Child,
    data: PathBuf,
    addr: SocketAddr,
}

impl Floorbell {
    fn start(bin: &PathBuf) -> Floorbell {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let data =
            std::env::temp_dir().join(format!("webhook-rate-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&data)
            .unwrap_or_else(|e| fail(2, &format!("create {}: {e}", data.display())));
        let log = std::fs::File::create(data.join("server.log")).unwrap();
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--no-mdns"])
            .arg("--data-dir")
            .arg(&data)
            .args(["--admin-token", ADMIN])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| fail(2, &format!("start {}: {e}", bin.display())));
        *SERVER.lock().unwrap() = Some((child.id(), data.clone()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut fb = Floorbell {
            child,
            data,
            addr: "127.0.0.1:9".parse().unwrap(),
        };
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        match line
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse().ok())
        {
            Some(addr) => fb.addr = addr,
            None => fail(2, &format!("floorbell did not start: {line:?}")),
        }
        fb
    }
}

impl Drop for Floorbell {
    fn drop(&mut self) {
        *SERVER.lock().unwrap() = None;
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let args = Args::parse();
    if args.changes == 0 || args.orders == 0 || args.orders > 999_999 {
        fail(
            2,
            "--changes and --orders must be at least 1 (orders ≤ 999999)",
        );
    }
    let fb = Floorbell::start(&args.floorbell);
    let pid = fb.child.id();
    let healthy = Receiver::start(true);
    let dead = args.dead.then(|| Receiver::start(false));
    let mut client = Client::connect(fb.addr);

    let mut register = |url: &str| {
        let body = format!(r#"{{"http_client":"{url}"}}"#);
        let (status, answer) = client.call("POST", "/api/v2/register", &body);
        if status != 200 {
            fail(
                2,
                &format!(
                    "register {url}: {status} {}",
                    String::from_utf8_lossy(&answer)
                ),
            );
        }
    };
    if let Some(d) = &dead {
        register(&d.url());
    }
    register(&healthy.url());

    // Warm-up: the orders, and their deliveries.
    for i in 0..args.orders {
        let body = format!(r#"{{"name":"{}","orderType":"TO_GO"}}"#, i + 1);
        let (status, answer) = client.call("POST", "/api/v2/activeorders", &body);
        if status != 201 {
            fail(
                2,
                &format!(
                    "start order {}: {status} {}",
                    i + 1,
                    String::from_utf8_lossy(&answer)
                ),
            );
        }
    }
    let warm_deadline = Instant::now() + Duration::from_secs(30);
    while healthy.count() < args.orders {
        if Instant::now() > warm_deadline {
            fail(
                2,
                &format!("warm-up: {} of {} deliveries", healthy.count(), args.orders),
            );
        }
        thread::sleep(Duration::from_millis(5));
    }

    println!(
        "setup: receivers {} ({}), orders {}, changes {} per phase, pipeline {}",
        if dead.is_some() { 2 } else { 1 },
        if dead.is_some() {
            "healthy + dead beside it"
        } else {
            "healthy"
        },
        args.orders,
        args.changes,
        args.pipeline
    );
    let mut ok = phase(&args, &mut client, &healthy, pid, false);
    ok &= phase(&args, &mut client, &healthy, pid, true);
    if let Some(d) = &dead {
        println!(
            "dead receiver: {} POST(s) received, none answered",
            d.posts.load(Ordering::Relaxed)
        );
    }
    drop(fb);
    if !ok {
        std::process::exit(1);
    }
}

/// One measured phase: `--changes` pages, then waiting for their
/// deliveries. `backlog`: the receiver holds its answers until every change
/// is acknowledged (so they queue in the outbox), then answers everything:
/// the drain rate is the delivery path's own speed. Returns correctness.
fn phase(args: &Args, client: &mut Client, healthy: &Receiver, pid: u32, backlog: bool) -> bool {
    let warm = healthy.count();
    if backlog {
        healthy.gate.store(true, Ordering::Release);
    }
    // The measured phase.
    let cpu0 = cpu_secs(pid);
    let t0 = Instant::now();
    let mut acks: Vec<(u64, Instant)> = Vec::with_capacity(args.changes);
    let mut sent = 0usize;
    while sent < args.changes {
        let n = args.pipeline.max(1).min(args.changes - sent);
        let mut batch = Vec::with_capacity(n * 128);
        for j in 0..n {
            let name = (sent + j) % args.orders + 1;
            batch.extend_from_slice(&Client::request_bytes(
                "POST",
                &format!("/api/v2/activeorders/{name}/page"),
                "",
            ));
        }
        client
            .stream
            .write_all(&batch)
            .unwrap_or_else(|e| fail(2, &format!("write: {e}")));
        for _ in 0..n {
            let (status, body) = client.answer();
            if status != 200 {
                fail(
                    2,
                    &format!("page: {status} {}", String::from_utf8_lossy(&body)),
                );
            }
            let seq = json_u64(&body, b"seq").unwrap_or_else(|| fail(2, "page answer without seq"));
            acks.push((seq, Instant::now()));
        }
        sent += n;
    }
    let t_acked = Instant::now();
    if backlog {
        healthy.gate.store(false, Ordering::Release);
    }
    let want = warm + args.changes;
    let deadline = t_acked + Duration::from_secs_f64(args.timeout);
    while healthy.count() < want && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    let cpu1 = cpu_secs(pid);
    let arrivals: Vec<Arrival> = healthy.arrivals.lock().unwrap().clone();

    // Correctness.
    let measured: Vec<Arrival> = arrivals[warm.min(arrivals.len())..].to_vec();
    let mut problems = Vec::new();
    if measured.len() < args.changes {
        problems.push(format!(
            "{} of {} changes delivered within {} s",
            measured.len(),
            args.changes,
            args.timeout
        ));
    }
    let acked_seqs: Vec<u64> = acks.iter().map(|(s, _)| *s).collect();
    let got_seqs: Vec<u64> = measured.iter().map(|a| a.seq).collect();
    if got_seqs != acked_seqs[..got_seqs.len().min(acked_seqs.len())] {
        problems.push("deliveries out of seq order, or other seqs than acknowledged".into());
    }
    let ids: HashSet<u64> = arrivals.iter().map(|a| a.id).collect();
    if ids.len() != arrivals.len() {
        problems.push(format!(
            "{} repeated delivery ids",
            arrivals.len() - ids.len()
        ));
    }

    // Figures.
    let k = measured.len();
    let last = measured.last().map(|a| a.at).unwrap_or(t0);
    let first = measured.first().map(|a| a.at).unwrap_or(t0);
    let total = last.duration_since(t0);
    let ack_span = t_acked.duration_since(t0);
    let mut lags: Vec<Duration> = measured
        .iter()
        .zip(&acks)
        .map(|(a, (_, acked))| a.at.saturating_duration_since(*acked))
        .collect();
    lags.sort();
    let after_ack = measured.iter().filter(|a| a.at > t_acked).count();
    let name = if backlog {
        "backlog (receiver holds its answers until every change is acknowledged)"
    } else {
        "live (changes as fast as they are acknowledged)"
    };
    println!("== {name}");
    println!(
        "changes: {k} acknowledged in {:.3} s = {:.0} changes/s",
        ack_span.as_secs_f64(),
        args.changes as f64 / ack_span.as_secs_f64()
    );
    println!(
        "deliveries: {k} in {:.3} s from the first change = {:.0} deliveries/s \
         (first→last delivery {:.0}/s; {after_ack} arrived after the last 2xx)",
        total.as_secs_f64(),
        k as f64 / total.as_secs_f64().max(1e-9),
        (k.saturating_sub(1)) as f64 / last.duration_since(first).as_secs_f64().max(1e-9)
    );
    println!(
        "lag (delivery - 2xx): p50 {} p99 {} max {}",
        ms(percentile(&lags, 0.5)),
        ms(percentile(&lags, 0.99)),
        ms(lags.last().copied().unwrap_or_default())
    );
    if let (Some(c0), Some(c1)) = (cpu0, cpu1) {
        println!(
            "server CPU: {:.2} s, {:.1} µs per change+delivery",
            c1 - c0,
            (c1 - c0) * 1e6 / k.max(1) as f64
        );
    }
    if backlog {
        let drained = measured.iter().filter(|a| a.at > t_acked).count();
        println!(
            "backlog drain: {drained} deliveries in {:.3} s after the receiver answered again = {:.0} deliveries/s",
            last.duration_since(t_acked).as_secs_f64(),
            drained as f64 / last.duration_since(t_acked).as_secs_f64().max(1e-9)
        );
    }
    if problems.is_empty() {
        println!("correctness: every change delivered once, in seq order");
        true
    } else {
        println!("correctness: FAILED: {}", problems.join("; "));
        false
    }
}
