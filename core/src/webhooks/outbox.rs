//! [`Outbox`]: per-receiver FIFO queues of deliveries, one attempt in flight
//! per receiver, retry schedule and expiry. See the module docs in `mod.rs`
//! for the rules and the durability contract.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;

use super::{
    parse_url, Attempt, DropReason, Dropped, NotRegistered, OutboxConfig, Output, PendingDelivery,
    RegisterError, Registration, WebhookRecord, BACKOFF_BASE_MS, BACKOFF_MAX_MS,
    MAX_DELIVERY_AGE_MS, MAX_ERROR_LEN,
};

/// The webhook outbox: registered receivers and what each is owed.
#[derive(Debug)]
pub struct Outbox {
    /// Limits, fixed at construction.
    config: OutboxConfig,
    /// Every registered receiver by URL. A `BTreeMap` so that every walk
    /// (fan-out, polling) is in one fixed order: same inputs, same outputs.
    receivers: BTreeMap<String, Receiver>,
    /// Delivery id → URL for each attempt handed out and not yet reported,
    /// so [`Outbox::on_result`] finds its receiver without a scan.
    in_flight: HashMap<u64, String>,
    /// The id the next delivery gets; never goes back.
    next_id: u64,
    /// SplitMix64 state for jitter: seeded by the caller, so core draws no
    /// random number and a run can be replayed.
    rng: u64,
}

/// One receiver's state.
#[derive(Debug)]
struct Receiver {
    /// URL, key and registration time, as persisted.
    registration: Registration,
    /// Pending deliveries, oldest (lowest id, lowest seq) first. Only the
    /// front is ever attempted: that is the per-receiver order.
    queue: VecDeque<Delivery>,
    /// The front delivery has an attempt out (then it is in
    /// `Outbox::in_flight`, and nothing else of this receiver is attempted).
    in_flight: bool,
    /// The front delivery's last failure, for the drop log line.
    last_error: Option<String>,
}

/// A pending delivery in memory: like [`PendingDelivery`] but without the
/// URL (its receiver holds it) and with the body shared among receivers.
#[derive(Debug, Clone)]
struct Delivery {
    id: u64,
    seq: u64,
    body: Bytes,
    enqueued_ms: i64,
    attempts: u32,
    next_attempt_ms: i64,
}

impl Delivery {
    /// From this time on it is never attempted again, only dropped.
    fn expires_ms(&self) -> i64 {
        self.enqueued_ms.saturating_add(MAX_DELIVERY_AGE_MS)
    }

    /// When it should next be looked at: its next attempt, or its expiry
    /// if that comes first (a restored record may say otherwise).
    fn due_ms(&self) -> i64 {
        self.next_attempt_ms.min(self.expires_ms())
    }

    fn to_record(&self, url: &str) -> PendingDelivery {
        PendingDelivery {
            id: self.id,
            url: url.to_owned(),
            seq: self.seq,
            body: self.body.to_vec(),
            enqueued_ms: self.enqueued_ms,
            attempts: self.attempts,
            next_attempt_ms: self.next_attempt_ms,
        }
    }
}

/// The bounds `[lo, hi]` of the delay after the `failures`-th failure of a
/// delivery (`failures` ≥ 1; 0 is read as 1): `hi = min(BACKOFF_BASE_MS ·
/// 2^(failures-1), BACKOFF_MAX_MS)`, `lo = hi - hi/2`. Both grow with
/// `failures` and never pass [`BACKOFF_MAX_MS`].
pub fn backoff_bounds_ms(failures: u32) -> (i64, i64) {
    let doublings = failures.saturating_sub(1).min(30);
    let hi = BACKOFF_BASE_MS
        .saturating_mul(1i64 << doublings)
        .min(BACKOFF_MAX_MS);
    (hi - hi / 2, hi)
}

/// The delay after the `failures`-th failure, jittered by `random`: uniform
/// (for a uniform `random`) over [`backoff_bounds_ms`]. SPEC gap: "equal
/// jitter" (the upper half of the window) — retries of many receivers that
/// failed together spread out, and a delay never exceeds the cap.
pub fn backoff_delay_ms(failures: u32, random: u64) -> i64 {
    let (lo, hi) = backoff_bounds_ms(failures);
    // hi - lo ≤ BACKOFF_MAX_MS, so the span fits any integer type here.
    let span = (hi - lo) as u64 + 1;
    lo + (random % span) as i64
}

