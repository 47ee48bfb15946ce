//! SPEC §0 durability end to end: everything acknowledged with a 2xx
//! survives `kill -9` (and SIGTERM), nothing is duplicated or torn, and the
//! hash cursor keeps working across a restart.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const PUBLISHERS: usize = 8;

/// The body publisher `thread` sends as its `seq`-th event, and the invoice
/// inside it (compact, so stored byte for byte).
fn load_event(thread: usize, seq: usize) -> (String, String) {
    let invoice = format!(
        r#"{{"thread":{thread},"seq":{seq},"note":"Счёт №{seq}","items":[{{"name":"Блюдо","count":1.0}}]}}"#
    );
    let body = format!(r#"{{"code":"load_{thread}","table":{seq},"invoice":{invoice}}}"#);
    (body, invoice)
}

/// One acknowledged publish: publisher, its sequence number, hash, and the
/// exact event text the server must return for it.
#[derive(Debug, Clone)]
struct Acked {
    thread: usize,
    seq: usize,
    hash: String,
    event: String,
}

/// Publishers running against a server, each on its own keep-alive agent.
struct Load {
    acked: Arc<Mutex<Vec<Acked>>>,
    /// Answers other than 201 (status and body): none are expected.
    unexpected: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(server: &Server) -> Load {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let unexpected = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let url = server.url("/api/v4/events");
        let auth = format!("Bearer {}", server.admin_token);
        let threads = (0..PUBLISHERS)
            .map(|t| {
                let (acked, unexpected, stop) = (
                    Arc::clone(&acked),
                    Arc::clone(&unexpected),
                    Arc::clone(&stop),
                );
                let (url, auth) = (url.clone(), auth.clone());
                thread::spawn(move || {
                    let agent = agent();
                    for seq in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let (body, invoice) = load_event(t, seq);
                        let reply = match request_with(
                            &agent,
                            "POST",
                            &url,
                            &[
                                ("Authorization", &auth),
                                ("Content-Type", "application/json"),
                            ],
                            Some(body.as_bytes()),
                        ) {
                            Ok(r) => r,
                            // The server is gone (killed or stopped).
                            Err(_) => break,
                        };
                        if reply.status != 201 {
                            unexpected
                                .lock()
                                .unwrap()
                                .push(format!("{} {}", reply.status, reply.body));
                            break;
                        }
                        let hash = hash_of_published(&reply);
                        let event = event_json(
                            &hash,
                            &format!("load_{t}"),
                            &seq.to_string(),
                            &invoice,
                            "null",
                            "null",
                        );
                        acked.lock().unwrap().push(Acked {
                            thread: t,
                            seq,
                            hash,
                            event,
                        });
                    }
                })
            })
            .collect();
        Load {
            acked,
            unexpected,
            stop,
            threads,
        }
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until `n` publishes were acknowledged (bounded), and checks that
    /// every publisher is still running.
    fn wait_for(&self, n: usize) {
        let reached = wait_until(Duration::from_secs(60), || self.acked_count() >= n);
        assert!(
            reached,
            "only {} events acknowledged in 60 s; unexpected answers: {:?}",
            self.acked_count(),
            self.unexpected.lock().unwrap()
        );
        assert!(
            self.threads.iter().all(|t| !t.is_finished()),
            "a publisher stopped early; unexpected answers: {:?}",
            self.unexpected.lock().unwrap()
        );
    }

    /// Stops the publishers (they also stop on their own when the server
    /// goes) and returns every acknowledged publish. `allow_503` tolerates a
    /// 503 from a server that is shutting down.
    fn finish(self, allow_503: bool) -> Vec<Acked> {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(30);
        for t in self.threads {
            while !t.is_finished() {
                assert!(
                    Instant::now() < deadline,
                    "a publisher hangs after the server stopped"
                );
                thread::sleep(Duration::from_millis(10));
            }
            t.join().expect("publisher panicked");
        }
        let unexpected = self.unexpected.lock().unwrap();
        let wrong: Vec<&String> = unexpected
            .iter()
            .filter(|a| !(allow_503 && a.starts_with("503 ")))
            .collect();
        assert!(wrong.is_empty(), "answers other than 201: {wrong:?}");
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}

/// Checks a restarted server's `hash=none` poll against the acknowledged
/// publishes: every one present with its exact text, no duplicate hash,
/// every returned event complete and well formed, each publisher's events
/// in the order it published them.
fn assert_all_acknowledged_present(server: &Server, acked: &[Acked]) {
    let events = server.poll_events("none");
    eprintln!(
        "{} publishes acknowledged, {} events after restart",
        acked.len(),
        events.len()
    );
    let mut by_hash: HashMap<String, (usize, &String)> = HashMap::new();
    for (pos, event) in events.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(event)
            .unwrap_or_else(|e| panic!("stored event is not JSON ({e}): {event}"));
        let keys: HashSet<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            HashSet::from(["hash", "code", "table", "invoice", "order", "table_repr"]),
            "keys of {event}"
        );
        let hash = v["hash"].as_str().unwrap().to_string();
        assert_hash_format(&hash);
        assert!(
            v["code"].as_str().is_some_and(|c| c.starts_with("load_")),
            "event nobody published: {event}"
        );
        let previous = by_hash.insert(hash.clone(), (pos, event));
        assert!(previous.is_none(), "hash {hash} returned twice");
    }
    let mut last_pos: HashMap<usize, (usize, usize)> = HashMap::new();
    let mut missing = Vec::new();
    for a in acked {
        match by_hash.get(&a.hash) {
            None => missing.push(a.hash.clone()),
            Some((pos, event)) => {
                assert_eq!(*event, &a.event, "stored text of acknowledged {}", a.hash);
                if let Some((prev_seq, prev_pos)) = last_pos.get(&a.thread) {
                    if *prev_seq < a.seq {
                        assert!(
                            prev_pos < pos,
                            "publisher {}'s seq {} comes before seq {prev_seq}",
                            a.thread,
                            a.seq
                        );
                    }
                }
                last_pos.insert(a.thread, (a.seq, *pos));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events lost after restart: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(20)]
    );
}

#[test]
fn acknowledged_events_survive_sigkill_during_concurrent_publishing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Launch::new().data_dir(dir.path()).start();
    let load = Load::start(&server);
    load.wait_for(1500);
    server.kill();
    let mut acked = load.finish(false);
    acked.sort_by_key(|a| (a.thread, a.seq));

    let unique: HashSet<&str> = acked.iter().map(|a| a.hash.as_str()).collect();
    assert_eq!(
        unique.len(),
        acked.len(),
        "the server acknowledged a hash twice"
    );

    let restarted = Launch::new().data_dir(dir.path()).start();
    assert_all_acknowledged_present(&restarted, &acked);
}

