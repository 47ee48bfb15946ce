use super::*;

/// Segments of 4 KiB: 7 records of 480 bytes of JSON each.
const SMALL: u64 = 4096;

fn json(seq: u64, size: usize) -> Vec<u8> {
    let mut j = format!("{{\"code\":\"waiter_call\",\"table\":{seq},\"pad\":\"").into_bytes();
    j.resize(size.saturating_sub(2).max(j.len()), b'x');
    j.extend_from_slice(b"\"}");
    j
}

fn record(seq: u64, json: &[u8]) -> LogRecord<'_> {
    LogRecord {
        seq,
        hash: seq as u32 ^ 0xABCD,
        time_ms: 1_700_000_000_000 + seq as i64,
        json,
    }
}

/// Appends seqs `from..to` (one batch) with JSON of `size` bytes.
fn append(log: &mut EventLog, from: u64, to: u64, size: usize) {
    let jsons: Vec<Vec<u8>> = (from..to).map(|s| json(s, size)).collect();
    let records: Vec<LogRecord<'_>> = (from..to).zip(&jsons).map(|(s, j)| record(s, j)).collect();
    log.append(&records).unwrap();
}

fn seqs(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

fn open(dir: &Path, tail: u64) -> (EventLog, Vec<StoredEvent>) {
    EventLog::open_sized(dir, tail, SMALL).unwrap()
}

#[test]
fn events_come_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, events) = open(dir.path(), 0);
    assert!(events.is_empty());
    assert_eq!(log.last_seq(), None);
    append(&mut log, 0, 3, 60);
    append(&mut log, 3, 4, 60);
    assert_eq!(log.last_seq(), Some(3));
    drop(log);
    let (log, events) = open(dir.path(), 0);
    assert_eq!(seqs(&events), [0, 1, 2, 3]);
    for e in &events {
        assert_eq!(e.hash, e.seq as u32 ^ 0xABCD);
        assert_eq!(e.time_ms, 1_700_000_000_000 + e.seq as i64);
        assert_eq!(&e.json[..], &json(e.seq, 60)[..]);
    }
    assert_eq!(log.last_seq(), Some(3));
}

/// `holds_records` (the engine's check for a database lost beside its
/// log): no directory, an empty log, or segments only prepared hold none.
#[test]
fn holds_records_only_once_a_record_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    assert!(!EventLog::holds_records(&events).unwrap());
    let (mut log, _) = open(&events, 0);
    assert!(!EventLog::holds_records(&events).unwrap());
    std::fs::write(events.join("events-0000000099.log"), vec![0u8; 4096]).unwrap();
    std::fs::write(events.join("notes.txt"), b"not a segment").unwrap();
    assert!(!EventLog::holds_records(&events).unwrap());
    append(&mut log, 0, 1, 60);
    assert!(EventLog::holds_records(&events).unwrap());
}

/// A segment that cannot be read is an error naming it.
#[test]
fn an_unreadable_segment_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir_all(events.join("events-0000000003.log")).unwrap();
    let e = match EventLog::open(&events, 0) {
        Ok(_) => panic!("a directory read as a segment"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("events-0000000003.log: "), "{e}");
    let e = EventLog::holds_records(&events).unwrap_err().to_string();
    assert!(e.contains("events-0000000003.log: "), "{e}");
}

#[test]
fn a_new_log_lives_in_its_own_directory() {
    let dir = tempfile::tempdir().unwrap();
    let events_dir = dir.path().join("events");
    let (mut log, _) = open(&events_dir, 0);
    append(&mut log, 0, 1, 60);
    assert_eq!(segment_files(&events_dir).len(), 1);
}

#[test]
fn a_batch_spans_segments_and_the_tail_drops_old_events() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), 0);
    append(&mut log, 0, 20, 480);
    drop(log);
    let (_, events) = open(dir.path(), 0);
    assert_eq!(seqs(&events), (0..20).collect::<Vec<_>>());
    let (_, events) = open(dir.path(), 13);
    assert_eq!(seqs(&events), (13..20).collect::<Vec<_>>());
}

#[test]
fn the_log_moves_from_a_growing_segment_to_a_prepared_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), 0);
    // Small appends to a new log prepare nothing.
    append(&mut log, 0, 1, 60);
    assert!(log.preparing.is_none());
    assert!(!log.active_prepared());
    // Past a sixteenth of a segment, one is prepared, and the next append
    // goes there.
    append(&mut log, 1, 2, 480);
    log.wait_prepared();
    append(&mut log, 2, 3, 60);
    assert!(log.active_prepared());
    assert_eq!(
        std::fs::metadata(&log.active().path).unwrap().len(),
        SMALL,
        "a prepared segment is written full"
    );
    drop(log);
    let (_, events) = open(dir.path(), 0);
    assert_eq!(seqs(&events), [0, 1, 2]);
}

