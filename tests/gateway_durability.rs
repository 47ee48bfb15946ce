//! SPEC §0/§3 durability of the gateway: an HTTP 2xx is only sent once the
//! change is on disk, so after `kill -9` and a restart on the same data
//! directory every acknowledged token, revocation, order change (active and
//! cleared) and setting is still there, and `seq` goes on above every
//! acknowledged one, never back.
//!
//! A token's `last_used` / `ip_address` are flushed periodically, not on
//! every use (a decision of the implementation), so they are not checked
//! across a kill.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::gateway::*;
use common::*;

/// `(name, creation_date)` of every listed token, sorted by name.
fn tokens(s: &Server) -> Vec<(String, String)> {
    let reply = s.gw_admin("GET", "/api/v2/accesstoken", None);
    let v = json_reply(&reply, 200, "GET /api/v2/accesstoken");
    let mut out: Vec<(String, String)> = v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items: {}", reply.body))
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["creation_date"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Whether this token opens a [SECURED] route, in both forms (and they agree).
fn token_works(s: &Server, token: &str) -> bool {
    let ok = |auth: String| {
        let reply = s.gw("GET", "/api/v2/activeorders", Some(&auth), None);
        match reply.status {
            200 => true,
            401 => false,
            other => panic!("GET /api/v2/activeorders answered {other}: {}", reply.body),
        }
    };
    let (b, bearer_ok) = (ok(basic(token)), ok(bearer(token)));
    assert_eq!(b, bearer_ok, "Basic and Bearer disagree about a token");
    b
}

#[test]
fn tokens_orders_settings_and_seq_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Launch::new().data_dir(dir.path()).start();
    let reply = s.gw_admin(
        "POST",
        "/api/v2/gateway/settings",
        Some(r#"{"targetTimeDefault":77,"timezone":"Europe/Moscow"}"#),
    );
    assert_eq!(reply.body, SETTINGS_CHANGED);
    let t1 = s.new_token();
    let t2 = s.new_token();
    let t3 = s.new_token();
    let reply = s.gw_admin("DELETE", "/api/v2/accesstoken/default-2", None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(token_works(&s, &t1.token) && token_works(&s, &t3.token));
    assert!(!token_works(&s, &t2.token));

    let a = s.start_order("1", "TO_GO", Some("4"));
    let b = s.start_order("2", "ON_PREMISE", None);
    let c = s.start_order("3", "TO_GO", Some("7"));
    s.start_order("4", "TO_GO", None);
    s.modify_order("2", r#"{"locationName":"9"}"#);
    s.page_order(&a.uuid);
    s.clear_order(&c.uuid);
    s.modify_order("1", r#"{"orderType":"ON_PREMISE"}"#);
    s.clear_order("4");
    s.start_order("3", "ON_PREMISE", Some("12"));
    let last = s.page_order(&b.uuid);

    let tokens_before = tokens(&s);
    let active_before = s.active_orders();
    let history_before = s.all_history();
    assert_eq!(names(&active_before), ["1", "2", "3"]);
    assert_eq!(history_before.len(), 5);
    let max_seq = history_before.iter().map(|o| o.seq).max().unwrap();
    assert_eq!(max_seq, last.seq);
    s.kill();

    let s = Launch::new().data_dir(dir.path()).start();
    // Settings.
    let reply = s.gw_admin("GET", "/api/v2/gateway/settings", None);
    assert_eq!(
        reply.body,
        r#"{"status":200,"settings":{"targetTimeDefault":77,"timezone":"Europe/Moscow"}}"#
    );
    // Tokens: the same names and dates; revoked stays revoked.
    assert_eq!(tokens(&s), tokens_before);
    assert!(token_works(&s, &t1.token), "default after restart");
    assert!(token_works(&s, &t3.token), "default-3 after restart");
    assert!(
        !token_works(&s, &t2.token),
        "the revoked default-2 after restart"
    );
    // Orders: the same active set and history (times shown in Moscow time,
    // cleared orders exactly as they were).
    let active_after = s.active_orders();
    assert_eq!(active_after.len(), active_before.len());
    for (after, before) in active_after.iter().zip(&active_before) {
        assert_eq!(
            after.timeless(),
            before.timeless(),
            "active order {}",
            before.name
        );
        assert!(after.elapsed >= before.elapsed, "elapsedTime went back");
    }
    let history_after = s.all_history();
    assert_eq!(history_after.len(), history_before.len());
    for (after, before) in history_after.iter().zip(&history_before) {
        if before.state == "cleared" {
            assert_eq!(after, before, "cleared order {}", before.name);
        } else {
            assert_eq!(after.timeless(), before.timeless(), "order {}", before.name);
        }
    }
    // Names still active are still taken; a cleared uuid is still cleared.
    let reply = s.post_order(&s.admin_auth(), "1", "TO_GO", None);
    assert_gw_error(&reply, 409, "a name active before the kill");
    let reply = s.gw_admin(
        "PUT",
        &format!("/api/v2/activeorders/{}", c.uuid),
        Some(r#"{"locationName":"1"}"#),
    );
    assert_gw_error(&reply, 409, "a uuid cleared before the kill");
    // seq goes on.
    let next = s.start_order("50", "TO_GO", None);
    assert!(
        next.seq > max_seq,
        "seq {} after restart, {max_seq} before",
        next.seq
    );
    // The freed name is given out again.
    assert_eq!(s.new_token().name, "default-2");
}

// ---------------------------------------------------------------------------
// Concurrent order traffic, then kill -9 in flight
// ---------------------------------------------------------------------------

const THREADS: usize = 4;

/// Everything the clients were told before the kill.
#[derive(Default)]
struct Log {
    /// The latest acknowledged state of each order, by uuid.
    acked: BTreeMap<String, Order>,
    /// Every acknowledged seq.
    seqs: Vec<u64>,
    /// Orders with a request in flight when the server died (by uuid).
    in_flight: BTreeSet<String>,
    /// Names of starts in flight when the server died.
    starts_in_flight: BTreeSet<String>,
    /// Answers nobody expected.
    unexpected: Vec<String>,
}

type SharedLog = Arc<Mutex<Log>>;

/// One POS: starts orders, locates, pages and clears them (every other
/// one), until the server dies.
fn churn(addr: SocketAddr, admin: String, t: usize, log: SharedLog, acks: Arc<AtomicUsize>) {
    let agent = agent();
    let auth = bearer(&admin);
    let send = |method: &str, path: &str, body: &str| {
        request_with(
            &agent,
            method,
            &format!("http://{addr}{path}"),
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            Some(body.as_bytes()),
        )
    };
    let record = |reply: &Reply, status: u16, what: &str| -> Option<Order> {
        if reply.status != status {
            log.lock()
                .unwrap()
                .unexpected
                .push(format!("{what}: {} {}", reply.status, reply.body));
            return None;
        }
        let o = one_order(reply, status, what);
        let mut log = log.lock().unwrap();
        log.seqs.push(o.seq);
        log.acked.insert(o.uuid.clone(), o.clone());
        acks.fetch_add(1, Ordering::Relaxed);
        Some(o)
    };
    for k in 0..1000 {
        let name = ((t + 1) * 1000 + k).to_string();
        let body = format!(r#"{{"name":"{name}","orderType":"TO_GO"}}"#);
        let reply = match send("POST", "/api/v2/activeorders", &body) {
            Ok(r) => r,
            Err(_) => {
                log.lock().unwrap().starts_in_flight.insert(name);
                return;
            }
        };
        let Some(o) = record(&reply, 201, "start") else {
            return;
        };
        let path = format!("/api/v2/activeorders/{}", o.uuid);
        let mut steps: Vec<(&str, String, String, u16)> = vec![
            (
                "PUT",
                path.clone(),
                format!(r#"{{"locationName":"L{k}"}}"#),
                200,
            ),
            ("POST", format!("{path}/page"), String::new(), 200),
        ];
        if k % 2 == 0 {
            steps.push(("DELETE", path.clone(), String::new(), 200));
        } else {
            steps.push((
                "PUT",
                path.clone(),
                r#"{"orderType":"ON_PREMISE"}"#.into(),
                200,
            ));
        }
        for (method, p, body, status) in steps {
            let reply = match send(method, &p, &body) {
                Ok(r) => r,
                Err(_) => {
                    log.lock().unwrap().in_flight.insert(o.uuid.clone());
                    return;
                }
            };
            if record(&reply, status, &format!("{method} {p}")).is_none() {
                return;
            }
        }
    }
}

#[test]
fn acknowledged_order_changes_survive_kill_9_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Launch::new().data_dir(dir.path()).start();
    let log: SharedLog = Arc::default();
    let acks = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (addr, admin, log, acks) = (
                s.addr,
                s.admin_token.clone(),
                Arc::clone(&log),
                Arc::clone(&acks),
            );
            thread::spawn(move || churn(addr, admin, t, log, acks))
        })
        .collect();
    let started = Instant::now();
    let busy = wait_until(Duration::from_secs(30), || {
        started.elapsed() >= Duration::from_millis(1500) && acks.load(Ordering::Relaxed) >= 150
    });
    assert!(busy, "too little traffic before the kill");
    s.kill();
    for t in threads {
        t.join().expect("a client thread panicked");
    }
    let log = Arc::try_unwrap(log).ok().unwrap().into_inner().unwrap();
    assert!(
        log.unexpected.is_empty(),
        "unexpected answers: {:?}",
        log.unexpected
    );
    let distinct: BTreeSet<u64> = log.seqs.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        log.seqs.len(),
        "two acknowledged changes share a seq"
    );
    eprintln!(
        "before the kill: {} changes acknowledged on {} orders, {} in flight",
        log.seqs.len(),
        log.acked.len(),
        log.in_flight.len() + log.starts_in_flight.len()
    );

    let s = Launch::new().data_dir(dir.path()).start();
    let history: BTreeMap<String, Order> = s
        .all_history()
        .into_iter()
        .map(|o| (o.uuid.clone(), o))
        .collect();
    let active: BTreeMap<String, Order> = s
        .active_orders()
        .into_iter()
        .map(|o| (o.uuid.clone(), o))
        .collect();
    // Every acknowledged order is there, at its acknowledged state or (only
    // if a request on it was in flight) a later one.
    for (uuid, acked) in &log.acked {
        let got = history
            .get(uuid)
            .unwrap_or_else(|| panic!("acknowledged order {} ({uuid}) is gone", acked.name));
        if got.seq == acked.seq {
            assert_eq!(got.timeless(), acked.timeless(), "order {}", acked.name);
        } else {
            assert!(
                got.seq > acked.seq && log.in_flight.contains(uuid),
                "order {} is at seq {} after restart, acknowledged at {}",
                acked.name,
                got.seq,
                acked.seq
            );
        }
        let is_active = active.contains_key(uuid);
        if !log.in_flight.contains(uuid) {
            assert_eq!(
                is_active,
                acked.state != "cleared",
                "order {} (acknowledged {}) active after restart: {is_active}",
                acked.name,
                acked.state
            );
        }
    }
    // Nothing else, except a start whose answer was lost.
    for (uuid, o) in &history {
        assert!(
            log.acked.contains_key(uuid) || log.starts_in_flight.contains(&o.name),
            "order {} ({uuid}) was never acknowledged nor in flight",
            o.name
        );
    }
    // The active set is the history's uncleared orders.
    let uncleared: BTreeSet<&String> = history
        .iter()
        .filter(|(_, o)| o.state != "cleared")
        .map(|(u, _)| u)
        .collect();
    assert_eq!(uncleared, active.keys().collect::<BTreeSet<_>>());
    // seq goes on above everything acknowledged (and everything kept).
    let max_acked = *log.seqs.iter().max().expect("some changes");
    let max_kept = history.values().map(|o| o.seq).max().unwrap_or(0);
    let next = s.start_order("999999", "TO_GO", None);
    assert!(
        next.seq > max_acked && next.seq > max_kept,
        "seq {} after restart; acknowledged up to {max_acked}, kept up to {max_kept}",
        next.seq
    );
}
