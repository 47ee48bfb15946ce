//! Random days of webhook traffic against a plain model: receivers come and
//! go, changes are enqueued, attempts succeed or fail in any order, time
//! jumps by milliseconds or by days, the process restarts from what the
//! store holds. Checked after every step:
//!
//! * an attempt is always its receiver's oldest undelivered change (so each
//!   receiver sees `seq` order), and a receiver has at most one attempt out;
//! * after a poll nothing is due that was not handed out: a failing receiver
//!   never holds back another (`next_deadline() > now`);
//! * a retry waits within [`backoff_bounds_ms`] (or until the 24 h mark),
//!   its attempt number counts the failures, its id and body never change;
//! * nothing is dropped as expired before 24 h, nor attempted after;
//! * ids are never reused, across restarts too;
//! * the records, folded into a plain store, equal the outbox's state, and
//!   restoring from that store changes nothing;
//! * at the end, with time running on, every change is delivered or dropped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;

use super::tests::Store;
use super::*;

const URLS: [&str; 3] = [
    "http://a.test/hook",
    "http://b.test:8080/hook",
    "https://c.test/x?y=1",
];
const CONFIG: OutboxConfig = OutboxConfig {
    max_receivers: 2,
    max_pending_per_receiver: 4,
};
const T0: i64 = 1_700_000_000_000;

#[derive(Debug, Clone)]
enum Op {
    Register(usize, u8),
    Unregister(usize),
    Enqueue,
    Poll,
    /// Answer the n-th outstanding attempt (modulo their count).
    Answer(usize, bool),
    Advance(i64),
    Restart(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..URLS.len(), 0u8..3).prop_map(|(u, k)| Op::Register(u, k)),
        1 => (0..URLS.len()).prop_map(Op::Unregister),
        5 => Just(Op::Enqueue),
        5 => Just(Op::Poll),
        6 => (0usize..4, any::<bool>()).prop_map(|(i, ok)| Op::Answer(i, ok)),
        2 => (0i64..3_000).prop_map(Op::Advance),
        2 => (0i64..900_000).prop_map(Op::Advance),
        1 => (0i64..2 * MAX_DELIVERY_AGE_MS).prop_map(Op::Advance),
        1 => any::<u64>().prop_map(Op::Restart),
    ]
}

/// One change owed to one receiver, as the model remembers it.
#[derive(Debug, Clone)]
struct Owed {
    id: u64,
    seq: u64,
    enqueued_ms: i64,
    /// Failures reported so far.
    failures: u32,
}

/// What the receivers and the shell know, independent of the outbox.
struct World {
    outbox: Outbox,
    store: Store,
    now: i64,
    next_seq: u64,
    /// Per registered URL, its undelivered changes, oldest first.
    owed: BTreeMap<String, VecDeque<Owed>>,
    /// Attempts handed out and not answered; `stale` once their URL was
    /// unregistered (the outbox forgot them).
    outstanding: Vec<(Attempt, bool)>,
    /// Every id ever handed out, and what it carried.
    issued: BTreeMap<u64, (String, u64)>,
    /// Per URL, the `seq`s delivered, in delivery order.
    delivered: BTreeMap<String, Vec<u64>>,
    /// Ids that ended: delivered, dropped, or discarded by unregister.
    finished: BTreeSet<u64>,
}

impl World {
    fn new() -> Self {
        World {
            outbox: Outbox::new(CONFIG, 7),
            store: Store::default(),
            now: T0,
            next_seq: 1,
            owed: BTreeMap::new(),
            outstanding: vec![],
            issued: BTreeMap::new(),
            delivered: BTreeMap::new(),
            finished: BTreeSet::new(),
        }
    }

    fn in_flight(&self, url: &str) -> Option<u64> {
        self.outstanding
            .iter()
            .find(|(a, stale)| !stale && a.url == url)
            .map(|(a, _)| a.delivery_id)
    }

    /// Checks the drops of one output against the model and applies them.
    fn take_drops(&mut self, out: &Output) {
        for d in &out.dropped {
            let queue = self.owed.get_mut(&d.url).expect("drop for a known URL");
            let pos = queue
                .iter()
                .position(|o| o.id == d.delivery_id)
                .expect("dropped delivery is owed");
            let owed = queue.remove(pos).unwrap();
            assert_eq!(d.seq, owed.seq);
            assert_eq!(d.attempts, owed.failures);
            match d.reason {
                DropReason::Expired { .. } => {
                    assert_eq!(pos, 0, "only the oldest expires");
                    assert!(
                        self.now - owed.enqueued_ms >= MAX_DELIVERY_AGE_MS,
                        "dropped before 24 h"
                    );
                }
                DropReason::Overflow { limit } => {
                    assert_eq!(limit, CONFIG.max_pending_per_receiver);
                    assert_ne!(self.in_flight(&d.url), Some(d.delivery_id));
                    assert_eq!(pos, 1, "the oldest behind the oldest of all");
                }
                DropReason::Orphaned => panic!("the store is never inconsistent"),
            }
            self.finished.insert(d.delivery_id);
        }
        assert!(
            out.records
                .iter()
                .filter(|r| matches!(r, WebhookRecord::DeliveryDeleted { .. }))
                .count()
                >= out.dropped.len()
        );
    }

