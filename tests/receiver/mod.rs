//! A tiny HTTP/1.1 server on `127.0.0.1` that plays a webhook receiver
//! (SPEC §3.6) for the end-to-end tests: it records every request it reads
//! (method, target, headers, body, arrival time) and answers according to a
//! [`Behaviour`] — healthy, failing its first N POSTs, holding POSTs
//! unanswered, or saying nothing at all.
//!
//! One accept thread (non-blocking accept, polled every 5 ms) and one thread
//! per connection, keep-alive, `Content-Length` or chunked bodies. Nothing
//! here can hang: every read has a timeout and re-checks the stop flag,
//! every wait has a deadline, and dropping a [`Receiver`] (or
//! [`Receiver::close`]) closes the listener and every connection and joins
//! the threads.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How a receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 to everything.
    Healthy,
    /// 500 to its first `n` POSTs, then 200; HEAD always 200.
    FailFirst(usize),
    /// HEAD 200; a POST is read and recorded, then never answered (the
    /// connection is held open until the receiver stops).
    HoldPosts,
    /// Accepts TCP connections and never reads or writes a byte.
    Silent,
    /// HEAD answered with this status; 200 to everything else.
    HeadAnswers(u16),
}

/// One request as the receiver read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// When its body was complete.
    pub at: Instant,
    pub method: String,
    pub target: String,
    /// Names lowercased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status answered; 0 when it was not answered.
    pub status: u16,
}

impl Request {
    /// The first header with this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone())
            .unwrap_or_else(|_| panic!("body is not UTF-8: {:?}", self.body))
    }
}

struct Shared {
    behaviour: Behaviour,
    stop: AtomicBool,
    log: Mutex<Vec<Request>>,
    changed: Condvar,
    posts: AtomicUsize,
    accepted: AtomicUsize,
    /// Clones of every connection, shut down on stop.
    conns: Mutex<Vec<TcpStream>>,
}

