//! SPEC §0/§2 durability of service tickets: a `success …` frame is only
//! sent once the change is on disk, so after `kill -9` and a restart on the
//! same data directory every acknowledged ticket, claim, completion,
//! cancellation, visitor name and staff account is still there, and ids go
//! on from where they were, never reused.
//!
//! After a restart no staff member is at a table (connections died with the
//! process); each picks again before a display is asked what is in service.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::Message;

use common::*;

/// A staff console on a fresh connection: returns it with the replayed
/// waiting tickets (exact JSON text, in the order they came). The end of the
/// replay is found with a command whose reply is known.
fn console_and_waiting(s: &Server) -> (Ws, Vec<String>) {
    let mut ws = s.ws("/ws/staff");
    send_text(&mut ws, "unpick");
    let mut waiting = Vec::new();
    let mut takens = 0;
    loop {
        let m = recv_text(&mut ws);
        if m == "error unpick you do not have a table assigned" {
            break;
        }
        if m == "taken" || m.starts_with("taken ") {
            takens += 1;
            continue;
        }
        let json = m
            .strip_prefix("new ")
            .unwrap_or_else(|| panic!("unexpected message in the replay: {m:?}"));
        waiting.push(json.to_string());
    }
    assert_eq!(takens, 1, "one `taken` on connect");
    (ws, waiting)
}

/// A display on a fresh connection: its initial state, up to the `pick
/// MARK` that `marker` (a staff console at no table) causes afterwards.
fn display_state(s: &Server, marker: &mut Ws, marker_token: &str, mark: u32) -> Vec<String> {
    let mut d = s.ws("/ws/display");
    // The display's session is up once it answers a ping; the initial state
    // was queued before that pong.
    d.send(Message::Ping(b"sync".to_vec().into()))
        .expect("ping");
    let mut state = Vec::new();
    loop {
        match recv_message(&mut d) {
            Message::Text(t) => state.push(t.as_str().to_string()),
            Message::Pong(_) => break,
            other => panic!("unexpected {other:?} on the display"),
        }
    }
    say(
        marker,
        &format!("pick {mark} {marker_token}"),
        &format!("success pick {mark}"),
    );
    loop {
        let m = recv_text(&mut d);
        if m == format!("pick {mark}") {
            break;
        }
        state.push(m);
    }
    state
}

/// Sends `command` and asserts its reply, skipping the `new`, `claimed` and
/// `taken` broadcasts that other members' commands cause meanwhile.
fn say_through(ws: &mut Ws, command: &str, reply: &str) {
    send_text(ws, command);
    loop {
        let m = recv_text(ws);
        if m.starts_with("new {") || m.starts_with("claimed {") || m.starts_with("taken") {
            continue;
        }
        assert_eq!(m, reply, "reply to {command:?}");
        return;
    }
}

/// Kiosk `new`, returning the ticket.
fn new_ticket(kiosk: &mut Ws, email: &str, name: &str) -> Ticket {
    send_text(kiosk, &format!("new {email} {name}"));
    let t = ticket_after("success new", &recv_text(kiosk));
    assert_eq!((t.email.as_str(), t.name.as_str()), (email, name));
    t
}

