//! SPEC §2 byte for byte: every reply and broadcast, through the in-memory
//! floor of `harness.rs`, read like the seed's dialogue.

use super::harness::{test_hash, token_of, Floor};
use super::*;

const T0: &str = "2019-10-01T04:12:19Z";
const EPOCH: &str = "1970-01-01T00:00:00Z";

/// Ticket JSON as SPEC §2 spells it.
fn json(id: u64, email: &str, name: &str, staff: &str, start: &str, end: &str) -> String {
    format!(
        r#"{{"id":{id},"email":"{email}","name":"{name}","staff":"{staff}","start":"{start}","end":"{end}"}}"#
    )
}

/// A waiting ticket created at T0.
fn waiting(id: u64, email: &str, name: &str) -> String {
    json(id, email, name, "{}", T0, EPOCH)
}

fn pick(table: u32, name: &str) -> String {
    format!("pick {table} {}", token_of(name))
}

#[test]
fn the_seed_dialogue() {
    let mut f = Floor::new(16, &["StaffMember"]);
    let staff = f.staff();
    let display = f.display();
    let kiosk = f.kiosk();
    assert_eq!(f.recv(staff), ["taken"]);
    assert!(f.recv(display).is_empty());
    assert!(f.recv(kiosk).is_empty());

    // The kiosk creates a ticket; every staff console hears of it.
    assert_eq!(
        f.send(kiosk, "new example@example.com Example Name"),
        format!(
            "success new {}",
            waiting(0, "example@example.com", "Example Name")
        )
    );
    assert_eq!(
        f.recv(staff),
        [format!(
            "new {}",
            waiting(0, "example@example.com", "Example Name")
        )]
    );
    assert!(f.recv(display).is_empty());

    // The staff member picks table 0 and claims the ticket.
    assert_eq!(f.send(staff, &pick(0, "StaffMember")), "success pick 0");
    assert_eq!(f.recv(display), ["pick 0"]);
    assert_eq!(f.send(staff, "accept 0"), "success claimed 0");
    assert_eq!(f.recv(display), ["claimed 0 0"]);
    assert!(f.recv(staff).is_empty(), "the claimer gets no broadcast");

    // The ticket is done.
    f.now += 61;
    assert_eq!(f.send(staff, "complete 0"), "success complete 0");
    assert_eq!(f.recv(display), ["complete 0"]);
    assert_eq!(
        f.board.ticket(0).map(wire::ticket_json),
        Some(json(
            0,
            "example@example.com",
            "Example Name",
            "StaffMember",
            T0,
            "2019-10-01T04:13:20Z"
        ))
    );

    // The kiosk remembers the visitor.
    assert_eq!(
        f.send(kiosk, "query example@example.com"),
        "success query Example Name"
    );
}

#[test]
fn claimed_goes_to_every_other_staff_console() {
    let mut f = Floor::new(16, &["Ann", "Bob"]);
    let ann = f.staff();
    let bob = f.staff();
    let idle = f.staff();
    let kiosk = f.kiosk();
    f.send(kiosk, "new v@x.com Vera");
    f.send(ann, &pick(2, "Ann"));
    f.drain_all();
    assert_eq!(f.send(ann, "accept 0"), "success claimed 0");
    let claimed = format!("claimed {}", json(0, "v@x.com", "Vera", "Ann", T0, EPOCH));
    assert_eq!(f.recv(bob), std::slice::from_ref(&claimed));
    assert_eq!(f.recv(idle), [claimed]);
    assert!(f.recv(ann).is_empty());
    // Bob, at a table, cannot take it.
    f.send(bob, &pick(3, "Bob"));
    assert_eq!(
        f.send(bob, "accept 0"),
        "error accept this ticket is now claimed"
    );
}

#[test]
fn pick_replies() {
    let mut f = Floor::new(4, &["Ann", "Bob"]);
    let ann = f.staff();
    let bob = f.staff();
    let d = f.display();
    f.drain_all();
    assert_eq!(
        f.send(ann, "pick 1 not-a-token"),
        "error pick the provided token does not belong to any staff member"
    );
    // The token is checked before the table.
    assert_eq!(
        f.send(ann, "pick 99 not-a-token"),
        "error pick the provided token does not belong to any staff member"
    );
    for bad_table in ["4", "99", "x", "-1", "+1", "99999999999"] {
        assert_eq!(
            f.send(ann, &format!("pick {bad_table} {}", token_of("Ann"))),
            "error the chosen table is not available",
            "{bad_table}"
        );
    }
    assert!(f.recv(d).is_empty(), "refusals change nothing");
    assert!(f.recv(ann).is_empty());

    assert_eq!(f.send(ann, &pick(1, "Ann")), "success pick 1");
    assert_eq!(f.recv(d), ["pick 1"]);
    assert_eq!(f.recv(bob), ["taken 1"]);
    assert_eq!(
        f.send(bob, &pick(1, "Bob")),
        "error the chosen table is not available"
    );
    assert!(f.recv(bob).is_empty());
    assert_eq!(f.send(bob, &pick(3, "Bob")), "success pick 3");
    assert_eq!(f.recv(d), ["pick 3"]);
    assert!(f.recv(ann).is_empty(), "seated consoles get no `taken`");
    assert_eq!(f.board.taken_tables(), [1, 3]);
}

