//! Random floors: staff, kiosks and displays come and go and send real and
//! garbage frames; after every step the board is checked against a small
//! model of the rules and against what its clients were told.
//!
//! * every frame gets exactly one reply, first, to its sender (the harness);
//! * a ticket's owner, once set, never changes; a closed ticket stays closed;
//! * ids count up from 0 and are never reused;
//! * the taken tables are exactly the tables where a staff connection sits
//!   (a model of `pick`/`unpick`/close/removal, one table per member);
//! * every table-less console's latest `taken` is the current one;
//! * every display, replaying what it was sent, shows the tables that are
//!   taken and how many tickets are in service at each;
//! * folding the emitted records into `restore` gives the same tickets,
//!   visitors and next id.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::harness::{test_hash, token_of, Floor};
use super::tests::restore_from;
use super::*;

const TABLES: u32 = 4;
/// Staff names; the last one never gets an account (its token is bad).
const MEMBERS: [&str; 4] = ["Ann", "Bob", "Cy", "Nobody"];
const EMAILS: [&str; 3] = ["a@x.com", "b@x.com", "c@x.com"];
const NAMES: [&str; 3] = ["Ann Lee", "Bo", "  spaced  out "];

#[derive(Debug, Clone)]
enum Line {
    Pick(u32, usize),
    Unpick,
    Accept(u64),
    Cancel(u64),
    Complete(u64),
    New(usize, usize),
    Query(usize),
    Raw(String),
}

