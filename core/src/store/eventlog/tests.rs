use super::*;

/// Segments of 4 KiB: a few records each.
const SMALL: u64 = 4096;

fn json(seq: u64, size: usize) -> Vec<u8> {
    let mut j = format!("{{\"code\":\"waiter_call\",\"table\":{seq},\"pad\":\"").into_bytes();
    j.resize(size.saturating_sub(2).max(j.len()), b'x');
    j.extend_from_slice(b"\"}");
    j
}

/// Appends seqs `from..to` (one batch) with JSON of `size` bytes.
fn append(log: &mut EventLog, from: u64, to: u64, size: usize) {
    let jsons: Vec<Vec<u8>> = (from..to).map(|s| json(s, size)).collect();
    let records: Vec<LogRecord<'_>> = (from..to)
        .zip(&jsons)
        .map(|(seq, json)| LogRecord {
            seq,
            hash: seq as u32 ^ 0xABCD,
            time_ms: 1_700_000_000_000 + seq as i64,
            json,
        })
        .collect();
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

#[test]
fn events_come_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, events) = EventLog::open_sized(dir.path(), 0, SMALL).unwrap();
    assert!(events.is_empty());
    assert_eq!(log.last_seq(), None);
    append(&mut log, 0, 3, 60);
    append(&mut log, 3, 4, 60);
    assert_eq!(log.last_seq(), Some(3));
    drop(log);
    let (log, events) = EventLog::open_sized(dir.path(), 0, SMALL).unwrap();
    assert_eq!(seqs(&events), [0, 1, 2, 3]);
    for e in &events {
        assert_eq!(e.hash, e.seq as u32 ^ 0xABCD);
        assert_eq!(e.time_ms, 1_700_000_000_000 + e.seq as i64);
        assert_eq!(&e.json[..], &json(e.seq, 60)[..]);
    }
    assert_eq!(log.last_seq(), Some(3));
}

#[test]
fn a_batch_spans_segments_and_the_tail_drops_old_events() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = EventLog::open_sized(dir.path(), 0, SMALL).unwrap();
    // ~500-byte records: 8 per 4 KiB segment.
    append(&mut log, 0, 20, 480);
    assert_eq!(segment_files(dir.path()).len(), 3);
    drop(log);
    let (_, events) = EventLog::open_sized(dir.path(), 0, SMALL).unwrap();
    assert_eq!(seqs(&events), (0..20).collect::<Vec<_>>());
    let (_, events) = EventLog::open_sized(dir.path(), 13, SMALL).unwrap();
    assert_eq!(seqs(&events), (13..20).collect::<Vec<_>>());
}

#[test]
fn a_torn_record_ends_the_log_and_is_written_over() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = EventLog::open_sized(dir.path(), 0, SMALL).unwrap();
    append(&mut log, 0, 3, 300);
    drop(log);
    // A crash in the middle of the third record's write.
    let path = &segment_files(dir.path())[0];
    let mut bytes = std::fs::read(path).unwrap();
    let third = 2 * (HEAD + FIXED + 300);
    bytes[third + HEAD + 100] ^= 0xFF;
    std::fs::write(path, &bytes).unwrap();
    let (mut log, events) = EventLog::open_sized(dir.path(), 0, SMALL).unwrap();
    assert_eq!(seqs(&events), [0, 1]);
    assert_eq!(log.last_seq(), Some(1));
    // The next record goes where the torn one was; a shorter one leaves
    // the torn one's tail behind it, which must not read as a record.
    append(&mut log, 2, 3, 40);
    drop(log);
    let (_, events) = EventLog::open_sized(dir.path(), 0, SMALL).unwrap();
    assert_eq!(seqs(&events), [0, 1, 2]);
    assert_eq!(&events[2].json[..], &json(2, 40)[..]);
}

