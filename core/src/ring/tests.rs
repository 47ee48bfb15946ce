//! The ring against a plain `Vec` model (proptest), and readers racing a
//! publisher on real threads.

use super::*;
use proptest::prelude::*;

const KEY: u128 = 0x5eed_5eed_0000_1111_2222_3333_4444_5555;

fn event(seq: u64, key: HashKey, time_ms: i64) -> QueuedEvent {
    QueuedEvent {
        seq,
        hash: key.encode(seq),
        time_ms,
        json: Bytes::from(format!("{{\"n\":{seq}}}")),
    }
}

#[test]
fn after_hash_returns_only_newer_events() {
    let key = HashKey::from_secret(KEY);
    let (q, mut p) = EventQueue::new(8, 1_000, key, 0);
    for seq in 0..5 {
        p.push(event(seq, key, 100));
    }
    let all = q.read_vec(Cursor::All, 100);
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    let after2 = q.read_vec(Cursor::After(key.encode(2)), 100);
    assert_eq!(after2.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
    assert!(q.read_vec(Cursor::After(key.encode(4)), 100).is_empty());
    // An unknown hash (here: one that a future event will get) gives everything.
    assert_eq!(q.read_vec(Cursor::After(key.encode(9)), 100).len(), 5);
}

#[test]
fn retention_hides_then_frees_old_events() {
    let key = HashKey::from_secret(KEY);
    let (q, mut p) = EventQueue::new(8, 1_000, key, 0);
    p.push(event(0, key, 0));
    p.push(event(1, key, 500));
    // At 1000 the first is exactly one window old: expired.
    assert_eq!(q.read_vec(Cursor::All, 1_000).len(), 1);
    // Its hash is now unknown: a client that fell behind gets every retained event.
    assert_eq!(q.read_vec(Cursor::After(key.encode(0)), 1_000).len(), 1);
    assert_eq!(p.expire(1_000), 1);
    assert_eq!(p.len(), 1);
    assert_eq!(p.expire(2_000), 2);
    assert!(p.is_empty());
}

#[test]
fn wrap_around_drops_the_oldest() {
    let key = HashKey::from_secret(KEY);
    let (q, mut p) = EventQueue::new(4, i64::MAX / 2, key, 0);
    for seq in 0..10 {
        p.push(event(seq, key, 0));
    }
    let seqs: Vec<_> = q.read_vec(Cursor::All, 0).iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [6, 7, 8, 9]);
    // The hash of an overwritten event is unknown.
    assert_eq!(q.read_vec(Cursor::After(key.encode(2)), 0).len(), 4);
    assert_eq!(q.read_vec(Cursor::After(key.encode(7)), 0).len(), 2);
}

#[test]
fn numbering_continues_after_a_restart_gap() {
    let key = HashKey::from_secret(KEY);
    let (q, mut p) = EventQueue::new(8, 1_000, key, 100);
    p.push(event(103, key, 0)); // 100..103 expired before the restart
    p.push(event(104, key, 0));
    assert_eq!(q.read_vec(Cursor::All, 0).len(), 2);
    assert_eq!(q.read_vec(Cursor::After(key.encode(103)), 0).len(), 1);
    assert_eq!(p.next_seq(), 105);
}

/// A gap far larger than the ring (a corrupt or hand-edited next number)
/// moves the tail with it: reads and the expiry walk at most the ring.
#[test]
fn a_huge_restart_gap_moves_the_tail_too() {
    let key = HashKey::from_secret(KEY);
    let (q, mut p) = EventQueue::new(8, 1_000, key, 0);
    for seq in 0..5 {
        p.push(event(seq, key, 100));
    }
    let far = 10_000;
    p.skip_to(far);
    assert!(
        q.read_vec(Cursor::All, 100).is_empty(),
        "the old events left"
    );
    assert_eq!(p.expire(100), far, "the expiry starts at the new tail");
    p.push(event(far, key, 100));
    let all = q.read_vec(Cursor::All, 100);
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [far]);
    // A small gap keeps what is still in the window.
    let (q, mut p) = EventQueue::new(8, 1_000, key, 0);
    for seq in 0..3 {
        p.push(event(seq, key, 100));
    }
    p.skip_to(6);
    p.push(event(6, key, 100));
    let all = q.read_vec(Cursor::All, 100);
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1, 2, 6]);
}

