//! SPEC §3.7 discovery, end to end: `floorbell serve` started without
//! `--no-mdns` on 127.0.0.1:0 announces `floorbell-HOSTNAME` as
//! `_tracker-http._tcp` on its port, and withdraws it (goodbye packets) on
//! SIGTERM. The browser is Python's `zeroconf` package
//! (`tests/discovery_browse.py`, bound to 127.0.0.1, IPv4), as an
//! integrator following the quickstart would use it.
//!
//! This test never passes without having seen the announcement: when
//! multicast does not work here, or `python3` / `zeroconf` is missing, it
//! fails and says which.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// The browser script.
const BROWSER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/discovery_browse.py");
/// How long the browser looks for the instance.
const FIND_SECS: u64 = 15;
/// How long after SIGTERM the instance must be gone from the browser.
const GONE_WITHIN: Duration = Duration::from_secs(10);

/// The browser process, killed when dropped.
struct Browser {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Browser {
    fn start(instance: &str) -> Browser {
        let mut child = Command::new("python3")
            .arg(BROWSER)
            .arg(instance)
            .arg(FIND_SECS.to_string())
            .arg("60")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run python3 (needed to browse mDNS with `zeroconf`): {e}")
            });
        let stdout = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&stderr);
        thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            sink.lock().unwrap().push_str(&text);
        });
        Browser {
            child,
            lines,
            stderr,
        }
    }

    /// The next line within `timeout`; `None` on timeout or end of output.
    fn next(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Its standard error so far (after a short wait for it to flush).
    fn stderr(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        thread::sleep(Duration::from_millis(100));
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn announced_on_loopback_and_withdrawn_on_sigterm() {
    let host = hostname::get()
        .expect("the machine's host name")
        .to_string_lossy()
        .into_owned();
    let instance = floorbell_server::discovery::instance_name(&host);
    assert!(instance.starts_with("floorbell-"), "{instance}");
    let first_label = host.split('.').next().unwrap_or("");
    if !first_label.is_empty()
        && first_label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        assert_eq!(instance, format!("floorbell-{first_label}"));
    }

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    // Everything `Launch::new` passes except `--no-mdns`.
    let mut s = Launch::bare(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data,
            "--qr-token",
            QR_TOKEN,
            "--admin-token",
            ADMIN_TOKEN,
        ],
        QR_TOKEN,
        ADMIN_TOKEN,
        dir.path(),
    )
    .start();
    let port = s.addr.port();

    let mut browser = Browser::start(&instance);
    let mut found = None;
    let mut notes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(FIND_SECS + 15);
    while Instant::now() < deadline {
        let Some(line) = browser.next(Duration::from_secs(1)) else {
            if browser.child.try_wait().ok().flatten().is_some() {
                break;
            }
            continue;
        };
        if let Some(json) = line.strip_prefix("FOUND ") {
            found = Some(json.to_string());
            break;
        }
        if line.starts_with("NOZEROCONF") {
            let err = browser.stderr();
            panic!(
                "the Python package `zeroconf` is missing (pip install zeroconf): {line}\n{err}"
            );
        }
        notes.push(line);
        if notes.iter().any(|n| n.starts_with("SELFTEST")) {
            break;
        }
    }
    let Some(found) = found else {
        let selftest = notes
            .iter()
            .find(|n| n.starts_with("SELFTEST"))
            .cloned()
            .unwrap_or_default();
        let verdict = if selftest == "SELFTEST ok" {
            "multicast DNS works on 127.0.0.1 here (the browser saw a service of its own), \
             so floorbell did not announce itself"
        } else if selftest.is_empty() {
            "the browser gave no verdict"
        } else {
            "multicast DNS does NOT work on 127.0.0.1 in this environment \
             (the browser could not even see a service of its own); this test cannot pass here"
        };
        let err = browser.stderr();
        panic!(
            "mDNS: {instance}._tracker-http._tcp.local. was not found within {FIND_SECS} s: \
             {verdict}.\nbrowser said: {notes:?}\nbrowser stderr:\n{err}\nfloorbell stderr:\n{}",
            s.stderr()
        );
    };
    let v: serde_json::Value = serde_json::from_str(&found)
        .unwrap_or_else(|e| panic!("browser output is not JSON ({e}): {found}"));
    assert_eq!(
        v["name"].as_str().map(str::to_ascii_lowercase),
        Some(format!("{instance}._tracker-http._tcp.local.")),
        "{found}"
    );
    assert_eq!(
        v["port"], port,
        "the announced port is the server's: {found}"
    );
    let addresses: Vec<&str> = v["addresses"]
        .as_array()
        .unwrap_or_else(|| panic!("addresses: {found}"))
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(
        addresses,
        ["127.0.0.1"],
        "a loopback listener is announced with its own address: {found}"
    );
    assert_eq!(
        v["txt"]["version"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "{found}"
    );
    // The announced address and port reach the server.
    let reply = request_with(
        &agent(),
        "GET",
        &format!("http://{}:{}/api/v2", addresses[0], v["port"]),
        &[],
        None,
    )
    .expect("GET /api/v2 at the announced address");
    assert_eq!(reply.status, 200, "{}", reply.body);

    // SIGTERM: exit 0, and the goodbye removes the service from the browser.
    let terminated = Instant::now();
    let status = s.terminate();
    assert!(status.success(), "floorbell exit on SIGTERM: {status:?}");
    let mut after = Vec::new();
    let mut removed = false;
    while terminated.elapsed() < GONE_WITHIN {
        match browser.next(Duration::from_millis(250)) {
            Some(l) if l == "REMOVED" => {
                removed = true;
                break;
            }
            Some(l) => after.push(l),
            None => {}
        }
    }
    assert!(
        removed,
        "the browser still lists {instance} {GONE_WITHIN:?} after SIGTERM (no goodbye seen); \
         browser said {after:?}; floorbell stderr:\n{}",
        s.stderr()
    );
    eprintln!(
        "found {instance} on port {port}; removed {:?} after SIGTERM",
        terminated.elapsed()
    );
}
