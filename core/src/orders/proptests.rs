//! Random order traffic against a plain model (a `Vec` scanned by hand):
//! starts, PUTs, pages, clears, clear-alls, purges, history queries and
//! restarts, by name, by uuid (lower- and uppercase), and by garbage keys.
//! After every step:
//!
//! * every call answers as the model says (the change, or the status);
//! * each change takes the next `seq`: strictly increasing by one, and a
//!   PUT that changes nothing takes none;
//! * the active set, oldest first, equals the model's;
//! * names are unique among active orders, and every active one is found
//!   by name and by uuid;
//! * history (everything, and the random query) equals the model's, oldest
//!   first by `(created, seq)`;
//! * a restart (restore from every order and `next_seq`) changes nothing.

use proptest::prelude::*;

use super::*;

const NAMES: [&str; 5] = ["1", "2", "3", "66", "066"];
const LOCATIONS: [&str; 3] = ["", "1", "22"];
const T0: i64 = 1_430_822_409_000;

#[derive(Debug, Clone)]
enum Target {
    /// `NAMES[i]`.
    Name(usize),
    /// The uuid of the i-th order ever started (modulo), purged ones too.
    Uuid(usize),
    /// The same, uppercase.
    UpperUuid(usize),
    /// A key that is neither.
    Garbage(String),
}

#[derive(Debug, Clone)]
enum Op {
    Start {
        name: usize,
        order_type: OrderType,
        location: usize,
        /// Few distinct values, so uuid repeats get stepped.
        random: u8,
    },
    Modify {
        target: Target,
        order_type: Option<OrderType>,
        location: Option<usize>,
    },
    Page(Target),
    Clear(Target),
    ClearAll,
    /// Purge orders created before `T0 + cutoff` ms, at most `max`.
    Purge {
        cutoff: i64,
        max: usize,
    },
    History {
        offset: usize,
        limit: usize,
        after: Option<i64>,
        before: Option<i64>,
        order_type: Option<OrderType>,
        location: Option<usize>,
    },
    /// Time passes (0 keeps the same millisecond, for ties).
    Tick(i64),
    Restart,
}

fn order_type() -> impl Strategy<Value = OrderType> {
    prop_oneof![Just(OrderType::OnPremise), Just(OrderType::ToGo)]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        4 => (0..NAMES.len()).prop_map(Target::Name),
        3 => any::<usize>().prop_map(Target::Uuid),
        1 => any::<usize>().prop_map(Target::UpperUuid),
        1 => prop_oneof![
            Just(String::new()),
            Just("00000000-0000-4000-8000-000000000000".to_owned()),
            "[a-z0-9-]{0,40}",
        ]
        .prop_map(Target::Garbage),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..NAMES.len(), order_type(), 0..LOCATIONS.len(), 0u8..4).prop_map(
            |(name, order_type, location, random)| Op::Start { name, order_type, location, random }
        ),
        5 => (target(), proptest::option::of(order_type()), proptest::option::of(0..LOCATIONS.len()))
            .prop_map(|(target, order_type, location)| Op::Modify { target, order_type, location }),
        3 => target().prop_map(Op::Page),
        3 => target().prop_map(Op::Clear),
        1 => Just(Op::ClearAll),
        1 => (0i64..20_000, 0usize..4).prop_map(|(cutoff, max)| Op::Purge { cutoff, max }),
        2 => (
            0usize..6,
            1usize..8,
            proptest::option::of(0i64..20_000),
            proptest::option::of(0i64..20_000),
            proptest::option::of(order_type()),
            proptest::option::of(0..LOCATIONS.len()),
        )
            .prop_map(|(offset, limit, after, before, order_type, location)| Op::History {
                offset,
                limit,
                after,
                before,
                order_type,
                location,
            }),
        4 => prop_oneof![Just(0i64), 1i64..2_000].prop_map(Op::Tick),
        1 => Just(Op::Restart),
    ]
}

/// The rules of SPEC §3.3, written as plainly as possible.
#[derive(Default)]
struct Model {
    /// Every kept order, in no particular order.
    orders: Vec<Order>,
    /// The uuid of every order ever started, purged ones included.
    uuids: Vec<String>,
    next_seq: u64,
}

/// What the model expects of a change call: a change, or an error status.
type Expect = Result<Order, u16>;

