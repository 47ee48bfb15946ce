//! SPEC §1 end to end: QR-menu staff-alert events (poll by hash cursor,
//! admin publish, registered tables, retention) against the real binary.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;

/// A compact `invoice` in the shape of the seed's `save_order` example: keys
/// out of alphabetical order, Cyrillic names, `186.0`-style numbers.
const SEED_INVOICE: &str = r#"{"id":121,"order_guid":"{F4CE1102-50DC-48F7-A8E0-74DD68A7D8C1}","table_id":1000028,"unpaid_sum":186.0,"session_id":121,"status":0,"error":null,"session":{"items":[{"id":1000041,"type":"dish","count":1.0,"modifiers":[],"name":"Блюдо с модификатором"},{"id":1000062,"type":"dish","count":3.0,"modifiers":[],"name":"Блюдо"}],"payments":null}}"#;

/// A compact `order` in the shape of the seed's examples.
const SEED_ORDER: &str = r#"{"guid":"{F4CE1102-50DC-48F7-A8E0-74DD68A7D8C1}","sum":186.0,"pricelist_sum":186.0,"table":{"id":1000028,"name":"6"},"waiter":{"id":9001,"name":"Система"},"discounts":[],"payments":[],"dishes":[{"id":1000041,"type":"dish","name":"Блюдо с модификатором","price":150.0,"count":1.0,"sum":150.0,"modifiers":[]},{"id":1000062,"type":"dish","name":"Блюдо","price":12.0,"count":3.0,"sum":36.0,"modifiers":[]}]}"#;

const SEED_TABLE_REPR: &str = r#"{"id":1000028,"name":"6","max_guests":50}"#;

/// Publishes one good event so that "nothing was queued" is checked against
/// a non-empty queue; returns its raw text.
fn seed_one_event(server: &Server) -> Vec<String> {
    server.publish_ok(&event_body("waiter_call"));
    let events = server.poll_events("none");
    assert_eq!(events.len(), 1);
    events
}

/// Asserts that publishing `body` is refused with a §1 400 and queues nothing.
fn assert_publish_rejected(server: &Server, before: &[String], body: &[u8]) {
    let auth = format!("Bearer {}", server.admin_token);
    let reply = server.request(
        "POST",
        "/api/v4/events",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(body),
    );
    assert_eq!(
        reply.status,
        400,
        "publishing {:?} should be refused; got body {}",
        String::from_utf8_lossy(body),
        reply.body
    );
    reply.assert_v4_error(400);
    assert_eq!(
        server.poll_events("none"),
        before,
        "queue changed after refused body {:?}",
        String::from_utf8_lossy(body)
    );
}

// ---------------------------------------------------------------- poll

#[test]
fn poll_of_empty_queue_returns_no_updates() {
    let server = Launch::new().start();
    let reply = server.poll("none");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, r#"{"result":true,"data":{"updates":[]}}"#);
    assert_json_content(reply.content_type.as_deref(), &reply.body);
    assert_eq!(reply.content_length.as_deref(), Some("37"));
}

