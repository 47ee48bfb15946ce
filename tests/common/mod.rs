//! Helpers shared by the end-to-end tests: start the real `floorbell` binary
//! on `127.0.0.1:0` in a fresh data directory, talk to it with `ureq` (normal
//! requests) or a raw `TcpStream` (malformed, oversized, half-sent or
//! pipelined requests), stop it with SIGTERM / SIGINT / SIGKILL.
//!
//! Nothing here can hang: every read has a timeout, every wait has a
//! deadline, and a [`Server`] kills its process when dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub mod gateway;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_floorbell");

/// QR token passed with `--qr-token` unless a test asks for generated ones.
pub const QR_TOKEN: &str = "qr-test-token-6f1d";
/// Admin token passed with `--admin-token` unless a test asks for generated ones.
pub const ADMIN_TOKEN: &str = "admin-test-token-93ab";

/// How long a server may take to print its `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopping server may take to exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
/// Default read/write timeout of raw connections and of the HTTP agent.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The exact 401 body of every `/api/v4/` endpoint (SPEC §1.1).
pub const INVALID_TOKEN: &str = r#"{"result":false,"error":"invalid token"}"#;

/// Calls `cond` every 25 ms until it returns true or `timeout` passes.
/// Returns whether it became true.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// Collects everything a child writes to one of its pipes.
struct Capture {
    text: Arc<Mutex<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    /// Drains `pipe` on its own thread; `first_line`, when given, receives
    /// the first complete line as soon as it arrives.
    fn start(pipe: impl Read + Send + 'static, first_line: Option<mpsc::Sender<String>>) -> Self {
        let text = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&text);
        let thread = thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut first_line = first_line;
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        sink.lock().unwrap().extend_from_slice(&line);
                        if let Some(tx) = first_line.take() {
                            let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
                        }
                    }
                }
            }
        });
        Capture {
            text,
            thread: Some(thread),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }

    /// Waits (bounded) for the pipe to reach end of file; call after the
    /// process has exited.
    fn finish(&mut self) {
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !t.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// How to start a server.
pub struct Launch {
    /// The data directory; `None` means a fresh temporary one.
    data_dir: Option<PathBuf>,
    /// `--qr-token` / `--admin-token`, or `None` to let the server generate them.
    tokens: Option<(String, String)>,
    /// Add `--listen 127.0.0.1:0 --data-dir DIR --no-mdns` (and the tokens).
    standard_flags: bool,
    /// Extra arguments after `serve` and the standard flags.
    args: Vec<String>,
    /// `RLIMIT_FSIZE` for the server, with `SIGXFSZ` ignored: a write that
    /// would grow a file past it fails (`EFBIG`), as on a full disk.
    file_size_limit: Option<libc::rlim_t>,
    /// `RLIMIT_NOFILE` for the server, soft and hard (so it cannot raise it).
    open_files_limit: Option<libc::rlim_t>,
}

impl Default for Launch {
    fn default() -> Self {
        Self::new()
    }
}

impl Launch {
    /// A fresh temporary data directory and the test tokens.
    pub fn new() -> Self {
        Launch {
            data_dir: None,
            tokens: Some((QR_TOKEN.to_string(), ADMIN_TOKEN.to_string())),
            standard_flags: true,
            args: Vec::new(),
            file_size_limit: None,
            open_files_limit: None,
        }
    }

    /// Exactly `floorbell serve ARGS…`, nothing added (for `--config` tests).
    /// The tokens recorded on the [`Server`] are the given ones.
    pub fn bare(args: &[&str], qr_token: &str, admin_token: &str, data_dir: &Path) -> Self {
        Launch {
            data_dir: Some(data_dir.to_path_buf()),
            tokens: Some((qr_token.to_string(), admin_token.to_string())),
            standard_flags: false,
            args: args.iter().map(|s| s.to_string()).collect(),
            file_size_limit: None,
            open_files_limit: None,
        }
    }

    /// Use (and keep) this data directory.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    /// Pass no token flags: the server generates (or reuses) its own.
    pub fn generated_tokens(mut self) -> Self {
        self.tokens = None;
        self
    }

    /// Pass these token flags.
    pub fn tokens(mut self, qr: &str, admin: &str) -> Self {
        self.tokens = Some((qr.to_string(), admin.to_string()));
        self
    }

    /// Lets no file of the server grow past `bytes` (`RLIMIT_FSIZE`, with
    /// `SIGXFSZ` ignored so the write fails instead): a store failure that
    /// is real, for the tests of what follows one.
    pub fn file_size_limit(mut self, bytes: libc::rlim_t) -> Self {
        self.file_size_limit = Some(bytes);
        self
    }

    /// Lets the server hold at most `files` descriptors (`RLIMIT_NOFILE`,
    /// soft and hard), like a host whose limit it cannot raise.
    pub fn open_files_limit(mut self, files: libc::rlim_t) -> Self {
        self.open_files_limit = Some(files);
        self
    }

    /// One more argument (e.g. `"--event-retention"`, then `"2"`).
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Starts the server and waits for its `listening on` line.
    ///
    /// # Panics
    ///
    /// When the process exits or stays silent for [`START_TIMEOUT`], with its
    /// standard error in the message.
    pub fn start(self) -> Server {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Launch::start`], with the failure to start as an error (its
    /// standard error in it) instead of a panic.
    pub fn try_start(self) -> Result<Server, String> {
        let (dir_guard, data_dir) = match self.data_dir {
            Some(d) => (None, d),
            None => {
                let d = tempfile::tempdir().expect("create temp data dir");
                let p = d.path().to_path_buf();
                (Some(d), p)
            }
        };
        let mut args: Vec<String> = vec!["serve".into()];
        if self.standard_flags {
            args.extend(
                [
                    "--listen",
                    "127.0.0.1:0",
                    "--data-dir",
                    data_dir.to_str().unwrap(),
                    "--no-mdns",
                ]
                .map(String::from),
            );
            if let Some((qr, admin)) = &self.tokens {
                args.extend([
                    "--qr-token".into(),
                    qr.clone(),
                    "--admin-token".into(),
                    admin.clone(),
                ]);
            }
        }
        args.extend(self.args);

        let mut command = Command::new(BIN);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (file_size, open_files) = (self.file_size_limit, self.open_files_limit);
        if file_size.is_some() || open_files.is_some() {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec only async-signal-safe calls
            // (signal, setrlimit) on plain values.
            unsafe {
                command.pre_exec(move || {
                    let limit = |n| libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if let Some(bytes) = file_size {
                        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                        if libc::setrlimit(libc::RLIMIT_FSIZE, &limit(bytes)) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    if let Some(files) = open_files {
                        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit(files)) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().expect("spawn floorbell");
        let (tx, rx) = mpsc::channel();
        let stdout = Capture::start(child.stdout.take().unwrap(), Some(tx));
        let stderr = Capture::start(child.stderr.take().unwrap(), None);
        let (qr_token, admin_token) = self.tokens.unwrap_or_default();
        let mut server = Server {
            child,
            addr: "127.0.0.1:9".parse().unwrap(),
            qr_token,
            admin_token,
            data_dir,
            stdout,
            stderr,
            exit: None,
            agent: agent(),
            _dir: dir_guard,
        };
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = server.child.kill();
                let status = server.child.wait().ok();
                server.stderr.finish();
                return Err(format!(
                    "floorbell {:?} printed no `listening on` line (exit: {:?}); stderr:\n{}",
                    args,
                    status,
                    server.stderr.text()
                ));
            }
        };
        let rest = line
            .strip_suffix('\n')
            .and_then(|l| l.strip_prefix("listening on http://"))
            .unwrap_or_else(|| {
                panic!("first stdout line is not `listening on http://…`: {line:?}")
            });
        server.addr = rest
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
        Ok(server)
    }
}

