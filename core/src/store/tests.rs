//! The store on a real temporary directory.

use super::*;

#[test]
fn commits_survive_reopen_and_schema_is_versioned() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = Store::open(dir.path()).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        s.commit(&[
            StoreOp::InsertEvent {
                seq: 1,
                hash: 0xabc,
                time_ms: 10,
                json: Bytes::from_static(b"{}"),
            },
            StoreOp::InsertEvent {
                seq: 2,
                hash: 0xdef,
                time_ms: 20,
                json: Bytes::from_static(b"[]"),
            },
            StoreOp::PutTable(TableRepr {
                id: 3,
                name: "Стол".into(),
                max_guests: 4,
            }),
            StoreOp::PutMeta("k".into(), "v".into()),
        ])
        .unwrap();
        s.commit(&[StoreOp::PutTable(TableRepr {
            id: 3,
            name: "3".into(),
            max_guests: 5,
        })])
        .unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    let ev = s.load_events(10).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].seq, ev[0].hash, &ev[0].json[..]),
        (2, 0xdef, &b"[]"[..])
    );
    assert_eq!(s.max_event_seq().unwrap(), Some(2));
    assert_eq!(
        s.load_tables().unwrap(),
        [TableRepr {
            id: 3,
            name: "3".into(),
            max_guests: 5
        }]
    );
    assert_eq!(s.meta("k").unwrap().as_deref(), Some("v"));
    assert_eq!(s.meta("missing").unwrap(), None);
}

#[test]
fn a_failed_batch_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path()).unwrap();
    let ev = |seq| StoreOp::InsertEvent {
        seq,
        hash: 1,
        time_ms: 1,
        json: Bytes::new(),
    };
    s.commit(&[ev(1)]).unwrap();
    // The duplicate primary key fails the whole batch, the new row included.
    assert!(s.commit(&[ev(2), ev(1)]).is_err());
    assert_eq!(s.max_event_seq().unwrap(), Some(1));
}

#[test]
fn expiry_deletes_older_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path()).unwrap();
    let ev = |seq| StoreOp::InsertEvent {
        seq,
        hash: 1,
        time_ms: 1,
        json: Bytes::new(),
    };
    s.commit(&[ev(1), ev(2), ev(3), StoreOp::ExpireEventsBefore(3)])
        .unwrap();
    assert_eq!(s.load_events(0).unwrap().len(), 1);
}

#[test]
fn a_second_writer_is_refused_but_readers_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let _s = Store::open(dir.path()).unwrap();
    match Store::open(dir.path()) {
        Err(StoreError::Locked(p)) => assert_eq!(p, dir.path()),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a second writer was allowed"),
    }
    assert!(Store::open_read_only(dir.path()).is_ok());
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        s.conn.pragma_update(None, "user_version", 99).unwrap();
    }
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::TooNew { found: 99, .. })
    ));
}

/// A store from before schema 6 keeps its orders in the places they had:
/// each one's `created_seq` becomes its stored `seq`.
#[test]
fn orders_from_schema_5_get_their_seq_as_created_seq() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A version 5 store: the column away, the version back.
        let s = Store::open(dir.path()).unwrap();
        s.conn
            .execute_batch(
                "ALTER TABLE orders DROP COLUMN created_seq;
                 INSERT INTO orders (uuid, name, order_type, location, state, created_ms,
                                     state_started_ms, located_ms, seq)
                 VALUES ('u1', '12', 'TO_GO', '', 'started', 1000, 1000, NULL, 7),
                        ('u2', '13', 'TO_GO', '', 'started', 1000, 1000, NULL, 4);",
            )
            .unwrap();
        s.conn.pragma_update(None, "user_version", 5).unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.schema_version().unwrap(), 6);
    let orders = s.load_orders().unwrap();
    assert_eq!(
        orders
            .iter()
            .map(|o| (o.uuid.as_str(), o.seq, o.created_seq))
            .collect::<Vec<_>>(),
        [("u2", 4, 4), ("u1", 7, 7)]
    );
}