#[test]
#[should_panic(expected = "never go back")]
fn sequence_numbers_never_go_back() {
    let key = HashKey::from_secret(KEY);
    let (_q, mut p) = EventQueue::new(8, 1_000, key, 0);
    p.push(event(5, key, 0));
    p.push(event(4, key, 0));
}

#[derive(Debug, Clone)]
enum Op {
    /// Publish, `dt` ms after the previous step.
    Publish { dt: i64 },
    /// Let time pass and run the retention sweep.
    Expire { dt: i64 },
    /// Read after the n-th newest published event (or a hash never issued).
    ReadAfter { back: usize, bogus: bool },
    /// Read everything.
    ReadAll,
    /// Skip `n` sequence numbers, as a restart does (the engine's
    /// reservation).
    Skip { n: u64 },
    /// Let time pass, nothing else.
    Tick { dt: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0i64..40).prop_map(|dt| Op::Publish { dt }),
        1 => (0i64..120).prop_map(|dt| Op::Expire { dt }),
        2 => (0usize..40, any::<bool>()).prop_map(|(back, bogus)| Op::ReadAfter { back, bogus }),
        1 => Just(Op::ReadAll),
        1 => (1u64..40).prop_map(|n| Op::Skip { n }),
        1 => (0i64..80).prop_map(|dt| Op::Tick { dt }),
    ]
}

/// A recorded read: its cursor, mark and events.
type Marked = (Cursor, ReadMark, Vec<QueuedEvent>);

/// Reads `cursor` with [`EventQueue::read_marked`], keeping the last eight
/// complete reads in `marks`.
fn read_marking(
    q: &EventQueue,
    cursor: Cursor,
    now: i64,
    marks: &mut Vec<Marked>,
) -> Vec<QueuedEvent> {
    let mut out = Vec::new();
    let (seen, mark) = q.read_marked(cursor, now, |e| {
        out.push(e.clone());
        true
    });
    assert_eq!(seen, out.len());
    let mark = mark.expect("a read that runs to the end is marked");
    if marks.len() == 8 {
        marks.remove(0);
    }
    marks.push((cursor, mark, out.clone()));
    out
}