#[test]
fn acknowledged_ticket_state_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Launch::new().data_dir(dir.path()).start();
    let kim_token = s.create_staff("Kim");
    let lee_token = s.create_staff("Lee");
    let mut kiosk = s.ws("/ws/kiosk");
    let tickets: Vec<Ticket> = (0..6)
        .map(|i| {
            new_ticket(
                &mut kiosk,
                &format!("v{i}@example.com"),
                &format!("Visitor Number {i}"),
            )
        })
        .collect();
    assert_eq!(
        tickets.iter().map(|t| t.id).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    // The name of v0 is updated by a later visit.
    let renamed = new_ticket(&mut kiosk, "v0@example.com", "Visitor Renamed");
    let (mut kim, _) = console_and_waiting(&s);
    pick(&mut kim, 3, &kim_token);
    let (mut lee, _) = console_and_waiting(&s);
    pick(&mut lee, 4, &lee_token);
    for id in [1, 2, 3] {
        say_through(
            &mut kim,
            &format!("accept {id}"),
            &format!("success claimed {id}"),
        );
    }
    say_through(&mut lee, "accept 4", "success claimed 4");
    say_through(&mut kim, "complete 2", "success complete 2");
    say_through(&mut kim, "cancel 3", "success cancel 3");
    s.kill();

    let s = Launch::new().data_dir(dir.path()).start();
    // Waiting: 0, 5 and 6, byte for byte as created.
    let (_console, waiting) = console_and_waiting(&s);
    assert_eq!(
        waiting,
        [tickets[0].json(), tickets[5].json(), renamed.json()],
        "the waiting tickets after kill -9"
    );
    // Staff tokens still pick; claims come back with their owners.
    let (mut kim, _) = console_and_waiting(&s);
    pick(&mut kim, 3, &kim_token);
    let (mut lee, _) = console_and_waiting(&s);
    pick(&mut lee, 4, &lee_token);
    let pat_token = s.create_staff("Pat");
    let (mut pat, _) = console_and_waiting(&s);
    let mut state = display_state(&s, &mut pat, &pat_token, 9);
    state.sort();
    assert_eq!(state, ["claimed 3 1", "claimed 4 4", "pick 3", "pick 4"]);
    say(
        &mut pat,
        "accept 1",
        "error accept this ticket is now claimed",
    );
    say(
        &mut pat,
        "accept 4",
        "error accept this ticket is now claimed",
    );
    for id in [2, 3] {
        say(
            &mut pat,
            &format!("accept {id}"),
            "error accept the ticket has already been completed or cancelled",
        );
    }
    say(
        &mut pat,
        "complete 1",
        "error complete you do not own this ticket",
    );
    say(&mut kim, "complete 1", "success complete 1");
    say(&mut lee, "cancel 4", "success cancel 4");
    // Visitors.
    let mut kiosk = s.ws("/ws/kiosk");
    say(
        &mut kiosk,
        "query v0@example.com",
        "success query Visitor Renamed",
    );
    for i in 1..6 {
        say(
            &mut kiosk,
            &format!("query v{i}@example.com"),
            &format!("success query Visitor Number {i}"),
        );
    }
    // Ids go on.
    let next = new_ticket(&mut kiosk, "n@example.com", "Next");
    assert_eq!(next.id, 7);
}

