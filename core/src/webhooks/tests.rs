//! SPEC §3.6 case by case: the signature against vectors computed outside
//! Rust, receiver URLs, and the outbox's schedule with explicit times.

use super::*;

const A: &str = "http://10.0.1.18:8989/v1/notify";
const B: &str = "https://pos.example/hooks?venue=7";
const KEY_A: [u8; 32] = [0xaa; 32];
const KEY_B: [u8; 32] = [0xbb; 32];
const T0: i64 = 1_430_833_209_000;

fn reg(url: &str, key: [u8; 32]) -> Registration {
    Registration {
        url: url.to_owned(),
        key,
        registered_ms: T0,
    }
}

fn outbox_with(urls: &[(&str, [u8; 32])]) -> Outbox {
    let mut outbox = Outbox::new(OutboxConfig::default(), 42);
    for (url, key) in urls {
        outbox.register(reg(url, *key)).unwrap();
    }
    outbox
}

fn body(seq: u64) -> Bytes {
    Bytes::from(format!(r#"{{"seq":{seq},"type":"ORDER_MODIFIED"}}"#))
}

/// (url, delivery id, seq, attempt number) of each attempt, in order.
fn summary(out: &Output) -> Vec<(String, u64, u64, u32)> {
    out.attempts
        .iter()
        .map(|a| (a.url.clone(), a.delivery_id, a.seq, a.attempt))
        .collect()
}

fn dropped_ids(out: &Output) -> Vec<u64> {
    out.dropped.iter().map(|d| d.delivery_id).collect()
}

// ---------------------------------------------------------------- signing

/// Vector computed outside Rust:
///
/// ```text
/// python3 -c "import hmac,hashlib
/// key=hashlib.sha256(b'0a9aeb44654c44dcaa26609ad318654d0a9aeb44654c44dc').digest()
/// body=b'{\"elapsedTime\":9,\"uuid\":\"147e7ccd-c17f-45b4-b5d4-bf14e9c0e244\",\"seq\":196}'
/// print(key.hex()); print(hmac.new(key,b'1430833209.'+body,hashlib.sha256).hexdigest())"
/// ```
///
/// and the same HMAC again with
/// `printf '%s' "1430833209.$BODY" | openssl dgst -sha256 -mac HMAC -macopt hexkey:88186a…38e2`.
#[test]
fn signature_matches_python_and_openssl() {
    let token = b"0a9aeb44654c44dcaa26609ad318654d0a9aeb44654c44dc";
    let key = registration_key(token);
    assert_eq!(
        hex(&key),
        "88186a36a2c4ffe2b640c6d139dfb3ad7726fe847e3a8225d3864b302b7438e2"
    );
    assert_eq!(
        key,
        crate::access::hash_token(token),
        "same digest as access"
    );
    let body = br#"{"elapsedTime":9,"uuid":"147e7ccd-c17f-45b4-b5d4-bf14e9c0e244","seq":196}"#;
    assert_eq!(
        sign(&key, 1_430_833_209, body),
        "t=1430833209,v1=bfe011ff0055352eff6e958a8f13d98936a105b743056be8f14c253df7e3f633"
    );
}

/// `hmac.new(bytes(range(32)), b'0.', hashlib.sha256).hexdigest()` and
/// `hmac.new(bytes(range(32)), b'-5.x', hashlib.sha256).hexdigest()`.
#[test]
fn signature_of_empty_body_and_negative_time() {
    let key: [u8; 32] = std::array::from_fn(|i| i as u8);
    assert_eq!(
        sign(&key, 0, b""),
        "t=0,v1=0e80838223869e9517439e639ad55157d90d439a465b4e569e67014750fa80da"
    );
    assert_eq!(
        sign(&key, -5, b"x"),
        "t=-5,v1=0ae52dedccb79e074e556bd39f2977713dd256149521e0182a64707dc03b942c"
    );
}

#[test]
fn header_names_are_the_spec_strings() {
    assert_eq!(SIGNATURE_HEADER, "X-Floorbell-Signature");
    assert_eq!(DELIVERY_HEADER, "X-Floorbell-Delivery");
    assert_eq!(CONTENT_TYPE, "application/json");
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

// ---------------------------------------------------------------- URLs

#[test]
fn urls_that_register() {
    let u = parse_url("http://10.0.1.18:8989/v1/notify").unwrap();
    assert_eq!(u.scheme, Scheme::Http);
    assert_eq!(u.host, "10.0.1.18");
    assert_eq!((u.port, u.explicit_port), (8989, true));
    assert_eq!(u.target, "/v1/notify");
    assert_eq!(u.host_header(), "10.0.1.18:8989");

    let u = parse_url("HTTPS://Pos.Example").unwrap();
    assert_eq!(u.scheme, Scheme::Https);
    assert_eq!(u.host, "Pos.Example");
    assert_eq!((u.port, u.explicit_port), (443, false));
    assert_eq!(u.target, "/");
    assert_eq!(u.to_string(), "https://Pos.Example/");

    let u = parse_url("http://[fe80::1]:8080/a%20b?x=1&y=%2F").unwrap();
    assert_eq!(u.host, "fe80::1");
    assert!(u.host_is_ipv6);
    assert_eq!(u.host_header(), "[fe80::1]:8080");
    assert_eq!(u.target, "/a%20b?x=1&y=%2F");

    let u = parse_url("http://pos_1.local.?venue=7").unwrap();
    assert_eq!(u.host, "pos_1.local.");
    assert_eq!(u.target, "/?venue=7");

    let long = format!("http://h/{}", "a".repeat(MAX_URL_LEN - 9));
    assert_eq!(long.len(), MAX_URL_LEN);
    assert!(parse_url(&long).is_ok());
}

#[test]
fn urls_that_do_not() {
    use UrlError::*;
    let cases: &[(&str, UrlError)] = &[
        ("", Empty),
        ("ftp://h/", UnsupportedScheme),
        ("10.0.1.18:8989/v1/notify", UnsupportedScheme),
        ("http:/h/", UnsupportedScheme),
        ("javascript:alert(1)", UnsupportedScheme),
        ("http://user:pw@h/", UserInfo),
        ("http://user@h/", UserInfo),
        ("http://h/#top", Fragment),
        ("http:///path", NoHost),
        ("http://", NoHost),
        ("http://:80/", NoHost),
        ("http://h:0/", BadPort),
        ("http://h:65536/", BadPort),
        ("http://h:/", BadPort),
        ("http://h:8x/", BadPort),
        ("http://h:1:2/", BadPort),
        ("http://[::1/", BadHost),
        ("http://[::1]x/", BadHost),
        ("http://[zz::1]/", BadHost),
        ("http://999.1.1.1/", BadHost),
        ("http://1.2.3/", BadHost),
        ("http://a..b/", BadHost),
        ("http://-a.b/", BadHost),
        ("http://a!b/", BadHost),
        ("http://h/a b", BadCharacter),
        ("http://h/\u{e9}", BadCharacter),
        ("http://h/\n", BadCharacter),
        ("http://h/<script>", BadPath),
        ("http://h/%zz", BadPath),
        ("http://h/%4", BadPath),
        ("http://h/a\\b", BadPath),
    ];
    for (url, want) in cases {
        assert_eq!(parse_url(url), Err(*want), "{url:?}");
    }
    let long = format!("http://h/{}", "a".repeat(MAX_URL_LEN));
    assert_eq!(parse_url(&long), Err(TooLong { limit: MAX_URL_LEN }));
    let label = "a".repeat(64);
    assert_eq!(parse_url(&format!("http://{label}/")), Err(BadHost));
}

#[test]
fn url_errors_read_well() {
    assert_eq!(
        UrlError::UnsupportedScheme.to_string(),
        "the receiver URL must start with http:// or https://"
    );
    assert_eq!(
        RegisterError::from(UrlError::UserInfo).to_string(),
        "the receiver URL must not contain a user name or password"
    );
    assert_eq!(
        RegisterError::TooMany { limit: 64 }.to_string(),
        "too many webhook receivers (64); unregister one first"
    );
}

// ---------------------------------------------------------------- registrations

#[test]
fn register_and_unregister_emit_their_records() {
    let mut outbox = Outbox::new(OutboxConfig::default(), 1);
    let out = outbox.register(reg(A, KEY_A)).unwrap();
    assert_eq!(out.records, [WebhookRecord::RegistrationPut(reg(A, KEY_A))]);
    assert!(out.attempts.is_empty() && out.dropped.is_empty());
    assert_eq!(outbox.registration(A), Some(&reg(A, KEY_A)));

    assert_eq!(
        outbox.register(reg("ftp://x/", KEY_A)),
        Err(RegisterError::InvalidUrl(UrlError::UnsupportedScheme))
    );
    assert_eq!(outbox.registrations().count(), 1);

    assert_eq!(outbox.unregister(B), Err(NotRegistered));
    let out = outbox.unregister(A).unwrap();
    assert_eq!(
        out.records,
        [WebhookRecord::RegistrationDeleted { url: A.to_owned() }]
    );
    assert_eq!(outbox.registration(A), None);
    assert_eq!(outbox.unregister(A), Err(NotRegistered));
}

#[test]
fn at_most_64_receivers_but_re_registering_always_works() {
    let mut outbox = Outbox::new(OutboxConfig::default(), 1);
    for i in 0..DEFAULT_MAX_RECEIVERS {
        outbox
            .register(reg(&format!("http://h{i}.test/"), KEY_A))
            .unwrap();
    }
    assert_eq!(
        outbox.register(reg(A, KEY_A)),
        Err(RegisterError::TooMany { limit: 64 })
    );
    // Replacing a key is no new receiver.
    let again = Registration {
        registered_ms: T0 + 5,
        ..reg("http://h3.test/", KEY_B)
    };
    assert_eq!(
        outbox.register(again.clone()).unwrap().records,
        [WebhookRecord::RegistrationPut(again.clone())]
    );
    assert_eq!(outbox.registration("http://h3.test/"), Some(&again));
    outbox.unregister("http://h0.test/").unwrap();
    outbox.register(reg(A, KEY_A)).unwrap();
}

#[test]
fn re_registering_keeps_the_queue_and_signs_with_the_new_key() {
    let mut outbox = outbox_with(&[(A, KEY_A)]);
    outbox.enqueue(body(1), 1, T0);
    outbox.enqueue(body(2), 2, T0);
    let first = outbox.poll_attempts(T0);
    assert_eq!(first.attempts[0].key, KEY_A);
    assert_eq!(
        first.attempts[0].signature(7),
        sign(&KEY_A, 7, &first.attempts[0].body)
    );

    outbox.register(reg(A, KEY_B)).unwrap();
    assert_eq!(outbox.pending_count(A), 2);
    assert!(outbox.is_in_flight(A), "the attempt out stays out");
    outbox.on_result(first.attempts[0].delivery_id, Ok(()), T0 + 10);
    let next = outbox.poll_attempts(T0 + 10);
    assert_eq!(summary(&next), [(A.to_owned(), 1, 2, 1)]);
    assert_eq!(next.attempts[0].key, KEY_B);
}

#[test]
fn unregistering_forgets_the_attempt_in_flight() {
    let mut outbox = outbox_with(&[(A, KEY_A)]);
    outbox.enqueue(body(1), 1, T0);
    let old = outbox.poll_attempts(T0).attempts[0].delivery_id;
    outbox.unregister(A).unwrap();
    outbox.register(reg(A, KEY_B)).unwrap();
    assert!(!outbox.is_in_flight(A));
    outbox.enqueue(body(2), 2, T0 + 1);
    // The old attempt's late answer touches nothing of the new registration.
    assert!(outbox.on_result(old, Ok(()), T0 + 2).is_empty());
    assert!(outbox.on_result(old, Err("late".into()), T0 + 2).is_empty());
    assert_eq!(
        summary(&outbox.poll_attempts(T0 + 2)),
        [(A.to_owned(), 1, 2, 1)]
    );
}

// ---------------------------------------------------------------- delivery

#[test]
fn enqueue_makes_one_delivery_per_receiver() {
    let mut outbox = Outbox::new(OutboxConfig::default(), 1);
    assert!(outbox.enqueue(body(1), 1, T0).is_empty(), "no receivers");
    assert_eq!(outbox.next_delivery_id(), 0, "no id spent");

    outbox.register(reg(B, KEY_B)).unwrap();
    outbox.register(reg(A, KEY_A)).unwrap();
    let out = outbox.enqueue(body(196), 196, T0);
    let put = |id: u64, url: &str| {
        WebhookRecord::DeliveryPut(PendingDelivery {
            id,
            url: url.to_owned(),
            seq: 196,
            body: body(196).to_vec(),
            enqueued_ms: T0,
            attempts: 0,
            next_attempt_ms: T0,
        })
    };
    // Receivers in URL order: "http://…" before "https://…".
    assert_eq!(
        out.records,
        [put(0, A), put(1, B), WebhookRecord::NextDeliveryId(2)]
    );
    assert!(out.attempts.is_empty(), "attempts only come from poll");
    assert_eq!(outbox.next_deadline(), Some(T0));

    let polled = outbox.poll_attempts(T0);
    assert!(polled.records.is_empty());
    assert_eq!(
        summary(&polled),
        [(A.to_owned(), 0, 196, 1), (B.to_owned(), 1, 196, 1)]
    );
    assert_eq!(polled.attempts[0].body, body(196));
    assert_eq!(polled.attempts[0].key, KEY_A);
    assert_eq!(polled.attempts[1].key, KEY_B);
}

#[test]
fn one_attempt_at_a_time_in_seq_order() {
    let mut outbox = outbox_with(&[(A, KEY_A)]);
    for seq in 10..13 {
        outbox.enqueue(body(seq), seq, T0);
    }
    assert_eq!(
        summary(&outbox.poll_attempts(T0)),
        [(A.to_owned(), 0, 10, 1)]
    );
    assert!(
        outbox.poll_attempts(T0 + 1).attempts.is_empty(),
        "in flight"
    );
    assert_eq!(outbox.next_deadline(), None, "waiting on the result");

    let out = outbox.on_result(0, Ok(()), T0 + 5);
    assert_eq!(out.records, [WebhookRecord::DeliveryDeleted { id: 0 }]);
    assert!(out.attempts.is_empty());
    assert_eq!(outbox.next_deadline(), Some(T0), "the next one is overdue");
    assert_eq!(
        summary(&outbox.poll_attempts(T0 + 5)),
        [(A.to_owned(), 1, 11, 1)]
    );
    assert!(outbox.on_result(1, Ok(()), T0 + 6).dropped.is_empty());
    assert_eq!(
        summary(&outbox.poll_attempts(T0 + 6)),
        [(A.to_owned(), 2, 12, 1)]
    );
    outbox.on_result(2, Ok(()), T0 + 7);
    assert_eq!(outbox.pending_count(A), 0);
    assert_eq!(outbox.next_deadline(), None);
    // A result reported twice is ignored.
    assert!(outbox.on_result(2, Ok(()), T0 + 8).is_empty());
}

#[test]
fn failures_back_off_exponentially_with_the_same_id() {
    let mut outbox = outbox_with(&[(A, KEY_A)]);
    outbox.enqueue(body(1), 1, T0);
    let mut now = T0;
    let mut last_delay = 0;
    for failure in 1..=14u32 {
        let polled = outbox.poll_attempts(now);
        assert_eq!(summary(&polled), [(A.to_owned(), 0, 1, failure)]);
        let out = outbox.on_result(0, Err("connection refused".into()), now);
        let [WebhookRecord::DeliveryRescheduled {
            id: 0,
            attempts,
            next_attempt_ms,
        }] = out.records[..]
        else {
            panic!("{out:?}");
        };
        assert_eq!(attempts, failure);
        let delay = next_attempt_ms - now;
        let (lo, hi) = backoff_bounds_ms(failure);
        assert!((lo..=hi).contains(&delay), "{failure}: {delay}");
        assert!(delay <= BACKOFF_MAX_MS);
        if hi < BACKOFF_MAX_MS {
            assert!(delay >= last_delay, "delays do not shrink before the cap");
        }
        last_delay = delay;
        assert_eq!(outbox.next_deadline(), Some(next_attempt_ms));
        assert!(outbox
            .poll_attempts(next_attempt_ms - 1)
            .attempts
            .is_empty());
        now = next_attempt_ms;
    }
}

#[test]
fn backoff_bounds() {
    assert_eq!(backoff_bounds_ms(0), (500, 1_000));
    assert_eq!(backoff_bounds_ms(1), (500, 1_000));
    assert_eq!(backoff_bounds_ms(2), (1_000, 2_000));
    assert_eq!(backoff_bounds_ms(10), (256_000, 512_000));
    assert_eq!(backoff_bounds_ms(11), (300_000, 600_000));
    assert_eq!(backoff_bounds_ms(u32::MAX), (300_000, 600_000));
    assert_eq!(backoff_delay_ms(3, 0), 2_000);
    assert_eq!(backoff_delay_ms(3, 2_000), 4_000);
    assert_eq!(backoff_delay_ms(3, 2_001), 2_000);
    assert_eq!(
        backoff_delay_ms(40, u64::MAX),
        300_000 + (u64::MAX % 300_001) as i64
    );
}

#[test]
fn a_dead_receiver_never_holds_up_another() {
    let mut outbox = outbox_with(&[(A, KEY_A), (B, KEY_B)]);
    let mut now = T0;
    let mut delivered_b = vec![];
    for seq in 1..=20u64 {
        outbox.enqueue(body(seq), seq, now);
        let polled = outbox.poll_attempts(now);
        for attempt in polled.attempts {
            let result = if attempt.url == A {
                Err("timed out".to_owned())
            } else {
                delivered_b.push(attempt.seq);
                Ok(())
            };
            outbox.on_result(attempt.delivery_id, result, now);
        }
        // Everything B is owed went out at once, whatever A's state.
        assert_eq!(outbox.pending_count(B), 0);
        now += 700;
    }
    assert_eq!(delivered_b, (1..=20).collect::<Vec<_>>());
    assert_eq!(outbox.pending_count(A), 20, "A keeps its own backlog");
}

#[test]
fn dropped_at_24_hours_with_the_last_error() {
    let mut outbox = outbox_with(&[(A, KEY_A)]);
    outbox.enqueue(body(1), 1, T0);
    outbox.enqueue(body(2), 2, T0 + 60_000);
    let expiry = T0 + MAX_DELIVERY_AGE_MS;
    let mut now = T0;
    let mut failures = 0;
    let dropped = loop {
        let out = outbox.poll_attempts(now);
        if !out.dropped.is_empty() {
            break out;
        }
        assert!(now < expiry, "attempted only before the 24 h mark");
        let [attempt] = &out.attempts[..] else {
            panic!("{out:?}")
        };
        assert_eq!(attempt.delivery_id, 0, "the later change waits");
        let out = outbox.on_result(
            attempt.delivery_id,
            Err(format!("HTTP 50{}", failures % 4)),
            now,
        );
        failures += 1;
        assert!(out.dropped.is_empty());
        now = outbox.next_deadline().unwrap();
        assert!(now <= expiry, "the schedule stops at the 24 h mark");
    };
    assert_eq!(now, expiry);
    assert!(failures > 150, "about 190 tries in a day: {failures}");
    assert_eq!(
        dropped.records,
        [WebhookRecord::DeliveryDeleted { id: 0 }],
        "the second change is not 24 h old yet"
    );
    assert_eq!(
        dropped.dropped,
        [Dropped {
            url: A.to_owned(),
            delivery_id: 0,
            seq: 1,
            attempts: failures,
            reason: DropReason::Expired {
                last_error: Some(format!("HTTP 50{}", (failures - 1) % 4)),
            },
        }]
    );
    assert!(dropped.dropped[0].to_string().starts_with(
        "webhook delivery 0 (seq 1) to http://10.0.1.18:8989/v1/notify dropped after "
    ));
    assert!(dropped.dropped[0]
        .to_string()
        .contains("not delivered within 24 h of the change (last error: HTTP 50"));
    // The next change goes out right away, as attempt 1.
    assert_eq!(summary(&dropped), [(A.to_owned(), 1, 2, 1)]);
}

#[test]
fn a_failure_after_24_hours_drops_at_once() {
    let mut outbox = outbox_with(&[(A, KEY_A)]);
    outbox.enqueue(body(1), 1, T0);
    outbox.enqueue(body(2), 2, T0);
    outbox.poll_attempts(T0 + MAX_DELIVERY_AGE_MS - 1);
    let out = outbox.on_result(0, Err("slow".into()), T0 + MAX_DELIVERY_AGE_MS + 5_000);
    assert_eq!(dropped_ids(&out), [0]);
    assert_eq!(out.records, [WebhookRecord::DeliveryDeleted { id: 0 }]);
    // Its successor is as old: dropped when polled, without an attempt.
    let out = outbox.poll_attempts(T0 + MAX_DELIVERY_AGE_MS + 5_000);
    assert_eq!(dropped_ids(&out), [1]);
    assert!(out.attempts.is_empty());
    assert_eq!(
        out.dropped[0].reason,
        DropReason::Expired { last_error: None }
    );
    assert_eq!(outbox.next_deadline(), None);
}

#[test]
fn a_success_after_24_hours_still_counts() {
    let mut outbox = outbox_with(&[(A, KEY_A)]);
    outbox.enqueue(body(1), 1, T0);
    outbox.poll_attempts(T0 + MAX_DELIVERY_AGE_MS - 1);
    let out = outbox.on_result(0, Ok(()), T0 + MAX_DELIVERY_AGE_MS + 1);
    assert_eq!(out.records, [WebhookRecord::DeliveryDeleted { id: 0 }]);
    assert!(out.dropped.is_empty());
}

#[test]
fn overflow_drops_the_oldest_waiting_never_the_oldest_of_all() {
    let config = OutboxConfig {
        max_pending_per_receiver: 3,
        ..OutboxConfig::default()
    };
    let mut outbox = Outbox::new(config, 9);
    outbox.register(reg(A, KEY_A)).unwrap();
    for seq in 0..4 {
        assert!(outbox.enqueue(body(seq), seq, T0).dropped.is_empty());
    }
    // Four pending: the oldest and three behind it. One more is too many:
    // the oldest of those behind goes, the oldest of all stays next.
    let out = outbox.enqueue(body(4), 4, T0);
    assert_eq!(dropped_ids(&out), [1]);
    assert_eq!(out.dropped[0].reason, DropReason::Overflow { limit: 3 });
    assert!(out.dropped[0]
        .to_string()
        .ends_with("the receiver has more than 3 deliveries waiting; the oldest goes"));
    assert_eq!(
        out.records[1..],
        [
            WebhookRecord::DeliveryDeleted { id: 1 },
            WebhookRecord::NextDeliveryId(5)
        ]
    );
    // The same while the oldest is in flight.
    assert_eq!(
        summary(&outbox.poll_attempts(T0)),
        [(A.to_owned(), 0, 0, 1)]
    );
    let out = outbox.enqueue(body(5), 5, T0);
    assert_eq!(dropped_ids(&out), [2]);
    assert_eq!(outbox.pending_count(A), 4);
    outbox.on_result(0, Ok(()), T0);
    let seqs: Vec<u64> = outbox.pending().iter().map(|d| d.seq).collect();
    assert_eq!(seqs, [3, 4, 5]);
}

// ---------------------------------------------------------------- restore

/// Folds records into a plain store, as the real one would.
#[derive(Debug, Default)]
pub(super) struct Store {
    pub registrations: std::collections::BTreeMap<String, Registration>,
    pub pending: std::collections::BTreeMap<u64, PendingDelivery>,
    pub next_id: u64,
}

impl Store {
    pub fn apply(&mut self, records: &[WebhookRecord]) {
        for record in records {
            match record {
                WebhookRecord::RegistrationPut(r) => {
                    self.registrations.insert(r.url.clone(), r.clone());
                }
                WebhookRecord::RegistrationDeleted { url } => {
                    self.registrations.remove(url);
                    self.pending.retain(|_, d| &d.url != url);
                }
                WebhookRecord::DeliveryPut(d) => {
                    self.pending.insert(d.id, d.clone());
                }
                WebhookRecord::DeliveryRescheduled {
                    id,
                    attempts,
                    next_attempt_ms,
                } => {
                    if let Some(d) = self.pending.get_mut(id) {
                        d.attempts = *attempts;
                        d.next_attempt_ms = *next_attempt_ms;
                    }
                }
                WebhookRecord::DeliveryDeleted { id } => {
                    self.pending.remove(id);
                }
                WebhookRecord::NextDeliveryId(next) => self.next_id = *next,
            }
        }
    }

    pub fn restore(&self, config: OutboxConfig, seed: u64) -> (Outbox, Output) {
        Outbox::restore(
            config,
            seed,
            self.registrations.values().cloned().collect(),
            // Handed back in a shuffled order: restore must sort.
            self.pending.values().rev().cloned().collect(),
            self.next_id,
        )
    }

    /// The pending deliveries ordered as [`Outbox::pending`] lists them.
    pub fn pending_by_url(&self) -> Vec<PendingDelivery> {
        let mut all: Vec<PendingDelivery> = self.pending.values().cloned().collect();
        all.sort_by(|a, b| (&a.url, a.id).cmp(&(&b.url, b.id)));
        all
    }
}

#[test]
fn restore_resumes_schedule_ids_and_order() {
    let mut store = Store::default();
    let mut outbox = Outbox::new(OutboxConfig::default(), 5);
    store.apply(&outbox.register(reg(A, KEY_A)).unwrap().records);
    store.apply(&outbox.register(reg(B, KEY_B)).unwrap().records);
    for seq in 1..=3 {
        store.apply(&outbox.enqueue(body(seq), seq, T0).records);
    }
    store.apply(&outbox.poll_attempts(T0).records);
    store.apply(&outbox.on_result(0, Err("503".into()), T0 + 10).records); // A fails
    store.apply(&outbox.on_result(1, Ok(()), T0 + 10).records); // B delivers seq 1
    let retry_at = outbox.pending()[0].next_attempt_ms;
    assert_eq!(outbox.pending()[0].id, 0);
    assert!(retry_at > T0 + 10);
    assert_eq!(store.pending_by_url(), outbox.pending());

    // Crash with B's next attempt out; restart.
    let b_next = outbox.poll_attempts(T0 + 11);
    assert_eq!(summary(&b_next), [(B.to_owned(), 3, 2, 1)]);
    drop(outbox);
    let (mut outbox, out) = store.restore(OutboxConfig::default(), 6);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(outbox.next_delivery_id(), 6);
    assert_eq!(outbox.pending(), store.pending_by_url());
    assert_eq!(outbox.registration(B), Some(&reg(B, KEY_B)));

    // B's interrupted attempt is made again, same id; A waits its backoff.
    let polled = outbox.poll_attempts(T0 + 12);
    assert_eq!(summary(&polled), [(B.to_owned(), 3, 2, 1)]);
    assert_eq!(outbox.next_deadline(), Some(retry_at));
    assert_eq!(
        summary(&outbox.poll_attempts(retry_at)),
        [(A.to_owned(), 0, 1, 2)],
        "A's retry keeps its id and attempt count"
    );
    // New ids continue past every id ever used.
    let out = outbox.enqueue(body(4), 4, T0 + 20);
    assert_eq!(out.records.last(), Some(&WebhookRecord::NextDeliveryId(8)));
}

#[test]
fn ids_are_not_reused_once_everything_is_delivered() {
    let mut store = Store::default();
    let mut outbox = Outbox::new(OutboxConfig::default(), 5);
    store.apply(&outbox.register(reg(A, KEY_A)).unwrap().records);
    store.apply(&outbox.enqueue(body(1), 1, T0).records);
    store.apply(&outbox.poll_attempts(T0).records);
    store.apply(&outbox.on_result(0, Ok(()), T0).records);
    assert!(store.pending.is_empty());
    let (mut outbox, _) = store.restore(OutboxConfig::default(), 5);
    let out = outbox.enqueue(body(2), 2, T0);
    let WebhookRecord::DeliveryPut(d) = &out.records[0] else {
        panic!("{out:?}")
    };
    assert_eq!(d.id, 1);
}

#[test]
fn restore_drops_orphans_and_trims_to_the_limit() {
    let pending = |id: u64, url: &str| PendingDelivery {
        id,
        url: url.to_owned(),
        seq: id + 100,
        body: body(id + 100).to_vec(),
        enqueued_ms: T0,
        attempts: 2,
        next_attempt_ms: T0 + 4_000,
    };
    let config = OutboxConfig {
        max_pending_per_receiver: 1,
        ..OutboxConfig::default()
    };
    let (outbox, out) = Outbox::restore(
        config,
        0,
        vec![reg(A, KEY_A)],
        vec![pending(9, A), pending(3, B), pending(4, A), pending(7, A)],
        2,
    );
    assert_eq!(outbox.next_delivery_id(), 10);
    assert_eq!(dropped_ids(&out), [3, 7]);
    assert_eq!(out.dropped[0].reason, DropReason::Orphaned);
    assert_eq!(out.dropped[1].reason, DropReason::Overflow { limit: 1 });
    assert_eq!(
        out.records,
        [
            WebhookRecord::DeliveryDeleted { id: 3 },
            WebhookRecord::DeliveryDeleted { id: 7 }
        ]
    );
    let ids: Vec<u64> = outbox.pending().iter().map(|d| d.id).collect();
    assert_eq!(ids, [4, 9], "the oldest stays, one waits behind it");
    assert_eq!(outbox.next_deadline(), Some(T0 + 4_000));
}

#[test]
fn restore_shares_one_body_per_change() {
    let pending = |id: u64, url: &str| PendingDelivery {
        id,
        url: url.to_owned(),
        seq: 5,
        body: body(5).to_vec(),
        enqueued_ms: T0,
        attempts: 0,
        next_attempt_ms: T0,
    };
    let (mut outbox, _) = Outbox::restore(
        OutboxConfig::default(),
        0,
        vec![reg(A, KEY_A), reg(B, KEY_B)],
        vec![pending(0, A), pending(1, B)],
        0,
    );
    let polled = outbox.poll_attempts(T0);
    assert_eq!(polled.attempts.len(), 2);
    assert_eq!(
        polled.attempts[0].body.as_ptr(),
        polled.attempts[1].body.as_ptr()
    );
}

#[test]
fn jitter_is_a_function_of_the_seed() {
    let run = |seed: u64| {
        let mut outbox = Outbox::new(OutboxConfig::default(), seed);
        outbox.register(reg(A, KEY_A)).unwrap();
        outbox.enqueue(body(1), 1, T0);
        let mut out = vec![];
        let mut now = T0;
        for _ in 0..8 {
            outbox.poll_attempts(now);
            outbox.on_result(0, Err("x".into()), now);
            now = outbox.next_deadline().unwrap();
            out.push(now);
        }
        out
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn long_error_text_is_cut_on_a_char_boundary() {
    let mut outbox = outbox_with(&[(A, KEY_A)]);
    outbox.enqueue(body(1), 1, T0);
    outbox.poll_attempts(T0 + MAX_DELIVERY_AGE_MS - 1);
    let out = outbox.on_result(0, Err("é".repeat(400)), T0 + MAX_DELIVERY_AGE_MS);
    let DropReason::Expired {
        last_error: Some(e),
    } = &out.dropped[0].reason
    else {
        panic!("{out:?}")
    };
    assert_eq!(e.len(), MAX_ERROR_LEN);
}

/// Found by the proptest: a receiver full to the limit with its oldest
/// delivery in flight must restore without losing anything.
#[test]
fn restore_keeps_a_full_queue_whose_oldest_was_in_flight() {
    let config = OutboxConfig {
        max_pending_per_receiver: 4,
        ..OutboxConfig::default()
    };
    let mut store = Store::default();
    let mut outbox = Outbox::new(config, 0);
    store.apply(&outbox.register(reg(A, KEY_A)).unwrap().records);
    store.apply(&outbox.enqueue(body(1), 1, T0).records);
    store.apply(&outbox.poll_attempts(T0).records);
    for seq in 2..=5 {
        let out = outbox.enqueue(body(seq), seq, T0);
        assert!(out.dropped.is_empty());
        store.apply(&out.records);
    }
    let (outbox, out) = store.restore(config, 0);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(outbox.pending_count(A), 5);
}

/// Log lines name a receiver without the secrets its URL may carry.
#[test]
fn loggable_urls_leave_out_queries_and_user_information() {
    for (url, shown) in [
        ("http://h:8080/in?key=s3cret", "http://h:8080/in"),
        ("https://user:s3cret@h/in#frag", "https://h/in"),
        ("http://h/a@b?x=s3cret", "http://h/a@b"),
        ("http://h", "http://h"),
    ] {
        assert_eq!(loggable_url(url), shown, "{url}");
    }
    let dropped = Dropped {
        delivery_id: 1,
        seq: 2,
        url: "http://h/in?key=s3cret".into(),
        attempts: 3,
        reason: DropReason::Expired {
            last_error: Some("http://h/in?key=s3cret: connection refused".into()),
        },
    };
    let line = dropped.to_string();
    assert!(
        !line.contains("s3cret") && line.contains("http://h/in"),
        "{line}"
    );
    // A client that prints the URL rewritten still leaks nothing.
    for (url, error, shown) in [
        (
            "http://h?k=s3cret",
            "bad uri http://h/?k=s3cret",
            "bad uri http://h/",
        ),
        (
            "http://u:s3cret@h/in",
            "refused: http://u:s3cret@h:80/in",
            "refused: http://h:80/in",
        ),
        (
            "http://h/in#s3cret",
            "http://h/in#s3cret failed",
            "http://h/in failed",
        ),
        ("http://h/in?", "what? http://h/in?", "what? http://h/in"),
    ] {
        assert_eq!(scrub_url(error, url), shown, "{url}");
    }
}