#[test]
fn pick_while_seated_moves() {
    let mut f = Floor::new(8, &["Ann"]);
    let ann = f.staff();
    let idle = f.staff();
    let d = f.display();
    f.send(ann, &pick(3, "Ann"));
    f.drain_all();
    assert_eq!(f.send(ann, &pick(5, "Ann")), "success pick 5");
    assert_eq!(f.recv(d), ["unpick 3", "pick 5"]);
    assert_eq!(f.recv(idle), ["taken 5"]);
    assert!(f.recv(ann).is_empty());
    // SPEC gap: picking the table one holds changes nothing.
    assert_eq!(f.send(ann, &pick(5, "Ann")), "success pick 5");
    assert!(f.recv(d).is_empty());
    assert!(f.recv(idle).is_empty());
}

#[test]
fn a_member_sits_at_one_table_at_a_time() {
    // SPEC gap: a second console picking with the same token takes the
    // member over; the first console loses its table and is told `taken`.
    let mut f = Floor::new(8, &["Ann"]);
    let old = f.staff();
    let new = f.staff();
    let d = f.display();
    f.send(old, &pick(2, "Ann"));
    f.drain_all();
    assert_eq!(f.send(new, &pick(6, "Ann")), "success pick 6");
    assert_eq!(f.recv(d), ["unpick 2", "pick 6"]);
    assert_eq!(f.recv(old), ["taken 6"]);
    assert_eq!(f.board.seat_of(old), None);
    assert_eq!(f.board.seat_of(new), Some((6, "Ann")));
    // Taking over the very same table: the displays see no change, the old
    // console is told it has no table.
    assert_eq!(f.send(old, &pick(6, "Ann")), "success pick 6");
    assert!(f.recv(d).is_empty());
    assert_eq!(f.recv(new), ["taken 6"]);
    assert_eq!(
        f.send(new, "unpick"),
        "error unpick you do not have a table assigned"
    );
}

#[test]
fn unpick_replies_then_taken() {
    let mut f = Floor::new(4, &["Ann", "Bob"]);
    let ann = f.staff();
    let bob = f.staff();
    let idle = f.staff();
    let d = f.display();
    assert_eq!(
        f.send(ann, "unpick"),
        "error unpick you do not have a table assigned"
    );
    f.send(ann, &pick(0, "Ann"));
    f.send(bob, &pick(2, "Bob"));
    f.drain_all();
    assert_eq!(f.send(ann, "unpick"), "success unpick");
    assert_eq!(f.recv(ann), ["taken 2"], "the sender's reply, then `taken`");
    assert_eq!(f.recv(idle), ["taken 2"]);
    assert!(f.recv(bob).is_empty());
    assert_eq!(f.recv(d), ["unpick 0"]);
    f.send(bob, "unpick");
    assert_eq!(f.recv(ann), ["taken"]);
    assert_eq!(f.recv(bob), ["taken"]);
}

#[test]
fn accept_replies_in_spec_order() {
    let mut f = Floor::new(4, &["Ann", "Bob"]);
    let ann = f.staff();
    let bob = f.staff();
    let kiosk = f.kiosk();
    for n in 0..4 {
        f.send(kiosk, &format!("new v{n}@x.com V {n}"));
    }
    assert_eq!(
        f.send(ann, "accept 0"),
        "error accept you do not have a table chosen"
    );
    assert_eq!(
        f.send(ann, "accept 99"),
        "error accept you do not have a table chosen",
        "the table is checked before the id"
    );
    f.send(ann, &pick(0, "Ann"));
    f.send(bob, &pick(1, "Bob"));
    assert_eq!(
        f.send(ann, "accept 99"),
        "error accept ticket id does not exist"
    );
    assert_eq!(
        f.send(ann, "accept 99999999999999999999999999"),
        "error accept ticket id does not exist"
    );
    assert_eq!(f.send(ann, "accept 0"), "success claimed 0");
    assert_eq!(
        f.send(bob, "accept 0"),
        "error accept this ticket is now claimed"
    );
    // SPEC gap: the holder accepting again is told it holds it; no broadcast.
    f.drain_all();
    assert_eq!(f.send(ann, "accept 0"), "success claimed 0");
    assert!(f.recv(bob).is_empty());
    // Closed tickets answer "completed or cancelled", whoever asks.
    f.send(ann, "complete 0");
    assert_eq!(
        f.send(bob, "accept 0"),
        "error accept the ticket has already been completed or cancelled"
    );
    assert_eq!(
        f.send(ann, "accept 0"),
        "error accept the ticket has already been completed or cancelled"
    );
    f.send(bob, "accept 1");
    f.send(bob, "cancel 1");
    assert_eq!(
        f.send(ann, "accept 1"),
        "error accept the ticket has already been completed or cancelled"
    );
    // The invalid-session reply comes first of all.
    f.remove_staff("Bob");
    assert_eq!(
        f.send(bob, "accept 2"),
        "error accept your session token was found to be invalid. please relogin"
    );
    assert_eq!(
        f.send(bob, "accept 99"),
        "error accept your session token was found to be invalid. please relogin"
    );
}