impl Model {
    fn sorted<'a>(orders: impl Iterator<Item = &'a Order>) -> Vec<Order> {
        let mut v: Vec<Order> = orders.cloned().collect();
        v.sort_by_key(|o| (o.created_ms, o.created_seq));
        v
    }

    fn active(&self) -> Vec<Order> {
        Self::sorted(
            self.orders
                .iter()
                .filter(|o| o.state != OrderState::Cleared),
        )
    }

    fn key(&self, target: &Target) -> String {
        let pick = |i: usize| {
            if self.uuids.is_empty() {
                "11111111-1111-4111-8111-111111111111".to_owned()
            } else {
                self.uuids[i % self.uuids.len()].clone()
            }
        };
        match target {
            Target::Name(i) => NAMES[*i].to_owned(),
            Target::Uuid(i) => pick(*i),
            Target::UpperUuid(i) => pick(*i).to_ascii_uppercase(),
            Target::Garbage(s) => s.clone(),
        }
    }

    /// The index of the order a change addresses, or the status.
    fn find(&self, key: &str) -> Result<usize, u16> {
        let lower = key.to_ascii_lowercase();
        if let Some(i) = self.orders.iter().position(|o| o.uuid == lower) {
            return if self.orders[i].state == OrderState::Cleared {
                Err(409)
            } else {
                Ok(i)
            };
        }
        self.orders
            .iter()
            .position(|o| o.name == key && o.state != OrderState::Cleared)
            .ok_or(404)
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    fn modify(
        &mut self,
        key: &str,
        order_type: Option<OrderType>,
        location: Option<&str>,
        now: i64,
    ) -> Result<Option<Order>, u16> {
        let i = self.find(key)?;
        let before = self.orders[i].clone();
        let mut o = before.clone();
        if let Some(t) = order_type {
            o.order_type = t;
        }
        if let Some(l) = location {
            o.location = l.to_owned();
        }
        if o == before {
            return Ok(None);
        }
        let state = if o.location.is_empty() {
            OrderState::Started
        } else {
            OrderState::Located
        };
        if state != o.state {
            o.state = state;
            o.state_started_ms = now;
            if state == OrderState::Located && o.located_ms.is_none() {
                o.located_ms = Some(now);
            }
        }
        o.seq = self.seq();
        self.orders[i] = o.clone();
        Ok(Some(o))
    }

    fn clear_at(&mut self, i: usize, now: i64) -> Order {
        let o = &mut self.orders[i];
        o.state = OrderState::Cleared;
        o.state_started_ms = now;
        o.seq = self.next_seq;
        self.next_seq += 1;
        self.orders[i].clone()
    }
}

fn status<T>(r: Result<T, OrderError>) -> Result<T, u16> {
    r.map_err(|e| e.status())
}

fn all(t: &OrderTracker) -> Vec<Order> {
    t.history(&HistoryQuery {
        limit: usize::MAX,
        ..HistoryQuery::default()
    })
    .into_iter()
    .cloned()
    .collect()
}

