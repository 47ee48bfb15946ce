//! SPEC §3.4–§3.5 end to end: `/api/v2/websocket` against the real
//! `floorbell` binary with `tungstenite` as the client — authentication by
//! header (Basic and Bearer) or first frame, the 1008 closes (wrong token,
//! invalid JSON, no `accesstoken`, silence past `--ws-auth-timeout`), the
//! `ACTIVE_ORDERS` snapshot, every change type in `seq` order with its exact
//! keys, fan-out to several clients, the snapshot's consistency with
//! concurrent writes, the slow consumer closed with 1013 beside a healthy
//! one, and the fresh snapshot on reconnect.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::Message;

use common::gateway::*;
use common::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn server_and_token() -> (Server, GwToken) {
    let s = Launch::new().start();
    let t = s.new_token();
    (s, t)
}

/// Asserts that the server closes at once with 1008 and sends nothing first.
fn assert_closed_1008(ws: &mut Ws, what: &str) {
    let started = Instant::now();
    let (code, _reason, texts) = recv_close(ws);
    assert_eq!(code, 1008, "{what}: close code");
    assert!(
        texts.is_empty(),
        "{what}: messages before the close: {texts:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{what}: closed only after {:?}",
        started.elapsed()
    );
}

/// Reads the next change and checks it against what HTTP answered.
fn expect_change(ws: &mut Ws, kind: &str, want: &Order, what: &str) -> Order {
    let (k, got) = recv_change(ws);
    assert_eq!(k, kind, "{what}: type of {got:?}");
    assert_same_order(&got, want, 1, what);
    got
}

/// Asserts that the snapshot shows exactly these orders, in this order.
fn assert_snapshot(got: &[Order], want: &[Order], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?}");
    for (g, w) in got.iter().zip(want) {
        assert_same_order(g, w, 1, what);
    }
}

/// Reads a client on its own thread: every text message, then one
/// `<close CODE>` or `<error …>` line when it ends.
fn reader(mut ws: Ws) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || loop {
        let line = match ws.read() {
            Ok(Message::Text(t)) => t.as_str().to_string(),
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
            Ok(Message::Close(frame)) => {
                let _ = tx.send(format!("<close {:?}>", frame.map(|f| u16::from(f.code))));
                return;
            }
            Ok(other) => format!("<unexpected {other:?}>"),
            Err(e) => {
                let _ = tx.send(format!("<error {e}>"));
                return;
            }
        };
        if tx.send(line).is_err() {
            return;
        }
    });
    rx
}

/// Takes `n` messages from a reader within `timeout` (all together).
fn take(rx: &mpsc::Receiver<String>, n: usize, timeout: Duration, what: &str) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(m) => {
                assert!(
                    !m.starts_with('<'),
                    "{what}: {m} after {} of {n} messages",
                    out.len()
                );
                out.push(m);
            }
            Err(_) => panic!(
                "{what}: only {} of {n} messages within {timeout:?}",
                out.len()
            ),
        }
    }
    out
}

/// Asserts that the seqs rise by exactly one from message to message.
fn assert_consecutive(changes: &[(String, Order)], what: &str) {
    for w in changes.windows(2) {
        assert_eq!(
            w[1].1.seq,
            w[0].1.seq + 1,
            "{what}: seq {} followed by {}",
            w[0].1.seq,
            w[1].1.seq
        );
    }
}

// ---------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------

#[test]
fn header_authentication_basic_or_bearer_gets_the_snapshot_first() {
    let (s, t) = server_and_token();
    s.start_order("1", "TO_GO", Some("4"));
    s.start_order("2", "ON_PREMISE", None);
    let http = s.active_orders();
    let mut clients = Vec::new();
    for auth in [basic(&t.token), bearer(&t.token)] {
        let mut ws = s.gw_ws_header(&auth);
        let snap = recv_snapshot(&mut ws);
        assert_snapshot(&snap, &http, &format!("snapshot with {auth}"));
        clients.push(ws);
    }
    let o3 = s.start_order("3", "TO_GO", None);
    for ws in &mut clients {
        expect_change(ws, "ORDER_CREATED", &o3, "the first change");
    }
}