/// SplitMix64 (Steele, Lea, Flood 2014): one multiply-xorshift step per
/// draw, plenty for jitter.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `text` cut to at most [`MAX_ERROR_LEN`] bytes, on a char boundary.
fn truncated(mut text: String) -> String {
    if text.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl Outbox {
    /// An empty outbox (no receivers, ids from 0). `jitter_seed` seeds the
    /// retry jitter: give it a random number (or a fixed one in tests).
    pub fn new(config: OutboxConfig, jitter_seed: u64) -> Self {
        Outbox {
            config: OutboxConfig {
                max_pending_per_receiver: config.max_pending_per_receiver.max(1),
                ..config
            },
            receivers: BTreeMap::new(),
            in_flight: HashMap::new(),
            next_id: 0,
            rng: jitter_seed,
        }
    }

    /// Rebuilds the outbox from what the store holds: the registrations, the
    /// pending deliveries (any order) and the last [`WebhookRecord::NextDeliveryId`]
    /// (0 if none). Nothing is in flight afterwards; each receiver's oldest
    /// delivery is due at its persisted `next_attempt_ms`.
    ///
    /// Registrations are all kept, even past [`OutboxConfig::max_receivers`]
    /// (a lowered limit applies to new URLs only). The returned [`Output`]
    /// drops what no longer fits: deliveries to unregistered URLs and any
    /// beyond [`OutboxConfig::max_pending_per_receiver`]. Persist its records.
    pub fn restore(
        config: OutboxConfig,
        jitter_seed: u64,
        registrations: Vec<Registration>,
        mut pending: Vec<PendingDelivery>,
        next_delivery_id: u64,
    ) -> (Self, Output) {
        let mut outbox = Outbox::new(config, jitter_seed);
        let mut out = Output::default();
        for registration in registrations {
            outbox
                .receivers
                .insert(registration.url.clone(), Receiver::new(registration));
        }
        outbox.next_id = next_delivery_id;

        // Ids count up in enqueue order, so sorting by id restores each
        // receiver's order. Bodies of one change are shared again by `seq`.
        pending.sort_by_key(|d| d.id);
        pending.dedup_by_key(|d| d.id);
        let mut bodies: HashMap<u64, Bytes> = HashMap::new();
        for d in pending {
            outbox.next_id = outbox.next_id.max(d.id.saturating_add(1));
            let Some(receiver) = outbox.receivers.get_mut(&d.url) else {
                out.records
                    .push(WebhookRecord::DeliveryDeleted { id: d.id });
                out.dropped.push(Dropped {
                    url: d.url,
                    delivery_id: d.id,
                    seq: d.seq,
                    attempts: d.attempts,
                    reason: DropReason::Orphaned,
                });
                continue;
            };
            let body = match bodies.get(&d.seq) {
                Some(shared) if shared[..] == d.body[..] => shared.clone(),
                _ => {
                    let body = Bytes::from(d.body);
                    bodies.insert(d.seq, body.clone());
                    body
                }
            };
            receiver.queue.push_back(Delivery {
                id: d.id,
                seq: d.seq,
                body,
                enqueued_ms: d.enqueued_ms,
                attempts: d.attempts,
                next_attempt_ms: d.next_attempt_ms,
            });
        }
        let limit = outbox.config.max_pending_per_receiver;
        for receiver in outbox.receivers.values_mut() {
            receiver.trim(limit, &mut out);
        }
        (outbox, out)
    }

    /// Registers a receiver, or replaces the key and registration time of a
    /// URL already registered (its pending deliveries stay, and are signed
    /// with the new key from the next attempt on).
    ///
    /// The caller has already checked that the URL answers (SPEC §3.6's
    /// `HEAD`); this only checks its form and the limit.
    ///
    /// # Errors
    ///
    /// [`RegisterError::InvalidUrl`] if [`parse_url`] refuses the URL;
    /// [`RegisterError::TooMany`] for a new URL when
    /// [`OutboxConfig::max_receivers`] are registered. Nothing changes then.
    pub fn register(&mut self, registration: Registration) -> Result<Output, RegisterError> {
        parse_url(&registration.url)?;
        let record = WebhookRecord::RegistrationPut(registration.clone());
        match self.receivers.get_mut(&registration.url) {
            Some(receiver) => receiver.registration = registration,
            None => {
                // SPEC gap: §3.6 sets no limit; see DEFAULT_MAX_RECEIVERS.
                if self.receivers.len() >= self.config.max_receivers {
                    return Err(RegisterError::TooMany {
                        limit: self.config.max_receivers,
                    });
                }
                self.receivers
                    .insert(registration.url.clone(), Receiver::new(registration));
            }
        }
        Ok(Output {
            records: vec![record],
            ..Output::default()
        })
    }

    /// Unregisters a URL and discards its pending deliveries. An attempt
    /// already out for it is forgotten: its [`Outbox::on_result`] does
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`NotRegistered`] if the URL (compared as text) is not registered.
    pub fn unregister(&mut self, url: &str) -> Result<Output, NotRegistered> {
        let receiver = self.receivers.remove(url).ok_or(NotRegistered)?;
        if receiver.in_flight {
            if let Some(front) = receiver.queue.front() {
                self.in_flight.remove(&front.id);
            }
        }
        Ok(Output {
            records: vec![WebhookRecord::RegistrationDeleted {
                url: url.to_owned(),
            }],
            ..Output::default()
        })
    }

    /// Queues one order change for every registered receiver: one delivery
    /// each, with a new id, first due at `now_ms`. `body` is the change's
    /// JSON (the WebSocket message), shared, not copied, among receivers.
    ///
    /// A receiver with more than [`OutboxConfig::max_pending_per_receiver`]
    /// deliveries waiting behind its oldest one loses the oldest of those
    /// ([`DropReason::Overflow`]).
    pub fn enqueue(&mut self, body: Bytes, seq: u64, now_ms: i64) -> Output {
        let mut out = Output::default();
        if self.receivers.is_empty() {
            return out;
        }
        let limit = self.config.max_pending_per_receiver;
        for (url, receiver) in &mut self.receivers {
            let delivery = Delivery {
                id: self.next_id,
                seq,
                body: body.clone(),
                enqueued_ms: now_ms,
                attempts: 0,
                next_attempt_ms: now_ms,
            };
            self.next_id += 1;
            out.records
                .push(WebhookRecord::DeliveryPut(delivery.to_record(url)));
            receiver.queue.push_back(delivery);
            receiver.trim(limit, &mut out);
        }
        out.records
            .push(WebhookRecord::NextDeliveryId(self.next_id));
        out
    }

    /// The attempts to start now: for every receiver with nothing in flight,
    /// its oldest pending delivery if it is due (`next_attempt_ms <= now_ms`).
    /// Each is marked in flight until its [`Outbox::on_result`]. Deliveries
    /// that reached [`MAX_DELIVERY_AGE_MS`] are dropped on the way (records
    /// and [`Dropped`] in the same [`Output`]) and the next one is looked at.
    ///
    /// Call it after every other call and whenever [`Outbox::next_deadline`]
    /// passes; persist the records before starting the attempts.
    pub fn poll_attempts(&mut self, now_ms: i64) -> Output {
        let mut out = Output::default();
        for (url, receiver) in &mut self.receivers {
            if receiver.in_flight {
                continue;
            }
            while let Some(front) = receiver.queue.front() {
                if now_ms >= front.expires_ms() {
                    receiver.drop_front(url, &mut out);
                    continue;
                }
                if front.next_attempt_ms <= now_ms {
                    receiver.in_flight = true;
                    self.in_flight.insert(front.id, url.clone());
                    out.attempts.push(Attempt {
                        url: url.clone(),
                        delivery_id: front.id,
                        seq: front.seq,
                        body: front.body.clone(),
                        attempt: front.attempts.saturating_add(1),
                        key: receiver.registration.key,
                    });
                }
                break;
            }
        }
        out
    }

    /// Reports how an attempt ended: `Ok(())` for a 2xx, `Err(text)` for
    /// anything else (no connection, timeout, another status). Success
    /// deletes the delivery. A failure schedules the next attempt after
    /// [`backoff_delay_ms`] — never past the delivery's 24 h mark — or drops
    /// it if that mark has passed.
    ///
    /// An id that is not in flight (already reported, or its URL was
    /// unregistered since) changes nothing and returns an empty [`Output`].
    pub fn on_result(
        &mut self,
        delivery_id: u64,
        result: Result<(), String>,
        now_ms: i64,
    ) -> Output {
        let mut out = Output::default();
        let Some(url) = self.in_flight.remove(&delivery_id) else {
            return out;
        };
        let Some(receiver) = self.receivers.get_mut(&url) else {
            debug_assert!(false, "in-flight delivery {delivery_id} has no receiver");
            return out;
        };
        receiver.in_flight = false;
        let Some(front) = receiver.queue.front_mut() else {
            debug_assert!(false, "in-flight receiver {url} has an empty queue");
            return out;
        };
        debug_assert_eq!(front.id, delivery_id, "only the front is ever in flight");
        match result {
            Ok(()) => {
                out.records
                    .push(WebhookRecord::DeliveryDeleted { id: front.id });
                receiver.queue.pop_front();
                receiver.last_error = None;
            }
            Err(error) => {
                front.attempts = front.attempts.saturating_add(1);
                receiver.last_error = Some(truncated(error));
                if now_ms >= front.expires_ms() {
                    receiver.drop_front(&url, &mut out);
                } else {
                    let delay = backoff_delay_ms(front.attempts, splitmix64(&mut self.rng));
                    front.next_attempt_ms = now_ms.saturating_add(delay).min(front.expires_ms());
                    out.records.push(WebhookRecord::DeliveryRescheduled {
                        id: front.id,
                        attempts: front.attempts,
                        next_attempt_ms: front.next_attempt_ms,
                    });
                }
            }
        }
        out
    }

    /// When [`Outbox::poll_attempts`] next has something to do: the earliest
    /// time a receiver with nothing in flight has its oldest delivery due
    /// (or expiring). `None` when nothing waits. It may be in the past: then
    /// poll now. Attempts in flight set no deadline (their results do).
    pub fn next_deadline(&self) -> Option<i64> {
        self.receivers
            .values()
            .filter(|r| !r.in_flight)
            .filter_map(|r| r.queue.front().map(Delivery::due_ms))
            .min()
    }

    /// The registration of this URL, if any.
    pub fn registration(&self, url: &str) -> Option<&Registration> {
        self.receivers.get(url).map(|r| &r.registration)
    }

    /// Every registration, by URL.
    pub fn registrations(&self) -> impl Iterator<Item = &Registration> {
        self.receivers.values().map(|r| &r.registration)
    }

    /// How many deliveries to this URL are pending (the one in flight
    /// included); 0 for an unknown URL.
    pub fn pending_count(&self, url: &str) -> usize {
        self.receivers.get(url).map_or(0, |r| r.queue.len())
    }

    /// Whether this URL has an attempt out.
    pub fn is_in_flight(&self, url: &str) -> bool {
        self.receivers.get(url).is_some_and(|r| r.in_flight)
    }

    /// The id the next delivery will get.
    pub fn next_delivery_id(&self) -> u64 {
        self.next_id
    }

    /// Every pending delivery as a record (the one in flight included), by
    /// URL then id: what the store should hold. For checks and tests.
    pub fn pending(&self) -> Vec<PendingDelivery> {
        self.receivers
            .iter()
            .flat_map(|(url, r)| r.queue.iter().map(move |d| d.to_record(url)))
            .collect()
    }

    /// The limits in force.
    pub fn config(&self) -> OutboxConfig {
        self.config
    }
}