    fn step(&mut self, op: Op) {
        let now = self.now;
        match op {
            Op::Register(u, k) => {
                let url = URLS[u];
                let known = self.owed.contains_key(url);
                let result = self.outbox.register(Registration {
                    url: url.to_owned(),
                    key: [k; 32],
                    registered_ms: now,
                });
                if !known && self.owed.len() >= CONFIG.max_receivers {
                    assert_eq!(result, Err(RegisterError::TooMany { limit: 2 }));
                } else {
                    let out = result.unwrap();
                    self.store.apply(&out.records);
                    self.owed.entry(url.to_owned()).or_default();
                }
            }
            Op::Unregister(u) => {
                let url = URLS[u];
                match self.owed.remove(url) {
                    None => assert_eq!(self.outbox.unregister(url), Err(NotRegistered)),
                    Some(queue) => {
                        let out = self.outbox.unregister(url).unwrap();
                        self.store.apply(&out.records);
                        self.finished.extend(queue.iter().map(|o| o.id));
                        for (a, stale) in &mut self.outstanding {
                            if a.url == url {
                                *stale = true;
                            }
                        }
                    }
                }
            }
            Op::Enqueue => {
                let seq = self.next_seq;
                self.next_seq += 1;
                let body = Bytes::from(format!(r#"{{"seq":{seq}}}"#));
                let out = self.outbox.enqueue(body.clone(), seq, now);
                assert!(out.attempts.is_empty());
                // One new delivery per receiver, in URL order, fresh ids.
                let puts: Vec<&PendingDelivery> = out
                    .records
                    .iter()
                    .filter_map(|r| match r {
                        WebhookRecord::DeliveryPut(d) => Some(d),
                        _ => None,
                    })
                    .collect();
                let urls: Vec<&String> = self.owed.keys().collect();
                assert_eq!(puts.iter().map(|d| &d.url).collect::<Vec<_>>(), urls);
                for d in puts {
                    assert!(!self.issued.contains_key(&d.id), "id {} reused", d.id);
                    assert_eq!((d.seq, &d.body[..]), (seq, &body[..]));
                    assert_eq!(
                        (d.enqueued_ms, d.next_attempt_ms, d.attempts),
                        (now, now, 0)
                    );
                    self.issued.insert(d.id, (d.url.clone(), seq));
                    self.owed.get_mut(&d.url).unwrap().push_back(Owed {
                        id: d.id,
                        seq,
                        enqueued_ms: now,
                        failures: 0,
                    });
                }
                self.take_drops(&out);
                for d in &out.dropped {
                    assert!(matches!(d.reason, DropReason::Overflow { .. }));
                }
                self.store.apply(&out.records);
            }
            Op::Poll => self.poll(),
            Op::Answer(i, ok) => {
                if self.outstanding.is_empty() {
                    return;
                }
                let (attempt, stale) = self.outstanding.remove(i % self.outstanding.len());
                let result = if ok {
                    Ok(())
                } else {
                    Err("HTTP 503".to_owned())
                };
                self.answer(attempt, stale, result);
            }
            Op::Advance(ms) => self.now += ms,
            Op::Restart(seed) => {
                let (outbox, out) = self.store.restore(CONFIG, seed);
                assert!(
                    out.is_empty(),
                    "a consistent store restores cleanly: {out:?}"
                );
                self.outbox = outbox;
                // The old process's attempts die with it: their answers never
                // reach the new outbox (which will make them again).
                self.outstanding.clear();
            }
        }
        self.check();
    }

    fn poll(&mut self) {
        let now = self.now;
        let out = self.outbox.poll_attempts(now);
        self.take_drops(&out);
        for attempt in &out.attempts {
            assert_eq!(
                self.in_flight(&attempt.url),
                None,
                "two attempts for one URL"
            );
            let owed = self.owed[&attempt.url].front().expect("something owed");
            assert_eq!(attempt.delivery_id, owed.id, "not the oldest change");
            assert_eq!(attempt.seq, owed.seq);
            assert_eq!(attempt.attempt, owed.failures + 1);
            assert!(
                now - owed.enqueued_ms < MAX_DELIVERY_AGE_MS,
                "attempt after 24 h"
            );
            assert_eq!(
                self.issued[&attempt.delivery_id],
                (attempt.url.clone(), attempt.seq),
                "an id carries one change to one URL"
            );
            assert_eq!(
                &attempt.body[..],
                format!(r#"{{"seq":{}}}"#, attempt.seq).as_bytes()
            );
            assert_eq!(
                attempt.key, self.store.registrations[&attempt.url].key,
                "signed with the key in force"
            );
            self.outstanding.push((attempt.clone(), false));
        }
        self.store.apply(&out.records);
        if let Some(deadline) = self.outbox.next_deadline() {
            assert!(deadline > now, "something due was left behind");
        }
    }

    fn answer(&mut self, attempt: Attempt, stale: bool, result: Result<(), String>) {
        let now = self.now;
        let ok = result.is_ok();
        let out = self.outbox.on_result(attempt.delivery_id, result, now);
        if stale {
            assert!(out.is_empty(), "a forgotten attempt changes nothing");
            return;
        }
        assert!(out.attempts.is_empty());
        let front = self.owed[&attempt.url].front().unwrap().clone();
        assert_eq!(front.id, attempt.delivery_id);
        if ok {
            assert_eq!(
                out.records,
                [WebhookRecord::DeliveryDeleted {
                    id: attempt.delivery_id
                }]
            );
            self.owed.get_mut(&attempt.url).unwrap().pop_front();
            self.finished.insert(front.id);
            let seqs = self.delivered.entry(attempt.url.clone()).or_default();
            if let Some(last) = seqs.last() {
                assert!(*last < attempt.seq, "delivered out of order");
            }
            seqs.push(attempt.seq);
        } else {
            let failures = front.failures + 1;
            self.owed.get_mut(&attempt.url).unwrap()[0].failures = failures;
            let expires = front.enqueued_ms + MAX_DELIVERY_AGE_MS;
            if now >= expires {
                self.take_drops(&out);
                assert_eq!(out.dropped.len(), 1);
            } else {
                let [WebhookRecord::DeliveryRescheduled {
                    id,
                    attempts,
                    next_attempt_ms,
                }] = out.records[..]
                else {
                    panic!("{out:?}");
                };
                assert_eq!((id, attempts), (front.id, failures));
                let (lo, hi) = backoff_bounds_ms(failures);
                let delay = next_attempt_ms - now;
                assert!(delay <= hi && hi <= BACKOFF_MAX_MS);
                assert!(
                    delay >= lo || next_attempt_ms == expires,
                    "delay {delay} below {lo}"
                );
            }
        }
        self.store.apply(&out.records);
    }

    /// The outbox, the store and the model agree.
    fn check(&self) {
        assert_eq!(self.outbox.pending(), self.store.pending_by_url());
        assert_eq!(
            self.outbox.registrations().cloned().collect::<Vec<_>>(),
            self.store
                .registrations
                .values()
                .cloned()
                .collect::<Vec<_>>()
        );
        assert_eq!(self.outbox.next_delivery_id(), self.store.next_id);
        let model: Vec<(String, u64)> = self
            .owed
            .iter()
            .flat_map(|(url, q)| q.iter().map(move |o| (url.clone(), o.id)))
            .collect();
        let real: Vec<(String, u64)> = self
            .outbox
            .pending()
            .into_iter()
            .map(|d| (d.url, d.id))
            .collect();
        assert_eq!(real, model);
        for url in self.owed.keys() {
            assert_eq!(self.outbox.is_in_flight(url), self.in_flight(url).is_some());
        }
    }

    /// Time runs on; `a.test` answers, the others keep failing. Everything
    /// must end within a bounded number of steps.
    fn drain(&mut self) {
        for (attempt, stale) in std::mem::take(&mut self.outstanding) {
            self.answer(attempt, stale, Err("shutting down".into()));
        }
        let mut steps = 0;
        loop {
            self.poll();
            self.check();
            let attempts = std::mem::take(&mut self.outstanding);
            if attempts.is_empty() {
                match self.outbox.next_deadline() {
                    None => break,
                    Some(deadline) => self.now = deadline,
                }
            }
            for (attempt, stale) in attempts {
                let ok = attempt.url == URLS[0];
                let result = if ok { Ok(()) } else { Err("refused".into()) };
                self.answer(attempt, stale, result);
            }
            steps += 1;
            assert!(steps < 100_000, "no progress");
        }
        assert!(self.owed.values().all(VecDeque::is_empty));
        let all: BTreeSet<u64> = self.issued.keys().copied().collect();
        assert_eq!(self.finished, all, "every change delivered or dropped");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn outbox_against_a_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut world = World::new();
        for op in ops {
            world.step(op);
        }
        world.drain();
    }
}
