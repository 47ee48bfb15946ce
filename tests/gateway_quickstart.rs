//! The source's own quickstart client (seed `table-tracker-quickstart.txt`,
//! "3. Retrieving Active Orders") against the real `floorbell` binary: the
//! published JavaScript, with its placeholders filled in and only the fixes
//! it needs to run (each marked in `tests/quickstart/quickstart.js`), under
//! Node 20's built-in WebSocket (`node --experimental-websocket`).
//!
//! The script authenticates with its first frame, keeps an `orders` array
//! (the snapshot, then `ORDER_CREATED` appended and `ORDER_MODIFIED`
//! replaced in place, `ORDER_PAGED` ignored) and prints it after every
//! message. After each change made over HTTP, its view must match the
//! server's: every order it was told about, by uuid, with the state and
//! `locationName` the server has (cleared orders stay in its array as
//! `cleared`, which is how the script models them).
//!
//! Node is required: when `node` (or `$FLOORBELL_NODE`) is missing or has no
//! WebSocket, the test fails and says so.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;

/// The script, next to this file.
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/quickstart/quickstart.js"
);

/// How long node may take to start and print its first line.
const FIRST_LINE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long each later line may take.
const LINE_TIMEOUT: Duration = Duration::from_secs(5);

/// The node binary: `$FLOORBELL_NODE`, else `node` on the PATH.
fn node_binary() -> String {
    std::env::var("FLOORBELL_NODE").unwrap_or_else(|_| "node".to_string())
}

/// Drains a pipe into a shared string on its own thread.
fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

/// A child process killed (and reaped) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Checks that node runs and has a global `WebSocket` with
/// `--experimental-websocket`; fails the test with a plain message if not.
fn require_node() -> String {
    let node = node_binary();
    let child = Command::new(&node)
        .args([
            "--experimental-websocket",
            "-e",
            "process.stdout.write(typeof WebSocket + ' ' + process.version)",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => Proc(c),
        Err(e) => panic!(
            "this test needs Node.js 20 or later: `{node}` could not be started ({e}); \
             install it or point FLOORBELL_NODE at it"
        ),
    };
    let out = collect(child.0.stdout.take().unwrap());
    let err = collect(child.0.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait node") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "`{node} --experimental-websocket -e …` did not finish within 20 s"
        );
        thread::sleep(Duration::from_millis(20));
    };
    // Let the pipes drain.
    thread::sleep(Duration::from_millis(50));
    let out = out.lock().unwrap().clone();
    let err = err.lock().unwrap().clone();
    assert!(
        status.success() && out.starts_with("function "),
        "this test needs Node.js 20 or later with a built-in WebSocket \
         (`{node} --experimental-websocket`); got exit {status}, stdout {out:?}, stderr {err:?}"
    );
    eprintln!("node {}", out.trim_start_matches("function "));
    node
}

/// The running quickstart client.
struct Client {
    _proc: Proc,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    seen: usize,
}

impl Client {
    fn start(node: &str, addr: &str, token: &str) -> Client {
        let mut child = Command::new(node)
            .args(["--experimental-websocket", SCRIPT, addr, token])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {node} {SCRIPT}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let stderr = collect(child.stderr.take().unwrap());
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Client {
            _proc: Proc(child),
            lines: rx,
            stderr,
            seen: 0,
        }
    }

    /// The script's `orders` after its next message.
    fn next_view(&mut self, what: &str) -> Vec<Value> {
        let timeout = if self.seen == 0 {
            FIRST_LINE_TIMEOUT
        } else {
            LINE_TIMEOUT
        };
        let line = match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(e) => panic!(
                "{what}: the quickstart client printed no line {} ({e:?}); its stderr:\n{}",
                self.seen + 1,
                self.stderr.lock().unwrap()
            ),
        };
        self.seen += 1;
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{what}: line {} is not JSON ({e}): {line}", self.seen));
        v.as_array()
            .unwrap_or_else(|| panic!("{what}: line {} is not an array: {line}", self.seen))
            .clone()
    }

    /// Asserts that no further line comes within `ms` milliseconds.
    fn expect_no_line(&self, ms: u64) {
        if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(ms)) {
            panic!("an unexpected message made the client print: {line}");
        }
    }
}

