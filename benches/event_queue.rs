//! The hashed event queue without sockets or store (issue goals: "in-core
//! publish: at least 5 million events/s on one thread", and "events since
//! hash costs O(k) for k returned events, not O(n)").
//!
//! * `publish/push`: what the store writer does per event once the batch is
//!   committed — hash, timestamp, write the hash into the serialized bytes,
//!   make it visible. Input: a prepared 300-byte event.
//! * `publish/prepare+push`: the same plus validating and serializing the
//!   JSON body as a reactor does (`qr::prepare_event`; done on the reactor
//!   thread in the server).
//! * `since_hash/{retained}/{k}`: read the k newest events by hash, with 1,000
//!   and 10,000 events retained: flat in `retained`, linear in `k`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use floorbell_benches::payment_event;
use floorbell_core::qr::{prepare_event, PreparedEvent, TableSet};
use floorbell_core::ring::{Cursor, EventQueue, HashKey, Publisher, QueuedEvent};

const KEY: u128 = 0x0123_4567_89ab_cdef_0011_2233_4455_6677;

/// What the store writer does per event after the commit: number it, stamp
/// it, write its hash into the bytes, make it visible.
fn push(p: &mut Publisher, prepared: PreparedEvent) {
    let seq = p.next_seq();
    let hash = p.hash_of(seq);
    let time_ms = p.stamp(1);
    p.push(QueuedEvent {
        seq,
        hash,
        time_ms,
        json: prepared.finish(hash),
    });
}

fn publish(c: &mut Criterion) {
    let tables = TableSet::default();
    let body = payment_event(7);
    assert!(
        (280..=340).contains(&body.len()),
        "event is {} bytes",
        body.len()
    );
    let mut g = c.benchmark_group("publish");
    g.throughput(Throughput::Elements(1));
    let key = HashKey::from_secret(KEY);
    let (_q, mut p) = EventQueue::new(1 << 16, 300_000, key, 0);
    g.bench_function("push", |b| {
        b.iter_batched(
            // Prepared as the reactor prepares it (its buffer has room to
            // spare, so `Bytes` pays its shared allocation, as in the server).
            || prepare_event(body.as_bytes(), &tables).unwrap(),
            |prepared| {
                push(&mut p, prepared);
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("prepare+push", |b| {
        b.iter(|| {
            let prepared = prepare_event(body.as_bytes(), &tables).unwrap();
            push(&mut p, prepared);
        })
    });
    g.finish();
}

fn since_hash(c: &mut Criterion) {
    let mut g = c.benchmark_group("since_hash");
    let key = HashKey::from_secret(KEY);
    for retained in [1_000u64, 10_000] {
        let (q, mut p) = EventQueue::new(1 << 16, i64::MAX / 4, key, 0);
        for seq in 0..retained {
            let json = Bytes::from(payment_event(seq as usize));
            p.push(QueuedEvent {
                seq,
                hash: key.encode(seq),
                time_ms: 0,
                json,
            });
        }
        for k in [1u64, 10, 100] {
            let cursor = Cursor::After(key.encode(retained - 1 - k));
            g.throughput(Throughput::Elements(k));
            g.bench_with_input(
                BenchmarkId::new(retained.to_string(), k),
                &cursor,
                |b, &cursor| {
                    b.iter(|| {
                        let mut total = 0;
                        let n = q.read(cursor, 1, |e| total += e.json.len());
                        assert_eq!(n as u64, k);
                        total
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, publish, since_hash);
criterion_main!(benches);