#[test]
fn ticket_board_records_round_trip() {
    use crate::tickets::{StaffAccount, Ticket, TicketState};
    let dir = tempfile::tempdir().unwrap();
    let ticket = |id, state| Ticket {
        id,
        email: "e@x.com".into(),
        name: "Анна Б".into(),
        staff: (state != TicketState::Waiting).then(|| "Kim".to_string()),
        start: 1_570_000_000,
        end: matches!(state, TicketState::Completed | TicketState::Cancelled)
            .then_some(1_570_000_100),
        state,
    };
    {
        let mut s = Store::open(dir.path()).unwrap();
        s.commit(&[
            StoreOp::PutStaff(StaffAccount {
                name: "Kim".into(),
                token_hash: [7; 32],
            }),
            StoreOp::PutStaff(StaffAccount {
                name: "Lee".into(),
                token_hash: [8; 32],
            }),
            StoreOp::PutTicket(ticket(0, TicketState::Waiting)),
            StoreOp::PutTicket(ticket(1, TicketState::Claimed)),
            StoreOp::PutVisitor {
                email: "e@x.com".into(),
                name: "Анна Б".into(),
            },
            StoreOp::PutVisitor {
                email: "gone@x.com".into(),
                name: "Gone".into(),
            },
        ])
        .unwrap();
        s.commit(&[
            StoreOp::PutTicket(ticket(1, TicketState::Completed)),
            StoreOp::DeleteStaff("Lee".into()),
            StoreOp::ForgetVisitors(vec!["gone@x.com".into(), "never@x.com".into()]),
        ])
        .unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(
        s.load_staff().unwrap(),
        [StaffAccount {
            name: "Kim".into(),
            token_hash: [7; 32]
        }]
    );
    assert_eq!(
        s.load_tickets().unwrap(),
        [
            ticket(0, TicketState::Waiting),
            ticket(1, TicketState::Completed)
        ]
    );
    assert_eq!(
        s.load_visitors().unwrap(),
        [("e@x.com".to_string(), "Анна Б".to_string())]
    );
}

/// A data directory floorbell creates is its owner's only (the store holds
/// the QR and admin tokens); its missing parents get the usual mode.
#[test]
fn a_new_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("venue").join("data");
    let _lock = DirLock::acquire(&dir).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let usual = root.path().join("usual");
    std::fs::create_dir(&usual).unwrap();
    assert_eq!(mode(dir.parent().unwrap()), mode(&usual));
}

/// The database holds the QR and admin tokens, and the log guests' orders:
/// in a directory anyone may read (a systemd StateDirectory is 0755) their
/// files are still the owner's alone (until session 20 they were 0644).
#[test]
fn the_store_files_are_the_owners_alone_in_an_open_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut s = Store::open(dir.path()).unwrap();
    s.commit(&[StoreOp::PutMeta("admin".into(), "secret".into())])
        .unwrap();
    let events = dir.path().join("events");
    let (mut log, _) = eventlog::EventLog::open(&events, 0).unwrap();
    log.append(&[eventlog::LogRecord {
        seq: 0,
        hash: 1,
        time_ms: 2,
        json: b"{}",
    }])
    .unwrap();
    let mut checked = 0;
    for dir in [dir.path(), events.as_path()] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if !(name.starts_with("floorbell.db") || name.starts_with("events-")) {
                continue;
            }
            let mode = entry.metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{name}: {mode:o}");
            checked += 1;
        }
    }
    // The database, its WAL and shared memory, a segment.
    assert!(checked >= 4, "{checked} files checked");
}

/// A directory whose database path SQLite cannot take is refused with the
/// path's length and the limit (SQLite says only "unable to open database
/// file"); at the limit it opens.
#[test]
fn a_database_path_too_long_for_sqlite_is_named() {
    let base = std::fs::canonicalize(tempfile::tempdir().unwrap().keep()).unwrap();
    // The directory at which the database's full path is `len` bytes.
    let dir_for = |len: usize| {
        let mut dir = base.join(format!("d{len}"));
        let mut left = len - dir.as_os_str().len() - 1 - DB_FILE.len();
        while left > 0 {
            // Components of at most 200 bytes; never one of 0 bytes.
            let part = if left > 201 { 200 } else { left - 1 };
            dir.push("x".repeat(part));
            left -= part + 1;
        }
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(dir.join(DB_FILE).as_os_str().len(), len);
        dir
    };
    let fits = dir_for(MAX_DB_PATH);
    Store::open(&fits).expect("a path of MAX_DB_PATH bytes opens");
    Store::open_read_only(&fits).expect("and opens read-only");
    let long = dir_for(MAX_DB_PATH + 1);
    match Store::open(&long) {
        Err(StoreError::PathTooLong { len, .. }) => assert_eq!(len, MAX_DB_PATH + 1),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("opened a path SQLite cannot take"),
    }
    let message = Store::open_read_only(&long)
        .err()
        .expect("refused")
        .to_string();
    assert!(message.contains("is 505 bytes"), "{message}");
    assert!(message.contains("SQLite opens at most 504"), "{message}");
    std::fs::remove_dir_all(&base).unwrap();
}