#[test]
fn first_frame_authentication_gets_the_snapshot_and_nothing_before_it() {
    let (s, t) = server_and_token();
    let mut empty = s.ws(GW_WS);
    expect_silence(&mut empty, 300);
    send_accesstoken(&mut empty, &t.token);
    assert_eq!(
        recv_text(&mut empty),
        r#"{"type":"ACTIVE_ORDERS","count":0,"items":[]}"#,
        "the snapshot of no orders"
    );
    s.start_order("10", "TO_GO", Some("1"));
    s.start_order("11", "TO_GO", None);
    s.clear_order("10");
    s.start_order("12", "ON_PREMISE", Some("2"));
    let mut ws = s.ws(GW_WS);
    expect_silence(&mut ws, 200);
    send_accesstoken(&mut ws, &t.token);
    let snap = recv_snapshot(&mut ws);
    assert_eq!(names(&snap), ["11", "12"], "active orders, oldest first");
    // Authenticating was a use of the token.
    let reply = s.gw_admin("GET", "/api/v2/accesstoken", None);
    let v = json_reply(&reply, 200, "GET /api/v2/accesstoken");
    assert!(
        v["items"][0]["last_used"].is_string(),
        "last_used after a WebSocket use: {}",
        reply.body
    );
    assert_eq!(v["items"][0]["ip_address"], "127.0.0.1", "{}", reply.body);
    assert_snapshot(&snap, &s.active_orders(), "snapshot vs GET");
    // The first client saw the four changes meanwhile.
    let kinds: Vec<String> = (0..4).map(|_| recv_change(&mut empty).0).collect();
    assert_eq!(
        kinds,
        [
            "ORDER_CREATED",
            "ORDER_CREATED",
            "ORDER_MODIFIED",
            "ORDER_CREATED"
        ]
    );
}