/// `repeats` holds for an unchanged queue and clock, and not after a
/// publish, an expiry, an event aging out, the clock going back, or for
/// another cursor.
#[test]
fn a_mark_repeats_only_while_nothing_it_read_changed() {
    let key = HashKey::from_secret(KEY);
    let (q, mut p) = EventQueue::new(16, 1_000, key, 0);
    p.push(event(0, key, 100));
    p.push(event(1, key, 300));
    p.push(event(2, key, 500));
    let after0 = Cursor::After(key.encode(0));
    let (seen, mark) = q.read_marked(after0, 600, |_| true);
    let mark = mark.expect("ran to the end");
    assert_eq!(seen, 2);
    assert!(q.repeats(&mark, after0, 600));
    assert!(
        q.repeats(&mark, after0, 1_099),
        "the cursor's event (100) is still retained"
    );
    assert!(
        !q.repeats(&mark, after0, 1_100),
        "the cursor's event aged out: now everything"
    );
    assert!(!q.repeats(&mark, after0, 599), "an earlier clock");
    assert!(!q.repeats(&mark, Cursor::All, 600));
    // Everything: stale when the oldest returned event (100) ages out.
    let (_, all) = q.read_marked(Cursor::All, 600, |_| true);
    let all = all.expect("ran to the end");
    assert!(q.repeats(&all, Cursor::All, 1_099));
    assert!(!q.repeats(&all, Cursor::All, 1_100));
    // Stopped early: no mark.
    assert!(q.read_marked(Cursor::All, 600, |_| false).1.is_none());
    // A publish changes `head`.
    p.push(event(3, key, 700));
    assert!(!q.repeats(&mark, after0, 700));
    let (_, mark) = q.read_marked(after0, 700, |_| true);
    let mark = mark.expect("ran to the end");
    assert!(q.repeats(&mark, after0, 800));
    // An expiry changes `tail` (even one whose events `mark` never read).
    assert_eq!(p.expire(1_150), 1);
    assert!(!q.repeats(&mark, after0, 800));
    // An empty answer after an unknown hash never ages out.
    let unknown = Cursor::After(key.encode(99));
    let (_, none) = q.read_marked(unknown, 5_000, |_| true);
    let none = none.expect("ran to the end");
    assert!(q.repeats(&none, unknown, i64::MAX - 1));
    // Another queue with the same `head` and `tail` is another queue.
    let (other, mut op) = EventQueue::new(16, 1_000, key, 1);
    for seq in 1..4 {
        op.push(event(seq, key, 4_900));
    }
    let (_, theirs) = other.read_marked(Cursor::All, 5_000, |_| true);
    let theirs = theirs.expect("ran to the end");
    assert!(other.repeats(&theirs, Cursor::All, 5_000));
    assert!(!q.repeats(&theirs, Cursor::All, 5_000));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The model: a Vec of every event ever published; "retained" means
    /// younger than the window and among the last `capacity` sequence
    /// numbers (the last `capacity` published, unless numbers were skipped).
    #[test]
    fn matches_a_vec_model(
        ops in prop::collection::vec(op(), 1..300),
        cap_log in 1u32..5,
        retention in 1i64..200,
        start_seq in prop_oneof![Just(0u64), Just(u32::MAX as u64 - 20), 0u64..1_000_000],
        secret: u128,
    ) {
        let key = HashKey::from_secret(secret);
        let capacity = 1usize << cap_log;
        let (q, mut p) = EventQueue::new(capacity, retention, key, start_seq);
        let mut model: Vec<QueuedEvent> = Vec::new();
        let mut now = 1_000i64;
        let mut marks = Vec::new();
        let retained = |model: &[QueuedEvent], now: i64, next: u64| -> Vec<QueuedEvent> {
            let oldest = next.saturating_sub(capacity as u64);
            model
                .iter()
                .filter(|e| e.seq >= oldest && e.time_ms > now - retention)
                .cloned()
                .collect()
        };
        for op in ops {
            match op {
                Op::Publish { dt } => {
                    now += dt;
                    let seq = p.next_seq();
                    let time = p.stamp(now);
                    let e = event(seq, key, time);
                    p.push(e.clone());
                    model.push(e);
                }
                Op::Expire { dt } => {
                    now += dt;
                    p.expire(now);
                }
                Op::ReadAll => {
                    let got = read_marking(&q, Cursor::All, now, &mut marks);
                    prop_assert_eq!(got, retained(&model, now, p.next_seq()));
                }
                Op::Tick { dt } => now += dt,
                Op::Skip { n } => p.skip_to(p.next_seq() + n),
                Op::ReadAfter { back, bogus } => {
                    let live = retained(&model, now, p.next_seq());
                    let (hash, expect) = if bogus || back >= model.len() {
                        // A hash no retained event has: everything.
                        let h = key.encode(p.next_seq() + 7);
                        (h, live.clone())
                    } else {
                        let target = &model[model.len() - 1 - back];
                        let expect = if live.iter().any(|e| e.seq == target.seq) {
                            live.iter().filter(|e| e.seq > target.seq).cloned().collect()
                        } else {
                            live.clone()
                        };
                        (target.hash, expect)
                    };
                    let got = read_marking(&q, Cursor::After(hash), now, &mut marks);
                    prop_assert_eq!(got, expect);
                }
            }
            // A read that `repeats` vouches for returns what it returned.
            for (cursor, mark, then) in &marks {
                if q.repeats(mark, *cursor, now) {
                    prop_assert_eq!(&q.read_vec(*cursor, now), then);
                }
            }
            // Hashes are unique among retained events.
            let live = retained(&model, now, p.next_seq());
            let mut hashes: Vec<u32> = live.iter().map(|e| e.hash).collect();
            hashes.sort_unstable();
            hashes.dedup();
            prop_assert_eq!(hashes.len(), live.len());
        }
    }
}