/// Closed tickets older than `--history-days` are forgotten, at start and
/// then every minute: their rows leave the store, the board answers for them as
/// closed, their visitors with no other ticket are forgotten, and their ids
/// are never handed out again, even when the newest ones go (the next id is
/// kept in the store's `meta`).
#[test]
fn long_closed_tickets_are_forgotten_and_their_ids_stay_used() {
    use floorbell_core::store::{Store, StoreOp, META_TICKETS_NEXT_ID};
    let dir = tempfile::tempdir().unwrap();
    let mut s = Launch::new().data_dir(dir.path()).start();
    let token = s.create_staff("Kim");
    let mut kiosk = s.ws("/ws/kiosk");
    for i in 0..3 {
        new_ticket(&mut kiosk, &format!("v{i}@example.com"), "V");
    }
    let (mut kim, _) = console_and_waiting(&s);
    pick(&mut kim, 0, &token);
    for cmd in ["accept 0", "accept 1", "accept 2"] {
        say_through(&mut kim, cmd, &format!("success claimed {}", &cmd[7..]));
    }
    say_through(&mut kim, "complete 1", "success complete 1");
    say_through(&mut kim, "cancel 2", "success cancel 2");
    s.kill();

    // Tickets 1 and 2 closed 15 days ago (history: 14 days); 0 is in service.
    {
        let mut store = Store::open(dir.path()).unwrap();
        let aged: Vec<StoreOp> = store
            .load_tickets()
            .unwrap()
            .into_iter()
            .filter(|t| t.end.is_some())
            .map(|mut t| {
                t.end = t.end.map(|e| e - 15 * 86_400);
                t.start -= 15 * 86_400;
                StoreOp::PutTicket(t)
            })
            .collect();
        assert_eq!(aged.len(), 2);
        store.commit(&aged).unwrap();
    }
    let mut s = Launch::new().data_dir(dir.path()).start();
    let (mut kim, _) = console_and_waiting(&s);
    pick(&mut kim, 0, &token);
    // The start-up housekeeping forgets them (its commit is asynchronous).
    let stored_ids = || {
        Store::open_read_only(dir.path())
            .and_then(|st| st.load_tickets())
            .map(|ts| ts.into_iter().map(|t| t.id).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while stored_ids() != [0] {
        assert!(
            Instant::now() < deadline,
            "still stored: {:?}",
            stored_ids()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for (cmd, reply) in [
        (
            "accept 1",
            "error accept the ticket has already been completed or cancelled",
        ),
        (
            "cancel 2",
            "error cancel the ticket has already been completed or cancelled",
        ),
        ("accept 3", "error accept ticket id does not exist"),
    ] {
        say(&mut kim, cmd, reply);
    }
    // Their visitors went with them (same commit); v0's ticket stays.
    let visitors = Store::open_read_only(dir.path())
        .and_then(|st| st.load_visitors())
        .unwrap();
    assert_eq!(visitors, [("v0@example.com".to_string(), "V".to_string())]);
    let mut kiosk = s.ws("/ws/kiosk");
    say(&mut kiosk, "query v0@example.com", "success query V");
    say(
        &mut kiosk,
        "query v1@example.com",
        "error query visitor email does not exist",
    );
    say(&mut kim, "complete 0", "success complete 0");
    s.kill();

    // Now the newest ids go too: a restart must still number on from 3.
    {
        let mut store = Store::open(dir.path()).unwrap();
        let mut t = store.load_tickets().unwrap().remove(0);
        t.end = t.end.map(|e| e - 15 * 86_400);
        store.commit(&[StoreOp::PutTicket(t)]).unwrap();
    }
    let s = Launch::new().data_dir(dir.path()).start();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stored_ids().is_empty() {
        assert!(
            Instant::now() < deadline,
            "still stored: {:?}",
            stored_ids()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let meta = Store::open_read_only(dir.path())
        .unwrap()
        .meta(META_TICKETS_NEXT_ID)
        .unwrap();
    assert_eq!(meta.as_deref(), Some("3"));
    drop(s);
    let s = Launch::new().data_dir(dir.path()).start();
    let mut kiosk = s.ws("/ws/kiosk");
    assert_eq!(new_ticket(&mut kiosk, "n@example.com", "Next").id, 3);
}

#[test]
fn staff_accounts_and_removals_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Launch::new().data_dir(dir.path()).start();
    let kim = s.create_staff("Kim");
    let lee = s.create_staff("Lee");
    let max = s.create_staff("Max");
    assert_eq!(s.delete_staff("Lee").status, 200);
    s.kill();

    let s = Launch::new().data_dir(dir.path()).start();
    let admin = s.admin_token.clone();
    let list = s.staff_request("GET", "/api/tickets/staff", Some(&admin), None);
    assert_eq!(list.status, 200, "{}", list.body);
    let mut names: Vec<String> = list.json()["staff"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", list.body))
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["Kim", "Max"]);
    assert_eq!(
        s.post_staff("Kim").status,
        409,
        "Kim's name is still in use"
    );
    let (mut ws, _) = console_and_waiting(&s);
    pick(&mut ws, 0, &kim);
    let (mut ws, _) = console_and_waiting(&s);
    pick(&mut ws, 1, &max);
    let (mut ws, _) = console_and_waiting(&s);
    say(
        &mut ws,
        &format!("pick 2 {lee}"),
        "error pick the provided token does not belong to any staff member",
    );
}

// ---------------------------------------------------------------------------
// Concurrent traffic, then kill -9 in flight
// ---------------------------------------------------------------------------

const KIOSKS: usize = 4;
const STAFF: [(&str, u32); 3] = [("Kim", 0), ("Lee", 1), ("Max", 2)];

/// Everything the clients saw before the kill.
#[derive(Default)]
struct Log {
    /// `success new` replies: id → ticket.
    acked_new: BTreeMap<u64, Ticket>,
    /// `new` broadcasts: id → JSON text.
    broadcast_new: BTreeMap<u64, String>,
    /// Every id that appeared anywhere.
    seen: BTreeSet<u64>,
    /// `accept ID` sent: id → staff names.
    accept_sent: BTreeMap<u64, Vec<String>>,
    /// `success claimed`: id → staff name.
    claimed: BTreeMap<u64, String>,
    /// `complete`/`cancel` sent: id → word.
    close_sent: BTreeMap<u64, &'static str>,
    /// `success complete`/`success cancel`: id → word.
    closed: BTreeMap<u64, &'static str>,
    /// Replies nobody expected.
    unexpected: Vec<String>,
}

type SharedLog = Arc<Mutex<Log>>;

/// One kiosk creating tickets back to back until the server dies.
fn kiosk_loop(addr: SocketAddr, k: usize, log: SharedLog) {
    let mut ws = ws_connect(addr, "/ws/kiosk");
    for i in 0.. {
        let email = format!("k{k}-{i}@example.com");
        let name = format!("Visitor {k} {i}");
        if ws
            .send(Message::text(format!("new {email} {name}")))
            .is_err()
        {
            return;
        }
        let reply = match ws.read() {
            Ok(Message::Text(t)) => t.as_str().to_string(),
            _ => return,
        };
        let t = ticket_after("success new", &reply);
        assert_eq!(
            (t.email.as_str(), t.name.as_str()),
            (email.as_str(), name.as_str())
        );
        let mut log = log.lock().unwrap();
        log.seen.insert(t.id);
        log.acked_new.insert(t.id, t);
    }
}

/// One staff member at `table`: accepts three tickets in four as they are
/// announced, then completes a third of its claims, cancels a third and
/// keeps the rest.
fn staff_loop(addr: SocketAddr, name: &str, token: &str, table: u32, log: SharedLog) {
    let mut ws = ws_connect(addr, "/ws/staff");
    if ws
        .send(Message::text(format!("pick {table} {token}")))
        .is_err()
    {
        return;
    }
    let id_after = |m: &str, prefix: &str| -> Option<u64> {
        m.strip_prefix(prefix)
            .map(|r| r.parse().unwrap_or_else(|_| panic!("bad id in {m:?}")))
    };
    loop {
        let m = match ws.read() {
            Ok(Message::Text(t)) => t.as_str().to_string(),
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
            _ => return,
        };
        let mut to_send = None;
        {
            let mut log = log.lock().unwrap();
            if let Some(json) = m.strip_prefix("new ") {
                let t = parse_ticket(json);
                log.seen.insert(t.id);
                log.broadcast_new.insert(t.id, json.to_string());
                if t.id % 4 != 3 {
                    log.accept_sent
                        .entry(t.id)
                        .or_default()
                        .push(name.to_string());
                    to_send = Some(format!("accept {}", t.id));
                }
            } else if let Some(json) = m.strip_prefix("claimed ") {
                let t = parse_ticket(json);
                log.seen.insert(t.id);
            } else if let Some(id) = id_after(&m, "success claimed ") {
                log.claimed.insert(id, name.to_string());
                let word = match id % 3 {
                    0 => Some("complete"),
                    1 => Some("cancel"),
                    _ => None,
                };
                if let Some(word) = word {
                    log.close_sent.insert(id, word);
                    to_send = Some(format!("{word} {id}"));
                }
            } else if let Some(id) = id_after(&m, "success complete ") {
                log.closed.insert(id, "complete");
            } else if let Some(id) = id_after(&m, "success cancel ") {
                log.closed.insert(id, "cancel");
            } else if m == format!("success pick {table}")
                || m == "taken"
                || m.starts_with("taken ")
                || m == "error accept this ticket is now claimed"
                || m == "error accept the ticket has already been completed or cancelled"
            {
                // Races between members: expected.
            } else {
                log.unexpected.push(format!("{name}: {m}"));
            }
        }
        if let Some(cmd) = to_send {
            if ws.send(Message::text(cmd)).is_err() {
                return;
            }
        }
    }
}

#[test]
fn concurrent_ticket_traffic_survives_kill_9_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Launch::new().data_dir(dir.path()).start();
    let tokens: BTreeMap<&str, String> = STAFF
        .iter()
        .map(|(name, _)| (*name, s.create_staff(name)))
        .collect();
    let log: SharedLog = Arc::default();
    let mut threads = Vec::new();
    for (name, table) in STAFF {
        let (addr, token, log) = (s.addr, tokens[name].clone(), Arc::clone(&log));
        threads.push(thread::spawn(move || {
            staff_loop(addr, name, &token, table, log)
        }));
    }
    // Let every console pick before the kiosks start.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let mut probe = s.ws("/ws/staff");
            recv_text(&mut probe) == "taken 0 1 2"
        }),
        "the staff consoles did not pick their tables"
    );
    for k in 0..KIOSKS {
        let (addr, log) = (s.addr, Arc::clone(&log));
        threads.push(thread::spawn(move || kiosk_loop(addr, k, log)));
    }
    // Run until there is something to lose, then kill in the middle of it.
    let started = Instant::now();
    let busy = wait_until(Duration::from_secs(30), || {
        let log = log.lock().unwrap();
        started.elapsed() >= Duration::from_millis(1500)
            && log.acked_new.len() >= 40
            && log.closed.len() >= 5
    });
    assert!(busy, "too little traffic before the kill");
    s.kill();
    for t in threads {
        t.join().expect("a client thread panicked");
    }
    let log = Arc::try_unwrap(log).ok().unwrap().into_inner().unwrap();
    assert!(
        log.unexpected.is_empty(),
        "unexpected replies: {:?}",
        log.unexpected
    );
    eprintln!(
        "before the kill: {} tickets acknowledged, {} ids seen, {} claims, {} closes acknowledged",
        log.acked_new.len(),
        log.seen.len(),
        log.claimed.len(),
        log.closed.len()
    );

    let s = Launch::new().data_dir(dir.path()).start();

    // 1. The waiting tickets: every acknowledged ticket never accepted is
    //    there, byte for byte; nothing acknowledged as claimed or closed is.
    let (_console, waiting) = console_and_waiting(&s);
    let waiting: Vec<Ticket> = waiting.iter().map(|j| parse_ticket(j)).collect();
    let waiting_ids: Vec<u64> = waiting.iter().map(|t| t.id).collect();
    let mut sorted = waiting_ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        waiting_ids, sorted,
        "waiting tickets, oldest first, no duplicates"
    );
    for t in &waiting {
        if let Some(acked) = log.acked_new.get(&t.id) {
            assert_eq!(
                t, acked,
                "waiting ticket {} differs from its `success new`",
                t.id
            );
        }
        if let Some(json) = log.broadcast_new.get(&t.id) {
            assert_eq!(
                &t.json(),
                json,
                "waiting ticket {} differs from its `new`",
                t.id
            );
        }
        assert!(
            !log.claimed.contains_key(&t.id),
            "ticket {} was claimed (acknowledged) but is waiting",
            t.id
        );
        assert!(
            !log.closed.contains_key(&t.id),
            "ticket {} was closed (acknowledged) but is waiting",
            t.id
        );
    }
    for id in log.acked_new.keys() {
        if !log.accept_sent.contains_key(id) {
            assert!(
                waiting_ids.contains(id),
                "acknowledged ticket {id} was never accepted but is not waiting"
            );
        }
    }

    // 2. Each member picks again with the same token; a display then shows
    //    every acknowledged claim not closed since, at its owner's table.
    let mut consoles = BTreeMap::new();
    for (name, table) in STAFF {
        let (mut ws, _) = console_and_waiting(&s);
        pick(&mut ws, table, &tokens[name]);
        consoles.insert(name, ws);
    }
    let pat_token = s.create_staff("Pat");
    let (mut pat, _) = console_and_waiting(&s);
    let state = display_state(&s, &mut pat, &pat_token, 9);
    let table_of = |name: &str| STAFF.iter().find(|(n, _)| *n == name).unwrap().1;
    let mut in_service: BTreeMap<u64, u32> = BTreeMap::new();
    for m in &state {
        if let Some(rest) = m.strip_prefix("claimed ") {
            let (table, id) = rest
                .split_once(' ')
                .and_then(|(t, i)| Some((t.parse::<u32>().ok()?, i.parse::<u64>().ok()?)))
                .unwrap_or_else(|| panic!("bad display line {m:?}"));
            assert!(
                in_service.insert(id, table).is_none(),
                "ticket {id} twice on the display"
            );
        } else {
            assert!(
                ["pick 0", "pick 1", "pick 2"].contains(&m.as_str()),
                "unexpected display line {m:?}"
            );
        }
    }
    for (id, owner) in &log.claimed {
        if !log.close_sent.contains_key(id) {
            assert_eq!(
                in_service.get(id),
                Some(&table_of(owner)),
                "acknowledged claim of {id} by {owner} is not on the display"
            );
        }
    }
    for (id, table) in &in_service {
        assert!(
            !log.closed.contains_key(id),
            "ticket {id} was closed (acknowledged) but is in service"
        );
        let accepted_by = log.accept_sent.get(id).cloned().unwrap_or_default();
        assert!(
            accepted_by.iter().any(|n| table_of(n) == *table),
            "ticket {id} in service at table {table}, but nobody there accepted it"
        );
        assert!(
            !waiting_ids.contains(id),
            "ticket {id} both waiting and in service"
        );
    }

    // 3. Everything else that was seen is closed, and was asked to be.
    for id in &log.seen {
        if waiting_ids.contains(id) {
            continue;
        }
        let reply = {
            send_text(&mut pat, &format!("accept {id}"));
            recv_text(&mut pat)
        };
        if in_service.contains_key(id) {
            assert_eq!(
                reply, "error accept this ticket is now claimed",
                "ticket {id}"
            );
        } else {
            assert_eq!(
                reply, "error accept the ticket has already been completed or cancelled",
                "ticket {id} is neither waiting nor in service"
            );
            assert!(
                log.close_sent.contains_key(id),
                "ticket {id} closed without anyone closing it"
            );
        }
    }

    // 4. Owners still own their claims.
    if let Some((id, owner)) = log
        .claimed
        .iter()
        .find(|(id, _)| !log.close_sent.contains_key(*id))
    {
        let ws = consoles.get_mut(owner.as_str()).unwrap();
        say(
            ws,
            &format!("complete {id}"),
            &format!("success complete {id}"),
        );
    }

    // 5. Visitor names.
    let mut kiosk = s.ws("/ws/kiosk");
    for t in log.acked_new.values() {
        say(
            &mut kiosk,
            &format!("query {}", t.email),
            &format!("success query {}", t.name),
        );
    }

    // 6. Ids go on above everything seen before the kill.
    let max_seen = *log.seen.iter().max().expect("some ids");
    let next = new_ticket(&mut kiosk, "after@example.com", "After Kill");
    assert!(
        next.id > max_seen,
        "new id {} not above {max_seen}",
        next.id
    );
    assert!(!log.seen.contains(&next.id));
}
