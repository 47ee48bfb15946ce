//! SPEC §3.3 and §3.4 byte for byte: every operation of the tracker, every
//! error case, the zone's arithmetic and every parser's 400s, with explicit
//! times and random numbers.

use super::wire::*;
use super::*;

/// 2015-05-05T13:40:09 in Moscow (UTC+3): the SPEC example's `created`.
const T0: i64 = 1_430_822_409_000;
const SEC: i64 = 1000;
/// Random bits that make the uuid `147e7ccd-1234-4567-89ab-cdef01234567`
/// (the version and variant bits already read 4 and 8).
const R0: u128 = 0x147e_7ccd_1234_4567_89ab_cdef_0123_4567;
const U0: &str = "147e7ccd-1234-4567-89ab-cdef01234567";

fn moscow() -> Zone {
    Zone::from_iana("Europe/Moscow").unwrap()
}

fn new_york() -> Zone {
    Zone::from_iana("America/New_York").unwrap()
}

fn req(name: &str, order_type: OrderType, location: &str) -> StartOrder {
    StartOrder {
        name: name.into(),
        order_type,
        location: location.into(),
    }
}

/// Starts order `name` at `now` with random bits derived from the name.
fn start(t: &mut OrderTracker, name: &str, location: &str, now: i64) -> Order {
    let random = u128::from(name.parse::<u32>().unwrap_or(0)) << 64 | 0xfeed;
    t.start(req(name, OrderType::OnPremise, location), random, now)
        .unwrap()
        .order
}

fn set_location(location: &str) -> ModifyOrder {
    ModifyOrder {
        order_type: None,
        location: Some(location.into()),
    }
}

fn set_type(order_type: OrderType) -> ModifyOrder {
    ModifyOrder {
        order_type: Some(order_type),
        location: None,
    }
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap()
}

fn names<'a>(orders: impl IntoIterator<Item = &'a Order>) -> Vec<String> {
    orders.into_iter().map(|o| o.name.clone()).collect()
}

fn bad_request(err: OrderError) -> String {
    assert_eq!(err.status(), 400, "{err:?}");
    err.to_string()
}

// ---------------------------------------------------------------------------
// The summary and the messages, byte for byte.

/// The SPEC's example order: started at 13:40:09 without a table, located
/// on table 22 nine seconds later, as change 196.
fn spec_example() -> (OrderTracker, Change, Change) {
    let mut t = OrderTracker::restore(Vec::new(), 195);
    let created = t
        .start(req("66", OrderType::OnPremise, ""), R0, T0)
        .unwrap();
    let (_, located) = t.modify("66", set_location("22"), T0 + 9 * SEC).unwrap();
    (t, created, located.unwrap())
}

const SPEC_SUMMARY: &str = r#"{"elapsedTime":9,"uuid":"147e7ccd-1234-4567-89ab-cdef01234567","seq":196,"created":"2015-05-05T13:40:09","orderType":"ON_PREMISE","locationName":"22","state":"located","stateStarted":"2015-05-05T13:40:18","name":"66"}"#;

#[test]
fn the_summary_is_the_spec_example() {
    let (_, _, located) = spec_example();
    assert_eq!(
        order_json(&located.order, T0 + 9 * SEC + 999, &moscow()),
        SPEC_SUMMARY
    );
    let mut out = b"prefix".to_vec();
    write_order(&mut out, &located.order, T0 + 9 * SEC, &moscow());
    assert_eq!(out, [b"prefix", SPEC_SUMMARY.as_bytes()].concat());
}

#[test]
fn change_messages_carry_the_type_where_the_seed_does() {
    let (mut t, created, located) = spec_example();
    assert_eq!(
        text(change_message(&created, T0, &moscow())),
        r#"{"elapsedTime":0,"uuid":"147e7ccd-1234-4567-89ab-cdef01234567","seq":195,"created":"2015-05-05T13:40:09","orderType":"ON_PREMISE","locationName":"","state":"started","stateStarted":"2015-05-05T13:40:09","type":"ORDER_CREATED","name":"66"}"#
    );
    // The seed's "Example payload sent to registered listeners"
    // (table-tracker-webhook.txt), but for its uuid, byte for byte.
    let seed = r#"{"elapsedTime":9,"uuid":"147e7ccd-c17f-45b4-b5d4-bf14e9c0e244","seq":196,"created":"2015-05-05T13:40:09","orderType":"ON_PREMISE","locationName":"22","state":"located","stateStarted":"2015-05-05T13:40:18","type":"ORDER_MODIFIED","name":"66"}"#;
    assert_eq!(
        text(change_message(&located, T0 + 9 * SEC, &moscow())),
        seed.replace("c17f-45b4-b5d4-bf14e9c0e244", "1234-4567-89ab-cdef01234567")
    );
    let paged = t.page(U0, true, T0 + 20 * SEC).unwrap();
    assert_eq!(
        text(change_message(&paged, T0 + 20 * SEC, &moscow())),
        r#"{"elapsedTime":20,"uuid":"147e7ccd-1234-4567-89ab-cdef01234567","seq":197,"created":"2015-05-05T13:40:09","orderType":"ON_PREMISE","locationName":"22","state":"located","stateStarted":"2015-05-05T13:40:18","type":"ORDER_PAGED","name":"66"}"#
    );
    // The clear is ORDER_MODIFIED with state cleared; elapsedTime stops there.
    let cleared = t.clear("66", T0 + 61 * SEC).unwrap();
    assert_eq!(
        text(change_message(&cleared, T0 + 3600 * SEC, &moscow())),
        r#"{"elapsedTime":61,"uuid":"147e7ccd-1234-4567-89ab-cdef01234567","seq":198,"created":"2015-05-05T13:40:09","orderType":"ON_PREMISE","locationName":"22","state":"cleared","stateStarted":"2015-05-05T13:41:10","type":"ORDER_MODIFIED","name":"66"}"#
    );
}