#[test]
fn acknowledged_events_survive_sigterm_during_concurrent_publishing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Launch::new().data_dir(dir.path()).start();
    let load = Load::start(&server);
    load.wait_for(200);
    let status = server.terminate();
    let mut acked = load.finish(true);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status:?}"
    );
    acked.sort_by_key(|a| (a.thread, a.seq));

    let restarted = Launch::new().data_dir(dir.path()).start();
    assert_all_acknowledged_present(&restarted, &acked);
}

#[test]
fn after_sigkill_new_hashes_are_fresh_and_the_old_cursor_continues() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Launch::new().data_dir(dir.path()).start();
    let before: Vec<String> = (0..20)
        .map(|i| server.publish_ok(&event_body(&format!("before_{i}"))))
        .collect();
    server.kill();

    let server = Launch::new().data_dir(dir.path()).start();
    assert_eq!(server.poll_hashes("none"), before, "events after restart");
    let after: Vec<String> = (0..10)
        .map(|i| server.publish_ok(&event_body(&format!("after_{i}"))))
        .collect();

    let old: HashSet<&String> = before.iter().collect();
    for h in &after {
        assert!(!old.contains(h), "hash {h} reused after restart");
    }
    assert_eq!(after.iter().collect::<HashSet<_>>().len(), after.len());

    let expected: Vec<String> = after
        .iter()
        .enumerate()
        .map(|(i, h)| event_json(h, &format!("after_{i}"), "null", "null", "null", "null"))
        .collect();
    assert_eq!(server.poll_events(before.last().unwrap()), expected);
}