/// Readers on other threads race one publisher that wraps the ring many
/// times: every read returns strictly ascending, complete events after its
/// cursor, and a reader following by hash never skips one that was still
/// retained. Reader 0 reads each cursor three times before it moves on,
/// reusing a read while `repeats` vouches for it (as an event loop does).
#[test]
fn readers_race_a_wrapping_publisher() {
    use std::sync::atomic::AtomicBool;
    let key = HashKey::from_secret(KEY);
    let (q, mut p) = EventQueue::new(64, i64::MAX / 4, key, 0);
    let done = Arc::new(AtomicBool::new(false));
    let total = 200_000u64;
    let readers: Vec<_> = (0..3)
        .map(|reader| {
            let q = Arc::clone(&q);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut cursor = Cursor::All;
                // The sequence number of the cursor's event.
                let mut after: Option<u64> = None;
                let mut newest: Option<u64> = None;
                let mut reads = 0u64;
                let mut replay: Option<Marked> = None;
                loop {
                    // Seen set: every push is in, `head` stays `total`.
                    let last_round = done.load(Ordering::Acquire);
                    let batch = match &replay {
                        Some((_, mark, then)) if reader == 0 && q.repeats(mark, cursor, 0) => {
                            then.clone()
                        }
                        _ => {
                            let mut marks = Vec::new();
                            let batch = read_marking(&q, cursor, 0, &mut marks);
                            replay = marks.pop();
                            batch
                        }
                    };
                    for w in batch.windows(2) {
                        assert!(w[0].seq < w[1].seq, "out of order");
                    }
                    for e in &batch {
                        assert_eq!(e.hash, key.encode(e.seq));
                        assert_eq!(e.json, Bytes::from(format!("{{\"n\":{}}}", e.seq)));
                    }
                    if let (Some(after), Some(first)) = (after, batch.first()) {
                        // The next one, or, when the reader fell behind the
                        // ring, the oldest retained: newer either way.
                        assert!(first.seq > after, "went backwards");
                    }
                    if let Some(e) = batch.last() {
                        newest = newest.max(Some(e.seq));
                        if reader != 0 || reads % 3 == 2 {
                            after = Some(e.seq);
                            cursor = Cursor::After(e.hash);
                        }
                    }
                    reads += 1;
                    if last_round {
                        return newest;
                    }
                }
            })
        })
        .collect();
    for seq in 0..total {
        p.push(event(seq, key, 0));
    }
    done.store(true, Ordering::Release);
    for r in readers {
        let newest = r.join().expect("reader panicked");
        assert_eq!(newest, Some(total - 1), "a reader missed the last events");
    }
    assert_eq!(
        q.read_vec(Cursor::All, 0).last().map(|e| e.seq),
        Some(total - 1)
    );
}

/// `read_while` stops at the first event `each` refuses, having called it
/// with that one, and `read` visits all.
#[test]
fn read_while_stops_when_told() {
    let key = HashKey::from_secret(KEY);
    let (q, mut p) = EventQueue::new(16, 1_000, key, 0);
    for seq in 0..10 {
        p.push(event(seq, key, 100));
    }
    let mut seen = Vec::new();
    let called = q.read_while(Cursor::All, 100, |e| {
        seen.push(e.seq);
        e.seq < 3
    });
    assert_eq!((called, seen), (4, vec![0, 1, 2, 3]));
    assert_eq!(q.read(Cursor::All, 100, |_| {}), 10);
}