#[test]
fn cancel_and_complete_replies_in_spec_order() {
    for (word, display) in [("cancel", "cancel"), ("complete", "complete")] {
        let mut f = Floor::new(4, &["Ann", "Bob"]);
        let ann = f.staff();
        let bob = f.staff();
        let d = f.display();
        let kiosk = f.kiosk();
        f.send(kiosk, "new a@x.com A");
        f.send(kiosk, "new b@x.com B");
        let cmd = |id: &str| format!("{word} {id}");
        assert_eq!(
            f.send(ann, &cmd("0")),
            format!("error {word} you are not assigned to any table")
        );
        assert_eq!(
            f.send(ann, &cmd("99")),
            format!("error {word} you are not assigned to any table")
        );
        f.send(ann, &pick(2, "Ann"));
        f.send(bob, &pick(3, "Bob"));
        assert_eq!(
            f.send(ann, &cmd("99")),
            format!("error {word} ticket id does not exist")
        );
        // Waiting: nobody owns it yet.
        assert_eq!(
            f.send(ann, &cmd("0")),
            format!("error {word} you do not own this ticket")
        );
        f.send(ann, "accept 0");
        assert_eq!(
            f.send(bob, &cmd("0")),
            format!("error {word} you do not own this ticket")
        );
        f.drain_all();
        f.now += 300;
        assert_eq!(f.send(ann, &cmd("0")), format!("success {word} 0"));
        assert_eq!(f.recv(d), [format!("{display} 2")]);
        assert!(f.recv(bob).is_empty(), "no staff broadcast");
        assert_eq!(
            f.send(ann, &cmd("0")),
            format!("error {word} the ticket has already been completed or cancelled")
        );
        // Ownership is checked before state.
        assert_eq!(
            f.send(bob, &cmd("0")),
            format!("error {word} you do not own this ticket")
        );
        let t = f.board.ticket(0).unwrap();
        assert_eq!(t.end, Some(f.now));
        assert_eq!(
            t.state,
            if word == "cancel" {
                TicketState::Cancelled
            } else {
                TicketState::Completed
            }
        );
        assert_eq!(
            f.send(ann, &format!("{word} x")),
            format!("error {word} malformed command")
        );
    }
}

