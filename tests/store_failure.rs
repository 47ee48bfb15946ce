//! A store that fails under a running server (SPEC §0: nothing acknowledged
//! is lost; bad things get a clear error). The failure is real: the server
//! runs with a file-size limit (`RLIMIT_FSIZE`, `SIGXFSZ` ignored), so once
//! the file it appends QR events to (a growing segment of the event log)
//! reaches it, a commit fails with `EFBIG`, as on a full disk. From then on
//! floorbell refuses every change with a clear error, keeps answering the
//! reads whose state is all on disk (no read shows a change that failed),
//! lets its WebSocket clients go with 1011, and after a restart holds exactly
//! what it acknowledged.

mod common;

use common::gateway::{bearer, one_order};
use common::*;

/// The file-size limit: the event log passes it after ~17 of the events
/// below.
const LIMIT: libc::rlim_t = 1 << 20;

/// A valid event of ~60 KB (its `order` is passed through as sent).
fn big_event(i: usize) -> String {
    format!(
        r#"{{"code":"save_order","table":{},"invoice":null,"order":{{"note":"{}"}}}}"#,
        i % 10,
        "x".repeat(60_000)
    )
}

fn error_text(reply: &Reply, key: &str) -> String {
    reply.json()[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key:?} in {}", reply.body))
        .to_owned()
}

#[test]
fn a_failed_commit_refuses_every_change_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Launch::new()
        .data_dir(dir.path())
        .file_size_limit(LIMIT)
        .start();
    // Clients of the ticket board, connected before the failure.
    let mut display = server.ws("/ws/display");
    let mut kiosk = server.ws("/ws/kiosk");
    send_text(&mut kiosk, "new anna@example.com Anna");
    let reply = recv_text(&mut kiosk);
    assert!(reply.starts_with("success new {\"id\":0,"), "{reply}");

    let health = server.request("GET", "/healthz", &[], None);
    assert_eq!(
        (health.status, health.body.as_str()),
        (200, r#"{"status":200,"message":"ok"}"#)
    );
    assert_eq!(
        server.request("POST", "/healthz", &[], Some(b"{}")).status,
        405
    );

    let mut acknowledged = Vec::new();
    let failed = loop {
        assert!(acknowledged.len() < 100, "the store never failed");
        let reply = server.publish(&big_event(acknowledged.len()));
        if reply.status != 201 {
            break reply;
        }
        acknowledged.push(hash_of_published(&reply));
    };
    assert!(!acknowledged.is_empty(), "the first publish failed already");
    // The change whose commit failed: 500, SPEC §1's error JSON.
    assert_eq!(failed.status, 500, "{}", failed.body);
    assert_eq!(failed.json()["result"], false);
    assert!(
        error_text(&failed, "error").starts_with("the store failed: "),
        "{}",
        failed.body
    );

    // Every later change is refused at once, with the reason, though a
    // small one would still fit on the disk.
    let reply = server.publish(r#"{"code":"waiter_call","table":1}"#);
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.json()["result"], false);
    let reason = error_text(&reply, "error");
    assert!(
        reason.contains("refuses changes until it is restarted"),
        "{reason}"
    );
    let reply = server.put_table("4", r#"{"name":"4","max_guests":2}"#);
    assert_eq!(reply.status, 503, "{}", reply.body);
    let admin = server.admin_token.clone();
    let reply = server.staff_request(
        "POST",
        "/api/tickets/staff",
        Some(&admin),
        Some(r#"{"name":"Eve"}"#),
    );
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.json()["status"], 503);
    assert!(
        error_text(&reply, "message").contains("refuses changes"),
        "{}",
        reply.body
    );

    // WebSocket clients are let go with 1011 (a command of theirs could
    // never be answered), and new ones are refused before the upgrade.
    for ws in [&mut display, &mut kiosk] {
        let (code, why, _) = recv_close(ws);
        assert_eq!(code, 1011, "{why}");
        assert!(why.contains("store failed"), "{why}");
    }
    let stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(WS_TIMEOUT)).unwrap();
    match tungstenite::client::client(format!("ws://{}/ws/kiosk", server.addr).as_str(), stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            assert_eq!(response.status(), 503)
        }
        Err(e) => panic!("expected a 503 for the upgrade, got {e}"),
        Ok(_) => panic!("a WebSocket client was taken after the failure"),
    }

    // A monitor sees it, and why.
    let health = server.request("GET", "/healthz", &[], None);
    assert_eq!(health.status, 503, "{}", health.body);
    assert!(
        error_text(&health, "message").contains("refuses changes"),
        "{}",
        health.body
    );

    // Reads go on: exactly the acknowledged events, in order.
    assert_eq!(server.poll_hashes("none"), acknowledged);
    server.assert_healthy();
    let log = server.stderr();
    assert!(log.contains("store commit failed"), "{log}");

    // SIGTERM ends the run as a failure (a supervisor sees it), saying why.
    let status = server.terminate();
    assert_eq!(status.code(), Some(1), "{status:?}");
    let log = server.stderr();
    assert!(log.contains("stopped after a store failure"), "{log}");

    // Restarted without the limit: what was acknowledged is there, the
    // failed change is not, and changes are taken again.
    let server = Launch::new().data_dir(dir.path()).start();
    assert_eq!(server.poll_hashes("none"), acknowledged);
    assert_eq!(server.request("GET", "/healthz", &[], None).status, 200);
    let mut kiosk = server.ws("/ws/kiosk");
    say(&mut kiosk, "query anna@example.com", "success query Anna");
    send_text(&mut kiosk, "new boris@example.com Boris");
    let reply = recv_text(&mut kiosk);
    assert!(reply.starts_with("success new {\"id\":1,"), "{reply}");
    server.publish_ok(r#"{"code":"waiter_call","table":1}"#);
}