/// A running receiver; stops (and closes its port) when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Receiver {
    /// Starts on `127.0.0.1:0`.
    pub fn start(behaviour: Behaviour) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a receiver port");
        Receiver::with_listener(listener, behaviour)
    }

    /// Starts on `127.0.0.1:PORT` (a port this test had and closed), trying
    /// for up to 5 s while the port is still taken.
    pub fn start_on(port: u16, behaviour: Behaviour) -> Receiver {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => return Receiver::with_listener(l, behaviour),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot bind the receiver again on 127.0.0.1:{port}: {e}"),
            }
        }
    }

    fn with_listener(listener: TcpListener, behaviour: Behaviour) -> Receiver {
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            behaviour,
            stop: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            posts: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            conns: Mutex::new(Vec::new()),
        });
        let workers: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let shared = Arc::clone(&shared);
            let workers = Arc::clone(&workers);
            thread::spawn(move || {
                while !shared.stop.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            shared.accepted.fetch_add(1, Ordering::AcqRel);
                            let _ = stream.set_nonblocking(false);
                            if let Ok(clone) = stream.try_clone() {
                                shared.conns.lock().unwrap().push(clone);
                            }
                            let s = Arc::clone(&shared);
                            workers
                                .lock()
                                .unwrap()
                                .push(thread::spawn(move || serve(stream, &s)));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(5))
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
                // The listener is dropped here: the port is closed.
            })
        };
        Receiver {
            addr,
            shared,
            accept: Some(accept),
            workers,
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::Acquire)
    }

    /// Every request read so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The POSTs read so far, in arrival order.
    pub fn posts(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect()
    }

    /// The HEADs read so far.
    pub fn heads(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "HEAD")
            .collect()
    }

    /// Waits up to `timeout` until at least `n` POSTs have been read and
    /// returns them all (in arrival order).
    ///
    /// # Panics
    ///
    /// When fewer arrive in time, listing what did.
    pub fn wait_posts(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        let mut log = self.shared.log.lock().unwrap();
        loop {
            let posts: Vec<Request> = log.iter().filter(|r| r.method == "POST").cloned().collect();
            if posts.len() >= n {
                return posts;
            }
            let now = Instant::now();
            if now >= deadline {
                let got: Vec<String> = posts
                    .iter()
                    .map(|p| {
                        format!(
                            "{} {} -> {}: {}",
                            p.header("x-floorbell-delivery").unwrap_or("?"),
                            p.target,
                            p.status,
                            String::from_utf8_lossy(&p.body)
                        )
                    })
                    .collect();
                panic!(
                    "receiver {}: {} POST(s) within {timeout:?}, wanted {n}:\n{}",
                    self.addr,
                    posts.len(),
                    got.join("\n")
                );
            }
            log = self
                .shared
                .changed
                .wait_timeout(log, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Stops: closes the listener (the port refuses connections from now
    /// on) and every connection, and joins the threads.
    pub fn close(mut self) -> Vec<Request> {
        self.stop();
        self.requests()
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        let workers: Vec<JoinHandle<()>> = self.workers.lock().unwrap().drain(..).collect();
        for w in workers {
            let _ = w.join();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What reading from a connection gave.
enum Got {
    More,
    Eof,
}

/// Reads more bytes into `buf`, re-checking the stop flag every 50 ms.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, shared: &Shared) -> Got {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return Got::Eof;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Got::Eof,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Got::More;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(_) => return Got::Eof,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Holds the connection open, doing nothing, until the receiver stops.
fn hold(shared: &Shared) {
    while !shared.stop.load(Ordering::Acquire) {
        thread::sleep(Duration::from_millis(20));
    }
}

/// One connection: requests one after another until EOF or stop.
fn serve(mut stream: TcpStream, shared: &Shared) {
    if shared.behaviour == Behaviour::Silent {
        hold(shared);
        return;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // The head.
        let head_end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p + 4;
            }
            if let Got::Eof = fill(&mut stream, &mut buf, shared) {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end - 4]).into_owned();
        buf.drain(..head_end);
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or("");
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| {
                l.split_once(':')
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            })
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        // The body.
        let chunked =
            header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(p) = find(&buf, b"\r\n") {
                        break p;
                    }
                    if let Got::Eof = fill(&mut stream, &mut buf, shared) {
                        return;
                    }
                };
                let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                    .unwrap_or(0);
                buf.drain(..line_end + 2);
                while buf.len() < size + 2 {
                    if let Got::Eof = fill(&mut stream, &mut buf, shared) {
                        return;
                    }
                }
                body.extend_from_slice(&buf[..size]);
                buf.drain(..size + 2);
                if size == 0 {
                    break;
                }
            }
            body
        } else {
            let len: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < len {
                if let Got::Eof = fill(&mut stream, &mut buf, shared) {
                    return;
                }
            }
            buf.drain(..len).collect()
        };
        let closes = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));

        let status: u16 = match (shared.behaviour, method.as_str()) {
            (Behaviour::HeadAnswers(status), "HEAD") => status,
            (_, "HEAD") => 200,
            (Behaviour::HoldPosts, _) => 0,
            (Behaviour::FailFirst(n), "POST") if shared.posts.load(Ordering::Acquire) < n => 500,
            _ => 200,
        };
        if method == "POST" {
            shared.posts.fetch_add(1, Ordering::AcqRel);
        }
        {
            let mut log = shared.log.lock().unwrap();
            log.push(Request {
                at: Instant::now(),
                method: method.clone(),
                target,
                headers: headers.clone(),
                body,
                status,
            });
            shared.changed.notify_all();
        }
        if status == 0 {
            hold(shared);
            return;
        }
        let answer: &[u8] = match status {
            200 => b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}",
            405 => b"HTTP/1.1 405 Method Not Allowed\r\nAllow: POST\r\nContent-Length: 0\r\n\r\n",
            _ => b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"ok\":false}",
        };
        // A HEAD answer has the same head and no body.
        let answer = if method == "HEAD" {
            &answer[..find(answer, b"\r\n\r\n").unwrap() + 4]
        } else {
            answer
        };
        if stream.write_all(answer).is_err() || closes {
            return;
        }
    }
}