/// A server started on the directory while the previous one is still
/// shutting down (its event log preparing a segment: past 1 MiB a growing
/// segment gets a prepared successor) gets the directory only once that is
/// done, and loses nothing it acknowledged. The lock was once let go before
/// the preparation ended, whose rename then replaced (or whose clean-up
/// deleted) the new server's segment: its acknowledged events were gone
/// after the next restart, and their hashes given out again.
#[test]
fn a_server_started_while_the_last_one_shuts_down_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Launch::new().data_dir(dir.path()).start();
    let pad = "x".repeat(900_000);
    for table in 1..=2 {
        first.publish_ok(&format!(
            r#"{{"code":"waiter_call","table":{table},"order":{{"pad":"{pad}"}}}}"#
        ));
    }
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &first.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut second = loop {
        match Launch::new().data_dir(dir.path()).try_start() {
            Ok(server) => break server,
            Err(e) => {
                assert!(Instant::now() < deadline, "never started: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    };
    let acked: Vec<String> = (0..5)
        .map(|i| second.publish_ok(&event_body(&format!("second_{i}"))))
        .collect();
    second.kill();
    assert!(first.wait_exit(Duration::from_secs(30)).is_some());

    let third = Launch::new().data_dir(dir.path()).start();
    let have = third.poll_hashes("none");
    for hash in &acked {
        assert!(have.contains(hash), "acknowledged {hash} lost: {have:?}");
    }
    let fresh = third.publish_ok(&event_body("third"));
    assert!(!acked.contains(&fresh), "hash {fresh} given out again");
}

#[test]
fn hashes_stay_fresh_across_several_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut all: Vec<String> = Vec::new();
    for round in 0..3 {
        let mut server = Launch::new().data_dir(dir.path()).start();
        assert_eq!(
            server.poll_hashes("none"),
            all,
            "events at start of round {round}"
        );
        for i in 0..5 {
            let h = server.publish_ok(&event_body(&format!("r{round}_{i}")));
            assert!(!all.contains(&h), "hash {h} reused in round {round}");
            all.push(h);
        }
        server.kill();
    }
}

#[test]
fn registered_tables_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Launch::new().data_dir(dir.path()).start();
    assert_eq!(
        server
            .put_table("6", r#"{"name":"6","max_guests":50}"#)
            .status,
        200
    );
    assert_eq!(
        server
            .put_table("2", r#"{"name":"Бар","max_guests":3}"#)
            .status,
        200
    );
    server.kill();

    let server = Launch::new().data_dir(dir.path()).start();
    assert_eq!(
        server.get_tables().body,
        r#"{"result":true,"data":{"tables":[{"id":2,"name":"Бар","max_guests":3},{"id":6,"name":"6","max_guests":50}]}}"#
    );
    let hash = server.publish_ok(r#"{"code":"waiter_call","table":6}"#);
    assert_eq!(
        server.poll_events("none"),
        vec![event_json(
            &hash,
            "waiter_call",
            "6",
            "null",
            "null",
            r#"{"id":6,"name":"6","max_guests":50}"#
        )]
    );
}

/// Expired events leave the store (with the once-a-second tick, the tail
/// below which the event log is dead is committed), and a restart on a store
/// whose events all expired still numbers on past them: an old hash a
/// client kept never names a new event.
#[test]
fn after_every_event_expired_a_restart_numbers_on() {
    let dir = tempfile::tempdir().unwrap();
    let launch = || {
        Launch::new()
            .data_dir(dir.path())
            .arg("--event-retention")
            .arg("1")
    };
    let mut server = launch().start();
    let first: Vec<String> = (0..5)
        .map(|i| server.publish_ok(&event_body(&format!("first_{i}"))))
        .collect();
    let rows_gone = wait_until(Duration::from_secs(15), || {
        floorbell_core::store::Store::open_read_only(dir.path())
            .and_then(|s| s.meta("qr_expired_before"))
            .is_ok_and(|tail| tail.and_then(|t| t.parse::<u64>().ok()) >= Some(5))
    });
    assert!(rows_gone, "expired events are still in the store");
    server.kill();

    let server = launch().start();
    assert_eq!(server.poll_hashes("none"), Vec::<String>::new());
    for i in 0..5 {
        let h = server.publish_ok(&event_body(&format!("after_{i}")));
        assert!(!first.contains(&h), "hash {h} of an expired event reused");
    }
}

/// A store written before the event log held its events as `qr_events`
/// rows: they are served after the upgrade, numbering goes on past them,
/// and new events (in the log) follow them across a `kill -9`.
#[test]
fn events_stored_as_rows_by_an_older_version_come_back() {
    use floorbell_core::store::eventlog::EventLog;
    use floorbell_core::store::{Store, StoreOp, EVENT_LOG_DIR};

    let dir = tempfile::tempdir().unwrap();
    let mut server = Launch::new().data_dir(dir.path()).start();
    let old: Vec<String> = (0..3)
        .map(|i| server.publish_ok(&event_body(&format!("old_{i}"))))
        .collect();
    let old_events = server.poll_events("none");
    server.terminate();
    // Turn the store into what the older version wrote: the same events as
    // rows, no log.
    let log_dir = dir.path().join(EVENT_LOG_DIR);
    let (log, logged) = EventLog::open(&log_dir, 0).unwrap();
    drop(log);
    assert_eq!(logged.len(), 3);
    let rows: Vec<StoreOp> = logged
        .into_iter()
        .map(|e| StoreOp::InsertEvent {
            seq: e.seq,
            hash: e.hash,
            time_ms: e.time_ms,
            json: e.json,
        })
        .collect();
    Store::open(dir.path()).unwrap().commit(&rows).unwrap();
    std::fs::remove_dir_all(&log_dir).unwrap();

    let mut server = Launch::new().data_dir(dir.path()).start();
    assert_eq!(server.poll_events("none"), old_events);
    let new: Vec<String> = (0..2)
        .map(|i| server.publish_ok(&event_body(&format!("new_{i}"))))
        .collect();
    for h in &new {
        assert!(!old.contains(h), "hash {h} of a stored row reused");
    }
    server.kill();

    let server = Launch::new().data_dir(dir.path()).start();
    let all: Vec<String> = old.iter().chain(&new).cloned().collect();
    assert_eq!(server.poll_hashes("none"), all);
}

/// Acknowledged events lost from the event log (its segments deleted, as
/// damage on the medium could lose them) never have their hashes handed
/// out again: a restart numbers on past the reserved `qr_next_seq`. Until
/// session 20 it numbered on from the newest record left, here from 0, so
/// the new events got the lost events' hashes and a client holding the
/// newest lost hash was answered from the wrong place (nothing).
#[test]
fn hashes_of_lost_log_records_are_never_handed_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Launch::new().data_dir(dir.path()).start();
    let lost: Vec<String> = (0..5)
        .map(|i| server.publish_ok(&event_body(&format!("lost_{i}"))))
        .collect();
    server.kill();
    for entry in std::fs::read_dir(dir.path().join("events")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }

    let mut server = Launch::new().data_dir(dir.path()).start();
    assert_eq!(server.poll_hashes("none"), Vec::<String>::new());
    let fresh: Vec<String> = (0..5)
        .map(|i| server.publish_ok(&event_body(&format!("fresh_{i}"))))
        .collect();
    for hash in &fresh {
        assert!(!lost.contains(hash), "lost hash {hash} given out again");
    }
    // The newest lost hash is unknown now: its holder gets every event.
    assert_eq!(server.poll_hashes(lost.last().unwrap()), fresh);
    server.kill();

    // And across one more restart, which starts past the new reservation.
    let server = Launch::new().data_dir(dir.path()).start();
    assert_eq!(
        server.poll_hashes(fresh.last().unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(server.poll_hashes(&fresh[2]), fresh[3..].to_vec());
}

/// A database lost beside its event log (floorbell.db and its WAL deleted,
/// or replaced by a new one) is refused with a clear error. Until session
/// 20 floorbell started as a new store: a new hash key, so every logged
/// event was dropped (one warning each), new tokens, no orders or tickets.
#[test]
fn a_database_lost_beside_the_event_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Launch::new().data_dir(dir.path()).start();
    server.publish_ok(&event_body("waiter_call"));
    // SIGKILL: the WAL holds the newest commits, as after a power cut.
    server.kill();
    for file in ["floorbell.db", "floorbell.db-wal", "floorbell.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(file));
    }
    for attempt in ["first", "second"] {
        let err = match Launch::new().data_dir(dir.path()).try_start() {
            Ok(_) => panic!("{attempt} start: a new store beside the event log"),
            Err(e) => e,
        };
        assert!(
            err.contains("holds QR events (events/) but its database is new"),
            "{attempt} start: {err}"
        );
    }
}