#[test]
fn timestamps_read_in_the_zone_in_force() {
    let (_, _, located) = spec_example();
    let utc = order_json(&located.order, T0 + 9 * SEC, &Zone::utc());
    assert!(utc.contains(r#""created":"2015-05-05T10:40:09""#), "{utc}");
    assert!(
        utc.contains(r#""stateStarted":"2015-05-05T10:40:18""#),
        "{utc}"
    );
    let ny = order_json(&located.order, T0 + 9 * SEC, &new_york());
    assert!(ny.contains(r#""created":"2015-05-05T06:40:09""#), "{ny}");
}

#[test]
fn answers_and_lists() {
    let (mut t, _, _) = spec_example();
    let now = T0 + 9 * SEC;
    let z = moscow();
    assert_eq!(
        text(one_json(201, t.active_order("66").unwrap(), now, &z)),
        format!(r#"{{"status":201,"activeorder":{SPEC_SUMMARY}}}"#)
    );
    assert_eq!(
        text(list_json(t.active(), now, &z)),
        format!(r#"{{"status":200,"count":1,"items":[{SPEC_SUMMARY}]}}"#)
    );
    assert_eq!(
        text(active_orders_message(t.active(), now, &z)),
        format!(r#"{{"type":"ACTIVE_ORDERS","count":1,"items":[{SPEC_SUMMARY}]}}"#)
    );
    let second = t
        .start(req("7", OrderType::ToGo, ""), 0, T0 + 9 * SEC)
        .unwrap();
    let second_json = order_json(&second.order, now, &z);
    assert_eq!(
        text(list_json(t.active(), now, &z)),
        format!(r#"{{"status":200,"count":2,"items":[{SPEC_SUMMARY},{second_json}]}}"#)
    );
    t.clear_all(now);
    assert_eq!(
        text(active_orders_message(t.active(), now, &z)),
        r#"{"type":"ACTIVE_ORDERS","count":0,"items":[]}"#
    );
    assert_eq!(
        text(list_json(Vec::<&Order>::new(), now, &z)),
        r#"{"status":200,"count":0,"items":[]}"#
    );
    assert_eq!(text(cleared_count_json(2)), r#"{"status":200,"count":2}"#);
}

#[test]
fn statistics_settings_and_errors_json() {
    let s = Statistics {
        date: "2015-05-05".into(),
        target_time: 300,
        orders: 12,
        located: 10,
        on_target: 7,
        average_time_to_locate: 184,
    };
    assert_eq!(
        text(statistics_json(&s)),
        r#"{"status":200,"statistics":{"date":"2015-05-05","targetTime":300,"orders":12,"located":10,"onTarget":7,"averageTimeToLocate":184}}"#
    );
    let settings = Settings {
        target_time_default: 300,
        zone: moscow(),
    };
    assert_eq!(
        text(settings_json(&settings)),
        r#"{"status":200,"settings":{"targetTimeDefault":300,"timezone":"Europe/Moscow"}}"#
    );
    assert_eq!(
        SETTINGS_CHANGED,
        br#"{"status":200,"message":"Settings successfully changed."}"#
    );
    assert_eq!(
        text(error_json(&OrderError::NotFound(
            "no active order named \"66\"".into()
        ))),
        r#"{"status":404,"message":"no active order named \"66\""}"#
    );
}

#[test]
fn strings_are_json_escaped() {
    let mut t = OrderTracker::new();
    let order = t
        .start(req("1", OrderType::ToGo, "Terrasse \"Süd\" \\ 2"), R0, T0)
        .unwrap()
        .order;
    let json = order_json(&order, T0, &Zone::utc());
    assert!(
        json.contains(r#""locationName":"Terrasse \"Süd\" \\ 2","state":"located""#),
        "{json}"
    );
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["locationName"], "Terrasse \"Süd\" \\ 2");
    assert_eq!(parsed["orderType"], "TO_GO");
}

#[test]
fn wire_spellings_round_trip() {
    for t in [OrderType::OnPremise, OrderType::ToGo] {
        assert_eq!(OrderType::parse(t.as_str()), Some(t));
    }
    for s in [
        OrderState::Started,
        OrderState::Located,
        OrderState::Cleared,
    ] {
        assert_eq!(OrderState::parse(s.as_str()), Some(s));
    }
    assert_eq!(OrderType::parse("to_go"), None);
    assert_eq!(OrderState::parse("Started"), None);
    assert_eq!(ChangeKind::Created.as_str(), "ORDER_CREATED");
    assert_eq!(ChangeKind::Paged.as_str(), "ORDER_PAGED");
    assert_eq!(ChangeKind::Modified.as_str(), "ORDER_MODIFIED");
}

// ---------------------------------------------------------------------------
// Start.

#[test]
fn start_is_located_iff_a_location_is_given() {
    let mut t = OrderTracker::new();
    let a = t.start(req("1", OrderType::ToGo, "22"), 1, T0).unwrap();
    assert_eq!(a.kind, ChangeKind::Created);
    assert_eq!(a.order.state, OrderState::Located);
    assert_eq!(a.order.located_ms, Some(T0));
    assert_eq!(a.order.seq, 1, "seq starts at 1");
    let b = t.start(req("2", OrderType::ToGo, ""), 2, T0).unwrap();
    assert_eq!(b.order.state, OrderState::Started);
    assert_eq!(b.order.located_ms, None);
    assert_eq!(b.order.seq, 2);
    assert_eq!((b.order.created_ms, b.order.state_started_ms), (T0, T0));
    assert_eq!(t.next_seq(), 3);
    assert_eq!((t.len_active(), t.len_all()), (2, 2));
}

#[test]
fn uuids_are_lowercase_v4_from_the_random_argument() {
    let mut t = OrderTracker::new();
    let a = t.start(req("1", OrderType::ToGo, ""), R0, T0).unwrap();
    assert_eq!(a.order.uuid, U0);
    // The version and variant bits are forced, whatever the random bits.
    let b = t
        .start(req("2", OrderType::ToGo, ""), u128::MAX, T0)
        .unwrap();
    assert_eq!(b.order.uuid, "ffffffff-ffff-4fff-bfff-ffffffffffff");
    // A repeat is stepped to a fresh v4 uuid, deterministically.
    let c = t.start(req("3", OrderType::ToGo, ""), R0, T0).unwrap();
    assert_eq!(c.order.uuid, "147e7ccd-1234-4567-89ab-cdef01234568");
    let d = t.start(req("4", OrderType::ToGo, ""), R0, T0).unwrap();
    assert_eq!(d.order.uuid, "147e7ccd-1234-4567-89ab-cdef01234569");
    for o in t.active() {
        let u = uuid::Uuid::try_parse(&o.uuid).unwrap();
        assert_eq!(u.get_version_num(), 4);
        assert_eq!(u.hyphenated().to_string(), o.uuid);
    }
}

#[test]
fn an_active_name_is_a_conflict_until_cleared() {
    let mut t = OrderTracker::new();
    start(&mut t, "66", "", T0);
    let err = t.start(req("66", OrderType::ToGo, "3"), 9, T0).unwrap_err();
    assert_eq!(err.status(), 409);
    assert_eq!(err.to_string(), r#"an active order is already named "66""#);
    assert_eq!(t.next_seq(), 2, "a refused start uses no seq");
    // "066" is another name.
    start(&mut t, "066", "", T0);
    t.clear("66", T0 + SEC).unwrap();
    let again = t
        .start(req("66", OrderType::ToGo, "3"), 9, T0 + 2 * SEC)
        .unwrap();
    assert_eq!(again.order.seq, 4);
    assert_eq!(t.active_order("66").unwrap().uuid, again.order.uuid);
    assert_eq!(names(t.active()), ["066", "66"]);
    assert_eq!(t.len_all(), 3);
}

#[test]
fn start_checks_name_and_location() {
    let mut t = OrderTracker::new();
    for name in ["", "1234567", "abc", "6 6", "-1", "+1", "٣"] {
        let err = t.start(req(name, OrderType::ToGo, ""), 0, T0).unwrap_err();
        assert_eq!(
            bad_request(err),
            "\"name\" must be a string of 1 to 6 digits",
            "{name:?}"
        );
    }
    assert!(t.start(req("123456", OrderType::ToGo, ""), 0, T0).is_ok());
    let long = "x".repeat(MAX_LOCATION_LEN + 1);
    let err = t
        .start(req("1", OrderType::ToGo, &long), 0, T0)
        .unwrap_err();
    assert_eq!(
        bad_request(err),
        "\"locationName\" must be at most 64 bytes"
    );
    let err = t
        .start(req("1", OrderType::ToGo, "a\tb"), 0, T0)
        .unwrap_err();
    assert_eq!(
        bad_request(err),
        "\"locationName\" must not contain control characters"
    );
    assert_eq!(t.next_seq(), 2);
}

// ---------------------------------------------------------------------------
// Modify.

#[test]
fn modify_by_name_and_by_uuid() {
    let mut t = OrderTracker::new();
    let o = start(&mut t, "66", "", T0);
    let (after, change) = t.modify("66", set_type(OrderType::ToGo), T0 + SEC).unwrap();
    let change = change.unwrap();
    assert_eq!(change.kind, ChangeKind::Modified);
    assert_eq!(change.order, after);
    assert_eq!(after.order_type, OrderType::ToGo);
    assert_eq!(after.state, OrderState::Started);
    assert_eq!(after.state_started_ms, T0, "the state did not change");
    assert_eq!(after.seq, 2);
    // By uuid, in any case.
    let upper = o.uuid.to_ascii_uppercase();
    let (after, change) = t.modify(&upper, set_location("22"), T0 + 5 * SEC).unwrap();
    assert!(change.is_some());
    assert_eq!(after.uuid, o.uuid);
    assert_eq!(after.state, OrderState::Located);
    assert_eq!(after.state_started_ms, T0 + 5 * SEC);
    assert_eq!(after.located_ms, Some(T0 + 5 * SEC));
    assert_eq!(after.seq, 3);
}

#[test]
fn location_moves_the_state_both_ways() {
    let mut t = OrderTracker::new();
    start(&mut t, "5", "1", T0);
    // Another table: still located, stateStarted kept.
    let (o, _) = t.modify("5", set_location("2"), T0 + SEC).unwrap();
    assert_eq!((o.state, o.state_started_ms), (OrderState::Located, T0));
    // "" makes it started again.
    let (o, _) = t.modify("5", set_location(""), T0 + 2 * SEC).unwrap();
    assert_eq!(
        (o.state, o.state_started_ms, o.location.as_str()),
        (OrderState::Started, T0 + 2 * SEC, "")
    );
    // Located again: located_ms keeps the first time.
    let (o, _) = t.modify("5", set_location("3"), T0 + 3 * SEC).unwrap();
    assert_eq!(
        (o.state, o.state_started_ms, o.located_ms),
        (OrderState::Located, T0 + 3 * SEC, Some(T0))
    );
    assert_eq!(o.seq, 4);
}

#[test]
fn a_put_that_changes_nothing_is_no_change() {
    let mut t = OrderTracker::new();
    let o = start(&mut t, "8", "4", T0);
    let next = t.next_seq();
    for m in [
        ModifyOrder::default(),
        set_location("4"),
        set_type(OrderType::OnPremise),
        ModifyOrder {
            order_type: Some(OrderType::OnPremise),
            location: Some("4".into()),
        },
    ] {
        let (after, change) = t.modify("8", m.clone(), T0 + SEC).unwrap();
        assert_eq!(change, None, "{m:?}");
        assert_eq!(after, o);
    }
    assert_eq!(t.next_seq(), next, "no seq was used");
    // "" on a started order is no change either.
    start(&mut t, "9", "", T0);
    let next = t.next_seq();
    assert_eq!(t.modify("9", set_location(""), T0).unwrap().1, None);
    assert_eq!(t.next_seq(), next);
}

#[test]
fn modify_errors() {
    let mut t = OrderTracker::new();
    let o = start(&mut t, "66", "", T0);
    let err = t.modify("67", set_location("1"), T0).unwrap_err();
    assert_eq!(
        err,
        OrderError::NotFound(r#"no active order named "67""#.into())
    );
    let unknown = "00000000-0000-4000-8000-000000000000";
    let err = t.modify(unknown, set_location("1"), T0).unwrap_err();
    assert_eq!(err.status(), 404);
    assert_eq!(err.to_string(), format!("no order has uuid {unknown}"));
    let err = t
        .modify("66", set_location(&"x".repeat(65)), T0)
        .unwrap_err();
    assert_eq!(err.status(), 400);
    t.clear("66", T0 + SEC).unwrap();
    // Cleared: 404 by name (free again), 409 by uuid.
    let err = t.modify("66", set_location("1"), T0).unwrap_err();
    assert_eq!(err.status(), 404);
    let err = t.modify(&o.uuid, set_location("1"), T0).unwrap_err();
    assert_eq!(
        err,
        OrderError::Conflict(format!("order {} is cleared and cannot be changed", o.uuid))
    );
    // Even a no-op PUT on a cleared order is refused.
    let err = t.modify(&o.uuid, ModifyOrder::default(), T0).unwrap_err();
    assert_eq!(err.status(), 409);
    // A long garbage key is echoed cut short.
    let garbage = "k".repeat(500);
    let msg = t
        .modify(&garbage, set_location("1"), T0)
        .unwrap_err()
        .to_string();
    assert!(msg.len() < 100, "{msg}");
    assert!(msg.ends_with('…'), "{msg}");
}

// ---------------------------------------------------------------------------
// Page and clear.

#[test]
fn every_page_is_a_change() {
    let mut t = OrderTracker::new();
    let o = start(&mut t, "3", "12", T0);
    let a = t.page("3", true, T0 + SEC).unwrap();
    let b = t.page(&o.uuid, false, T0 + 2 * SEC).unwrap();
    assert_eq!((a.kind, b.kind), (ChangeKind::Paged, ChangeKind::Paged));
    assert_eq!((a.order.seq, b.order.seq), (2, 3));
    for c in [&a, &b] {
        assert_eq!(
            (
                c.order.state,
                c.order.state_started_ms,
                c.order.location.as_str()
            ),
            (OrderState::Located, T0, "12")
        );
    }
    assert_eq!(t.active_order("3").unwrap().seq, 3);
    t.clear("3", T0 + 3 * SEC).unwrap();
    assert_eq!(t.page("3", true, T0).unwrap_err().status(), 404);
    assert_eq!(t.page(&o.uuid, true, T0).unwrap_err().status(), 409);
    assert_eq!(t.page("nope", true, T0).unwrap_err().status(), 404);
}

#[test]
fn clear_moves_an_order_to_history() {
    let mut t = OrderTracker::new();
    let o = start(&mut t, "66", "22", T0);
    let c = t.clear(&o.uuid, T0 + 90 * SEC).unwrap();
    assert_eq!(c.kind, ChangeKind::Modified);
    assert_eq!(c.order.state, OrderState::Cleared);
    assert_eq!(c.order.state_started_ms, T0 + 90 * SEC);
    assert_eq!(c.order.location, "22");
    assert_eq!(c.order.located_ms, Some(T0));
    assert_eq!(c.order.seq, 2);
    assert_eq!(t.len_active(), 0);
    assert_eq!(t.len_all(), 1);
    assert_eq!(t.get(&o.uuid), Some(&c.order));
    // Not active any more, by name or uuid.
    let err = t.active_order("66").unwrap_err();
    assert_eq!(err.to_string(), r#"no active order named "66""#);
    let err = t.active_order(&o.uuid).unwrap_err();
    assert_eq!(err.status(), 404);
    assert_eq!(
        err.to_string(),
        format!("order {} is cleared, not active", o.uuid)
    );
    // Clearing again: 409 by uuid, 404 by name.
    assert_eq!(t.clear(&o.uuid, T0).unwrap_err().status(), 409);
    assert_eq!(t.clear("66", T0).unwrap_err().status(), 404);
    assert_eq!(t.next_seq(), 3);
}

#[test]
fn clear_all_goes_oldest_first() {
    let mut t = OrderTracker::new();
    assert!(t.clear_all(T0).is_empty());
    start(&mut t, "2", "", T0 + SEC);
    start(&mut t, "1", "", T0);
    start(&mut t, "3", "", T0 + 2 * SEC);
    t.clear("3", T0 + 3 * SEC).unwrap();
    let changes = t.clear_all(T0 + 10 * SEC);
    assert_eq!(
        changes
            .iter()
            .map(|c| c.order.name.as_str())
            .collect::<Vec<_>>(),
        ["1", "2"]
    );
    assert_eq!(
        changes.iter().map(|c| c.order.seq).collect::<Vec<_>>(),
        [5, 6]
    );
    assert!(changes.iter().all(|c| c.kind == ChangeKind::Modified
        && c.order.state == OrderState::Cleared
        && c.order.state_started_ms == T0 + 10 * SEC));
    assert_eq!(t.len_active(), 0);
    assert_eq!(t.active().count(), 0);
}

#[test]
fn elapsed_time_for_active_and_cleared_orders() {
    let mut t = OrderTracker::new();
    let o = start(&mut t, "1", "", T0);
    assert_eq!(o.elapsed_secs(T0), 0);
    assert_eq!(o.elapsed_secs(T0 + 999), 0);
    assert_eq!(o.elapsed_secs(T0 + 61_500), 61);
    assert_eq!(o.elapsed_secs(T0 - 5 * SEC), 0, "never negative");
    assert_eq!(o.elapsed_secs(i64::MIN), 0);
    let c = t.clear("1", T0 + 42_700).unwrap().order;
    assert_eq!(c.elapsed_secs(T0 + 1_000_000), 42, "stops at the clear");
    assert_eq!(c.elapsed_secs(0), 42);
}

#[test]
fn active_is_oldest_first_then_by_start() {
    let mut t = OrderTracker::new();
    start(&mut t, "30", "", T0 + 2 * SEC);
    start(&mut t, "10", "", T0);
    start(&mut t, "20", "", T0);
    start(&mut t, "40", "", T0 + SEC);
    assert_eq!(names(t.active()), ["10", "20", "40", "30"]);
    // A change keeps an order's place among the others of its millisecond.
    t.page("10", true, T0 + 3 * SEC).unwrap();
    assert_eq!(names(t.active()), ["10", "20", "40", "30"]);
}

// ---------------------------------------------------------------------------
// History, statistics, purge.

/// Orders 1…6 created a minute apart; 2 and 4 cleared; types and tables vary.
fn history_floor() -> OrderTracker {
    let mut t = OrderTracker::new();
    for i in 1..=6i64 {
        let order_type = if i % 2 == 0 {
            OrderType::ToGo
        } else {
            OrderType::OnPremise
        };
        let location = if i <= 3 { "A" } else { "B" };
        t.start(
            req(&i.to_string(), order_type, location),
            i as u128,
            T0 + i * 60 * SEC,
        )
        .unwrap();
    }
    t.clear("2", T0 + 600 * SEC).unwrap();
    t.clear("4", T0 + 600 * SEC).unwrap();
    t
}

fn query() -> HistoryQuery {
    HistoryQuery::default()
}

#[test]
fn history_ranges_filters_and_pages() {
    let t = history_floor();
    let h = |q: HistoryQuery| names(t.history(&q));
    assert_eq!(
        h(query()),
        ["1", "2", "3", "4", "5", "6"],
        "cleared included"
    );
    let at = |i: i64| Some(T0 + i * 60 * SEC);
    // [after, before)
    assert_eq!(
        h(HistoryQuery {
            created_after_ms: at(2),
            created_before_ms: at(5),
            ..query()
        }),
        ["2", "3", "4"]
    );
    assert_eq!(
        h(HistoryQuery {
            created_after_ms: Some(T0 + 2 * 60 * SEC + 1),
            ..query()
        }),
        ["3", "4", "5", "6"]
    );
    assert_eq!(
        h(HistoryQuery {
            created_before_ms: at(3),
            ..query()
        }),
        ["1", "2"]
    );
    // Empty and inverted ranges are empty, not a panic.
    for (a, b) in [(3, 3), (5, 2)] {
        assert!(h(HistoryQuery {
            created_after_ms: at(a),
            created_before_ms: at(b),
            ..query()
        })
        .is_empty());
    }
    assert_eq!(
        h(HistoryQuery {
            order_type: Some(OrderType::ToGo),
            ..query()
        }),
        ["2", "4", "6"]
    );
    assert_eq!(
        h(HistoryQuery {
            location: Some("B".into()),
            order_type: Some(OrderType::OnPremise),
            ..query()
        }),
        ["5"]
    );
    assert!(h(HistoryQuery {
        location: Some("b".into()),
        ..query()
    })
    .is_empty());
    // offset and limit apply after the filters.
    assert_eq!(
        h(HistoryQuery {
            offset: 1,
            limit: 2,
            ..query()
        }),
        ["2", "3"]
    );
    assert_eq!(
        h(HistoryQuery {
            offset: 1,
            limit: 1,
            order_type: Some(OrderType::ToGo),
            ..query()
        }),
        ["4"]
    );
    assert!(h(HistoryQuery {
        offset: 6,
        ..query()
    })
    .is_empty());
    assert!(h(HistoryQuery {
        offset: usize::MAX,
        ..query()
    })
    .is_empty());
    assert_eq!(
        h(HistoryQuery {
            limit: 3,
            ..query()
        })
        .len(),
        3
    );
    assert_eq!(query().limit, DEFAULT_HISTORY_LIMIT);
}

#[test]
fn history_limit_defaults_to_25() {
    let mut t = OrderTracker::new();
    for i in 0..30 {
        start(&mut t, &i.to_string(), "", T0 + i);
    }
    let h = t.history(&query());
    assert_eq!(h.len(), 25);
    assert_eq!(h[0].name, "0");
    assert_eq!(h[24].name, "24");
}

#[test]
fn statistics_of_a_day() {
    let z = moscow();
    let (day_start, day_end, date) = z.day_bounds(T0);
    assert_eq!(date, "2015-05-05");
    let mut t = OrderTracker::new();
    // Yesterday and tomorrow do not count.
    start(&mut t, "900", "1", day_start - 1);
    start(&mut t, "901", "1", day_end);
    // Located at start: 0 s.
    start(&mut t, "1", "1", day_start);
    // Located after exactly 300.999 s: on target (whole seconds).
    start(&mut t, "2", "", T0);
    t.modify("2", set_location("2"), T0 + 300_999).unwrap();
    // After 301 s: late.
    start(&mut t, "3", "", T0);
    t.modify("3", set_location("3"), T0 + 301_000).unwrap();
    // Located, then back to started, then cleared: still located once.
    start(&mut t, "4", "", T0);
    t.modify("4", set_location("4"), T0 + 10_000).unwrap();
    t.modify("4", set_location(""), T0 + 20_000).unwrap();
    t.clear("4", T0 + 30_000).unwrap();
    // Never located.
    start(&mut t, "5", "", day_end - 1);
    let s = t.statistics(day_start, day_end, date.clone(), 300);
    assert_eq!(
        s,
        Statistics {
            date: date.clone(),
            target_time: 300,
            orders: 5,
            located: 4,
            on_target: 3,
            // (0 + 300.999 + 301 + 10) / 4 = 153.0 s
            average_time_to_locate: 153,
        }
    );
    let s = t.statistics(day_start, day_end, date.clone(), 0);
    assert_eq!((s.on_target, s.target_time), (1, 0));
    let s = t.statistics(day_start, day_end, date.clone(), 301);
    assert_eq!(s.on_target, 4);
    // Nothing located: average 0; an empty or inverted day: all zero.
    let s = t.statistics(day_end - 1, day_end, date.clone(), 300);
    assert_eq!((s.orders, s.located, s.average_time_to_locate), (1, 0, 0));
    let s = t.statistics(day_end, day_start, date, 300);
    assert_eq!((s.orders, s.located, s.on_target), (0, 0, 0));
}

#[test]
fn average_time_to_locate_rounds_half_up() {
    let mut t = OrderTracker::new();
    start(&mut t, "1", "", T0);
    t.modify("1", set_location("1"), T0 + 1_499).unwrap();
    let s = t.statistics(T0, T0 + 1, String::new(), 300);
    assert_eq!(s.average_time_to_locate, 1);
    start(&mut t, "2", "", T0);
    t.modify("2", set_location("2"), T0 + 1_501).unwrap();
    // (1.499 + 1.501) / 2 = 1.5 → 2
    let s = t.statistics(T0, T0 + 1, String::new(), 300);
    assert_eq!(s.average_time_to_locate, 2);
}

#[test]
fn purge_removes_old_cleared_orders_only() {
    let mut t = history_floor();
    t.clear("1", T0 + 700 * SEC).unwrap();
    // Cleared: 1, 2, 4. Cutoff before order 4's creation: 1 and 2 qualify.
    let cutoff = T0 + 4 * 60 * SEC;
    let uuid_of = |t: &OrderTracker, n: &str| {
        t.history(&query())
            .into_iter()
            .find(|o| o.name == n)
            .unwrap()
            .uuid
            .clone()
    };
    let (u1, u2, u4) = (uuid_of(&t, "1"), uuid_of(&t, "2"), uuid_of(&t, "4"));
    assert!(t.purge(cutoff, 0).is_empty());
    assert_eq!(
        t.purge(cutoff, 1),
        std::slice::from_ref(&u1),
        "oldest first, at most max"
    );
    assert_eq!(t.purge(cutoff, 10), [u2]);
    assert!(t.purge(cutoff, 10).is_empty());
    assert_eq!(t.get(&u1), None);
    assert_eq!(names(t.history(&query())), ["3", "4", "5", "6"]);
    assert_eq!((t.len_all(), t.len_active()), (4, 3));
    // A purged uuid is unknown now: 404, not 409.
    assert_eq!(t.clear(&u1, T0).unwrap_err().status(), 404);
    // Active orders are never purged, however old.
    assert_eq!(t.purge(i64::MAX, usize::MAX), [u4]);
    assert_eq!(names(t.history(&query())), ["3", "5", "6"]);
    assert_eq!(t.len_active(), 3);
    // The cutoff is exclusive.
    t.clear("3", T0).unwrap();
    assert!(t.purge(T0 + 3 * 60 * SEC, 10).is_empty());
    assert_eq!(t.purge(T0 + 3 * 60 * SEC + 1, 10).len(), 1);
}

// ---------------------------------------------------------------------------
// Restore.

#[test]
fn restore_rebuilds_the_same_tracker() {
    let t = history_floor();
    let all: Vec<Order> = t
        .history(&HistoryQuery {
            limit: usize::MAX,
            ..query()
        })
        .into_iter()
        .cloned()
        .collect();
    let mut r = OrderTracker::restore(all.clone(), 0);
    assert_eq!(r.next_seq(), t.next_seq());
    assert_eq!(names(r.active()), names(t.active()));
    assert_eq!(names(r.history(&query())), names(t.history(&query())));
    assert_eq!(r.len_all(), 6);
    // Cleared names are free, active ones are not, uuids still address.
    assert!(r.start(req("2", OrderType::ToGo, ""), 77, T0).is_ok());
    assert_eq!(
        r.start(req("3", OrderType::ToGo, ""), 78, T0)
            .unwrap_err()
            .status(),
        409
    );
    let cleared_uuid = &all.iter().find(|o| o.name == "4").unwrap().uuid;
    assert_eq!(r.page(cleared_uuid, true, T0).unwrap_err().status(), 409);
    assert_eq!(r.page("5", true, T0).unwrap().order.seq, t.next_seq() + 1);
}

#[test]
fn restore_keeps_seq_monotonic() {
    let mut t = OrderTracker::new();
    start(&mut t, "1", "", T0);
    start(&mut t, "2", "", T0 + 2 * SEC);
    t.clear("1", T0 + 3 * SEC).unwrap();
    let persisted_next = t.next_seq();
    assert_eq!(persisted_next, 4);
    let orders: Vec<Order> = t.history(&query()).into_iter().cloned().collect();
    // A lower persisted next_seq never wins over the orders' seqs...
    assert_eq!(OrderTracker::restore(orders.clone(), 0).next_seq(), 4);
    assert_eq!(OrderTracker::restore(orders, 50).next_seq(), 50);
    // ...and the persisted one is what keeps seq from going back once the
    // order holding the highest seq (3, the clear) is purged.
    assert_eq!(t.purge(T0 + 1, 10).len(), 1);
    let orders: Vec<Order> = t.history(&query()).into_iter().cloned().collect();
    assert_eq!(OrderTracker::restore(orders.clone(), 0).next_seq(), 3);
    let mut r = OrderTracker::restore(orders, persisted_next);
    assert_eq!(r.next_seq(), 4);
    assert_eq!(r.page("2", true, T0).unwrap().order.seq, 4);
    assert_eq!(OrderTracker::restore(Vec::new(), 0).next_seq(), 1);
}

#[test]
fn restore_keeps_the_latest_copy_of_a_uuid() {
    let mut t = OrderTracker::new();
    let old = start(&mut t, "1", "", T0);
    let new = t.clear("1", T0 + SEC).unwrap().order;
    // Persisted twice (a store that appended instead of upserting).
    let r = OrderTracker::restore(vec![new.clone(), old.clone()], 0);
    assert_eq!(r.len_all(), 1);
    assert_eq!(r.len_active(), 0);
    assert_eq!(r.get(&old.uuid), Some(&new));
    assert!(r.active_order("1").is_err());
}

// ---------------------------------------------------------------------------
// Zone.

#[test]
fn zone_names() {
    assert_eq!(moscow().name(), "Europe/Moscow");
    assert_eq!(Zone::utc().name(), "UTC");
    assert_eq!(Zone::from_iana("UTC").unwrap(), Zone::utc());
    assert_eq!(
        Zone::from_iana("europe/MOSCOW").unwrap().name(),
        "Europe/Moscow"
    );
    assert_eq!(Zone::from_iana("Etc/GMT+3").unwrap().name(), "Etc/GMT+3");
    for bad in [
        "",
        "+03:00",
        "-05:00",
        "UTC+3",
        "EST5EDT,M3.2.0,M11.1.0",
        "Europe/Nowhere",
        "Europe",
        "localtime",
        "posixrules",
        "Etc/Unknown",
        "../../etc/passwd",
        "/usr/share/zoneinfo/UTC",
        "Europe/Moscow ",
        "Europe//Moscow",
    ] {
        let err = Zone::from_iana(bad).expect_err(bad);
        assert!(err.ends_with("is not a known IANA time zone name"), "{err}");
    }
    let long = "A".repeat(10_000);
    assert!(Zone::from_iana(&long).unwrap_err().len() < 120);
}

#[test]
fn the_bundled_database_knows_every_zone_we_test() {
    // What a machine without /usr/share/zoneinfo falls back to.
    let db = jiff::tz::TimeZoneDatabase::bundled();
    for name in ["Europe/Moscow", "America/New_York", "Etc/GMT+3", "UTC"] {
        assert!(db.get(name).is_ok(), "{name}");
    }
}

#[test]
fn the_system_zone_is_a_valid_iana_zone() {
    let z = Zone::system();
    assert_eq!(Zone::from_iana(z.name()), Ok(z.clone()));
    assert_eq!(Settings::default().zone, z);
    assert_eq!(Settings::default().target_time_default, 300);
}

#[test]
fn local_naive_in_moscow_and_utc() {
    assert_eq!(moscow().local_naive(T0), "2015-05-05T13:40:09");
    assert_eq!(moscow().local_naive(T0 + 999), "2015-05-05T13:40:09");
    assert_eq!(Zone::utc().local_naive(T0), "2015-05-05T10:40:09");
    assert_eq!(Zone::utc().local_naive(0), "1970-01-01T00:00:00");
    assert_eq!(Zone::utc().local_naive(-1), "1969-12-31T23:59:59");
    // Moscow was UTC+4 in 2013.
    assert_eq!(
        moscow().local_naive(1_370_000_000_000),
        "2013-05-31T15:33:20"
    );
    // Out-of-range instants are clamped, never a panic.
    assert_eq!(Zone::utc().local_naive(i64::MAX), "9999-12-30T00:00:00");
    assert_eq!(Zone::utc().local_naive(i64::MIN), "0001-01-02T00:00:00");
    assert_eq!(new_york().local_naive(i64::MIN), "0001-01-01T19:03:58");
}

#[test]
fn parse_local_forms() {
    let z = moscow();
    // A date is midnight in the zone.
    assert_eq!(
        z.parse_local("2015-05-05"),
        Some(T0 - (13 * 3600 + 40 * 60 + 9) * SEC)
    );
    assert_eq!(z.parse_local("2015-05-05T13:40:09"), Some(T0));
    assert_eq!(z.parse_local("2015-05-05t13:40:09"), Some(T0));
    assert_eq!(z.parse_local("2015-05-05T10:40:09Z"), Some(T0));
    assert_eq!(z.parse_local("2015-05-05T10:40:09z"), Some(T0));
    assert_eq!(z.parse_local("2015-05-05T13:40:09+03:00"), Some(T0));
    assert_eq!(z.parse_local("2015-05-05T05:40:09-05:00"), Some(T0));
    assert_eq!(z.parse_local("2015-05-05T10:40:09.25Z"), Some(T0 + 250));
    assert_eq!(
        z.parse_local("2015-05-05T10:40:09.123456789Z"),
        Some(T0 + 123)
    );
    assert_eq!(z.parse_local("2015-05-05T13:40:09.5"), Some(T0 + 500));
    assert_eq!(Zone::utc().parse_local("2015-05-05T10:40:09"), Some(T0));
    // Valid times past the range of instants read as its last one (they
    // were refused as malformed); the edges of the range are exact.
    let last = jiff::Timestamp::MAX.as_millisecond();
    for late in [
        "9999-12-31",
        "9999-12-31T00:00:00",
        "9999-12-31T23:59:59Z",
        "9999-12-30T23:00:00+00:00",
    ] {
        assert_eq!(Zone::utc().parse_local(late), Some(last), "{late:?}");
    }
    // Midnight in Moscow is still inside: 21:00 UTC the day before.
    assert_eq!(z.parse_local("9999-12-31"), Some(253_402_203_600_000));
    assert_eq!(z.parse_local("9999-12-31T02:00:00"), Some(last));
    assert_eq!(
        Zone::utc().parse_local("0000-01-01"),
        Some(-62_167_219_200_000)
    );
    assert_eq!(z.parse_local("9999-02-30"), None);
    for bad in [
        "",
        "2015",
        "2015-5-5",
        "2015-05-05 13:40:09",
        "2015-05-05T13:40",
        "2015-05-05T13:40:9",
        "2015-05-05T13:40:09.",
        "2015-05-05T13:40:09.1234567890Z",
        "2015-05-05T13:40:09+0300",
        "2015-05-05T13:40:09+03",
        "2015-05-05T13:40:09+24:00",
        "2015-05-05T13:40:09Z ",
        " 2015-05-05",
        "2015-02-29",
        "2015-13-01",
        "2015-05-05T24:00:00",
        "2015-06-30T23:59:60Z",
        "2015-05-05T13:40:09[Europe/Moscow]",
        "1430822409000",
        "+2015-05-05",
        "2015-05-05T13:4a:09",
        "２０１５-05-05",
    ] {
        assert_eq!(z.parse_local(bad), None, "{bad:?}");
    }
}

#[test]
fn parse_local_resolves_gaps_and_folds_compatibly() {
    let z = new_york();
    // 2024-03-10 02:30 does not exist: the later reading, 03:30 EDT.
    assert_eq!(z.parse_local("2024-03-10T02:30:00"), Z_2024_03_10_0730);
    // 2024-11-03 01:30 happens twice: the earlier, EDT (UTC-4).
    assert_eq!(
        z.parse_local("2024-11-03T01:30:00"),
        z.parse_local("2024-11-03T05:30:00Z")
    );
    assert_eq!(
        z.local_naive(z.parse_local("2024-11-03T01:30:00").unwrap()),
        "2024-11-03T01:30:00"
    );
}

const Z_2024_03_10_0730: Option<i64> = Some(1_710_055_800_000);

#[test]
fn day_bounds_follow_dst() {
    let ny = new_york();
    let hour = 3600 * SEC;
    // 2024-03-10 (spring forward) is 23 hours long.
    let noon = ny.parse_local("2024-03-10T12:00:00").unwrap();
    let (start, end, date) = ny.day_bounds(noon);
    assert_eq!(date, "2024-03-10");
    assert_eq!(Some(start), ny.parse_local("2024-03-10T05:00:00Z"));
    assert_eq!(end - start, 23 * hour);
    // 2024-11-03 (fall back) is 25 hours long.
    let (start, end, date) = ny.day_bounds(ny.parse_local("2024-11-03T23:59:59").unwrap());
    assert_eq!(date, "2024-11-03");
    assert_eq!(end - start, 25 * hour);
    // An ordinary day, at its edges.
    let z = moscow();
    let (start, end, date) = z.day_bounds(T0);
    assert_eq!((date.as_str(), end - start), ("2015-05-05", 24 * hour));
    assert_eq!(z.local_naive(start), "2015-05-05T00:00:00");
    assert_eq!(z.day_bounds(start).2, "2015-05-05");
    assert_eq!(z.day_bounds(end - 1).2, "2015-05-05");
    assert_eq!(z.day_bounds(end).2, "2015-05-06");
    // The same instant is another day in another zone.
    assert_eq!(Zone::utc().day_bounds(start).2, "2015-05-04");
    // Far instants do not panic.
    let _ = z.day_bounds(i64::MAX);
    let _ = z.day_bounds(i64::MIN);
}

#[test]
fn a_day_whose_midnight_is_skipped_starts_at_one() {
    // America/Sao_Paulo sprang forward at midnight until 2018.
    let z = Zone::from_iana("America/Sao_Paulo").unwrap();
    let (start, end, date) = z.day_bounds(z.parse_local("2018-11-04T12:00:00").unwrap());
    assert_eq!(date, "2018-11-04");
    assert_eq!(z.local_naive(start), "2018-11-04T01:00:00");
    assert_eq!(end - start, 23 * 3600 * SEC);
    assert_eq!(z.parse_local("2018-11-04"), Some(start));
}

// ---------------------------------------------------------------------------
// Parsers.

#[test]
fn parse_start_accepts_the_spec_body() {
    assert_eq!(
        parse_start(br#"{"name":"66","orderType":"TO_GO","locationName":"22"}"#),
        Ok(req("66", OrderType::ToGo, "22"))
    );
    assert_eq!(
        parse_start(br#" {"orderType":"ON_PREMISE","name":"1"} "#),
        Ok(req("1", OrderType::OnPremise, ""))
    );
    assert_eq!(
        parse_start(br#"{"name":"1","orderType":"TO_GO","locationName":null,"extra":[1,{}]}"#),
        Ok(req("1", OrderType::ToGo, ""))
    );
    let ok64 = format!(
        r#"{{"name":"1","orderType":"TO_GO","locationName":"{}"}}"#,
        "é".repeat(32)
    );
    assert_eq!(parse_start(ok64.as_bytes()).unwrap().location.len(), 64);
}

#[test]
fn parse_start_400s() {
    let long = format!(
        r#"{{"name":"1","orderType":"TO_GO","locationName":"{}"}}"#,
        "x".repeat(65)
    );
    for (body, message) in [
        (
            &b""[..],
            "the request body is empty; a JSON object is expected",
        ),
        (
            b"  \r\n",
            "the request body is empty; a JSON object is expected",
        ),
        (b"[]", "the request body must be a JSON object"),
        (b"\"66\"", "the request body must be a JSON object"),
        (b"null", "the request body must be a JSON object"),
        (br#"{"orderType":"TO_GO"}"#, "\"name\" is required"),
        (
            br#"{"name":null,"orderType":"TO_GO"}"#,
            "\"name\" is required",
        ),
        (
            br#"{"name":66,"orderType":"TO_GO"}"#,
            "\"name\" must be a string of 1 to 6 digits",
        ),
        (
            br#"{"name":"","orderType":"TO_GO"}"#,
            "\"name\" must be a string of 1 to 6 digits",
        ),
        (
            br#"{"name":"1234567","orderType":"TO_GO"}"#,
            "\"name\" must be a string of 1 to 6 digits",
        ),
        (
            br#"{"name":"A1","orderType":"TO_GO"}"#,
            "\"name\" must be a string of 1 to 6 digits",
        ),
        (br#"{"name":"1"}"#, "\"orderType\" is required"),
        (
            br#"{"name":"1","orderType":"to_go"}"#,
            "\"orderType\" must be \"ON_PREMISE\" or \"TO_GO\"",
        ),
        (
            br#"{"name":"1","orderType":1}"#,
            "\"orderType\" must be \"ON_PREMISE\" or \"TO_GO\"",
        ),
        (
            br#"{"name":"1","orderType":"TO_GO","locationName":22}"#,
            "\"locationName\" must be a string",
        ),
        (long.as_bytes(), "\"locationName\" must be at most 64 bytes"),
        (
            br#"{"name":"1","orderType":"TO_GO","locationName":"a\u0007"}"#,
            "\"locationName\" must not contain control characters",
        ),
    ] {
        let err = parse_start(body).unwrap_err();
        assert_eq!(
            bad_request(err),
            message,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    for body in [&b"{"[..], b"{\"name\":\"1\",}", b"\xff", b"{} {}"] {
        let msg = bad_request(parse_start(body).unwrap_err());
        assert!(
            msg.starts_with("the request body is not valid JSON"),
            "{msg}"
        );
    }
    // Deep nesting is refused, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(parse_start(deep.as_bytes()).unwrap_err().status(), 400);
    let deep_object = format!(r#"{{"x":{}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        parse_start(deep_object.as_bytes()).unwrap_err().status(),
        400
    );
    // A key given twice is refused (serde_json alone keeps the last one),
    // in every body; the same key in a nested object is another object's.
    for body in [
        &br#"{"name":"1","orderType":"TO_GO","name":"2"}"#[..],
        br#"{"name":"1","orderType":"TO_GO","extra":1,"extra":2}"#,
        br#"{"name":"1","orderType":"TO_GO","\u006eame":"2"}"#,
    ] {
        let msg = bad_request(parse_start(body).unwrap_err());
        assert!(msg.contains("appears twice"), "{msg}");
    }
    assert!(
        bad_request(parse_modify(br#"{"locationName":"1","locationName":""}"#).unwrap_err())
            .contains("the key \"locationName\" appears twice")
    );
    assert!(parse_page(br#"{"tracking":true,"tracking":false}"#).is_err());
    assert!(parse_start(br#"{"name":"1","orderType":"TO_GO","x":{"a":1},"y":{"a":2}}"#).is_ok());
    // Over HTTP's 1 MiB, whatever the caller (the C ABI has no HTTP head).
    let padded = |n: usize| {
        format!(
            r#"{{"name":"1","orderType":"TO_GO","pad":"{}"}}"#,
            "y".repeat(n)
        )
    };
    let limit = wire::MAX_BODY_BYTES;
    let at_limit = padded(limit - padded(0).len());
    assert_eq!(at_limit.len(), limit);
    assert!(parse_start(at_limit.as_bytes()).is_ok());
    let over = padded(limit + 1 - padded(0).len());
    assert_eq!(
        bad_request(parse_start(over.as_bytes()).unwrap_err()),
        "the request body is longer than 1048576 bytes"
    );
}

#[test]
fn parse_modify_fields_are_optional() {
    assert_eq!(parse_modify(b"{}"), Ok(ModifyOrder::default()));
    assert!(parse_modify(b"{}").unwrap().is_empty());
    assert_eq!(
        parse_modify(br#"{"locationName":""}"#),
        Ok(set_location(""))
    );
    assert_eq!(
        parse_modify(br#"{"orderType":"TO_GO","name":"ignored"}"#),
        Ok(set_type(OrderType::ToGo))
    );
    assert_eq!(
        parse_modify(br#"{"orderType":null,"locationName":null}"#),
        Ok(ModifyOrder::default())
    );
    for body in [
        &b""[..],
        b"[]",
        b"{",
        br#"{"orderType":"SIT_DOWN"}"#,
        br#"{"locationName":false}"#,
        br#"{"locationName":"\n"}"#,
    ] {
        assert_eq!(parse_modify(body).unwrap_err().status(), 400);
    }
}

#[test]
fn parse_page_defaults_to_tracking() {
    assert_eq!(parse_page(b""), Ok(true));
    assert_eq!(parse_page(b" \n"), Ok(true));
    assert_eq!(parse_page(b"{}"), Ok(true));
    assert_eq!(parse_page(br#"{"tracking":true}"#), Ok(true));
    assert_eq!(parse_page(br#"{"tracking":false}"#), Ok(false));
    assert_eq!(parse_page(br#"{"tracking":null,"x":1}"#), Ok(true));
    assert_eq!(
        bad_request(parse_page(br#"{"tracking":"false"}"#).unwrap_err()),
        "\"tracking\" must be true or false"
    );
    for body in [&b"[]"[..], b"true", b"{", br#"{"tracking":1}"#] {
        assert_eq!(parse_page(body).unwrap_err().status(), 400);
    }
}

#[test]
fn parse_history_query_defaults_and_values() {
    let z = moscow();
    assert_eq!(parse_history_query(b"", &z), Ok(query()));
    assert_eq!(parse_history_query(b"?", &z), Ok(query()));
    // SPEC's own template, every value empty: all defaults.
    assert_eq!(
        parse_history_query(
            b"offset=&limit=&created_after=&created_before=&order_type=&location_name=",
            &z
        ),
        Ok(query())
    );
    assert_eq!(
        parse_history_query(
            b"?offset=5&limit=100&created_after=2015-05-05&created_before=2015-05-05T13%3A40%3A09\
              &order_type=TO_GO&location_name=Table+1%2F2&unknown=x&flag",
            &z
        ),
        Ok(HistoryQuery {
            offset: 5,
            limit: 100,
            created_after_ms: z.parse_local("2015-05-05"),
            created_before_ms: Some(T0),
            order_type: Some(OrderType::ToGo),
            location: Some("Table 1/2".into()),
        })
    );
    assert_eq!(
        parse_history_query(b"created_after=2015-05-05T10:40:09Z&limit=1", &z)
            .map(|q| (q.created_after_ms, q.limit)),
        Ok((Some(T0), 1))
    );
    assert_eq!(
        parse_history_query(b"created_before=2015-05-05T13:40:09%2B03:00", &z)
            .map(|q| q.created_before_ms),
        Ok(Some(T0))
    );
    assert_eq!(
        parse_history_query(b"offset=99999999999999999999999", &z).map(|q| q.offset),
        Ok(usize::MAX)
    );
}

#[test]
fn parse_history_query_400s() {
    let z = moscow();
    for (q, message) in [
        ("offset=-1", "\"offset\" must be a non-negative integer"),
        ("offset=1.5", "\"offset\" must be a non-negative integer"),
        ("offset=%2B1", "\"offset\" must be a non-negative integer"),
        ("offset=abc", "\"offset\" must be a non-negative integer"),
        ("limit=0", "\"limit\" must be an integer from 1 to 100"),
        ("limit=101", "\"limit\" must be an integer from 1 to 100"),
        ("limit=-5", "\"limit\" must be an integer from 1 to 100"),
        ("limit=ten", "\"limit\" must be an integer from 1 to 100"),
        (
            "limit=99999999999999999999999",
            "\"limit\" must be an integer from 1 to 100",
        ),
        (
            "order_type=to_go",
            "\"order_type\" must be ON_PREMISE or TO_GO",
        ),
        (
            "limit=5&limit=6",
            "query parameter \"limit\" is given more than once",
        ),
        (
            "offset=&offset=1",
            "query parameter \"offset\" is given more than once",
        ),
    ] {
        let err = parse_history_query(q.as_bytes(), &z).unwrap_err();
        assert_eq!(bad_request(err), message, "{q}");
    }
    for q in [
        "created_after=yesterday",
        "created_after=2015-02-30",
        "created_before=2015-05-05T25:00:00",
        "created_before=1430822409",
    ] {
        let msg = bad_request(parse_history_query(q.as_bytes(), &z).unwrap_err());
        let param = q.split('=').next().unwrap();
        assert!(
            msg.starts_with(&format!(
                "\"{param}\" must be YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS or an RFC 3339 time"
            )),
            "{msg}"
        );
    }
}

#[test]
fn parse_target_time_values() {
    assert_eq!(parse_target_time(b""), Ok(None));
    assert_eq!(parse_target_time(b"target_time="), Ok(None));
    assert_eq!(parse_target_time(b"other=1"), Ok(None));
    assert_eq!(parse_target_time(b"target_time=0"), Ok(Some(0)));
    assert_eq!(parse_target_time(b"?target_time=120"), Ok(Some(120)));
    assert_eq!(parse_target_time(b"target_time=86400"), Ok(Some(86_400)));
    for q in [
        "target_time=86401",
        "target_time=-1",
        "target_time=5m",
        "target_time=1e3",
        "target_time=99999999999999999999",
        "target_time=1&target_time=2",
    ] {
        assert_eq!(
            parse_target_time(q.as_bytes()).unwrap_err().status(),
            400,
            "{q}"
        );
    }
    assert_eq!(
        bad_request(parse_target_time(b"target_time=x").unwrap_err()),
        "\"target_time\" must be an integer from 0 to 86400"
    );
}

#[test]
fn parse_settings_values() {
    assert_eq!(
        parse_settings(br#"{"targetTimeDefault":120,"timezone":"Europe/Moscow"}"#),
        Ok(SettingsChange {
            target_time_default: Some(120),
            zone: Some(moscow()),
        })
    );
    assert_eq!(
        parse_settings(br#"{"timezone":"utc"}"#),
        Ok(SettingsChange {
            target_time_default: None,
            zone: Some(Zone::utc()),
        })
    );
    assert_eq!(
        parse_settings(br#"{"targetTimeDefault":0}"#).map(|c| c.target_time_default),
        Ok(Some(0))
    );
    let mut s = Settings {
        target_time_default: 300,
        zone: Zone::utc(),
    };
    s.apply(parse_settings(br#"{"timezone":"Europe/Moscow"}"#).unwrap());
    assert_eq!(
        (s.target_time_default, s.zone.name()),
        (300, "Europe/Moscow")
    );
    s.apply(parse_settings(br#"{"targetTimeDefault":60}"#).unwrap());
    assert_eq!(
        (s.target_time_default, s.zone.name()),
        (60, "Europe/Moscow")
    );
}

#[test]
fn parse_settings_400s() {
    let target = "\"targetTimeDefault\" must be an integer from 0 to 86400";
    for (body, message) in [
        (
            &br#"{}"#[..],
            "nothing to change: give \"targetTimeDefault\" and/or \"timezone\"",
        ),
        (
            br#"{"targetTimeDefault":300,"colour":"red"}"#,
            "unknown setting \"colour\"",
        ),
        (
            br#"{"targettimedefault":300}"#,
            "unknown setting \"targettimedefault\"",
        ),
        (br#"{"targetTimeDefault":-1}"#, target),
        (br#"{"targetTimeDefault":86401}"#, target),
        (br#"{"targetTimeDefault":300.5}"#, target),
        (br#"{"targetTimeDefault":3e2}"#, target),
        (br#"{"targetTimeDefault":"300"}"#, target),
        (br#"{"targetTimeDefault":null}"#, target),
        (
            br#"{"timezone":3}"#,
            "\"timezone\" must be an IANA time zone name",
        ),
        (
            br#"{"timezone":null}"#,
            "\"timezone\" must be an IANA time zone name",
        ),
        (
            br#"{"timezone":"+03:00"}"#,
            "\"timezone\": \"+03:00\" is not a known IANA time zone name",
        ),
        (
            br#"{"timezone":""}"#,
            "\"timezone\": \"\" is not a known IANA time zone name",
        ),
        (
            br#"{"timezone":"Mars/Olympus"}"#,
            "\"timezone\": \"Mars/Olympus\" is not a known IANA time zone name",
        ),
        (b"[]", "the request body must be a JSON object"),
        (b"", "the request body is empty; a JSON object is expected"),
    ] {
        let err = parse_settings(body).unwrap_err();
        assert_eq!(
            bad_request(err),
            message,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    // A good value beside a bad one changes nothing: nothing is returned.
    assert!(parse_settings(br#"{"targetTimeDefault":60,"timezone":"Nowhere"}"#).is_err());
}

#[test]
fn error_statuses() {
    assert_eq!(OrderError::BadRequest("x".into()).status(), 400);
    assert_eq!(OrderError::NotFound("x".into()).status(), 404);
    assert_eq!(OrderError::Conflict("x".into()).status(), 409);
    assert_eq!(OrderError::Conflict("m".into()).message(), "m");
}

/// Orders started in the same millisecond keep their start order through
/// every change, in the active list and the history, and after a restore
/// (until session 22 a change moved an order behind the others of its
/// millisecond).
#[test]
fn orders_started_in_one_millisecond_keep_their_start_order() {
    let mut t = OrderTracker::new();
    for name in ["1", "2", "3"] {
        start(&mut t, name, "", 1_000);
    }
    t.modify("1", set_location("A7"), 1_001).unwrap();
    t.page("2", true, 1_002).unwrap();
    t.clear("1", 1_003).unwrap();
    assert_eq!(names(t.active()), ["2", "3"]);
    assert_eq!(names(t.history(&query())), ["1", "2", "3"]);
    let all: Vec<Order> = t.history(&query()).into_iter().cloned().collect();
    assert_eq!(
        all.iter()
            .map(|o| (o.seq, o.created_seq))
            .collect::<Vec<_>>(),
        [(6, 1), (5, 2), (3, 3)]
    );
    // Restored from the store's rows, in any order: the same places.
    let mut rows = all.clone();
    rows.reverse();
    let r = OrderTracker::restore(rows, t.next_seq());
    assert_eq!(names(r.history(&query())), ["1", "2", "3"]);
    // Two copies of one order (an older row left behind): the later wins,
    // in the same place.
    let mut old_copy = all[1].clone();
    old_copy.seq = 2;
    old_copy.location = "stale".into();
    let mut rows = all.clone();
    rows.push(old_copy);
    let r = OrderTracker::restore(rows, 0);
    assert_eq!(names(r.history(&query())), ["1", "2", "3"]);
    assert_eq!(r.get(&all[1].uuid).unwrap().seq, 5);
    // A copy whose place another order holds (input the tracker could not
    // have written): that order stays, and so does the copy before it.
    let mut moved = all[0].clone();
    moved.seq = 9;
    moved.created_seq = all[1].created_seq;
    let mut rows = all.clone();
    rows.push(moved);
    let r = OrderTracker::restore(rows, 0);
    assert_eq!(names(r.history(&query())), ["1", "2", "3"]);
    assert_eq!(r.get(&all[0].uuid).unwrap().seq, 6);
    assert_eq!(r.get(&all[1].uuid).unwrap().seq, 5);
}