/// A running `floorbell serve`.
pub struct Server {
    child: Child,
    /// The address from the `listening on` line.
    pub addr: SocketAddr,
    /// The QR token to send in `token:` (empty when generated and unknown).
    pub qr_token: String,
    /// The admin token to send as `Authorization: Bearer` (empty when unknown).
    pub admin_token: String,
    /// The data directory.
    pub data_dir: PathBuf,
    stdout: Capture,
    stderr: Capture,
    /// The exit status once the process has been reaped.
    exit: Option<ExitStatus>,
    /// A keep-alive HTTP agent for this server.
    agent: ureq::Agent,
    /// Keeps a temporary data directory alive as long as the server.
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A complete HTTP answer as read by `ureq`.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub content_length: Option<String>,
    pub body: String,
}

impl Reply {
    /// The body parsed as JSON.
    ///
    /// # Panics
    ///
    /// When it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// Asserts `{"result":false,"error":"<non-empty>"}` with this status.
    pub fn assert_v4_error(&self, status: u16) {
        assert_eq!(self.status, status, "status; body: {}", self.body);
        assert_json_content(self.content_type.as_deref(), &self.body);
        assert_v4_error_shape(&self.body);
    }
}

/// Asserts `{"result":false,"error":"<non-empty string>"}`, exactly these keys.
pub fn assert_v4_error_shape(body: &str) {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"));
    assert_eq!(obj.len(), 2, "keys of {body}");
    assert_eq!(
        obj.get("result"),
        Some(&serde_json::Value::Bool(false)),
        "{body}"
    );
    let err = obj.get("error").and_then(|e| e.as_str());
    assert!(
        matches!(err, Some(s) if !s.is_empty()),
        "error string in {body}"
    );
}