/// `(uuid, state, locationName)` of each order in a view, in its order.
fn summary(view: &[Value]) -> Vec<(String, String, String)> {
    view.iter()
        .map(|o| {
            let text = |k: &str| {
                o[k].as_str()
                    .unwrap_or_else(|| panic!("{k} missing in the client's order {o}"))
                    .to_string()
            };
            (text("uuid"), text("state"), text("locationName"))
        })
        .collect()
}

/// What the client should show: the orders it was told about, in the order
/// it learnt of them, as the server has them now (active or cleared).
fn expected(s: &Server, known: &[String]) -> Vec<(String, String, String)> {
    let history = s.all_history();
    known
        .iter()
        .map(|uuid| {
            let o = history
                .iter()
                .find(|o| &o.uuid == uuid)
                .unwrap_or_else(|| panic!("order {uuid} is not in the server's history"));
            (o.uuid.clone(), o.state.clone(), o.location.clone())
        })
        .collect()
}

#[test]
fn the_quickstart_client_keeps_the_servers_view_of_the_orders() {
    let node = require_node();
    let s = Launch::new().start();
    // Before the client: two active orders (its snapshot) and a cleared one
    // (never shown to it).
    let a = s.start_order("101", "TO_GO", Some("4"));
    let b = s.start_order("102", "ON_PREMISE", None);
    let gone = s.start_order("103", "TO_GO", None);
    s.clear_order(&gone.uuid);
    // The token, as the quickstart says: press the button, then generate.
    let token = s.new_token();

    let mut client = Client::start(&node, &s.addr.to_string(), &token.token);
    let mut known = vec![a.uuid.clone(), b.uuid.clone()];
    let view = client.next_view("the snapshot");
    assert_eq!(summary(&view), expected(&s, &known), "after ACTIVE_ORDERS");

    // One change, one message, one line; the view after each.
    let check = |client: &mut Client, known: &[String], what: &str| {
        let view = client.next_view(what);
        assert_eq!(summary(&view), expected(&s, known), "after {what}");
    };
    let d = s.start_order("104", "TO_GO", None);
    known.push(d.uuid.clone());
    check(&mut client, &known, "start 104");
    s.modify_order("104", r#"{"locationName":"7"}"#);
    check(&mut client, &known, "locate 104");
    s.page_order("101");
    check(&mut client, &known, "page 101");
    s.modify_order(&b.uuid, r#"{"locationName":"12"}"#);
    check(&mut client, &known, "locate 102 by uuid");
    s.modify_order("101", r#"{"orderType":"ON_PREMISE"}"#);
    check(&mut client, &known, "retype 101");
    // No change, no message.
    s.modify_order("101", "{}");
    s.clear_order("101");
    check(&mut client, &known, "clear 101");
    s.clear_order(&d.uuid);
    check(&mut client, &known, "clear 104 by uuid");
    let e = s.start_order("105", "ON_PREMISE", Some("3"));
    known.push(e.uuid.clone());
    check(&mut client, &known, "start 105 located");
    s.page_order(&e.uuid);
    check(&mut client, &known, "page 105");
    s.modify_order("102", r#"{"locationName":""}"#);
    check(&mut client, &known, "unlocate 102");
    let reply = s.gw_admin("DELETE", "/api/v2/activeorders", None);
    assert_eq!(reply.body, r#"{"status":200,"count":2}"#);
    client.next_view("the first clear of clear-all");
    check(&mut client, &known, "clear all");
    // The name 101 is free again: a new order, a new uuid.
    let f = s.start_order("101", "TO_GO", Some("1"));
    known.push(f.uuid.clone());
    check(&mut client, &known, "start 101 again");
    client.expect_no_line(300);

    // The final view, once more, against the server.
    let active: Vec<String> = s.active_orders().into_iter().map(|o| o.uuid).collect();
    assert_eq!(active, std::slice::from_ref(&f.uuid));
    let final_view = expected(&s, &known);
    assert_eq!(
        final_view
            .iter()
            .filter(|(_, state, _)| state != "cleared")
            .map(|(u, _, _)| u.clone())
            .collect::<Vec<_>>(),
        active,
        "the view's uncleared orders are the active ones"
    );
    assert!(!known.contains(&gone.uuid));
}