impl Receiver {
    fn new(registration: Registration) -> Self {
        Receiver {
            registration,
            queue: VecDeque::new(),
            in_flight: false,
            last_error: None,
        }
    }

    /// Drops the front delivery as expired. Never called while it is in
    /// flight.
    fn drop_front(&mut self, url: &str, out: &mut Output) {
        debug_assert!(!self.in_flight);
        if let Some(d) = self.queue.pop_front() {
            out.records
                .push(WebhookRecord::DeliveryDeleted { id: d.id });
            out.dropped.push(Dropped {
                url: url.to_owned(),
                delivery_id: d.id,
                seq: d.seq,
                attempts: d.attempts,
                reason: DropReason::Expired {
                    last_error: self.last_error.take(),
                },
            });
        }
    }

    /// Drops the oldest deliveries waiting behind the front one until at
    /// most `limit` wait. The front one is never dropped for room: it is in
    /// flight, or the next to go, and it leaves by delivery or expiry. The
    /// rule does not depend on what is in flight, so a restore (with nothing
    /// in flight) keeps exactly what was kept before. SPEC gap: see
    /// DEFAULT_MAX_PENDING_PER_RECEIVER.
    fn trim(&mut self, limit: usize, out: &mut Output) {
        while self.queue.len() > limit.saturating_add(1) {
            let Some(d) = self.queue.remove(1) else {
                break;
            };
            out.records
                .push(WebhookRecord::DeliveryDeleted { id: d.id });
            out.dropped.push(Dropped {
                url: self.registration.url.clone(),
                delivery_id: d.id,
                seq: d.seq,
                attempts: d.attempts,
                reason: DropReason::Overflow { limit },
            });
        }
    }
}