/// Asserts `{"status":N,"message":"<non-empty string>"}`, exactly these keys.
pub fn assert_plain_error_shape(body: &str, status: u16) {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"));
    assert_eq!(obj.len(), 2, "keys of {body}");
    assert_eq!(
        obj.get("status").and_then(|s| s.as_u64()),
        Some(status as u64),
        "{body}"
    );
    let msg = obj.get("message").and_then(|e| e.as_str());
    assert!(
        matches!(msg, Some(s) if !s.is_empty()),
        "message string in {body}"
    );
}

/// Asserts a JSON content type and a body that parses as JSON.
pub fn assert_json_content(content_type: Option<&str>, body: &str) {
    let ct = content_type.unwrap_or_else(|| panic!("no Content-Type; body {body:?}"));
    assert!(
        ct.trim()
            .to_ascii_lowercase()
            .starts_with("application/json"),
        "Content-Type {ct:?}"
    );
    serde_json::from_str::<serde_json::Value>(body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {body:?}"));
}

/// An agent that returns 4xx/5xx as answers and never waits forever.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .timeout_connect(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// Runs one request on `agent`. `body` `None` sends no body at all.
pub fn request_with(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Reply, ureq::Error> {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let response = match body {
        None => agent.run(builder.body(()).unwrap())?,
        Some(b) => agent.run(builder.body(b).unwrap())?,
    };
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("<non-ascii>").to_string())
    };
    let status = response.status().as_u16();
    let content_type = header("content-type");
    let content_length = header("content-length");
    let mut response = response;
    let body = response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()?;
    Ok(Reply {
        status,
        content_type,
        content_length,
        body,
    })
}