impl Line {
    fn text(&self) -> String {
        match self {
            Line::Pick(t, m) => format!("pick {t} {}", token_of(MEMBERS[*m])),
            Line::Unpick => "unpick".into(),
            Line::Accept(id) => format!("accept {id}"),
            Line::Cancel(id) => format!("cancel {id}"),
            Line::Complete(id) => format!("complete {id}"),
            Line::New(e, n) => format!("new {} {}", EMAILS[*e], NAMES[*n]),
            Line::Query(e) => format!("query {}", EMAILS[*e]),
            Line::Raw(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Connect(Role),
    Close(usize),
    Send(usize, Line),
    AddStaff(usize),
    RemoveStaff(usize),
    Tick(u16),
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        3 => (0..TABLES + 2, 0..MEMBERS.len()).prop_map(|(t, m)| Line::Pick(t, m)),
        1 => Just(Line::Unpick),
        3 => (0u64..8).prop_map(Line::Accept),
        2 => (0u64..8).prop_map(Line::Cancel),
        2 => (0u64..8).prop_map(Line::Complete),
        3 => (0..EMAILS.len(), 0..NAMES.len()).prop_map(|(e, n)| Line::New(e, n)),
        1 => (0..EMAILS.len()).prop_map(Line::Query),
        1 => "[a-z0-9 ]{0,16}".prop_map(Line::Raw),
        1 => any::<String>().prop_map(Line::Raw),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let role = prop_oneof![Just(Role::Staff), Just(Role::Kiosk), Just(Role::Display)];
    prop_oneof![
        2 => role.prop_map(Op::Connect),
        1 => any::<usize>().prop_map(Op::Close),
        10 => (any::<usize>(), line()).prop_map(|(c, l)| Op::Send(c, l)),
        1 => (0..MEMBERS.len() - 1).prop_map(Op::AddStaff),
        1 => (0..MEMBERS.len() - 1).prop_map(Op::RemoveStaff),
        1 => any::<u16>().prop_map(Op::Tick),
    ]
}

/// What the test believes about seating, from the replies alone.
#[derive(Default)]
struct Seating {
    /// The member each staff connection last picked as.
    member: BTreeMap<ConnId, usize>,
    /// The table each staff connection sits at.
    seat: BTreeMap<ConnId, u32>,
}

/// A display's picture, built only from the frames it received.
#[derive(Default, Debug, PartialEq, Eq)]
struct Picture {
    /// Taken table → tickets in service there.
    tables: BTreeMap<u32, usize>,
}

impl Picture {
    fn apply(&mut self, frame: &str) {
        let parts: Vec<&str> = frame.split(' ').collect();
        let num = |i: usize| parts[i].parse::<u32>().expect("a table number");
        match parts[0] {
            "pick" => assert!(self.tables.insert(num(1), 0).is_none(), "{frame}"),
            "unpick" => assert!(self.tables.remove(&num(1)).is_some(), "{frame}"),
            "claimed" => *self.tables.get_mut(&num(1)).expect(frame) += 1,
            "complete" | "cancel" => {
                let n = self.tables.get_mut(&num(1)).expect(frame);
                assert!(*n > 0, "{frame}");
                *n -= 1;
            }
            _ => panic!("unexpected display frame {frame:?}"),
        }
    }
}

fn run(ops: Vec<Op>) {
    let mut f = Floor::new(TABLES, &MEMBERS[..2]);
    let mut seating = Seating::default();
    let mut pictures: BTreeMap<ConnId, Picture> = BTreeMap::new();
    let mut last_taken: BTreeMap<ConnId, String> = BTreeMap::new();
    let mut owners: BTreeMap<u64, String> = BTreeMap::new();
    let mut closed: BTreeMap<u64, Ticket> = BTreeMap::new();
    let mut created = 0u64;

    for op in ops {
        match op {
            Op::Connect(role) => {
                f.connect(role);
            }
            Op::Close(i) => {
                let open: Vec<ConnId> = [Role::Staff, Role::Kiosk, Role::Display]
                    .into_iter()
                    .flat_map(|r| f.conns(r))
                    .collect();
                if let Some(&c) = open.get(i % open.len().max(1)) {
                    f.close(c);
                    seating.member.remove(&c);
                    seating.seat.remove(&c);
                    pictures.remove(&c);
                    last_taken.remove(&c);
                }
            }
            Op::Send(i, line) => {
                let mut open: Vec<ConnId> = [Role::Staff, Role::Kiosk, Role::Display]
                    .into_iter()
                    .flat_map(|r| f.conns(r))
                    .collect();
                open.sort_unstable();
                let Some(&c) = open.get(i % open.len().max(1)) else {
                    continue;
                };
                let reply = f.send(c, &line.text());
                match (&line, reply.as_str()) {
                    (Line::Pick(t, m), r) if r.starts_with("success pick") => {
                        assert_eq!(r, format!("success pick {t}"));
                        let moved: Vec<ConnId> = seating
                            .member
                            .iter()
                            .filter(|(other, mm)| **mm == *m && **other != c)
                            .map(|(other, _)| *other)
                            .collect();
                        for other in moved {
                            seating.seat.remove(&other);
                        }
                        seating.seat.insert(c, *t);
                        seating.member.insert(c, *m);
                    }
                    (Line::Unpick, "success unpick") => {
                        seating.seat.remove(&c);
                    }
                    (Line::New(e, n), r) if r.starts_with("success new ") => {
                        let expected = format!(
                            "success new {{\"id\":{created},\"email\":\"{}\"",
                            EMAILS[*e]
                        );
                        assert!(r.starts_with(&expected), "{r}");
                        assert_eq!(f.board.visitor_name(EMAILS[*e]), Some(NAMES[*n]));
                        created += 1;
                    }
                    _ => {}
                }
            }
            Op::AddStaff(m) => {
                let known = f.board.staff_names().contains(&MEMBERS[m].to_string());
                let r = f
                    .board
                    .add_staff(MEMBERS[m], test_hash(&token_of(MEMBERS[m])));
                assert_eq!(r.is_err(), known);
            }
            Op::RemoveStaff(m) => {
                if f.board.staff_names().contains(&MEMBERS[m].to_string()) {
                    f.remove_staff(MEMBERS[m]);
                    for (c, mm) in &seating.member {
                        if *mm == m {
                            seating.seat.remove(c);
                        }
                    }
                } else {
                    assert_eq!(f.board.remove_staff(MEMBERS[m]), Err(StaffError::NotFound));
                }
            }
            Op::Tick(s) => f.now += i64::from(s),
        }

        // What each client was told.
        for c in f.conns(Role::Staff) {
            for frame in f.recv(c) {
                if frame.starts_with("taken") {
                    last_taken.insert(c, frame);
                }
            }
        }
        for c in f.conns(Role::Display) {
            let picture = pictures.entry(c).or_default();
            for frame in f.recv(c) {
                picture.apply(&frame);
            }
        }
        for c in f.conns(Role::Kiosk) {
            assert!(f.recv(c).is_empty(), "kiosks only get replies");
        }

        // The board against the model and the clients.
        let board = &f.board;
        board.check_invariants();
        let taken = board.taken_tables();
        let model: BTreeSet<u32> = seating.seat.values().copied().collect();
        assert_eq!(taken, model.iter().copied().collect::<Vec<_>>());
        assert_eq!(taken.len(), seating.seat.len(), "one connection per table");
        for c in f.conns(Role::Staff) {
            let seat = board.seat_of(c);
            assert_eq!(seat.map(|s| s.0), seating.seat.get(&c).copied(), "conn {c}");
            if let Some((_, member)) = seat {
                assert_eq!(member, MEMBERS[seating.member[&c]]);
            } else {
                let now = String::from_utf8(wire::taken(taken.iter().copied()).to_vec()).unwrap();
                assert_eq!(
                    last_taken.get(&c),
                    Some(&now),
                    "conn {c}'s `taken` is stale"
                );
            }
        }
        let mut truth = Picture::default();
        for c in f.conns(Role::Staff) {
            if let Some((t, member)) = board.seat_of(c) {
                let serving = board
                    .tickets()
                    .filter(|x| x.state == TicketState::Claimed)
                    .filter(|x| x.staff.as_deref() == Some(member))
                    .count();
                truth.tables.insert(t, serving);
            }
        }
        for (d, picture) in &pictures {
            assert_eq!(picture, &truth, "display {d}");
        }
        assert_eq!(board.next_ticket_id(), created);
        assert_eq!(board.tickets().count() as u64, created);
        for (i, t) in board.tickets().enumerate() {
            assert_eq!(t.id, i as u64, "ids are dense from 0");
            if let Some(owner) = &t.staff {
                let first = owners.entry(t.id).or_insert_with(|| owner.clone());
                assert_eq!(first, owner, "ticket {} changed hands", t.id);
            }
            if let Some(was) = closed.get(&t.id) {
                assert_eq!(was, t, "a closed ticket changed");
            } else if t.state.is_closed() {
                closed.insert(t.id, t.clone());
            }
        }
    }

    // Replaying the records gives the same board.
    let staff: Vec<StaffAccount> = f
        .board
        .staff_names()
        .into_iter()
        .map(|name| StaffAccount {
            token_hash: test_hash(&token_of(&name)),
            name,
        })
        .collect();
    let restored = restore_from(TABLES, staff, &f.records);
    restored.check_invariants();
    assert_eq!(
        restored.tickets().collect::<Vec<_>>(),
        f.board.tickets().collect::<Vec<_>>()
    );
    let sorted = |b: &TicketBoard| {
        let mut v: Vec<(String, String)> = b
            .visitors()
            .map(|(e, n)| (e.to_owned(), n.to_owned()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&restored), sorted(&f.board));
    assert_eq!(restored.next_ticket_id(), f.board.next_ticket_id());
}

proptest! {
    // Failures are kept beside this file (proptests.regressions), not in a
    // directory outside the module.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_floors_keep_the_rules(ops in prop::collection::vec(op(), 1..120)) {
        run(ops);
    }
}