/// An order is applied in memory before its commit; when that commit fails,
/// no read shows it (SPEC §0: what a client is shown is on disk; §3.3: a
/// `seq` is never given out again). The orders live in SQLite, whose WAL
/// reaches the file-size limit after some dozens of orders.
#[test]
fn an_order_whose_commit_failed_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new()
        .data_dir(dir.path())
        .file_size_limit(LIMIT)
        .start();
    let auth = bearer(&server.admin_token);
    let mut acknowledged = Vec::new();
    let failed = loop {
        assert!(acknowledged.len() < 2_000, "the store never failed");
        let name = (acknowledged.len() + 1).to_string();
        let reply = server.post_order(&auth, &name, "TO_GO", None);
        if reply.status != 201 {
            break (name, reply);
        }
        acknowledged.push(one_order(&reply, 201, &name).seq);
    };
    let (name, reply) = failed;
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert!(!acknowledged.is_empty(), "the first order failed already");

    // Reads of the orders would show the failed one: refused instead.
    for path in [
        "/api/v2/activeorders".to_owned(),
        format!("/api/v2/activeorders/{name}"),
        "/api/v2/orders".to_owned(),
        "/api/v2/statistics".to_owned(),
    ] {
        let reply = server.gw("GET", &path, Some(&auth), None);
        assert_eq!(reply.status, 503, "{path}: {}", reply.body);
        assert!(
            error_text(&reply, "message").contains("store failed"),
            "{path}: {}",
            reply.body
        );
        let head = server.gw("HEAD", &path, Some(&auth), None);
        assert_eq!((head.status, head.body.as_str()), (503, ""), "HEAD {path}");
    }
    server.assert_healthy();
    drop(server);

    // Restarted without the limit: exactly the acknowledged orders.
    let server = Launch::new().data_dir(dir.path()).start();
    let reply = server.gw("GET", "/api/v2/activeorders", Some(&auth), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seqs: Vec<u64> = reply.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, acknowledged);
}