#[test]
fn a_torn_record_ends_its_segment_and_writing_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), 0);
    append(&mut log, 0, 3, 100);
    drop(log);
    // A crash in the middle of the third record's write.
    let path = &segment_files(dir.path())[0];
    let mut bytes = std::fs::read(path).unwrap();
    let third = 2 * (HEAD + FIXED + 100);
    bytes[third + HEAD + 50] ^= 0xFF;
    std::fs::write(path, &bytes).unwrap();
    let (mut log, events) = open(dir.path(), 0);
    assert_eq!(seqs(&events), [0, 1]);
    assert_eq!(log.last_seq(), Some(1));
    // The third event's number is given again (it was never acknowledged),
    // in a segment of its own.
    append(&mut log, 2, 4, 40);
    assert_eq!(segment_files(dir.path()).len(), 2);
    drop(log);
    let (_, events) = open(dir.path(), 0);
    assert_eq!(seqs(&events), [0, 1, 2, 3]);
    assert_eq!(&events[2].json[..], &json(2, 40)[..]);
}

/// A crash tore a record, the restart gave its number to a new event of the
/// same size, and that segment was later reused: the old records past the
/// tear number on exactly from the new ones, and only the epoch tells them
/// apart.
#[test]
fn a_reused_segment_never_joins_its_old_records() {
    let jsons: Vec<Vec<u8>> = (0..4).map(|s| json(s, 100)).collect();
    let mut bytes = Vec::new();
    for (s, j) in jsons.iter().enumerate() {
        encode(&mut bytes, 7, &record(s as u64, j));
    }
    let (run, _) = read_run(&bytes);
    assert_eq!(seqs(&run), [0, 1, 2, 3]);
    let mut newer = Vec::new();
    for (s, j) in jsons.iter().enumerate().take(2) {
        encode(&mut newer, 8, &record(s as u64, j));
    }
    bytes[..newer.len()].copy_from_slice(&newer);
    let (run, len) = read_run(&bytes);
    assert_eq!(seqs(&run), [0, 1]);
    assert_eq!(len as usize, newer.len());
}

#[test]
fn a_recycled_segment_never_brings_back_its_old_events() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), 0);
    append(&mut log, 0, 1, 480); // a growing segment; one is prepared
    log.wait_prepared();
    append(&mut log, 1, 8, 480); // fills the prepared one
    log.wait_prepared();
    append(&mut log, 8, 10, 480); // the next prepared one
    assert!(log.active_prepared());
    // The caller persisted tail 8: the growing segment is deleted, the
    // first prepared one kept as a spare.
    log.retire(8).unwrap();
    assert_eq!(log.spare.len(), 1);
    assert_eq!(segment_files(dir.path()).len(), 2);
    drop(log);
    // Reopened with that tail, the spare's events stay gone, and it is
    // written again: over the start of its old records.
    let (mut log, events) = open(dir.path(), 8);
    assert_eq!(seqs(&events), [8, 9]);
    assert!(log.active_prepared());
    append(&mut log, 10, 12, 480);
    assert_eq!(segment_files(dir.path()).len(), 2, "the spare was reused");
    drop(log);
    for tail in [8, 0] {
        let (_, events) = open(dir.path(), tail);
        assert_eq!(seqs(&events), (8..12).collect::<Vec<_>>(), "tail {tail}");
    }
}

#[test]
fn retired_segments_beyond_the_spares_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), 0);
    for i in 0..6 {
        append(&mut log, i * 7, i * 7 + 7, 480);
        log.wait_prepared();
    }
    append(&mut log, 42, 43, 480);
    assert!(segment_files(dir.path()).len() >= 6);
    log.retire(42).unwrap();
    assert_eq!(log.spare.len(), MAX_SPARE);
    assert_eq!(segment_files(dir.path()).len(), 1 + MAX_SPARE);
    drop(log);
    let (_, events) = open(dir.path(), 42);
    assert_eq!(seqs(&events), [42]);
}

