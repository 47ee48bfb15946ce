//! The C-ABI publish call with a 300-byte event (issue 7: "C-ABI publish
//! under 1 µs per call with the store excluded; with the store, the same
//! group-commit throughput as the HTTP path").
//!
//! Every figure calls the real exported `extern "C"` functions of
//! `floorbell-ffi` (linked as an rlib), on an engine opened through the C
//! ABI on a fresh data directory under the temp dir, with the ≈300-byte
//! `online_payment` event of `floorbell_benches::payment_event`.
//!
//! * `ffi_publish/submit (store excluded)`: `floorbell_engine_submit_event`,
//!   which does everything `floorbell_engine_publish_event` does except wait
//!   for the store: the boundary (guard, NUL scan, UTF-8 check), the copy of
//!   the body, validation and serialization, and the hand-off to
//!   the store writer. The writer commits concurrently on the other core.
//!   Timed in runs of [`SUBMIT_RUN`] calls; between runs (untimed) a
//!   blocking publish waits until the writer has committed everything, so
//!   the writer's queue never holds more than one run and no run waits for
//!   the store.
//! * `ffi_publish/prepare in core (reference)`: the part of the submit that
//!   is `floorbell-core`'s, without the C ABI or the hand-off: validating and
//!   serializing the same events with `qr::prepare_event` (what
//!   `floorbell_engine_submit_event` calls).
//! * `ffi_publish/publish 1 caller (store included)`:
//!   `floorbell_engine_publish_event` from one thread: each call waits for
//!   its own commit (one transaction and one fsync per call).
//! * `ffi_publish/publish N callers (store included)`: N threads publishing
//!   as fast as each call returns; the writer groups whatever is queued into
//!   one commit. The time per element is wall time divided by events, so
//!   elements/s is the durable throughput, comparable to the HTTP figure
//!   of `benches/load/publish.sh` (wrk, 64 connections).

use std::ffi::{c_char, CString};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use floorbell::{
    floorbell_engine_close, floorbell_engine_open, floorbell_engine_publish_event,
    floorbell_engine_submit_event, FloorbellEngine, FloorbellStatus,
};
use floorbell_benches::payment_event;
use floorbell_core::qr::{prepare_event, TableSet};

/// Submits timed back to back before the writer is allowed to catch up.
const SUBMIT_RUN: u64 = 2_000;

/// Distinct events (the table and the order guid vary) reused round-robin.
const EVENTS: usize = 1_024;

/// An engine opened through the C ABI, shareable with worker threads.
#[derive(Clone, Copy)]
struct Handle(*mut FloorbellEngine);
// SAFETY: the C ABI allows any thread to call any function but close, which
// only the bench's main thread calls, after every worker has stopped.
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

fn open(dir: &std::path::Path) -> Handle {
    let path = CString::new(dir.to_str().unwrap()).unwrap();
    let config = CString::new("no-mdns = true\n").unwrap();
    let mut engine = std::ptr::null_mut();
    // SAFETY: valid NUL-terminated strings and a writable out pointer.
    let status = unsafe { floorbell_engine_open(path.as_ptr(), config.as_ptr(), &mut engine) };
    assert_eq!(status, FloorbellStatus::Ok);
    Handle(engine)
}

fn events() -> Vec<CString> {
    let events: Vec<CString> = (0..EVENTS)
        .map(|i| CString::new(payment_event(i)).unwrap())
        .collect();
    let len = events[7].as_bytes().len();
    assert!((280..=340).contains(&len), "event is {len} bytes");
    events
}

fn publish(engine: Handle, event: &CString) {
    let mut hash = [0 as c_char; 11];
    // SAFETY: a live engine, a NUL-terminated event, 11 writable bytes.
    let status =
        unsafe { floorbell_engine_publish_event(engine.0, event.as_ptr(), hash.as_mut_ptr()) };
    assert_eq!(status, FloorbellStatus::Ok);
}

fn submit(engine: Handle, event: &CString) {
    // SAFETY: a live engine and a NUL-terminated event.
    let status = unsafe { floorbell_engine_submit_event(engine.0, event.as_ptr()) };
    assert_eq!(status, FloorbellStatus::Queued);
}

/// Worker threads that publish on demand: `run(n)` has them publish `n`
/// events between them and returns the wall time it took.
struct Publishers {
    jobs: Vec<mpsc::Sender<u64>>,
    done: mpsc::Receiver<()>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Publishers {
    fn start(engine: Handle, count: usize, events: &[CString]) -> Self {
        let (done_tx, done) = mpsc::channel();
        let mut jobs = Vec::new();
        let mut threads = Vec::new();
        for t in 0..count {
            let (tx, rx) = mpsc::channel::<u64>();
            let done_tx = done_tx.clone();
            let events = events.to_vec();
            jobs.push(tx);
            threads.push(std::thread::spawn(move || {
                let engine = engine;
                let mut i = t;
                for n in rx {
                    for _ in 0..n {
                        publish(engine, &events[i % events.len()]);
                        i += count;
                    }
                    done_tx.send(()).unwrap();
                }
            }));
        }
        Publishers {
            jobs,
            done,
            threads,
        }
    }

    fn run(&self, n: u64) -> Duration {
        let workers = self.jobs.len() as u64;
        let start = Instant::now();
        for (w, job) in self.jobs.iter().enumerate() {
            job.send(n / workers + u64::from((w as u64) < n % workers))
                .unwrap();
        }
        for _ in 0..workers {
            self.done.recv().unwrap();
        }
        start.elapsed()
    }

    fn stop(self) {
        drop(self.jobs);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

fn ffi_publish(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let events = events();
    let mut g = c.benchmark_group("ffi_publish");
    g.throughput(Throughput::Elements(1));

    g.bench_function("submit (store excluded)", |b| {
        let mut next = 0usize;
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let run = left.min(SUBMIT_RUN);
                let start = Instant::now();
                for _ in 0..run {
                    submit(engine, &events[next % EVENTS]);
                    next += 1;
                }
                timed += start.elapsed();
                left -= run;
                // Untimed: the writer commits what was submitted (a publish
                // returns after its own commit, which comes after theirs).
                publish(engine, &events[next % EVENTS]);
            }
            timed
        })
    });

    g.bench_function("prepare in core (reference)", |b| {
        let tables = TableSet::default();
        let mut next = 0usize;
        b.iter(|| {
            let body = events[next % EVENTS].as_bytes();
            next += 1;
            prepare_event(body, &tables).unwrap()
        })
    });

    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("publish 1 caller (store included)", |b| {
        let mut next = 0usize;
        b.iter(|| {
            publish(engine, &events[next % EVENTS]);
            next += 1;
        })
    });
    for callers in [8usize, 64] {
        let pool = Publishers::start(engine, callers, &events);
        g.bench_with_input(
            BenchmarkId::new("publish N callers (store included)", callers),
            &callers,
            |b, _| b.iter_custom(|iters| pool.run(iters)),
        );
        pool.stop();
    }
    g.finish();
    // SAFETY: opened above; no other call runs now.
    assert_eq!(
        unsafe { floorbell_engine_close(engine.0) },
        FloorbellStatus::Ok
    );
}

criterion_group!(benches, ffi_publish);
criterion_main!(benches);