/// The body of a valid event with this code and nothing else.
pub fn event_body(code: &str) -> String {
    format!(r#"{{"code":"{code}"}}"#)
}

/// Extracts the hash from a 201 publish answer, checking its exact shape.
pub fn hash_of_published(reply: &Reply) -> String {
    assert_eq!(reply.status, 201, "publish status; body: {}", reply.body);
    let hash = reply
        .body
        .strip_prefix(r#"{"result":true,"data":{"hash":""#)
        .and_then(|r| r.strip_suffix(r#""}}"#))
        .unwrap_or_else(|| panic!("publish body shape: {}", reply.body));
    assert_hash_format(hash);
    hash.to_string()
}

/// Asserts `0x` + 8 lowercase hex digits.
pub fn assert_hash_format(hash: &str) {
    let digits = hash
        .strip_prefix("0x")
        .unwrap_or_else(|| panic!("hash {hash:?} lacks 0x"));
    assert_eq!(digits.len(), 8, "hash {hash:?}");
    assert!(
        digits
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "hash {hash:?} is not lowercase hex"
    );
}

/// Splits a poll body `{"result":true,"data":{"updates":[E1,E2,…]}}` into the
/// raw text of each event, checking the envelope byte for byte.
pub fn split_updates(body: &str) -> Vec<String> {
    let inner = body
        .strip_prefix(r#"{"result":true,"data":{"updates":["#)
        .and_then(|r| r.strip_suffix("]}}"))
        .unwrap_or_else(|| panic!("poll body envelope: {body}"));
    let v: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("poll body is not JSON ({e}): {body}"));
    let count = v["data"]["updates"]
        .as_array()
        .expect("updates array")
        .len();
    // Cut the array's text at the top-level commas.
    let mut events = Vec::with_capacity(count);
    let (mut depth, mut in_str, mut escaped, mut start) = (0usize, false, false, 0usize);
    for (i, c) in inner.char_indices() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            ',' if depth == 0 => {
                events.push(inner[start..i].to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    if !inner.is_empty() {
        events.push(inner[start..].to_string());
    }
    assert_eq!(events.len(), count, "events in {body}");
    events
}

/// The exact text of a stored event.
pub fn event_json(
    hash: &str,
    code: &str,
    table: &str,
    invoice: &str,
    order: &str,
    table_repr: &str,
) -> String {
    format!(
        r#"{{"hash":"{hash}","code":"{code}","table":{table},"invoice":{invoice},"order":{order},"table_repr":{table_repr}}}"#
    )
}

/// The hash inside an event's raw text.
pub fn hash_in_event(event: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(event).unwrap_or_else(|e| panic!("event not JSON ({e}): {event}"));
    v["hash"]
        .as_str()
        .unwrap_or_else(|| panic!("event without hash: {event}"))
        .to_string()
}

impl Server {
    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// One request on this server's keep-alive agent.
    ///
    /// # Panics
    ///
    /// On a transport error (no HTTP answer).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        request_with(&self.agent, method, &self.url(path), headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: no HTTP answer: {e}"))
    }

    /// `GET /api/v4/events?hash=HASH` with the QR token.
    pub fn poll(&self, hash: &str) -> Reply {
        let token = self.qr_token.clone();
        self.request(
            "GET",
            &format!("/api/v4/events?hash={hash}"),
            &[("token", &token)],
            None,
        )
    }

    /// The raw events of a successful poll.
    pub fn poll_events(&self, hash: &str) -> Vec<String> {
        let reply = self.poll(hash);
        assert_eq!(reply.status, 200, "poll status; body: {}", reply.body);
        assert_json_content(reply.content_type.as_deref(), &reply.body);
        split_updates(&reply.body)
    }

    /// The hashes of a successful poll, in order.
    pub fn poll_hashes(&self, hash: &str) -> Vec<String> {
        self.poll_events(hash)
            .iter()
            .map(|e| hash_in_event(e))
            .collect()
    }

    /// `POST /api/v4/events` with the admin token.
    pub fn publish(&self, body: &str) -> Reply {
        let auth = format!("Bearer {}", self.admin_token);
        self.request(
            "POST",
            "/api/v4/events",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(body.as_bytes()),
        )
    }

    /// Publishes and returns the hash of the 201.
    pub fn publish_ok(&self, body: &str) -> String {
        hash_of_published(&self.publish(body))
    }

    /// `PUT /api/v4/tables/{id}` with the admin token.
    pub fn put_table(&self, id: &str, body: &str) -> Reply {
        let auth = format!("Bearer {}", self.admin_token);
        self.request(
            "PUT",
            &format!("/api/v4/tables/{id}"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(body.as_bytes()),
        )
    }

    /// `GET /api/v4/tables` with the QR token.
    pub fn get_tables(&self) -> Reply {
        let token = self.qr_token.clone();
        self.request("GET", "/api/v4/tables", &[("token", &token)], None)
    }

    /// Asserts that the server still answers a normal poll.
    pub fn assert_healthy(&self) {
        let reply = request_with(
            &agent(),
            "GET",
            &self.url("/api/v4/events?hash=none"),
            &[("token", &self.qr_token)],
            None,
        )
        .unwrap_or_else(|e| panic!("server no longer answers: {e}"));
        assert_eq!(reply.status, 200, "health poll; body: {}", reply.body);
    }

    /// A raw connection to this server.
    pub fn raw(&self) -> RawConn {
        RawConn::connect(self.addr)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM")
    }

    /// Sends SIGINT and waits for exit.
    pub fn interrupt(&mut self) -> ExitStatus {
        self.signal("INT")
    }

    /// Sends `kill -SIG PID` and waits (bounded) for the process to exit.
    ///
    /// # Panics
    ///
    /// When it does not exit within [`EXIT_TIMEOUT`] (it is then killed).
    pub fn signal(&mut self, sig: &str) -> ExitStatus {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
        match self.wait_exit(EXIT_TIMEOUT) {
            Some(status) => status,
            None => {
                let _ = self.child.kill();
                self.exit = self.child.wait().ok();
                self.stderr.finish();
                panic!(
                    "floorbell did not exit within {EXIT_TIMEOUT:?} of SIG{sig}; stderr:\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        self.exit = Some(self.child.wait().expect("wait for killed server"));
        self.stdout.finish();
        self.stderr.finish();
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.exit {
            return Some(s);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exit = Some(status);
                self.stdout.finish();
                self.stderr.finish();
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything written to standard output so far.
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Everything written to standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }
}

/// A finished (or timed-out and killed) `floorbell` command.
#[derive(Debug)]
pub struct Finished {
    /// `None` when it had to be killed after the timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `floorbell ARGS…` to completion, killing it after `timeout`.
pub fn run_floorbell(args: &[&str], timeout: Duration) -> Finished {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn floorbell");
    let mut out = Capture::start(child.stdout.take().unwrap(), None);
    let mut err = Capture::start(child.stderr.take().unwrap(), None);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    out.finish();
    err.finish();
    Finished {
        status,
        stdout: out.text(),
        stderr: err.text(),
    }
}

/// What a raw read ended with.
#[derive(Debug)]
pub enum ReadEnd {
    /// A complete response.
    Response(RawResponse),
    /// End of file or connection reset, after these bytes of an unfinished response.
    Closed(Vec<u8>),
    /// Nothing more within the timeout, after these bytes.
    TimedOut(Vec<u8>),
}

/// A response read from a raw connection.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status line, e.g. `HTTP/1.1 200 OK`.
    pub status_line: String,
    pub status: u16,
    /// Header names lowercased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header with this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the server announced `Connection: close`.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("body is UTF-8")
    }

    /// Asserts a JSON content type and a JSON body.
    pub fn assert_json(&self) {
        assert_json_content(self.header("content-type"), &self.text());
    }
}

/// A raw TCP connection that reads HTTP/1.1 responses framed by
/// Content-Length, keeping surplus bytes for the next response.
pub struct RawConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    timeout: Duration,
    /// Most bytes taken per read, and the pause after each (a slow reader).
    read_chunk: usize,
    read_pause: Duration,
}

impl RawConn {
    /// Connects with [`IO_TIMEOUT`] on reads and writes.
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let _ = stream.set_nodelay(true);
        RawConn {
            stream,
            buf: Vec::new(),
            timeout: IO_TIMEOUT,
            read_chunk: 64 * 1024,
            read_pause: Duration::ZERO,
        }
    }

    /// Reads at most `chunk` bytes at a time, pausing `pause` after each:
    /// a client slower than the server's writes.
    pub fn read_slowly(&mut self, chunk: usize, pause: Duration) {
        self.read_chunk = chunk.clamp(1, 64 * 1024);
        self.read_pause = pause;
    }

    /// The total time a read may take before [`ReadEnd::TimedOut`].
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Writes all of `bytes` (panics on error).
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write: {e}"));
    }

    /// Writes all of `bytes`, ignoring errors (the server may close early).
    pub fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Writes `bytes` on another thread, so that a response can be read
    /// while a large body is still going out. Errors are returned, not raised.
    pub fn send_in_background(&self, bytes: Vec<u8>) -> JoinHandle<std::io::Result<()>> {
        let mut w = self.stream.try_clone().expect("clone stream");
        thread::spawn(move || w.write_all(&bytes))
    }

    /// Reads more bytes into the buffer before `deadline`. `Ok(false)` on
    /// EOF or reset.
    fn fill(&mut self, deadline: Instant) -> Result<bool, ()> {
        let now = Instant::now();
        if now >= deadline {
            return Err(());
        }
        let left = (deadline - now).max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(left)).unwrap();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk[..self.read_chunk]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    thread::sleep(self.read_pause);
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return Err(())
                }
                // Reset, aborted, broken pipe: the peer is gone.
                Err(_) => return Ok(false),
            }
        }
    }

    /// Reads the next response (an interim 1xx counts as one).
    pub fn read(&mut self) -> ReadEnd {
        let deadline = Instant::now() + self.timeout;
        // The head.
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            match self.fill(deadline) {
                Ok(true) => {}
                Ok(false) => return ReadEnd::Closed(std::mem::take(&mut self.buf)),
                Err(()) => return ReadEnd::TimedOut(std::mem::take(&mut self.buf)),
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end - 4]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("").to_string();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        assert!(
            status_line.starts_with("HTTP/1.1 "),
            "status line {status_line:?}"
        );
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| {
                l.split_once(':')
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            })
            .collect();
        let len = if (100..200).contains(&status) {
            0
        } else {
            let cl = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .unwrap_or_else(|| panic!("response without Content-Length: {head}"));
            cl.1.parse::<usize>()
                .unwrap_or_else(|_| panic!("bad Content-Length in {head}"))
        };
        while self.buf.len() < head_end + len {
            match self.fill(deadline) {
                Ok(true) => {}
                Ok(false) => return ReadEnd::Closed(std::mem::take(&mut self.buf)),
                Err(()) => return ReadEnd::TimedOut(std::mem::take(&mut self.buf)),
            }
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        ReadEnd::Response(RawResponse {
            status_line,
            status,
            headers,
            body,
        })
    }

    /// Reads the next response, panicking if there is none.
    pub fn read_response(&mut self) -> RawResponse {
        match self.read() {
            ReadEnd::Response(r) => r,
            ReadEnd::Closed(b) => panic!(
                "connection closed before a complete response; got {:?}",
                String::from_utf8_lossy(&b)
            ),
            ReadEnd::TimedOut(b) => panic!(
                "no complete response within {:?}; got {:?}",
                self.timeout,
                String::from_utf8_lossy(&b)
            ),
        }
    }

    /// Waits up to `timeout` for the server to close the connection, with no
    /// further bytes. Returns whether it closed.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let unexpected = |buf: &[u8]| {
            panic!(
                "expected the connection to close, got more bytes: {:?}",
                String::from_utf8_lossy(buf)
            )
        };
        if !self.buf.is_empty() {
            unexpected(&self.buf);
        }
        match self.fill(deadline) {
            Ok(true) => unexpected(&self.buf),
            Ok(false) => true,
            Err(()) => false,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A complete request head + body with Content-Length.
pub fn http_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

// ---------------------------------------------------------------------------
// Service tickets (SPEC §2): staff accounts over HTTP, the three WebSocket
// endpoints through `tungstenite`, and the ticket JSON.
// ---------------------------------------------------------------------------

/// A client WebSocket over a blocking `TcpStream` with read/write timeouts.
pub type Ws = tungstenite::WebSocket<TcpStream>;

/// How long a WebSocket read may wait before the test fails.
pub const WS_TIMEOUT: Duration = Duration::from_secs(5);

/// The `end` of a ticket that is neither completed nor cancelled.
pub const EPOCH: &str = "1970-01-01T00:00:00Z";

/// Opens `ws://ADDR{path}` on an already connected stream (timeouts are set
/// here), panicking if the handshake fails.
pub fn ws_handshake(stream: TcpStream, addr: SocketAddr, path: &str) -> Ws {
    stream.set_read_timeout(Some(WS_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(WS_TIMEOUT)).unwrap();
    let _ = stream.set_nodelay(true);
    let url = format!("ws://{addr}{path}");
    match tungstenite::client::client(url.as_str(), stream) {
        Ok((ws, _response)) => ws,
        Err(e) => panic!("WebSocket handshake with {url} failed: {e}"),
    }
}

/// Connects to `ws://ADDR{path}`.
pub fn ws_connect(addr: SocketAddr, path: &str) -> Ws {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    ws_handshake(stream, addr, path)
}

fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock
        || io.kind() == std::io::ErrorKind::TimedOut)
}

/// Sends one text frame (and flushes it).
pub fn send_text(ws: &mut Ws, text: &str) {
    ws.send(tungstenite::Message::text(text))
        .unwrap_or_else(|e| panic!("send {text:?}: {e}"));
}

/// Sends one raw frame: `opcode` (e.g. `OpCode::Data(Data::Text)`), payload
/// and FIN bit. The client masks it as usual.
pub fn send_frame(
    ws: &mut Ws,
    opcode: tungstenite::protocol::frame::coding::OpCode,
    payload: &[u8],
    fin: bool,
) {
    let frame = tungstenite::protocol::frame::Frame::message(payload.to_vec(), opcode, fin);
    ws.send(tungstenite::Message::Frame(frame))
        .unwrap_or_else(|e| panic!("send raw frame: {e}"));
}

/// The next message of any kind (ping, pong and close included).
///
/// # Panics
///
/// On a timeout ([`WS_TIMEOUT`]) or when the connection ends without a
/// close frame.
pub fn recv_message(ws: &mut Ws) -> tungstenite::Message {
    match ws.read() {
        Ok(m) => m,
        Err(e) if is_timeout(&e) => panic!("no WebSocket message within {WS_TIMEOUT:?}"),
        Err(e) => panic!("WebSocket read failed: {e}"),
    }
}

/// The next text message, skipping pings and pongs.
///
/// # Panics
///
/// On a timeout, a close frame, a binary message or a read error.
pub fn recv_text(ws: &mut Ws) -> String {
    loop {
        match recv_message(ws) {
            tungstenite::Message::Text(t) => return t.as_str().to_string(),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// The next `n` text messages.
pub fn recv_texts(ws: &mut Ws, n: usize) -> Vec<String> {
    (0..n).map(|_| recv_text(ws)).collect()
}

/// Asserts that no text message arrives within `ms` milliseconds (keep it
/// short: ≤ 300 ms).
pub fn expect_silence(ws: &mut Ws, ms: u64) {
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(ms)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_millis(ms);
    let result = loop {
        match ws.read() {
            Ok(tungstenite::Message::Ping(_)) | Ok(tungstenite::Message::Pong(_)) => {
                if Instant::now() >= deadline {
                    break Ok(());
                }
            }
            Ok(other) => break Err(format!("expected silence, got {other:?}")),
            Err(e) if is_timeout(&e) => break Ok(()),
            Err(e) => break Err(format!("expected silence, the read failed: {e}")),
        }
    };
    ws.get_ref().set_read_timeout(Some(WS_TIMEOUT)).unwrap();
    if let Err(msg) = result {
        panic!("{msg}");
    }
}

/// Reads until the server's close frame and returns its code and reason,
/// with the text messages that came before it.
///
/// # Panics
///
/// On a timeout, or when the connection ends without a close frame.
pub fn recv_close(ws: &mut Ws) -> (u16, String, Vec<String>) {
    let mut texts = Vec::new();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(Some(frame))) => {
                return (
                    u16::from(frame.code),
                    frame.reason.as_str().to_string(),
                    texts,
                )
            }
            Ok(tungstenite::Message::Close(None)) => {
                panic!(
                    "close frame without a status code (after {} texts)",
                    texts.len()
                )
            }
            Ok(tungstenite::Message::Text(t)) => texts.push(t.as_str().to_string()),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => panic!(
                "no close frame within {WS_TIMEOUT:?} (after {} texts)",
                texts.len()
            ),
            Err(e) => panic!(
                "connection ended without a close frame: {e} (after {} texts)",
                texts.len()
            ),
        }
    }
}

/// Sends `command` and asserts that the very next text message is `reply`.
pub fn say(ws: &mut Ws, command: &str, reply: &str) {
    send_text(ws, command);
    let got = recv_text(ws);
    assert_eq!(got, reply, "reply to {:?}", shorten(command));
}

/// `pick TABLE TOKEN`, expecting `success pick TABLE`.
pub fn pick(ws: &mut Ws, table: u32, token: &str) {
    say(
        ws,
        &format!("pick {table} {token}"),
        &format!("success pick {table}"),
    );
}

/// The first 120 bytes (at a character boundary) of a long text, for messages.
pub fn shorten(text: &str) -> String {
    if text.len() <= 120 {
        return text.to_string();
    }
    let mut end = 120;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// The ticket JSON of SPEC §2, field for field.
pub fn ticket_json(
    id: u64,
    email: &str,
    name: &str,
    staff: &str,
    start: &str,
    end: &str,
) -> String {
    let s = |v: &str| serde_json::to_string(v).unwrap();
    format!(
        r#"{{"id":{id},"email":{},"name":{},"staff":{},"start":{},"end":{}}}"#,
        s(email),
        s(name),
        s(staff),
        s(start),
        s(end)
    )
}

/// A ticket as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub id: u64,
    pub email: String,
    pub name: String,
    pub staff: String,
    pub start: String,
    pub end: String,
}

impl Ticket {
    /// The exact JSON text this ticket must have.
    pub fn json(&self) -> String {
        ticket_json(
            self.id,
            &self.email,
            &self.name,
            &self.staff,
            &self.start,
            &self.end,
        )
    }
}

/// Parses a ticket JSON, checking that it is byte for byte the SPEC's shape
/// (field order, no extra fields, no whitespace) and that `start` and `end`
/// are RFC 3339 UTC seconds.
pub fn parse_ticket(json: &str) -> Ticket {
    let v: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("ticket is not JSON ({e}): {json}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("ticket is not an object: {json}"));
    assert_eq!(obj.len(), 6, "ticket fields: {json}");
    let text = |k: &str| {
        obj.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_else(|| panic!("ticket field {k} is not a string: {json}"))
            .to_string()
    };
    let ticket = Ticket {
        id: obj
            .get("id")
            .and_then(|x| x.as_u64())
            .unwrap_or_else(|| panic!("ticket id is not an unsigned integer: {json}")),
        email: text("email"),
        name: text("name"),
        staff: text("staff"),
        start: text("start"),
        end: text("end"),
    };
    assert_rfc3339_utc(&ticket.start);
    assert_rfc3339_utc(&ticket.end);
    assert_eq!(
        ticket.json(),
        json,
        "ticket JSON is not in the SPEC's exact shape"
    );
    ticket
}

/// Parses `PREFIX TICKETJSON` (`success new`, `new`, `claimed`).
pub fn ticket_after(prefix: &str, message: &str) -> Ticket {
    let json = message
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix(' '))
        .unwrap_or_else(|| panic!("expected `{prefix} TICKETJSON`, got {message:?}"));
    parse_ticket(json)
}

/// Asserts `YYYY-MM-DDTHH:MM:SSZ`.
pub fn assert_rfc3339_utc(s: &str) {
    let b = s.as_bytes();
    let ok = b.len() == 20
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(
        ok,
        "{s:?} is not RFC 3339 UTC seconds (YYYY-MM-DDTHH:MM:SSZ)"
    );
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ`; such strings order like the
/// times they name.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Server {
    /// A WebSocket to this server's `path` (`/ws/staff`, `/ws/kiosk`, `/ws/display`).
    pub fn ws(&self, path: &str) -> Ws {
        ws_connect(self.addr, path)
    }

    /// A request to a staff-account endpoint with `Authorization: Bearer
    /// AUTH` when `auth` is given.
    pub fn staff_request(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let bearer = auth.map(|a| format!("Bearer {a}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(b) = &bearer {
            headers.push(("Authorization", b));
        }
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        self.request(method, path, &headers, body.map(str::as_bytes))
    }

    /// `POST /api/tickets/staff {"name":NAME}` with the admin token.
    pub fn post_staff(&self, name: &str) -> Reply {
        let body = serde_json::json!({ "name": name }).to_string();
        let admin = self.admin_token.clone();
        self.staff_request("POST", "/api/tickets/staff", Some(&admin), Some(&body))
    }

    /// Creates a staff member and returns their token (checking the 201).
    pub fn create_staff(&self, name: &str) -> String {
        let reply = self.post_staff(name);
        assert_eq!(
            reply.status, 201,
            "create staff {name:?}; body: {}",
            reply.body
        );
        let v = reply.json();
        assert_eq!(
            v["name"].as_str(),
            Some(name),
            "created staff: {}",
            reply.body
        );
        v["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {}", reply.body))
            .to_string()
    }

    /// `DELETE /api/tickets/staff/{name}` with the admin token.
    pub fn delete_staff(&self, name: &str) -> Reply {
        let admin = self.admin_token.clone();
        self.staff_request(
            "DELETE",
            &format!("/api/tickets/staff/{name}"),
            Some(&admin),
            None,
        )
    }
}