fn check(t: &OrderTracker, m: &Model) {
    assert_eq!(t.next_seq(), m.next_seq);
    let active: Vec<Order> = t.active().cloned().collect();
    assert_eq!(active, m.active());
    assert_eq!(t.len_active(), active.len());
    let mut names: Vec<&str> = active.iter().map(|o| o.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(
        names.len(),
        active.len(),
        "names unique among active orders"
    );
    for o in &active {
        assert_eq!(t.active_order(&o.name).unwrap(), o);
        assert_eq!(t.active_order(&o.uuid).unwrap(), o);
    }
    assert_eq!(all(t), Model::sorted(m.orders.iter()));
    assert_eq!(t.len_all(), m.orders.len());
}

fn run(ops: Vec<Op>) {
    let mut t = OrderTracker::new();
    let mut m = Model {
        next_seq: 1,
        ..Model::default()
    };
    let mut now = T0;
    for op in ops {
        let seq_before = t.next_seq();
        let mut changes: Vec<Change> = Vec::new();
        match op {
            Op::Start {
                name,
                order_type,
                location,
                random,
            } => {
                let req = StartOrder {
                    name: NAMES[name].to_owned(),
                    order_type,
                    location: LOCATIONS[location].to_owned(),
                };
                let got = status(t.start(req, u128::from(random) * 0x1_0000_0001, now));
                let taken = m
                    .orders
                    .iter()
                    .any(|o| o.name == NAMES[name] && o.state != OrderState::Cleared);
                if taken {
                    assert_eq!(got, Err(409));
                } else {
                    let change = got.expect("start");
                    assert_eq!(change.kind, ChangeKind::Created);
                    let uuid = change.order.uuid.clone();
                    assert!(m.orders.iter().all(|o| o.uuid != uuid), "uuid reused");
                    let parsed = uuid::Uuid::try_parse(&uuid).unwrap();
                    assert_eq!(parsed.get_version_num(), 4);
                    assert_eq!(parsed.hyphenated().to_string(), uuid);
                    let located = !LOCATIONS[location].is_empty();
                    let seq = m.seq();
                    let expected = Order {
                        uuid: uuid.clone(),
                        name: NAMES[name].to_owned(),
                        order_type,
                        location: LOCATIONS[location].to_owned(),
                        state: if located {
                            OrderState::Located
                        } else {
                            OrderState::Started
                        },
                        created_ms: now,
                        state_started_ms: now,
                        located_ms: located.then_some(now),
                        seq,
                        created_seq: seq,
                    };
                    assert_eq!(change.order, expected);
                    m.orders.push(expected);
                    m.uuids.push(uuid);
                    changes.push(change);
                }
            }
            Op::Modify {
                target,
                order_type,
                location,
            } => {
                let key = m.key(&target);
                let location = location.map(|l| LOCATIONS[l]);
                let got = status(t.modify(
                    &key,
                    ModifyOrder {
                        order_type,
                        location: location.map(str::to_owned),
                    },
                    now,
                ));
                let want = m.modify(&key, order_type, location, now);
                match (got, want) {
                    (Ok((order, change)), Ok(expected)) => {
                        match (&change, expected) {
                            (Some(c), Some(e)) => {
                                assert_eq!(c.kind, ChangeKind::Modified);
                                assert_eq!(c.order, e);
                                assert_eq!(order, e);
                            }
                            (None, None) => {
                                let i = m.find(&key).unwrap();
                                assert_eq!(order, m.orders[i]);
                            }
                            (c, e) => panic!("modify {key}: got {c:?}, model {e:?}"),
                        }
                        changes.extend(change);
                    }
                    (got, want) => assert_eq!(got.map(|_| ()), want.map(|_| ()), "modify {key}"),
                }
            }
            Op::Page(target) => {
                let key = m.key(&target);
                let got = status(t.page(&key, true, now));
                let want: Expect = m.find(&key).map(|i| {
                    let seq = m.seq();
                    m.orders[i].seq = seq;
                    m.orders[i].clone()
                });
                match (got, want) {
                    (Ok(c), Ok(e)) => {
                        assert_eq!(c.kind, ChangeKind::Paged);
                        assert_eq!(c.order, e);
                        changes.push(c);
                    }
                    (got, want) => assert_eq!(got.map(|_| ()), want.map(|_| ()), "page {key}"),
                }
            }
            Op::Clear(target) => {
                let key = m.key(&target);
                let got = status(t.clear(&key, now));
                let want: Expect = m.find(&key).map(|i| m.clear_at(i, now));
                match (got, want) {
                    (Ok(c), Ok(e)) => {
                        assert_eq!(c.kind, ChangeKind::Modified);
                        assert_eq!(c.order, e);
                        changes.push(c);
                    }
                    (got, want) => assert_eq!(got.map(|_| ()), want.map(|_| ()), "clear {key}"),
                }
            }
            Op::ClearAll => {
                let got = t.clear_all(now);
                let active = m.active();
                let want: Vec<Order> = active
                    .iter()
                    .map(|a| {
                        let i = m.orders.iter().position(|o| o.uuid == a.uuid).unwrap();
                        m.clear_at(i, now)
                    })
                    .collect();
                assert_eq!(
                    got.iter().map(|c| c.order.clone()).collect::<Vec<_>>(),
                    want
                );
                assert!(got.iter().all(|c| c.kind == ChangeKind::Modified));
                changes = got;
            }
            Op::Purge { cutoff, max } => {
                let cutoff = T0 + cutoff;
                let got = t.purge(cutoff, max);
                let want: Vec<String> = Model::sorted(
                    m.orders
                        .iter()
                        .filter(|o| o.state == OrderState::Cleared && o.created_ms < cutoff),
                )
                .into_iter()
                .take(max)
                .map(|o| o.uuid)
                .collect();
                assert_eq!(got, want);
                m.orders.retain(|o| !want.contains(&o.uuid));
            }
            Op::History {
                offset,
                limit,
                after,
                before,
                order_type,
                location,
            } => {
                let q = HistoryQuery {
                    offset,
                    limit,
                    created_after_ms: after.map(|a| T0 + a),
                    created_before_ms: before.map(|b| T0 + b),
                    order_type,
                    location: location.map(|l| LOCATIONS[l].to_owned()),
                };
                let got: Vec<Order> = t.history(&q).into_iter().cloned().collect();
                let want: Vec<Order> = Model::sorted(m.orders.iter().filter(|o| {
                    q.created_after_ms.is_none_or(|a| o.created_ms >= a)
                        && q.created_before_ms.is_none_or(|b| o.created_ms < b)
                        && q.order_type.is_none_or(|t| o.order_type == t)
                        && q.location.as_ref().is_none_or(|l| o.location == *l)
                }))
                .into_iter()
                .skip(offset)
                .take(limit)
                .collect();
                assert_eq!(got, want, "{q:?}");
            }
            Op::Tick(ms) => now += ms,
            Op::Restart => {
                let restored = OrderTracker::restore(all(&t), t.next_seq());
                check(&restored, &m);
                t = restored;
            }
        }
        // Each change took the next seq, one by one, and nothing else did.
        for (i, c) in changes.iter().enumerate() {
            assert_eq!(c.order.seq, seq_before + i as u64);
        }
        assert_eq!(t.next_seq(), seq_before + changes.len() as u64);
        check(&t, &m);
    }
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
    fn random_traffic_follows_the_model(ops in prop::collection::vec(op(), 1..120)) {
        run(ops);
    }
}