#[test]
fn an_event_larger_than_a_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), 0);
    let big = vec![b'x'; SMALL as usize];
    let err = log.append(&[record(0, &big)]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever byte of the log a crash tears, reopening yields every
    /// record written before the torn one, in order, and not the torn one.
    #[test]
    fn a_torn_byte_anywhere_loses_only_what_follows(
        sizes in proptest::collection::vec(20usize..700, 1..40),
        tear in 0usize..1_000_000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), 0);
        for (i, size) in sizes.iter().enumerate() {
            append(&mut log, i as u64, i as u64 + 1, *size);
        }
        drop(log);
        // Segments in write order: by the first record of their runs.
        let mut runs: Vec<(u64, PathBuf, usize)> = segment_files(dir.path())
            .into_iter()
            .filter_map(|f| {
                let (run, len) = read_run(&std::fs::read(&f).unwrap());
                run.first().map(|e| (e.seq, f, len as usize))
            })
            .collect();
        runs.sort();
        let total: usize = runs.iter().map(|r| r.2).sum();
        let mut at = tear % total;
        let mut torn_file = 0;
        while at >= runs[torn_file].2 {
            at -= runs[torn_file].2;
            torn_file += 1;
        }
        let path = &runs[torn_file].1;
        let mut bytes = std::fs::read(path).unwrap();
        bytes[at] ^= 0x5A;
        std::fs::write(path, &bytes).unwrap();
        // The torn record: the one whose bytes hold `at`.
        let mut offset = 0;
        let mut torn_seq = runs[torn_file].0;
        loop {
            let rec = HEAD + FIXED + json(torn_seq, sizes[torn_seq as usize]).len();
            if at < offset + rec {
                break;
            }
            offset += rec;
            torn_seq += 1;
        }
        let (_, events) = open(dir.path(), 0);
        let got = seqs(&events);
        proptest::prop_assert!(!got.contains(&torn_seq), "torn record {torn_seq} read back: {got:?}");
        for s in 0..torn_seq {
            proptest::prop_assert!(got.contains(&s), "record {s} before the tear lost: {got:?}");
        }
        proptest::prop_assert!(got.windows(2).all(|w| w[0] < w[1]));
    }
}

#[test]
fn odd_files_in_the_directory_are_no_trouble() {
    let dir = tempfile::tempdir().unwrap();
    // A number no segment has (more than ten digits), a stranger, a
    // leftover of a preparation cut short.
    std::fs::write(dir.path().join("events-18446744073709551615.log"), b"x").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    std::fs::write(dir.path().join("events-0000000007.log.part"), [0u8; 64]).unwrap();
    let (mut log, events) = open(dir.path(), 0);
    assert!(events.is_empty());
    append(&mut log, 0, 2, 60);
    drop(log);
    assert!(!dir.path().join("events-0000000007.log.part").exists());
    // The leftover's number is not given out again: a preparing thread of a
    // process that let the directory go late may still be working on it.
    assert!(dir.path().join("events-0000000008.log").exists());
    assert!(dir.path().join("notes.txt").exists());
    assert!(dir.path().join("events-18446744073709551615.log").exists());
    let (_, events) = open(dir.path(), 0);
    assert_eq!(seqs(&events), [0, 1]);
}

#[test]
fn a_run_ends_cleanly_only_where_an_append_ended() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), 0);
    append(&mut log, 0, 2, 80);
    append(&mut log, 2, 3, 80);
    drop(log);
    let path = &segment_files(dir.path())[0];
    let bytes = std::fs::read(path).unwrap();
    let (run, len) = read_run(&bytes);
    assert_eq!(seqs(&run), [0, 1, 2]);
    assert!(clean_end(&bytes, len), "after the last append");
    // The same segment reused: new records over the start of old ones end
    // at their terminator, not in the middle of an old record.
    let mut reused = bytes.clone();
    let mut newer = Vec::new();
    encode(&mut newer, 9, &record(7, &json(7, 30)));
    newer.extend_from_slice(&[0; HEAD]);
    reused[..newer.len()].copy_from_slice(&newer);
    let (run, len) = read_run(&reused);
    assert_eq!(seqs(&run), [7]);
    assert!(clean_end(&reused, len));
    // A record torn in the middle of the run.
    let mut torn = bytes.clone();
    torn[HEAD + FIXED + 10] ^= 1;
    let (run, len) = read_run(&torn);
    assert!(run.is_empty());
    assert!(!clean_end(&torn, len));
}

/// A preparation never replaces a segment that holds its name, however it
/// got there (another process on the directory after a late shutdown).
#[test]
fn a_preparation_never_replaces_a_segment_under_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events-0000000003.log");
    std::fs::write(&path, b"records of another log").unwrap();
    let part = dir.path().join("events-0000000003.log.part");
    let made = super::prepare(dir.path(), &part, 4096);
    assert!(made.is_err(), "prepared over an existing segment");
    assert_eq!(std::fs::read(&path).unwrap(), b"records of another log");
}