#[test]
fn publish_answers_201_with_an_8_hex_digit_hash() {
    let server = Launch::new().start();
    let reply = server.publish(&event_body("waiter_call"));
    assert_eq!(reply.status, 201, "body: {}", reply.body);
    assert_json_content(reply.content_type.as_deref(), &reply.body);
    let hash = hash_of_published(&reply);
    assert_eq!(
        reply.body,
        format!(r#"{{"result":true,"data":{{"hash":"{hash}"}}}}"#)
    );
}

#[test]
fn published_event_has_exactly_the_six_keys_in_order_with_absent_ones_null() {
    let server = Launch::new().start();
    let hash = server.publish_ok(r#"{"code":"waiter_call","table":1000028}"#);
    let reply = server.poll("none");
    assert_eq!(reply.status, 200);
    let event = event_json(&hash, "waiter_call", "1000028", "null", "null", "null");
    assert_eq!(
        reply.body,
        format!(r#"{{"result":true,"data":{{"updates":[{event}]}}}}"#)
    );
}

#[test]
fn code_only_event_has_null_table() {
    let server = Launch::new().start();
    let hash = server.publish_ok(r#"{"code":"online_payment"}"#);
    assert_eq!(
        server.poll_events("none"),
        vec![event_json(
            &hash,
            "online_payment",
            "null",
            "null",
            "null",
            "null"
        )]
    );
}

#[test]
fn explicit_nulls_are_stored_as_null() {
    let server = Launch::new().start();
    let hash = server.publish_ok(
        r#"{"code":"waiter_call","table":null,"invoice":null,"order":null,"table_repr":null}"#,
    );
    assert_eq!(
        server.poll_events("none"),
        vec![event_json(
            &hash,
            "waiter_call",
            "null",
            "null",
            "null",
            "null"
        )]
    );
}

#[test]
fn invoice_and_order_pass_through_with_key_order_and_cyrillic_text() {
    let server = Launch::new().start();
    let body = format!(
        r#"{{"code":"save_order","table":1000028,"invoice":{SEED_INVOICE},"order":{SEED_ORDER},"table_repr":{SEED_TABLE_REPR}}}"#
    );
    let hash = server.publish_ok(&body);
    assert_eq!(
        server.poll_events("none"),
        vec![event_json(
            &hash,
            "save_order",
            "1000028",
            SEED_INVOICE,
            SEED_ORDER,
            SEED_TABLE_REPR
        )]
    );
}

#[test]
fn input_keys_in_any_order_are_stored_in_spec_order() {
    let server = Launch::new().start();
    let hash = server.publish_ok(&format!(
        r#"{{"table_repr":{SEED_TABLE_REPR},"order":{{"b":1,"a":2}},"invoice":{{"z":"я","y":[]}},"table":7,"code":"save_order"}}"#
    ));
    assert_eq!(
        server.poll_events("none"),
        vec![event_json(
            &hash,
            "save_order",
            "7",
            r#"{"z":"я","y":[]}"#,
            r#"{"b":1,"a":2}"#,
            SEED_TABLE_REPR
        )]
    );
}

#[test]
fn pretty_printed_event_is_stored_as_compact_json() {
    let server = Launch::new().start();
    let body = "{\n  \"code\" : \"online_payment\",\n  \"table\": 1000028,\n  \"invoice\": null,\n  \"order\": {\n    \"guid\": \"{F4CE1102}\",\n    \"sum\": 186.0,\n    \"waiter\": { \"id\": 9001, \"name\": \"Система\" },\n    \"discounts\": [ ]\n  },\n  \"table_repr\": {\n    \"id\": 1000028,\n    \"name\": \"6\",\n    \"max_guests\": 50\n  }\n}\n";
    let hash = server.publish_ok(body);
    assert_eq!(
        server.poll_events("none"),
        vec![event_json(
            &hash,
            "online_payment",
            "1000028",
            "null",
            r#"{"guid":"{F4CE1102}","sum":186.0,"waiter":{"id":9001,"name":"Система"},"discounts":[]}"#,
            SEED_TABLE_REPR
        )]
    );
}

#[test]
fn escaped_strings_keep_their_meaning() {
    let server = Launch::new().start();
    let invoice =
        r#"{"note":"quote \" backslash \\ newline \n tab \t unicode \u0416 emoji \ud83d\ude00"}"#;
    server.publish_ok(&format!(r#"{{"code":"save_order","invoice":{invoice}}}"#));
    let events = server.poll_events("none");
    assert_eq!(events.len(), 1);
    let stored: serde_json::Value = serde_json::from_str(&events[0]).unwrap();
    let sent: serde_json::Value = serde_json::from_str(invoice).unwrap();
    assert_eq!(stored["invoice"], sent);
}

#[test]
fn codes_matching_the_pattern_are_accepted_and_passed_through() {
    let server = Launch::new().start();
    let longest = format!("a{}", "b".repeat(63));
    let codes = [
        "a",
        "waiter_call",
        "x9_",
        "custom_code_42",
        longest.as_str(),
    ];
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| server.publish_ok(&event_body(c)))
        .collect();
    let expected: Vec<String> = codes
        .iter()
        .zip(&hashes)
        .map(|(c, h)| event_json(h, c, "null", "null", "null", "null"))
        .collect();
    assert_eq!(server.poll_events("none"), expected);
}

#[test]
fn events_are_polled_in_chronological_order() {
    let server = Launch::new().start();
    let hashes: Vec<String> = (0..10)
        .map(|i| server.publish_ok(&format!(r#"{{"code":"e{i}","table":{i}}}"#)))
        .collect();
    let events = server.poll_events("none");
    let expected: Vec<String> = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| event_json(h, &format!("e{i}"), &i.to_string(), "null", "null", "null"))
        .collect();
    assert_eq!(events, expected);
}

#[test]
fn hashes_are_unique_among_retained_events() {
    let server = Launch::new().start();
    let hashes: Vec<String> = (0..200)
        .map(|_| server.publish_ok(&event_body("waiter_call")))
        .collect();
    let unique: HashSet<&String> = hashes.iter().collect();
    assert_eq!(unique.len(), hashes.len(), "duplicate hashes in {hashes:?}");
    assert_eq!(server.poll_hashes("none"), hashes);
}

#[test]
fn poll_after_a_known_hash_returns_only_later_events() {
    let server = Launch::new().start();
    let hashes: Vec<String> = (0..5)
        .map(|i| server.publish_ok(&event_body(&format!("e{i}"))))
        .collect();
    assert_eq!(server.poll_hashes(&hashes[0]), hashes[1..].to_vec());
    assert_eq!(server.poll_hashes(&hashes[2]), hashes[3..].to_vec());
    let events = server.poll_events(&hashes[3]);
    assert_eq!(
        events,
        vec![event_json(&hashes[4], "e4", "null", "null", "null", "null")]
    );
}

#[test]
fn poll_after_the_newest_hash_returns_no_updates() {
    let server = Launch::new().start();
    server.publish_ok(&event_body("first"));
    let newest = server.publish_ok(&event_body("second"));
    let reply = server.poll(&newest);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, r#"{"result":true,"data":{"updates":[]}}"#);
}

/// Pollers asking with the same hash again and again (a floor of screens
/// that all saw the same last event) see each publish at once: an event
/// loop answers a repeated poll from its last answer only while nothing
/// was published (`http::PollEvents`). One event loop, so every poll after
/// a publish meets the answer that loop kept from before it.
#[test]
fn repeated_polls_of_one_hash_see_each_publish_at_once() {
    let server = Launch::new().arg("--reactors").arg("1").start();
    let first = server.publish_ok(&event_body("first"));
    let mut expected: Vec<String> = Vec::new();
    for i in 0..40 {
        for _ in 0..3 {
            assert_eq!(server.poll_hashes(&first), expected, "round {i}");
        }
        expected.push(server.publish_ok(&event_body(&format!("e{i}"))));
        assert_eq!(server.poll_hashes(&first), expected, "round {i}");
    }
}

#[test]
fn poll_with_an_unknown_hash_returns_every_retained_event() {
    let server = Launch::new().start();
    let hashes: Vec<String> = (0..3)
        .map(|i| server.publish_ok(&event_body(&format!("e{i}"))))
        .collect();
    let unknown = ["0x00000000", "0xffffffff", "0x12345678", "0xdeadbeef"]
        .into_iter()
        .find(|h| !hashes.iter().any(|k| k == h))
        .unwrap();
    assert_eq!(server.poll_hashes(unknown), hashes);
}

#[test]
fn poll_with_a_garbage_hash_returns_every_retained_event() {
    let server = Launch::new().start();
    let hashes: Vec<String> = (0..3)
        .map(|i| server.publish_ok(&event_body(&format!("e{i}"))))
        .collect();
    for garbage in [
        "garbage",
        "12345678",
        "0x123",
        "0x1234567890",
        "0xzzzzzzzz",
        "%00",
    ] {
        assert_eq!(server.poll_hashes(garbage), hashes, "hash={garbage}");
    }
}

#[test]
fn poll_without_hash_parameter_is_400() {
    let server = Launch::new().start();
    server.publish_ok(&event_body("waiter_call"));
    for path in ["/api/v4/events", "/api/v4/events?cursor=none"] {
        let reply = server.request("GET", path, &[("token", QR_TOKEN)], None);
        reply.assert_v4_error(400);
    }
}

#[test]
fn poll_without_token_is_401_invalid_token() {
    let server = Launch::new().start();
    let reply = server.request("GET", "/api/v4/events?hash=none", &[], None);
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body, INVALID_TOKEN);
    assert_json_content(reply.content_type.as_deref(), &reply.body);
}

#[test]
fn poll_with_wrong_token_is_401_invalid_token() {
    let server = Launch::new().start();
    let near_miss = format!("{QR_TOKEN}x");
    for token in ["wrong", "", &QR_TOKEN[..QR_TOKEN.len() - 1], &near_miss] {
        let reply = server.request("GET", "/api/v4/events?hash=none", &[("token", token)], None);
        assert_eq!(reply.status, 401, "token {token:?}");
        assert_eq!(reply.body, INVALID_TOKEN, "token {token:?}");
    }
}

// ---------------------------------------------------------------- publish auth

#[test]
fn publish_without_admin_token_is_401_and_queues_nothing() {
    let server = Launch::new().start();
    let before = seed_one_event(&server);
    let reply = server.request(
        "POST",
        "/api/v4/events",
        &[("Content-Type", "application/json")],
        Some(event_body("waiter_call").as_bytes()),
    );
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body, INVALID_TOKEN);
    assert_eq!(server.poll_events("none"), before);
}

#[test]
fn publish_with_wrong_admin_token_is_401_and_queues_nothing() {
    let server = Launch::new().start();
    let before = seed_one_event(&server);
    let wrong = [
        "Bearer wrong".to_string(),
        format!("Bearer {QR_TOKEN}"),
        format!("Bearer {ADMIN_TOKEN}x"),
        ADMIN_TOKEN.to_string(),
        "Bearer ".to_string(),
    ];
    for auth in &wrong {
        let reply = server.request(
            "POST",
            "/api/v4/events",
            &[
                ("Authorization", auth),
                ("Content-Type", "application/json"),
            ],
            Some(event_body("waiter_call").as_bytes()),
        );
        assert_eq!(reply.status, 401, "Authorization: {auth}");
        assert_eq!(reply.body, INVALID_TOKEN, "Authorization: {auth}");
    }
    assert_eq!(server.poll_events("none"), before);
}

// ---------------------------------------------------------------- publish validation

#[test]
fn publish_of_invalid_json_is_400_and_queues_nothing() {
    let server = Launch::new().start();
    let before = seed_one_event(&server);
    let bodies: [&[u8]; 14] = [
        b"",
        b"{",
        // Lone surrogates: strict JSON parsers would refuse every poll
        // that carried them.
        br#"{"code":"waiter_call","invoice":{"note":"\ud800"}}"#,
        br#"{"code":"waiter_call","invoice":{"note":"\udc00\ud800x"}}"#,
        // So would numbers past a double's range.
        br#"{"code":"waiter_call","invoice":{"sum":1e400}}"#,
        br#"{"code":"waiter_call","order":[1,-2.5E+309]}"#,
        b"not json",
        br#"{"code":"waiter_call",}"#,
        br#"{"code":"waiter_call"} trailing"#,
        br#"{"code":"waiter_call"}{"code":"x"}"#,
        br#"{'code':'waiter_call'}"#,
        br#"{"code":"waiter_call","invoice":{"a":}}"#,
        b"{\"code\":\"waiter_call\",\"invoice\":{\"a\":\"\xff\xfe\"}}",
        br#"{"code":"waiter_call","invoice":{"a":NaN}}"#,
    ];
    for body in bodies {
        assert_publish_rejected(&server, &before, body);
    }
}

#[test]
fn publish_of_a_non_object_is_400_and_queues_nothing() {
    let server = Launch::new().start();
    let before = seed_one_event(&server);
    for body in [
        "[]",
        r#"["waiter_call"]"#,
        r#""waiter_call""#,
        "null",
        "42",
        "true",
    ] {
        assert_publish_rejected(&server, &before, body.as_bytes());
    }
}

#[test]
fn publish_with_a_missing_or_bad_code_is_400_and_queues_nothing() {
    let server = Launch::new().start();
    let before = seed_one_event(&server);
    let too_long = format!(r#"{{"code":"a{}"}}"#, "b".repeat(64));
    let bodies = [
        "{}".to_string(),
        r#"{"table":1}"#.to_string(),
        r#"{"code":""}"#.to_string(),
        r#"{"code":"Waiter_call"}"#.to_string(),
        r#"{"code":"1abc"}"#.to_string(),
        r#"{"code":"_abc"}"#.to_string(),
        r#"{"code":"waiter-call"}"#.to_string(),
        r#"{"code":"waiter call"}"#.to_string(),
        r#"{"code":"вызов"}"#.to_string(),
        r#"{"code":"waiter_call\n"}"#.to_string(),
        r#"{"code":null}"#.to_string(),
        r#"{"code":5}"#.to_string(),
        r#"{"code":["waiter_call"]}"#.to_string(),
        too_long,
    ];
    for body in &bodies {
        assert_publish_rejected(&server, &before, body.as_bytes());
    }
}

#[test]
fn publish_with_wrong_field_types_is_400_and_queues_nothing() {
    let server = Launch::new().start();
    let before = seed_one_event(&server);
    let bodies = [
        r#"{"code":"x","table":"1000028"}"#,
        r#"{"code":"x","table":1.5}"#,
        r#"{"code":"x","table":true}"#,
        r#"{"code":"x","table":[1]}"#,
        r#"{"code":"x","table":{"id":1}}"#,
        r#"{"code":"x","invoice":[]}"#,
        r#"{"code":"x","invoice":"121"}"#,
        r#"{"code":"x","invoice":121}"#,
        r#"{"code":"x","order":[{"guid":"g"}]}"#,
        r#"{"code":"x","order":false}"#,
        r#"{"code":"x","table_repr":"6"}"#,
        r#"{"code":"x","table_repr":[]}"#,
        r#"{"code":"x","table_repr":{"id":"1","name":"6","max_guests":50}}"#,
        r#"{"code":"x","table_repr":{"id":1,"name":6,"max_guests":50}}"#,
        r#"{"code":"x","table_repr":{"id":1,"name":"6","max_guests":"50"}}"#,
        r#"{"code":"x","table_repr":{"id":1,"name":"6"}}"#,
        r#"{"code":"x","table_repr":{"id":1,"name":"6","max_guests":50,"extra":1}}"#,
    ];
    for body in bodies {
        assert_publish_rejected(&server, &before, body.as_bytes());
    }
}

#[test]
fn publish_with_an_unknown_key_is_400_and_queues_nothing() {
    let server = Launch::new().start();
    let before = seed_one_event(&server);
    let bodies = [
        r#"{"code":"x","hash":"0x12345678"}"#,
        r#"{"hash":"0x12345678","code":"x"}"#,
        r#"{"code":"x","bogus":1}"#,
        r#"{"code":"x","Code":"y"}"#,
        r#"{"code":"x","table ":1}"#,
        r#"{"code":"x","tableRepr":null}"#,
    ];
    for body in bodies {
        assert_publish_rejected(&server, &before, body.as_bytes());
    }
}

#[test]
fn publish_with_a_duplicate_key_is_400_and_queues_nothing() {
    let server = Launch::new().start();
    let before = seed_one_event(&server);
    let bodies = [
        r#"{"code":"x","code":"x"}"#,
        r#"{"code":"x","code":"y"}"#,
        r#"{"code":"x","table":1,"table":2}"#,
        r#"{"code":"x","invoice":null,"invoice":{}}"#,
        r#"{"code":"x","order":{},"order":{}}"#,
        r#"{"code":"x","table_repr":null,"table_repr":null}"#,
    ];
    for body in bodies {
        assert_publish_rejected(&server, &before, body.as_bytes());
    }
}

/// A valid event body of exactly `len` bytes.
fn event_of_len(len: usize) -> Vec<u8> {
    let head = br#"{"code":"big","invoice":{"pad":""#;
    let tail = br#""}}"#;
    let mut body = head.to_vec();
    body.resize(len - tail.len(), b'a');
    body.extend_from_slice(tail);
    assert_eq!(body.len(), len);
    body
}

#[test]
fn publish_of_a_body_over_1_mib_is_400_and_queues_nothing() {
    let server = Launch::new().start();
    let before = seed_one_event(&server);
    let body = event_of_len(1_048_577);
    let mut head = format!(
        "POST /api/v4/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    head.extend_from_slice(&body);
    let mut conn = server.raw();
    let writer = conn.send_in_background(head);
    let reply = conn.read_response();
    let _ = writer.join();
    assert_eq!(reply.status, 400, "body: {}", reply.text());
    reply.assert_json();
    assert_v4_error_shape(&reply.text());
    assert_eq!(server.poll_events("none"), before);
}

#[test]
fn publish_of_a_body_of_exactly_1_mib_is_accepted() {
    let server = Launch::new().start();
    let body = event_of_len(1_048_576);
    let reply = server.publish(std::str::from_utf8(&body).unwrap());
    let hash = hash_of_published(&reply);
    let events = server.poll_events("none");
    assert_eq!(events.len(), 1);
    let invoice = &body[br#"{"code":"big","invoice":"#.len()..body.len() - 1];
    assert_eq!(
        events[0],
        event_json(
            &hash,
            "big",
            "null",
            std::str::from_utf8(invoice).unwrap(),
            "null",
            "null"
        )
    );
}

// ---------------------------------------------------------------- tables

#[test]
fn put_table_answers_200_with_the_stored_table() {
    let server = Launch::new().start();
    let reply = server.put_table("1000028", r#"{"name":"6","max_guests":50}"#);
    assert_eq!(reply.status, 200, "body: {}", reply.body);
    assert_json_content(reply.content_type.as_deref(), &reply.body);
    assert_eq!(
        reply.body,
        r#"{"result":true,"data":{"table":{"id":1000028,"name":"6","max_guests":50}}}"#
    );
}

#[test]
fn get_tables_on_a_fresh_server_is_an_empty_list() {
    let server = Launch::new().start();
    let reply = server.get_tables();
    assert_eq!(reply.status, 200);
    assert_json_content(reply.content_type.as_deref(), &reply.body);
    assert_eq!(reply.body, r#"{"result":true,"data":{"tables":[]}}"#);
}

#[test]
fn get_tables_lists_registered_tables_ascending_by_id() {
    let server = Launch::new().start();
    for (id, name, guests) in [
        (30, "Терраса 3", 4),
        (5, "5", 2),
        (1000028, "6", 50),
        (12, "bar", 0),
    ] {
        let reply = server.put_table(
            &id.to_string(),
            &format!(r#"{{"name":"{name}","max_guests":{guests}}}"#),
        );
        assert_eq!(reply.status, 200, "body: {}", reply.body);
    }
    let reply = server.get_tables();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        r#"{"result":true,"data":{"tables":[{"id":5,"name":"5","max_guests":2},{"id":12,"name":"bar","max_guests":0},{"id":30,"name":"Терраса 3","max_guests":4},{"id":1000028,"name":"6","max_guests":50}]}}"#
    );
}

#[test]
fn put_table_again_replaces_it() {
    let server = Launch::new().start();
    assert_eq!(
        server
            .put_table("7", r#"{"name":"7","max_guests":4}"#)
            .status,
        200
    );
    let reply = server.put_table("7", r#"{"name":"Seven","max_guests":8}"#);
    assert_eq!(
        reply.body,
        r#"{"result":true,"data":{"table":{"id":7,"name":"Seven","max_guests":8}}}"#
    );
    assert_eq!(
        server.get_tables().body,
        r#"{"result":true,"data":{"tables":[{"id":7,"name":"Seven","max_guests":8}]}}"#
    );
}

#[test]
fn put_table_with_a_bad_body_is_400_and_registers_nothing() {
    let server = Launch::new().start();
    let bodies = [
        "",
        "{",
        "[]",
        r#"{"name":6,"max_guests":50}"#,
        r#"{"name":"6","max_guests":"50"}"#,
        r#"{"name":"6","max_guests":1.5}"#,
        r#"{"name":"6"}"#,
        r#"{"max_guests":50}"#,
        r#"{"name":"6","max_guests":50,"bogus":true}"#,
        r#"{"name":"6","name":"7","max_guests":50}"#,
    ];
    for body in bodies {
        let reply = server.put_table("3", body);
        assert_eq!(reply.status, 400, "PUT body {body:?}; got {}", reply.body);
        reply.assert_v4_error(400);
    }
    assert_eq!(
        server.get_tables().body,
        r#"{"result":true,"data":{"tables":[]}}"#
    );
}

#[test]
fn put_table_with_a_non_integer_id_is_400() {
    let server = Launch::new().start();
    // Only the form JSON writes an integer in: one URL per table.
    for id in [
        "abc",
        "1.5",
        "0x10",
        "1e3",
        "99999999999999999999999",
        "+5",
        "05",
        "-0",
        "-",
        "%35",
    ] {
        let reply = server.put_table(id, r#"{"name":"6","max_guests":50}"#);
        assert_eq!(
            reply.status, 400,
            "PUT /api/v4/tables/{id}; got {}",
            reply.body
        );
        reply.assert_v4_error(400);
    }
    assert_eq!(
        server.get_tables().body,
        r#"{"result":true,"data":{"tables":[]}}"#
    );
}

#[test]
fn put_table_without_admin_token_is_401() {
    let server = Launch::new().start();
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong")],
        vec![("token", QR_TOKEN)],
    ] {
        let reply = server.request(
            "PUT",
            "/api/v4/tables/6",
            &headers,
            Some(br#"{"name":"6","max_guests":50}"#),
        );
        assert_eq!(reply.status, 401, "headers {headers:?}");
        assert_eq!(reply.body, INVALID_TOKEN);
    }
    assert_eq!(
        server.get_tables().body,
        r#"{"result":true,"data":{"tables":[]}}"#
    );
}

#[test]
fn get_tables_without_or_with_wrong_token_is_401() {
    let server = Launch::new().start();
    for headers in [vec![], vec![("token", "wrong")]] {
        let reply = server.request("GET", "/api/v4/tables", &headers, None);
        assert_eq!(reply.status, 401, "headers {headers:?}");
        assert_eq!(reply.body, INVALID_TOKEN);
    }
}

#[test]
fn event_for_a_registered_table_without_table_repr_gets_it_filled_in() {
    let server = Launch::new().start();
    assert_eq!(
        server
            .put_table("1000028", r#"{"name":"6","max_guests":50}"#)
            .status,
        200
    );
    let hash = server.publish_ok(r#"{"code":"waiter_call","table":1000028}"#);
    let reply = server.poll("none");
    // The seed's waiter_call example, compact.
    assert_eq!(
        reply.body,
        format!(
            r#"{{"result":true,"data":{{"updates":[{{"hash":"{hash}","code":"waiter_call","table":1000028,"invoice":null,"order":null,"table_repr":{{"id":1000028,"name":"6","max_guests":50}}}}]}}}}"#
        )
    );
}

#[test]
fn explicit_null_table_repr_stays_null_for_a_registered_table() {
    let server = Launch::new().start();
    assert_eq!(
        server
            .put_table("6", r#"{"name":"6","max_guests":50}"#)
            .status,
        200
    );
    let hash = server.publish_ok(r#"{"code":"waiter_call","table":6,"table_repr":null}"#);
    assert_eq!(
        server.poll_events("none"),
        vec![event_json(
            &hash,
            "waiter_call",
            "6",
            "null",
            "null",
            "null"
        )]
    );
}

#[test]
fn event_for_an_unregistered_table_has_null_table_repr() {
    let server = Launch::new().start();
    assert_eq!(
        server
            .put_table("6", r#"{"name":"6","max_guests":50}"#)
            .status,
        200
    );
    let hash = server.publish_ok(r#"{"code":"waiter_call","table":7}"#);
    assert_eq!(
        server.poll_events("none"),
        vec![event_json(
            &hash,
            "waiter_call",
            "7",
            "null",
            "null",
            "null"
        )]
    );
}

#[test]
fn explicit_table_repr_is_stored_as_given() {
    let server = Launch::new().start();
    let repr = r#"{"id":44,"name":"Веранда","max_guests":12}"#;
    let hash = server.publish_ok(&format!(
        r#"{{"code":"waiter_call","table":44,"table_repr":{repr}}}"#
    ));
    assert_eq!(
        server.poll_events("none"),
        vec![event_json(&hash, "waiter_call", "44", "null", "null", repr)]
    );
}

// ---------------------------------------------------------------- retention

#[test]
fn event_disappears_after_the_retention_window() {
    let server = Launch::new().arg("--event-retention").arg("2").start();
    let hash = server.publish_ok(&event_body("waiter_call"));
    assert_eq!(server.poll_hashes("none"), vec![hash]);
    let gone = wait_until(Duration::from_secs(10), || {
        server.poll_events("none").is_empty()
    });
    assert!(
        gone,
        "event still retained 10 s after publish with --event-retention 2"
    );
}

#[test]
fn poll_with_an_expired_hash_returns_every_retained_event() {
    let server = Launch::new().arg("--event-retention").arg("2").start();
    let old = server.publish_ok(&event_body("old"));
    assert!(
        wait_until(Duration::from_secs(10), || server
            .poll_events("none")
            .is_empty()),
        "event not expired within 10 s"
    );
    let fresh = server.publish_ok(&event_body("fresh"));
    assert_eq!(server.poll_hashes(&old), vec![fresh]);
}

// ---------------------------------------------------------------- long answers

/// A poll answer over 256 KiB is streamed from the queue's shared events as
/// the socket drains (a `hash=none` poll of a full queue is ~80 MB): the
/// bytes are the same, and pipelined requests behind it are answered after
/// it, in order, even when the client reads slowly.
#[test]
fn a_long_poll_answer_is_whole_and_requests_behind_it_keep_their_order() {
    let server = Launch::new().start();
    let mut published = Vec::new();
    for len in [200_000, 150_000, 120_000, 1000] {
        let reply = server.publish(std::str::from_utf8(&event_of_len(len)).unwrap());
        published.push(hash_of_published(&reply));
    }
    let expected = server.poll("none");
    assert_eq!(expected.status, 200);
    assert!(expected.body.len() > 256 * 1024, "{}", expected.body.len());
    let hashes: Vec<String> = split_updates(&expected.body)
        .iter()
        .map(|e| hash_in_event(e))
        .collect();
    assert_eq!(hashes, published);

    let poll = |hash: &str, close: bool| {
        format!(
            "GET /api/v4/events?hash={hash} HTTP/1.1\r\nHost: 127.0.0.1\r\ntoken: {QR_TOKEN}\r\n{}\r\n",
            if close { "Connection: close\r\n" } else { "" }
        )
    };
    let mut pipelined = poll("none", false);
    pipelined += &poll(&published[2], false);
    let table = r#"{"name":"Стол 9","max_guests":2}"#;
    pipelined += &format!(
        "PUT /api/v4/tables/9 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{table}",
        table.len()
    );
    pipelined += &poll("none", true);
    let mut conn = server.raw();
    conn.send(pipelined.as_bytes());
    // Take the answers slowly, so the server's writes stop on a full socket
    // many times over.
    conn.read_slowly(4096, Duration::from_micros(200));
    let first = conn.read_response();
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), expected.body, "the streamed answer differs");
    let second = conn.read_response();
    assert_eq!(second.status, 200);
    assert_eq!(
        split_updates(&second.text())
            .iter()
            .map(|e| hash_in_event(e))
            .collect::<Vec<_>>(),
        published[3..]
    );
    let third = conn.read_response();
    assert_eq!(third.status, 200, "{}", third.text());
    assert_eq!(
        third.text(),
        r#"{"result":true,"data":{"table":{"id":9,"name":"Стол 9","max_guests":2}}}"#
    );
    let fourth = conn.read_response();
    assert_eq!(fourth.status, 200);
    assert!(fourth.closes());
    assert_eq!(fourth.text(), expected.body);
    assert!(conn.closed_within(Duration::from_secs(5)));
    server.assert_healthy();
}

/// A short poll answer (under 256 KiB, not streamed) is written straight
/// from the event loop's buffer when nothing is queued before it (session
/// 21); what the socket does not take at once waits in the connection's
/// buffer (the reactor's unit test checks what is kept). Twelve pipelined
/// answers of ~100–200 KB to a client that reads slowly arrive whole and in
/// order.
#[test]
fn short_poll_answers_larger_than_the_socket_takes_arrive_whole_and_in_order() {
    let server = Launch::new().start();
    let mut published = Vec::new();
    for len in [90_000, 90_000, 20_000] {
        let reply = server.publish(std::str::from_utf8(&event_of_len(len)).unwrap());
        published.push(hash_of_published(&reply));
    }
    let expected = server.poll("none");
    assert_eq!(expected.status, 200);
    assert!(expected.body.len() < 256 * 1024, "{}", expected.body.len());
    let after_first = server.poll(&published[0]);
    assert_eq!(after_first.status, 200);
    let poll = |hash: &str, close: bool| {
        format!(
            "GET /api/v4/events?hash={hash} HTTP/1.1\r\nHost: 127.0.0.1\r\ntoken: {QR_TOKEN}\r\n{}\r\n",
            if close { "Connection: close\r\n" } else { "" }
        )
    };
    let mut conn = server.raw();
    let answers: Vec<(&Reply, bool)> = (0..12)
        .map(|i| (if i % 2 == 0 { &expected } else { &after_first }, i == 11))
        .collect();
    let pipelined: String = (0..12)
        .map(|i| poll(if i % 2 == 0 { "none" } else { &published[0] }, i == 11))
        .collect();
    conn.send(pipelined.as_bytes());
    std::thread::sleep(Duration::from_millis(200));
    conn.read_slowly(4096, Duration::from_micros(100));
    for (i, (want, closes)) in answers.into_iter().enumerate() {
        let got = conn.read_response();
        assert_eq!(got.status, 200, "answer {i}");
        assert_eq!(got.closes(), closes, "answer {i}");
        assert_eq!(got.text(), want.body, "answer {i}");
    }
    assert!(conn.closed_within(Duration::from_secs(5)));
    server.assert_healthy();
}

/// Long answers being sent share `stream-budget-bytes` of events: a client
/// that does not read its long answer holds its share until it goes, a poll
/// that would go past the budget meanwhile gets a 503 in §1's error shape
/// (its connection stays usable), and the share comes back when the stuck
/// client closes.
#[test]
fn long_answers_share_a_budget_that_a_client_which_goes_gives_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("floorbell.toml");
    // One answer of 40 events of 200 kB (8 MB, more than the 4 MiB the
    // kernel buffers for a socket here) fits, a second does not.
    std::fs::write(&config, "stream-budget-bytes = 10000000\n").expect("config");
    let server = Launch::new()
        .arg("--config")
        .arg(config.to_str().expect("utf-8 path"))
        .start();
    let mut published = Vec::new();
    for _ in 0..40 {
        let reply = server.publish(std::str::from_utf8(&event_of_len(200_000)).unwrap());
        published.push(hash_of_published(&reply));
    }
    let poll = |hash: &str| {
        format!("GET /api/v4/events?hash={hash} HTTP/1.1\r\nHost: 127.0.0.1\r\ntoken: {QR_TOKEN}\r\n\r\n")
    };
    // A client that asks for everything and reads nothing.
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    sock.connect_timeout(&server.addr.into(), Duration::from_secs(5))
        .expect("connect");
    let mut stuck: std::net::TcpStream = sock.into();
    std::io::Write::write_all(&mut stuck, poll("none").as_bytes()).expect("send the poll");
    // Its answer has begun (peeked, not read) before anyone else polls.
    stuck
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut status_line = [0u8; 12];
    assert!(
        wait_until(Duration::from_secs(10), || stuck
            .peek(&mut status_line)
            .is_ok_and(|n| n == status_line.len())),
        "no answer began for the stuck client"
    );
    assert_eq!(&status_line, b"HTTP/1.1 200");

    let mut other = server.raw();
    assert!(
        wait_until(Duration::from_secs(10), || {
            other.send(poll("none").as_bytes());
            let reply = other.read_response();
            if reply.status == 200 {
                // The kernel took the stuck client's whole answer after
                // all: read this one whole and ask again.
                return false;
            }
            assert_eq!(reply.status, 503, "{}", reply.text());
            assert!(!reply.closes(), "a 503 for the budget keeps the connection");
            assert_eq!(
                reply.text(),
                r#"{"result":false,"error":"too many long answers are being sent; try again shortly"}"#
            );
            true
        }),
        "no poll was refused while the stuck client held its answer"
    );
    // Short answers are copied, not held: still served.
    other.send(poll(&published[38]).as_bytes());
    let short = other.read_response();
    assert_eq!(short.status, 200);
    assert_eq!(
        split_updates(&short.text())
            .iter()
            .map(|e| hash_in_event(e))
            .collect::<Vec<_>>(),
        published[39..]
    );
    // The stuck client goes; its share comes back.
    drop(stuck);
    assert!(
        wait_until(Duration::from_secs(10), || {
            other.send(poll("none").as_bytes());
            let reply = other.read_response();
            if reply.status == 503 {
                return false;
            }
            assert_eq!(reply.status, 200);
            assert_eq!(split_updates(&reply.text()).len(), 40);
            true
        }),
        "the budget was not given back after the stuck client closed"
    );
    server.assert_healthy();
}

/// RFC 9112 §3.2.2: a server must accept a request target in absolute form
/// (what a client talking through a proxy sends); it is routed by its path,
/// so the answer is the same as for the origin form.
#[test]
fn a_poll_in_absolute_form_is_answered_like_the_origin_form() {
    let server = Launch::new().start();
    seed_one_event(&server);
    let origin = server.poll("none");
    for target in [
        format!("http://{}/api/v4/events?hash=none", server.addr),
        "HTTP://floor.local/api/v4/events?hash=none".to_string(),
    ] {
        let mut conn = server.raw();
        conn.send(&http_request(
            "GET",
            &target,
            &[("token", &server.qr_token), ("Connection", "close")],
            b"",
        ));
        let reply = conn.read_response();
        assert_eq!(reply.status, 200, "{target}: {}", reply.text());
        assert_eq!(reply.text(), origin.body, "{target}");
    }
    // A path the origin form does not know is not found in absolute form either.
    let mut conn = server.raw();
    conn.send(&http_request(
        "GET",
        &format!("http://{}/api/v4/nothing", server.addr),
        &[("Connection", "close")],
        b"",
    ));
    assert_eq!(conn.read_response().status, 404);
}