#[test]
fn a_wrong_token_invalid_json_or_no_accesstoken_is_closed_with_1008() {
    let (s, t) = server_and_token();
    let revoked = s.new_token();
    let reply = s.gw_admin(
        "DELETE",
        &format!("/api/v2/accesstoken/{}", revoked.name),
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let wrong = "0123456789abcdef0123456789abcdef0123456789abcdef";

    for auth in [
        bearer(wrong),
        basic(wrong),
        bearer(&revoked.token),
        basic(&revoked.token),
    ] {
        let mut ws = s.gw_ws_header(&auth);
        assert_closed_1008(&mut ws, &format!("header {auth}"));
    }
    let frames = [
        format!(r#"{{"accesstoken":"{wrong}"}}"#),
        format!(r#"{{"accesstoken":"{}"}}"#, revoked.token),
        format!(r#"{{"accesstoken":"{}x"}}"#, t.token),
        "hello".to_string(),
        String::new(),
        format!(r#"{{"accesstoken":"{}""#, t.token),
        format!(r#"{{"token":"{}"}}"#, t.token),
        "{}".to_string(),
        "[]".to_string(),
        r#"{"accesstoken":5}"#.to_string(),
        r#"{"accesstoken":null}"#.to_string(),
        // The last of two keys used to count.
        format!(r#"{{"accesstoken":"{wrong}","accesstoken":"{}"}}"#, t.token),
        format!(r#"["{}"]"#, t.token),
    ];
    for frame in &frames {
        let mut ws = s.ws(GW_WS);
        send_text(&mut ws, frame);
        assert_closed_1008(&mut ws, &format!("first frame {frame:?}"));
    }
    // A binary frame is not the token frame either (not 1003).
    let mut ws = s.ws(GW_WS);
    ws.send(Message::Binary(
        format!(r#"{{"accesstoken":"{}"}}"#, t.token)
            .into_bytes()
            .into(),
    ))
    .expect("send a binary frame");
    assert_closed_1008(&mut ws, "a binary first frame");
    // The server is unharmed, and the good token still works both ways.
    let mut ws = s.gw_ws_frame(&t.token);
    assert!(recv_snapshot(&mut ws).is_empty());
    let mut ws = s.gw_ws_header(&basic(&t.token));
    assert!(recv_snapshot(&mut ws).is_empty());
}

#[test]
fn silence_past_the_auth_timeout_is_closed_with_1008() {
    let s = Launch::new().arg("--ws-auth-timeout").arg("1").start();
    let t = s.new_token();
    let started = Instant::now();
    let mut silent = s.ws(GW_WS);
    let mut in_time = s.ws(GW_WS);
    let mut by_header = s.gw_ws_header(&bearer(&t.token));
    thread::sleep(Duration::from_millis(300));
    send_accesstoken(&mut in_time, &t.token);
    assert!(recv_snapshot(&mut in_time).is_empty());
    assert!(recv_snapshot(&mut by_header).is_empty());

    let (code, _, texts) = recv_close(&mut silent);
    let after = started.elapsed();
    assert_eq!(code, 1008, "close code of the silent client");
    assert!(texts.is_empty(), "{texts:?}");
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_millis(2500),
        "closed {after:?} after connecting, with --ws-auth-timeout 1"
    );
    // The authenticated ones stay, past the timeout.
    thread::sleep(Duration::from_millis(1600).saturating_sub(started.elapsed()));
    let o = s.start_order("1", "TO_GO", None);
    expect_change(&mut in_time, "ORDER_CREATED", &o, "first-frame client");
    expect_change(&mut by_header, "ORDER_CREATED", &o, "header client");
}

// ---------------------------------------------------------------------------
// The stream
// ---------------------------------------------------------------------------

#[test]
fn every_change_arrives_in_seq_order_with_its_type_and_exact_keys() {
    let (s, t) = server_and_token();
    let a = s.start_order("1", "TO_GO", Some("5"));
    let mut ws = s.gw_ws_frame(&t.token);
    assert_snapshot(
        &recv_snapshot(&mut ws),
        std::slice::from_ref(&a),
        "snapshot",
    );
    // Text frames after authentication are ignored.
    send_text(&mut ws, "garbage");
    send_accesstoken(&mut ws, "wrong");
    send_text(&mut ws, r#"{"accesstoken":5}"#);

    let mut expected: Vec<(&str, Order)> = Vec::new();
    let b = s.start_order("2", "ON_PREMISE", None);
    expected.push(("ORDER_CREATED", b.clone()));
    expected.push((
        "ORDER_MODIFIED",
        s.modify_order("2", r#"{"locationName":"7"}"#),
    ));
    expected.push(("ORDER_PAGED", s.page_order("1")));
    expected.push((
        "ORDER_MODIFIED",
        s.modify_order(&a.uuid, r#"{"orderType":"ON_PREMISE"}"#),
    ));
    // A PUT that changes nothing sends nothing.
    s.modify_order("1", "{}");
    s.modify_order("1", r#"{"orderType":"ON_PREMISE","locationName":"5"}"#);
    let reply = s.gw_admin(
        "POST",
        &format!("/api/v2/activeorders/{}/page", b.uuid),
        Some(r#"{"tracking":false}"#),
    );
    expected.push(("ORDER_PAGED", one_order(&reply, 200, "page 2")));
    expected.push((
        "ORDER_MODIFIED",
        s.modify_order("2", r#"{"locationName":""}"#),
    ));
    expected.push(("ORDER_MODIFIED", s.clear_order("1")));
    let c = s.start_order("3", "TO_GO", Some("9"));
    expected.push(("ORDER_CREATED", c.clone()));

    let mut got = Vec::new();
    for (kind, want) in &expected {
        let o = expect_change(&mut ws, kind, want, &format!("{kind} of {}", want.name));
        got.push((kind.to_string(), o));
    }
    assert_eq!(
        got[6].1.state, "cleared",
        "a clear is ORDER_MODIFIED, state cleared"
    );

    // Clearing all: one ORDER_MODIFIED per order, state cleared.
    let reply = s.gw_admin("DELETE", "/api/v2/activeorders", None);
    assert_eq!(reply.body, r#"{"status":200,"count":2}"#);
    let mut cleared = BTreeSet::new();
    for _ in 0..2 {
        let (kind, o) = recv_change(&mut ws);
        assert_eq!(
            (kind.as_str(), o.state.as_str()),
            ("ORDER_MODIFIED", "cleared")
        );
        cleared.insert(o.uuid.clone());
        got.push((kind, o));
    }
    assert_eq!(cleared, [b.uuid.clone(), c.uuid.clone()].into());
    assert_eq!(got[0].1.seq, a.seq + 1);
    assert_consecutive(&got, "the stream");
    expect_silence(&mut ws, 300);
}

#[test]
fn several_clients_each_get_every_change() {
    let (s, t) = server_and_token();
    let mut clients = vec![
        s.gw_ws_header(&basic(&t.token)),
        s.gw_ws_header(&bearer(&t.token)),
        s.gw_ws_frame(&t.token),
        s.gw_ws_frame(&t.token),
    ];
    for ws in &mut clients {
        assert!(recv_snapshot(ws).is_empty());
    }
    let mut acked: Vec<(&str, Order)> = Vec::new();
    for i in 1..=10 {
        acked.push((
            "ORDER_CREATED",
            s.start_order(&i.to_string(), "TO_GO", None),
        ));
    }
    for i in 1..=10 {
        acked.push(("ORDER_PAGED", s.page_order(&i.to_string())));
        acked.push((
            "ORDER_MODIFIED",
            s.modify_order(&i.to_string(), &format!(r#"{{"locationName":"T{i}"}}"#)),
        ));
    }
    let reply = s.gw_admin("DELETE", "/api/v2/activeorders", None);
    assert_eq!(reply.body, r#"{"status":200,"count":10}"#);
    let mut streams = Vec::new();
    for (i, ws) in clients.iter_mut().enumerate() {
        let mut stream = Vec::new();
        for (kind, want) in &acked {
            let o = expect_change(ws, kind, want, &format!("client {i}"));
            stream.push((kind.to_string(), o));
        }
        for _ in 0..10 {
            let (kind, o) = recv_change(ws);
            assert_eq!(
                (kind.as_str(), o.state.as_str()),
                ("ORDER_MODIFIED", "cleared")
            );
            stream.push((kind, o));
        }
        assert_consecutive(&stream, &format!("client {i}"));
        expect_silence(ws, 100);
        streams.push(
            stream
                .into_iter()
                .map(|(k, o)| (k, o.timeless()))
                .collect::<Vec<_>>(),
        );
    }
    for (i, stream) in streams.iter().enumerate().skip(1) {
        assert_eq!(stream, &streams[0], "client {i} vs client 0");
    }
}

/// Applies a stream to a snapshot, checking that every change fits.
fn replay(snapshot: &[Order], changes: &[(String, Order)], what: &str) -> BTreeMap<String, Order> {
    let mut state: BTreeMap<String, Order> = snapshot
        .iter()
        .map(|o| (o.uuid.clone(), o.timeless()))
        .collect();
    let newest = snapshot.iter().map(|o| o.seq).max().unwrap_or(0);
    if let Some((_, first)) = changes.first() {
        assert!(
            first.seq > newest,
            "{what}: change seq {} is not newer than the snapshot (up to {newest})",
            first.seq
        );
    }
    for (kind, o) in changes {
        match kind.as_str() {
            "ORDER_CREATED" => {
                assert_eq!(o.state_started, o.created, "{what}: {o:?}");
                assert!(
                    state.insert(o.uuid.clone(), o.timeless()).is_none(),
                    "{what}: ORDER_CREATED of a known order {o:?}"
                );
            }
            "ORDER_PAGED" | "ORDER_MODIFIED" => {
                let old = state
                    .get(&o.uuid)
                    .unwrap_or_else(|| panic!("{what}: {kind} of an unknown order {o:?}"));
                assert!(
                    o.seq > old.seq,
                    "{what}: {kind} older than the state: {o:?}"
                );
                if o.state == "cleared" {
                    assert_eq!(kind, "ORDER_MODIFIED", "{what}");
                    state.remove(&o.uuid);
                } else {
                    state.insert(o.uuid.clone(), o.timeless());
                }
            }
            other => panic!("{what}: type {other}"),
        }
    }
    state
}

#[test]
fn snapshot_then_changes_rebuild_the_active_set_under_concurrent_writes() {
    let (s, t) = server_and_token();
    let stop = AtomicBool::new(false);
    let mut clients: Vec<Ws> = Vec::new();
    thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut active: BTreeMap<u32, String> = BTreeMap::new();
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let name = 1 + i % 12;
                let key = name.to_string();
                match (active.get(&name).cloned(), i % 5) {
                    (None, _) => {
                        let o = s.start_order(&key, "TO_GO", None);
                        active.insert(name, o.uuid);
                    }
                    (Some(_), 0) => {
                        s.clear_order(&key);
                        active.remove(&name);
                    }
                    (Some(uuid), 1) => {
                        s.page_order(&uuid);
                    }
                    (Some(_), k) => {
                        s.modify_order(&key, &format!(r#"{{"locationName":"{}"}}"#, i % 3 * k));
                    }
                }
            }
            i
        });
        for k in 0..6 {
            thread::sleep(Duration::from_millis(150));
            let ws = if k % 2 == 0 {
                s.gw_ws_header(&basic(&t.token))
            } else {
                s.gw_ws_frame(&t.token)
            };
            clients.push(ws);
        }
        thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        let changes = writer.join().expect("the writer panicked");
        assert!(changes >= 20, "only {changes} changes were made");
    });
    // A last change marks the end of every stream.
    let marker = s.start_order("999999", "ON_PREMISE", Some("end"));
    let active: BTreeMap<String, Order> = s
        .active_orders()
        .into_iter()
        .map(|o| (o.uuid.clone(), o.timeless()))
        .collect();
    for (i, ws) in clients.iter_mut().enumerate() {
        let what = format!("client {i}");
        let snapshot = recv_snapshot(ws);
        let mut changes = Vec::new();
        loop {
            let (kind, o) = recv_change(ws);
            let last = o.seq >= marker.seq;
            changes.push((kind, o));
            if last {
                break;
            }
        }
        assert_eq!(changes.last().unwrap().1.uuid, marker.uuid, "{what}");
        assert_consecutive(&changes, &what);
        let state = replay(&snapshot, &changes, &what);
        assert_eq!(state, active, "{what}: snapshot + changes vs GET");
    }
}

#[test]
fn snapshot_and_changes_show_times_in_the_gateway_zone() {
    let (s, t) = server_and_token();
    s.set_timezone("Europe/Moscow");
    let o = s.start_order("1", "TO_GO", None);
    let mut ws = s.gw_ws_header(&bearer(&t.token));
    let snap = recv_snapshot(&mut ws);
    assert_eq!(snap[0].created, o.created, "Moscow time in the snapshot");
    s.set_timezone("UTC");
    let paged = s.page_order("1");
    assert_eq!(paged.created, shift(&o.created, -MOSCOW_OFFSET));
    let (_, got) = recv_change(&mut ws);
    assert_eq!(got.created, paged.created, "UTC time in the change");
    let mut again = s.gw_ws_frame(&t.token);
    assert_eq!(recv_snapshot(&mut again)[0].created, paged.created);
}

// ---------------------------------------------------------------------------
// §3.5 Slow consumers
// ---------------------------------------------------------------------------

#[test]
fn a_client_that_does_not_read_is_closed_with_1013_and_a_reading_one_gets_everything() {
    const BATCH: usize = 50;
    const BATCHES: usize = 12;
    let s = Launch::new().arg("--ws-max-queue").arg("4096").start();
    let t = s.new_token();
    // Four orders on 64-byte tables: every change message is over 300 bytes,
    // and the snapshot stays under the 4096-byte bound.
    let table = "T".repeat(64);
    let orders: Vec<Order> = (1..=4)
        .map(|i| s.start_order(&i.to_string(), "ON_PREMISE", Some(&table)))
        .collect();
    let mut slow = gw_ws_handshake_with_header(stingy_socket(s.addr), s.addr, &basic(&t.token));
    assert_eq!(
        recv_snapshot(&mut slow).len(),
        4,
        "the slow client's snapshot"
    );
    // From here on the slow client reads nothing until the end.
    let mut healthy_ws = s.gw_ws_header(&bearer(&t.token));
    assert_eq!(recv_snapshot(&mut healthy_ws).len(), 4);
    let healthy = reader(healthy_ws);

    let mut acked: Vec<Order> = Vec::new();
    let mut received: Vec<String> = Vec::new();
    let mut worst = Duration::ZERO;
    for _ in 0..BATCHES {
        let first = acked.len();
        for i in 0..BATCH {
            acked.push(s.page_order(&orders[i % 4].uuid));
        }
        let since = Instant::now();
        received.extend(take(
            &healthy,
            acked.len() - first,
            Duration::from_secs(5),
            "the reading client",
        ));
        worst = worst.max(since.elapsed());
    }
    let changes: Vec<(String, Order)> = received.iter().map(|m| parse_change(m)).collect();
    for ((kind, got), want) in changes.iter().zip(&acked) {
        assert_eq!(kind, "ORDER_PAGED");
        assert_same_order(got, want, 1, "the reading client's change");
    }
    assert_consecutive(&changes, "the reading client");

    // The one that did not read: a clean prefix of the changes, then 1013.
    let mut texts = Vec::new();
    let code = loop {
        match slow.read() {
            Ok(Message::Text(t)) => texts.push(t.as_str().to_string()),
            Ok(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(e) => panic!(
                "the slow client's connection ended without a close frame ({e}) after {} \
                 changes; note that a client that has not read its close frame within the \
                 server's grace period is dropped, so a very slow machine can cause this",
                texts.len()
            ),
        }
    };
    assert_eq!(code, Some(1013), "close code after {} changes", texts.len());
    assert!(
        texts.len() < acked.len(),
        "the slow client was never cut off ({} changes)",
        texts.len()
    );
    for (i, text) in texts.iter().enumerate() {
        let (kind, got) = parse_change(text);
        assert_eq!(kind, "ORDER_PAGED");
        assert_eq!(
            got.timeless(),
            changes[i].1.timeless(),
            "slow client's change {i}"
        );
    }
    eprintln!(
        "slow client: {} of {} changes before 1013; the reading one lagged at worst {worst:?}",
        texts.len(),
        acked.len()
    );

    // Reconnecting gives a fresh snapshot, then the changes again.
    let mut again = gw_ws_handshake_with_header(stingy_socket(s.addr), s.addr, &basic(&t.token));
    let snap = recv_snapshot(&mut again);
    assert_snapshot(&snap, &s.active_orders(), "the snapshot on reconnect");
    let last: BTreeMap<&str, u64> = acked.iter().map(|o| (o.uuid.as_str(), o.seq)).collect();
    for o in &snap {
        assert_eq!(
            Some(&o.seq),
            last.get(o.uuid.as_str()),
            "latest seq of {}",
            o.name
        );
    }
    let next = s.page_order("1");
    expect_change(&mut again, "ORDER_PAGED", &next, "after reconnecting");
    let m = take(&healthy, 1, Duration::from_secs(5), "the reading client");
    assert_same_order(&parse_change(&m[0]).1, &next, 1, "the reading client");
}

/// A snapshot larger than `--ws-max-queue` is still delivered: only a
/// backlog marks a client as slow, or no client could ever resynchronise
/// (SPEC §3.5).
#[test]
fn a_snapshot_larger_than_the_queue_bound_is_delivered() {
    let s = Launch::new().arg("--ws-max-queue").arg("1024").start();
    let t = s.new_token();
    let table = "T".repeat(64);
    for i in 1..=10 {
        s.start_order(&i.to_string(), "ON_PREMISE", Some(&table));
    }
    let mut ws = s.gw_ws_header(&bearer(&t.token));
    assert_eq!(recv_snapshot(&mut ws).len(), 10, "the whole snapshot");
    s.page_order("3");
    let (kind, order) = parse_change(&recv_text(&mut ws));
    assert_eq!((kind.as_str(), order.name.as_str()), ("ORDER_PAGED", "3"));
}

/// Revoking an access token ends the streams it opened (by header or by
/// first frame) with 1008, after every change committed before; streams of
/// other tokens and of the admin token go on.
#[test]
fn revoking_a_token_closes_the_streams_it_opened() {
    let (s, revoked) = server_and_token();
    let kept = s.new_token();
    let mut by_header = s.gw_ws_header(&bearer(&revoked.token));
    let mut by_frame = s.gw_ws_frame(&revoked.token);
    let mut other = s.gw_ws_frame(&kept.token);
    let mut admin = s.gw_ws_header(&s.admin_auth());
    for ws in [&mut by_header, &mut by_frame, &mut other, &mut admin] {
        assert!(recv_snapshot(ws).is_empty());
    }
    let before = s.start_order("31", "ON_PREMISE", None);

    let reply = s.gw(
        "DELETE",
        &format!("/api/v2/accesstoken/{}", revoked.name),
        Some(&bearer(&kept.token)),
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let after = s.start_order("32", "ON_PREMISE", None);

    for (ws, what) in [(&mut by_header, "by header"), (&mut by_frame, "by frame")] {
        let (code, reason, texts) = recv_close(ws);
        assert_eq!(
            (code, reason.as_str()),
            (1008, "access token revoked"),
            "{what}"
        );
        // The change committed before the revocation, and nothing after.
        assert_eq!(texts.len(), 1, "{what}: {texts:?}");
        let (kind, order) = parse_change(&texts[0]);
        assert_eq!(kind, "ORDER_CREATED", "{what}");
        assert_same_order(&order, &before, 1, what);
    }
    for (ws, what) in [(&mut other, "other token"), (&mut admin, "admin token")] {
        expect_change(ws, "ORDER_CREATED", &before, what);
        expect_change(ws, "ORDER_CREATED", &after, what);
    }
}