#[test]
fn a_recycled_segment_never_brings_back_its_old_events() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = EventLog::open_sized(dir.path(), 0, SMALL).unwrap();
    append(&mut log, 0, 8, 480); // fills the first segment
    append(&mut log, 8, 10, 480); // starts the second
    assert_eq!(segment_files(dir.path()).len(), 2);
    // The caller persisted tail 8: the first segment is spare now.
    log.retire(8).unwrap();
    drop(log);
    // Reopened with that tail, the spare's events stay gone.
    let (mut log, events) = EventLog::open_sized(dir.path(), 8, SMALL).unwrap();
    assert_eq!(seqs(&events), [8, 9]);
    // Fill the second segment: the next batch reuses the spare, writing
    // two short records over the start of its old ones.
    append(&mut log, 10, 16, 480);
    append(&mut log, 16, 18, 100);
    assert_eq!(segment_files(dir.path()).len(), 2, "the spare was reused");
    drop(log);
    let (_, events) = EventLog::open_sized(dir.path(), 8, SMALL).unwrap();
    assert_eq!(seqs(&events), (8..18).collect::<Vec<_>>());
    // Even without the tail, the old records after the new ones break the
    // run, so only the first record of a segment could be stale, and it
    // was overwritten.
    let (_, events) = EventLog::open_sized(dir.path(), 0, SMALL).unwrap();
    assert_eq!(seqs(&events), (8..18).collect::<Vec<_>>());
}

#[test]
fn retired_segments_beyond_the_spares_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = EventLog::open_sized(dir.path(), 0, SMALL).unwrap();
    append(&mut log, 0, 48, 480); // six segments
    assert_eq!(segment_files(dir.path()).len(), 6);
    log.retire(40).unwrap(); // five are below the tail
    assert_eq!(segment_files(dir.path()).len(), 1 + MAX_SPARE);
    drop(log);
    let (_, events) = EventLog::open_sized(dir.path(), 40, SMALL).unwrap();
    assert_eq!(seqs(&events), (40..48).collect::<Vec<_>>());
}

#[test]
fn an_event_larger_than_a_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = EventLog::open_sized(dir.path(), 0, SMALL).unwrap();
    let big = vec![b'x'; SMALL as usize];
    let err = log
        .append(&[LogRecord {
            seq: 0,
            hash: 0,
            time_ms: 0,
            json: &big,
        }])
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever byte of the log a crash tears, reopening yields every
    /// record written before the torn one, in order, and nothing else.
    #[test]
    fn a_torn_byte_anywhere_loses_only_what_follows(
        sizes in proptest::collection::vec(20usize..700, 1..40),
        tear in 0usize..1_000_000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = EventLog::open_sized(dir.path(), 0, SMALL).unwrap();
        for (i, size) in sizes.iter().enumerate() {
            append(&mut log, i as u64, i as u64 + 1, *size);
        }
        drop(log);
        let files = segment_files(dir.path());
        // Files in write order (names count up while none is recycled).
        let mut total = 0;
        let lens: Vec<usize> = files.iter().map(|f| {
            let (_, len) = read_run(&std::fs::read(f).unwrap());
            total += len as usize;
            len as usize
        }).collect();
        let mut at = tear % total.max(1);
        let mut torn_file = 0;
        while at >= lens[torn_file] {
            at -= lens[torn_file];
            torn_file += 1;
        }
        let mut bytes = std::fs::read(&files[torn_file]).unwrap();
        bytes[at] ^= 0x5A;
        std::fs::write(&files[torn_file], &bytes).unwrap();
        // The torn record: the one whose bytes hold `at`.
        let before: usize = lens[..torn_file].iter().sum::<usize>() + at;
        let mut offset = 0;
        let mut torn_seq = 0;
        for (i, size) in sizes.iter().enumerate() {
            // The runs, end to end, are the records in order.
            let rec = HEAD + FIXED + json(i as u64, *size).len();
            if before < offset + rec {
                torn_seq = i;
                break;
            }
            offset += rec;
        }
        let (_, events) = EventLog::open_sized(dir.path(), 0, SMALL).unwrap();
        let got = seqs(&events);
        // Every record before the torn one survives and the torn one does
        // not; later ones in its segment go with it, those of later
        // segments are whole and come back, in order.
        proptest::prop_assert!(!got.contains(&(torn_seq as u64)), "torn record {torn_seq} read back: {got:?}");
        for s in 0..torn_seq as u64 {
            proptest::prop_assert!(got.contains(&s), "record {s} before the tear lost: {got:?}");
        }
        proptest::prop_assert!(got.windows(2).all(|w| w[0] < w[1]));
    }
}