#[test]
fn kiosk_replies() {
    let mut f = Floor::new(4, &[]);
    let kiosk = f.kiosk();
    assert_eq!(
        f.send(kiosk, "query e@x.com"),
        "error query visitor email does not exist"
    );
    assert_eq!(
        f.send(kiosk, "new e@x.com Anna Maria  de \"la\" Cruz"),
        format!(
            "success new {}",
            waiting(0, "e@x.com", r#"Anna Maria  de \"la\" Cruz"#)
        )
    );
    assert_eq!(
        f.send(kiosk, "query e@x.com"),
        "success query Anna Maria  de \"la\" Cruz"
    );
    // Every `new` updates the name; ids count up.
    assert_eq!(
        f.send(kiosk, "new e@x.com Anna"),
        format!("success new {}", waiting(1, "e@x.com", "Anna"))
    );
    assert_eq!(f.send(kiosk, "query e@x.com"), "success query Anna");
    assert_eq!(
        f.send(kiosk, "query E@X.COM"),
        "error query visitor email does not exist",
        "SPEC gap: emails are exact"
    );
}

#[test]
fn waiting_tickets_are_capped_and_a_refused_new_changes_nothing() {
    let mut f = Floor::new(4, &["Ann"]);
    f.board.set_max_waiting(2);
    let kiosk = f.kiosk();
    let staff = f.staff();
    f.drain_all();
    for (id, email) in [(0, "a@x.com"), (1, "b@x.com")] {
        assert_eq!(
            f.send(kiosk, &format!("new {email} V")),
            format!("success new {}", waiting(id, email, "V"))
        );
    }
    f.drain_all();
    let records = f.records.len();
    assert_eq!(
        f.send(kiosk, "new c@x.com Carl"),
        "error new too many tickets are waiting"
    );
    assert_eq!(f.records.len(), records, "a refused new persists nothing");
    assert!(f.recv(staff).is_empty(), "staff hear of no ticket");
    assert_eq!(
        f.send(kiosk, "query c@x.com"),
        "error query visitor email does not exist",
        "a refused new remembers no visitor"
    );
    assert_eq!(f.board.next_ticket_id(), 2, "a refused new takes no id");
    // Once staff accept one, a place is free again, with the next id.
    assert_eq!(f.send(staff, &pick(0, "Ann")), "success pick 0");
    assert_eq!(f.send(staff, "accept 0"), "success claimed 0");
    assert_eq!(
        f.send(kiosk, "new c@x.com Carl"),
        format!("success new {}", waiting(2, "c@x.com", "Carl"))
    );
    assert_eq!(
        f.send(kiosk, "new d@x.com Dora"),
        "error new too many tickets are waiting"
    );
}

#[test]
fn malformed_commands() {
    let mut f = Floor::new(4, &["Ann"]);
    let staff = f.staff();
    let kiosk = f.kiosk();
    let display = f.display();
    for (frame, word) in [
        ("", ""),
        ("hello", "hello"),
        ("PICK 1 tok-Ann", "PICK"),
        ("pick", "pick"),
        ("pick 1", "pick"),
        ("pick 1 tok-Ann extra", "pick"),
        ("unpick 1", "unpick"),
        ("accept", "accept"),
        ("accept one", "accept"),
        ("accept -1", "accept"),
        ("accept 1 2", "accept"),
        ("cancel", "cancel"),
        ("complete 1.0", "complete"),
        ("new e@x.com Name", "new"),
        ("query e@x.com", "query"),
    ] {
        assert_eq!(
            f.send(staff, frame),
            format!("error {word} malformed command"),
            "staff {frame:?}"
        );
    }
    let long_email = format!("new {}@x.com N", "e".repeat(MAX_EMAIL_LEN));
    let long_name = format!("new e@x.com {}", "N".repeat(MAX_VISITOR_NAME_LEN + 1));
    for (frame, word) in [
        ("", ""),
        ("new", "new"),
        ("new e@x.com", "new"),
        ("new e@x.com ", "new"),
        (long_email.as_str(), "new"),
        (long_name.as_str(), "new"),
        ("query", "query"),
        ("query a@x.com b", "query"),
        ("accept 0", "accept"),
        ("pick 0 tok-Ann", "pick"),
        ("New a@x.com A", "New"),
    ] {
        assert_eq!(
            f.send(kiosk, frame),
            format!("error {word} malformed command"),
            "kiosk {frame:?}"
        );
    }
    for (frame, word) in [("", ""), ("pick 0", "pick"), ("hello world", "hello")] {
        assert_eq!(
            f.send(display, frame),
            format!("error {word} malformed command"),
            "display {frame:?}"
        );
    }
    let huge = "x".repeat(10_000);
    assert_eq!(
        f.send(staff, &huge),
        format!(
            "error {} malformed command",
            "x".repeat(MAX_ECHOED_WORD_LEN)
        )
    );
    assert!(f.records.is_empty(), "nothing malformed is persisted");
    assert_eq!(f.board.next_ticket_id(), 0);
}

#[test]
fn staff_connect_gets_taken_then_waiting_tickets_oldest_first() {
    let mut f = Floor::new(8, &["Ann"]);
    let ann = f.staff();
    let kiosk = f.kiosk();
    f.send(ann, &pick(4, "Ann"));
    for n in 0..3 {
        f.send(kiosk, &format!("new v{n}@x.com V{n}"));
    }
    f.send(ann, "accept 1");
    let late = f.staff();
    assert_eq!(
        f.recv(late),
        [
            "taken 4".to_string(),
            format!("new {}", waiting(0, "v0@x.com", "V0")),
            format!("new {}", waiting(2, "v2@x.com", "V2")),
        ]
    );
}

#[test]
fn display_connect_draws_the_current_state() {
    let mut f = Floor::new(8, &["Ann", "Bob"]);
    let ann = f.staff();
    let bob = f.staff();
    let kiosk = f.kiosk();
    for n in 0..4 {
        f.send(kiosk, &format!("new v{n}@x.com V{n}"));
    }
    f.send(bob, &pick(5, "Bob"));
    f.send(ann, &pick(1, "Ann"));
    f.send(ann, "accept 0");
    f.send(bob, "accept 1");
    f.send(ann, "accept 3");
    f.send(bob, "accept 2");
    f.send(bob, "complete 2");
    let d = f.display();
    assert_eq!(
        f.recv(d),
        [
            "pick 1",
            "claimed 1 0",
            "claimed 1 3",
            "pick 5",
            "claimed 5 1"
        ]
    );
    let mut quiet = Floor::new(8, &[]);
    let d = quiet.display();
    assert!(quiet.recv(d).is_empty(), "nothing taken, nothing to draw");
}

#[test]
fn a_closed_console_unpicks_and_its_member_keeps_the_tickets() {
    let mut f = Floor::new(8, &["Ann"]);
    let ann = f.staff();
    let idle = f.staff();
    let d = f.display();
    let kiosk = f.kiosk();
    f.send(kiosk, "new v@x.com V");
    f.send(kiosk, "new w@x.com W");
    f.send(ann, &pick(3, "Ann"));
    f.send(ann, "accept 0");
    f.drain_all();

    f.close(ann);
    assert_eq!(f.recv(d), ["unpick 3"]);
    assert_eq!(f.recv(idle), ["taken"]);
    assert_eq!(f.board.taken_tables(), Vec::<u32>::new());
    assert_eq!(f.board.ticket(0).unwrap().staff.as_deref(), Some("Ann"));

    // Reconnect: the replay misses nothing, the held ticket comes back.
    let again = f.staff();
    assert_eq!(
        f.recv(again),
        [
            "taken".to_string(),
            format!("new {}", waiting(1, "w@x.com", "W"))
        ]
    );
    assert_eq!(f.send(again, &pick(6, "Ann")), "success pick 6");
    assert_eq!(f.recv(d), ["pick 6", "claimed 6 0"]);
    assert_eq!(f.send(again, "complete 0"), "success complete 0");
    assert_eq!(f.recv(d), ["complete 6"]);
}

#[test]
fn removed_staff_keep_their_connection_but_not_their_table() {
    let mut f = Floor::new(8, &["Ann", "Bob"]);
    let ann = f.staff();
    let ann2 = f.staff();
    let bob = f.staff();
    let d = f.display();
    let kiosk = f.kiosk();
    f.send(kiosk, "new v@x.com V");
    f.send(kiosk, "new w@x.com W");
    f.send(ann, &pick(2, "Ann"));
    f.send(ann, "accept 0");
    f.send(ann, "unpick");
    f.send(ann2, &pick(4, "Ann"));
    f.send(bob, &pick(5, "Bob"));
    f.drain_all();

    assert_eq!(
        f.board.remove_staff("Nobody").unwrap_err(),
        StaffError::NotFound
    );
    f.remove_staff("Ann");
    assert_eq!(f.recv(d), ["unpick 4"]);
    assert_eq!(f.recv(ann), ["taken 5"]);
    assert_eq!(f.recv(ann2), ["taken 5"]);
    assert!(f.recv(bob).is_empty());
    assert_eq!(f.board.staff_names(), ["Bob"]);

    for conn in [ann, ann2] {
        assert_eq!(
            f.send(conn, "accept 1"),
            "error accept your session token was found to be invalid. please relogin"
        );
        assert_eq!(
            f.send(conn, "unpick"),
            "error unpick you do not have a table assigned"
        );
        assert_eq!(
            f.send(conn, "complete 0"),
            "error complete you are not assigned to any table"
        );
        assert_eq!(
            f.send(conn, "cancel 0"),
            "error cancel you are not assigned to any table"
        );
        assert_eq!(
            f.send(conn, &pick(1, "Ann")),
            "error pick the provided token does not belong to any staff member"
        );
    }
    // The ticket stays Ann's; picking as someone else clears the session.
    assert_eq!(f.board.ticket(0).unwrap().staff.as_deref(), Some("Ann"));
    f.send(bob, "unpick");
    assert_eq!(f.send(ann, &pick(1, "Bob")), "success pick 1");
    assert_eq!(f.send(ann, "accept 1"), "success claimed 1");
    // Re-adding the name gives the old tickets back, with a new token.
    f.board.add_staff("Ann", test_hash("fresh")).unwrap();
    assert_eq!(
        f.send(ann2, "accept 1"),
        "error accept your session token was found to be invalid. please relogin"
    );
    assert_eq!(f.send(ann2, "pick 3 fresh"), "success pick 3");
    assert_eq!(f.send(ann2, "complete 0"), "success complete 0");
}

#[test]
fn staff_accounts() {
    let mut b = TicketBoard::new(4, test_hash);
    assert_eq!(b.add_staff("Ann", test_hash("a")), Ok(()));
    assert_eq!(
        b.add_staff("Ann", test_hash("b")),
        Err(StaffError::AlreadyExists)
    );
    for bad in ["", "{}"] {
        assert_eq!(
            b.add_staff(bad, test_hash("c")),
            Err(StaffError::InvalidName)
        );
    }
    let long = "n".repeat(MAX_STAFF_NAME_LEN + 1);
    assert_eq!(
        b.add_staff(&long, test_hash("c")),
        Err(StaffError::InvalidName)
    );
    assert_eq!(b.add_staff("Zed", test_hash("z")), Ok(()));
    assert_eq!(b.add_staff("Bob", test_hash("b")), Ok(()));
    assert_eq!(b.staff_names(), ["Ann", "Bob", "Zed"]);
    assert_eq!(b.tables(), 4);
    let out = b.remove_staff("Zed").unwrap();
    assert!(out.is_empty(), "no table, nothing to say");
    assert_eq!(b.remove_staff("Zed"), Err(StaffError::NotFound));
}

#[test]
fn records_are_what_changed() {
    let mut f = Floor::new(4, &["Ann"]);
    let ann = f.staff();
    let kiosk = f.kiosk();
    f.send(kiosk, "new v@x.com Vera");
    let ticket = |state, staff: Option<&str>, end| Ticket {
        id: 0,
        email: "v@x.com".into(),
        name: "Vera".into(),
        staff: staff.map(str::to_owned),
        start: 1_569_903_139,
        end,
        state,
    };
    assert_eq!(
        std::mem::take(&mut f.records),
        [
            TicketRecord::VisitorUpserted {
                email: "v@x.com".into(),
                name: "Vera".into()
            },
            TicketRecord::TicketUpserted(ticket(TicketState::Waiting, None, None)),
        ]
    );
    // The same name again: the visitor is unchanged, only the ticket is new.
    f.send(kiosk, "new v@x.com Vera");
    assert!(matches!(
        &f.records[..],
        [TicketRecord::TicketUpserted(Ticket { id: 1, .. })]
    ));
    f.records.clear();
    f.send(ann, &pick(0, "Ann"));
    f.send(ann, "accept 5");
    f.send(kiosk, "query v@x.com");
    f.send(ann, "unpick");
    assert!(
        f.records.is_empty(),
        "seating and refusals are not persisted"
    );
    f.send(ann, &pick(0, "Ann"));
    f.send(ann, "accept 0");
    f.send(ann, "accept 0");
    assert_eq!(
        std::mem::take(&mut f.records),
        [TicketRecord::TicketUpserted(ticket(
            TicketState::Claimed,
            Some("Ann"),
            None
        ))]
    );
    f.now += 5;
    f.send(ann, "cancel 0");
    assert_eq!(
        std::mem::take(&mut f.records),
        [TicketRecord::TicketUpserted(ticket(
            TicketState::Cancelled,
            Some("Ann"),
            Some(1_569_903_144)
        ))]
    );
}

#[test]
fn every_message_is_serialized_once() {
    let mut f = Floor::new(4, &["Ann"]);
    let a = f.staff();
    let b = f.staff();
    let kiosk = f.kiosk();
    f.board.handle(kiosk, "new v@x.com V", 0);
    // The `taken` frame sent to each table-less console is one allocation.
    let out = f.board.handle(a, &pick(1, "Ann"), 0);
    let taken: Vec<_> = out
        .messages
        .iter()
        .filter(|(_, m)| m.starts_with(b"taken"))
        .collect();
    assert_eq!(taken.len(), 1);
    let out = f.board.handle(a, "unpick", 0);
    let taken: Vec<_> = out
        .messages
        .iter()
        .filter(|(_, m)| m.starts_with(b"taken"))
        .map(|(t, m)| (*t, m.as_ptr()))
        .collect();
    assert_eq!(taken.len(), 2);
    assert_eq!(taken[0].1, taken[1].1);
    assert_eq!(
        taken.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        [Target::Conn(a), Target::Conn(b)]
    );
    // A waiting ticket's `new` frame is the one broadcast when it was made.
    let first = f.board.connect(100, Role::Staff);
    let second = f.board.connect(101, Role::Staff);
    assert_eq!(first.messages[1].1.as_ptr(), second.messages[1].1.as_ptr());
}

#[test]
fn frames_from_unknown_connections_do_nothing() {
    let mut b = TicketBoard::new(4, test_hash);
    assert!(b.handle(9, "new a@b c", 0).is_empty());
    assert!(b.disconnect(9).is_empty());
    assert_eq!(b.next_ticket_id(), 0);
}

#[test]
fn connecting_an_open_id_again_replaces_it() {
    let mut b = TicketBoard::new(4, test_hash);
    b.add_staff("Ann", test_hash("t")).unwrap();
    b.connect(1, Role::Staff);
    b.connect(2, Role::Display);
    b.handle(1, "pick 2 t", 0);
    let out = b.connect(1, Role::Kiosk);
    assert_eq!(
        out.messages,
        [(Target::AllDisplays, bytes::Bytes::from("unpick 2"))]
    );
    assert_eq!(b.role_of(1), Some(Role::Kiosk));
    assert_eq!(b.taken_tables(), Vec::<u32>::new());
}

/// Folds records as a store would (upserts, last one wins) and restores.
pub(super) fn restore_from(
    tables: u32,
    staff: Vec<StaffAccount>,
    records: &[TicketRecord],
) -> TicketBoard {
    let mut tickets = std::collections::BTreeMap::new();
    let mut visitors = std::collections::BTreeMap::new();
    let mut next_id = 0;
    for r in records {
        match r {
            TicketRecord::TicketUpserted(t) => {
                tickets.insert(t.id, t.clone());
            }
            TicketRecord::VisitorUpserted { email, name } => {
                visitors.insert(email.clone(), name.clone());
            }
            TicketRecord::TicketsForgotten { ids, next_id: n } => {
                for id in ids {
                    tickets.remove(id);
                }
                next_id = next_id.max(*n);
            }
            TicketRecord::VisitorsForgotten { emails } => {
                for email in emails {
                    visitors.remove(email);
                }
            }
        }
    }
    TicketBoard::restore(
        tables,
        test_hash,
        staff,
        tickets.into_values().collect(),
        visitors.into_iter().collect(),
        next_id,
    )
}

/// The records of forgetting tickets `ids` and, with them, the visitors
/// `emails`.
fn forgotten(ids: &[u64], next_id: u64, emails: &[&str]) -> Vec<TicketRecord> {
    vec![
        TicketRecord::TicketsForgotten {
            ids: ids.to_vec(),
            next_id,
        },
        TicketRecord::VisitorsForgotten {
            emails: emails.iter().map(|e| e.to_string()).collect(),
        },
    ]
}

#[test]
fn closed_tickets_are_forgotten_after_their_time_and_their_ids_stay_used() {
    let mut f = Floor::new(4, &["Ann"]);
    let ann = f.staff();
    let kiosk = f.kiosk();
    for n in 0..4 {
        f.send(kiosk, &format!("new v{n}@x.com V"));
    }
    f.send(ann, &pick(0, "Ann"));
    for cmd in ["accept 0", "accept 1", "accept 2", "complete 0", "cancel 1"] {
        f.send(ann, cmd);
    }
    f.now += 100;
    f.send(ann, "complete 2");
    f.drain_all();
    let closed_at = f.now - 100;
    // Only closed tickets that ended before the cutoff go, at most `max`.
    assert!(f.board.forget_closed(closed_at, 10).records.is_empty());
    let out = f.board.forget_closed(closed_at + 1, 1);
    assert!(out.messages.is_empty());
    // Each visitor goes with their last ticket.
    assert_eq!(out.records, forgotten(&[0], 4, &["v0@x.com"]));
    f.records.extend(out.records);
    let out = f.board.forget_closed(closed_at + 1, 10);
    assert_eq!(out.records, forgotten(&[1], 4, &["v1@x.com"]));
    f.records.extend(out.records);
    assert_eq!(f.board.visitor_name("v0@x.com"), None);
    assert_eq!(f.board.visitor_name("v2@x.com"), Some("V"));
    assert_eq!(
        f.board.tickets().map(|t| t.id).collect::<Vec<_>>(),
        [2, 3],
        "the later-closed and the waiting ticket stay"
    );
    f.board.check_invariants();
    // A forgotten id is still a closed ticket to every command.
    for (cmd, word) in [
        ("accept 0", "accept"),
        ("complete 1", "complete"),
        ("cancel 0", "cancel"),
    ] {
        assert_eq!(
            f.send(ann, cmd),
            format!("error {word} the ticket has already been completed or cancelled")
        );
    }
    assert_eq!(
        f.send(ann, "accept 4"),
        "error accept ticket id does not exist"
    );
    // Forgetting the newest ids does not let a restart hand them out again.
    f.now += 100;
    f.send(ann, "accept 3");
    f.send(ann, "cancel 3");
    f.send(ann, "complete 2");
    let out = f.board.forget_closed(f.now + 1, 10);
    assert_eq!(
        out.records,
        forgotten(&[2, 3], 4, &["v2@x.com", "v3@x.com"])
    );
    f.records.extend(out.records);
    let restored = restore_from(4, vec![], &f.records);
    assert_eq!(restored.tickets().count(), 0);
    assert_eq!(restored.visitors().count(), 0);
    assert_eq!(restored.next_ticket_id(), 4);
}

#[test]
fn a_visitor_stays_while_a_ticket_of_theirs_does() {
    let mut f = Floor::new(4, &["Ann"]);
    let ann = f.staff();
    let kiosk = f.kiosk();
    f.send(kiosk, "new anna@x.com Anna");
    f.send(kiosk, "new anna@x.com Anna");
    f.send(ann, &pick(0, "Ann"));
    f.send(ann, "accept 0");
    f.send(ann, "complete 0");
    f.drain_all();
    // Her first ticket goes; the second still waits, so she is remembered.
    let out = f.board.forget_closed(f.now + 1, 10);
    assert_eq!(
        out.records,
        [TicketRecord::TicketsForgotten {
            ids: vec![0],
            next_id: 2
        }]
    );
    assert_eq!(f.send(kiosk, "query anna@x.com"), "success query Anna");
    f.send(ann, "accept 1");
    f.send(ann, "cancel 1");
    let out = f.board.forget_closed(f.now + 1, 10);
    assert_eq!(
        out.records[1],
        TicketRecord::VisitorsForgotten {
            emails: vec!["anna@x.com".into()]
        }
    );
    assert_eq!(
        f.send(kiosk, "query anna@x.com"),
        "error query visitor email does not exist"
    );
    f.board.check_invariants();
}

#[test]
fn visitors_restored_without_a_ticket_are_forgotten_once() {
    // A store written before visitors went with their tickets: Bo's
    // tickets were forgotten, his name stayed.
    let records = [
        TicketRecord::VisitorUpserted {
            email: "bo@x.com".into(),
            name: "Bo".into(),
        },
        TicketRecord::VisitorUpserted {
            email: "cy@x.com".into(),
            name: "Cy".into(),
        },
        TicketRecord::TicketUpserted(Ticket {
            id: 7,
            email: "cy@x.com".into(),
            name: "Cy".into(),
            staff: None,
            start: 1_569_903_139,
            end: None,
            state: TicketState::Waiting,
        }),
    ];
    let mut board = restore_from(4, vec![], &records);
    let out = board.forget_closed(0, 10);
    assert_eq!(
        out.records,
        [TicketRecord::VisitorsForgotten {
            emails: vec!["bo@x.com".into()]
        }]
    );
    assert_eq!(board.visitor_name("cy@x.com"), Some("Cy"));
    assert!(board.forget_closed(0, 10).records.is_empty(), "only once");
}

#[test]
fn restore_from_records_behaves_the_same() {
    let mut f = Floor::new(8, &["Ann", "Bob"]);
    let ann = f.staff();
    let bob = f.staff();
    let kiosk = f.kiosk();
    for n in 0..5 {
        f.send(kiosk, &format!("new v{n}@x.com Visitor {n}"));
    }
    f.send(kiosk, "new v0@x.com Renamed");
    f.send(ann, &pick(1, "Ann"));
    f.send(bob, &pick(2, "Bob"));
    f.send(ann, "accept 0");
    f.send(ann, "accept 1");
    f.send(bob, "accept 2");
    f.send(ann, "complete 1");
    f.send(bob, "cancel 2");

    let staff = vec![
        StaffAccount {
            name: "Ann".into(),
            token_hash: test_hash(&token_of("Ann")),
        },
        StaffAccount {
            name: "Bob".into(),
            token_hash: test_hash(&token_of("Bob")),
        },
    ];
    let restored = restore_from(8, staff, &f.records);
    restored.check_invariants();
    assert_eq!(
        restored.tickets().collect::<Vec<_>>(),
        f.board.tickets().collect::<Vec<_>>()
    );
    assert_eq!(restored.next_ticket_id(), 6);
    assert_eq!(restored.staff_names(), ["Ann", "Bob"]);
    assert_eq!(restored.taken_tables(), Vec::<u32>::new());

    let mut g = Floor::with_board(restored);
    let ann = g.staff();
    let kiosk = g.kiosk();
    let d = g.display();
    assert_eq!(
        g.recv(ann),
        [
            "taken".to_string(),
            format!("new {}", waiting(3, "v3@x.com", "Visitor 3")),
            format!("new {}", waiting(4, "v4@x.com", "Visitor 4")),
            format!("new {}", waiting(5, "v0@x.com", "Renamed")),
        ]
    );
    assert_eq!(g.send(kiosk, "query v0@x.com"), "success query Renamed");
    assert_eq!(
        g.send(kiosk, "new n@x.com New"),
        format!("success new {}", waiting(6, "n@x.com", "New"))
    );
    assert_eq!(g.send(ann, &pick(4, "Ann")), "success pick 4");
    assert_eq!(g.recv(d), ["pick 4", "claimed 4 0"]);
    assert_eq!(g.send(ann, "complete 0"), "success complete 0");
    assert_eq!(
        g.send(ann, "accept 1"),
        "error accept the ticket has already been completed or cancelled"
    );
    assert_eq!(
        g.send(ann, "cancel 2"),
        "error cancel you do not own this ticket"
    );
}

#[test]
fn restore_never_reuses_an_id() {
    let t = |id| Ticket {
        id,
        email: "e".into(),
        name: "n".into(),
        staff: None,
        start: 0,
        end: None,
        state: TicketState::Waiting,
    };
    // The counter wins when it is ahead (a store that pruned old tickets).
    let b = TicketBoard::restore(4, test_hash, vec![], vec![t(3)], vec![], 10);
    assert_eq!(b.next_ticket_id(), 10);
    let b = TicketBoard::restore(4, test_hash, vec![], vec![t(3), t(7)], vec![], 2);
    assert_eq!(b.next_ticket_id(), 8);
    // An exhausted id space refuses rather than wraps.
    let mut b = TicketBoard::restore(4, test_hash, vec![], vec![t(u64::MAX)], vec![], 0);
    assert_eq!(b.next_ticket_id(), u64::MAX);
    b.connect(1, Role::Kiosk);
    let out = b.handle(1, "new a@b c", 0);
    assert_eq!(&out.messages[0].1[..], b"error new malformed command");
    assert!(out.records.is_empty());
}
