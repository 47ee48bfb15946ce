//! SPEC §3.1–§3.3 end to end over HTTP against the real `floorbell` binary:
//! the online check, the button and token generation, both `Authorization`
//! forms (and the admin token) on every [SECURED] route, token listing and
//! revocation, the orders' write and read paths with every status code,
//! `seq`, the history's windows, filters and paging, the statistics, and
//! the settings (the time zone that every time is shown in).
//!
//! Each test starts its own server on a fresh data directory. Where a time
//! is compared with the test's clock, the gateway zone is set first (`UTC`
//! or `Europe/Moscow`, UTC+3 without DST) and a couple of seconds of slack
//! are allowed.

mod common;

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::gateway::*;
use common::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A server and one gateway token.
fn server_and_token() -> (Server, GwToken) {
    let s = Launch::new().start();
    let t = s.new_token();
    (s, t)
}

/// `GET /api/v2/accesstoken` with this authorization: the items.
fn token_items(s: &Server, auth: &str) -> Vec<Value> {
    let reply = s.gw("GET", "/api/v2/accesstoken", Some(auth), None);
    let v = json_reply(&reply, 200, "GET /api/v2/accesstoken");
    assert_keys(&v, &["status", "items"], "the token list");
    assert_eq!(v["status"], 200);
    let items = v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items is not an array: {}", reply.body))
        .clone();
    for item in &items {
        assert_keys(
            item,
            &["name", "creation_date", "last_used", "ip_address"],
            "a listed token",
        );
        assert!(item["name"].is_string(), "{item}");
        assert_local_naive(item["creation_date"].as_str().expect("creation_date"));
        match &item["last_used"] {
            Value::Null => {}
            Value::String(t) => assert_local_naive(t),
            other => panic!("last_used {other}"),
        }
        assert!(
            item["ip_address"].is_null() || item["ip_address"].is_string(),
            "{item}"
        );
    }
    items
}

/// The names of the listed tokens, sorted.
fn token_names(s: &Server) -> Vec<String> {
    let mut names: Vec<String> = token_items(s, &s.admin_auth())
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// The listed token with this name.
fn token_item(s: &Server, name: &str) -> Value {
    token_items(s, &s.admin_auth())
        .into_iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("token {name} is not listed"))
}

/// `DELETE /api/v2/accesstoken/{name}` with this authorization.
fn revoke(s: &Server, auth: &str, name: &str) -> Reply {
    s.gw(
        "DELETE",
        &format!("/api/v2/accesstoken/{name}"),
        Some(auth),
        None,
    )
}

/// Asserts a 200 `{"status":200,…}` from a revocation.
fn assert_revoked(reply: &Reply, name: &str) {
    let v = json_reply(reply, 200, &format!("revoke {name}"));
    assert_eq!(v["status"], 200, "{}", reply.body);
}

/// The whole settings answer.
fn settings(s: &Server) -> Value {
    let reply = s.gw_admin("GET", "/api/v2/gateway/settings", None);
    let v = json_reply(&reply, 200, "GET /api/v2/gateway/settings");
    assert_keys(&v, &["status", "settings"], "the settings answer");
    assert_keys(
        &v["settings"],
        &["targetTimeDefault", "timezone"],
        "the settings",
    );
    v
}

/// `POST /api/v2/gateway/settings` with the admin token.
fn post_settings(s: &Server, body: &str) -> Reply {
    s.gw_admin("POST", "/api/v2/gateway/settings", Some(body))
}

/// `GET /api/v2/statistics?QUERY`: the `statistics` object, shape checked.
fn statistics(s: &Server, query: &str) -> Value {
    let path = if query.is_empty() {
        "/api/v2/statistics".to_string()
    } else {
        format!("/api/v2/statistics?{query}")
    };
    let reply = s.gw_admin("GET", &path, None);
    let v = json_reply(&reply, 200, &path);
    assert_keys(&v, &["status", "statistics"], "the statistics answer");
    assert_eq!(v["status"], 200);
    let st = v["statistics"].clone();
    assert_keys(
        &st,
        &[
            "date",
            "targetTime",
            "orders",
            "located",
            "onTarget",
            "averageTimeToLocate",
        ],
        "the statistics",
    );
    for k in [
        "targetTime",
        "orders",
        "located",
        "onTarget",
        "averageTimeToLocate",
    ] {
        assert!(st[k].is_u64(), "{k} is not an unsigned integer: {st}");
    }
    st
}

/// The number of a statistics field.
fn n(st: &Value, key: &str) -> u64 {
    st[key].as_u64().unwrap()
}

/// Waits until the wall clock (as Unix seconds) is past `secs`.
fn wait_past_second(secs: i64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while now_secs() <= secs {
        assert!(Instant::now() < deadline, "the clock does not move");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A valid order-start body.
fn start_body(name: &str) -> String {
    serde_json::json!({ "name": name, "orderType": "TO_GO" }).to_string()
}

// ---------------------------------------------------------------------------
// The test helpers themselves
// ---------------------------------------------------------------------------

#[test]
fn helpers_encode_base64_and_civil_times_correctly() {
    for (input, output) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(input.as_bytes()), output, "{input:?}");
    }
    assert_eq!(basic("abc"), "Basic YWJjOg==");
    for t in [
        "1970-01-01T00:00:00",
        "2024-02-29T23:59:59",
        "2016-12-24T08:04:34",
    ] {
        assert_eq!(naive(naive_secs(t)), t);
    }
    assert_eq!(
        shift("2024-12-31T23:00:00", MOSCOW_OFFSET),
        "2025-01-01T02:00:00"
    );
    assert_eq!(naive(0), "1970-01-01T00:00:00");
}

// ---------------------------------------------------------------------------
// §3.1 Online check
// ---------------------------------------------------------------------------

#[test]
fn online_check_needs_no_token_and_names_the_version() {
    let s = Launch::new().start();
    let expected = format!(
        r#"{{"status":200,"message":"online","name":"floorbell","version":"{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    let reply = s.gw("GET", "/api/v2", None, None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_json_content(reply.content_type.as_deref(), &reply.body);
    assert_eq!(reply.body, expected);
    // A bad token does not matter here.
    let reply = s.gw("GET", "/api/v2", Some(&bearer("nonsense")), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, expected);
}

// ---------------------------------------------------------------------------
// §3.2 The button, generation, names
// ---------------------------------------------------------------------------

#[test]
fn generate_outside_a_window_is_403_with_the_exact_message() {
    let s = Launch::new().start();
    for _ in 0..2 {
        let reply = s.generate();
        assert_eq!(reply.status, 403, "{}", reply.body);
        assert_json_content(reply.content_type.as_deref(), &reply.body);
        assert_eq!(reply.body, GENERATE_403);
    }
    // One token per press: the window closes with the token. Generating
    // needs no authorization, and ignores a bogus one.
    s.press_button();
    parse_generated(&s.gw(
        "GET",
        "/api/v2/accesstoken/generate",
        Some(&bearer("bogus")),
        None,
    ));
    let reply = s.generate();
    assert_eq!(reply.status, 403, "a second token from one press");
    assert_eq!(reply.body, GENERATE_403);
    // Pressing twice while the window is open still gives one token.
    s.press_button();
    s.press_button();
    parse_generated(&s.generate());
    let reply = s.generate();
    assert_eq!(reply.status, 403, "a second token from one window");
    assert_eq!(reply.body, GENERATE_403);
}

#[test]
fn the_button_needs_the_admin_bearer_token() {
    let s = Launch::new().start();
    let admin = s.admin_token.clone();
    let refused = [
        None,
        Some(bearer("wrong-admin-token")),
        Some(basic(&admin)),
        Some(bearer(QR_TOKEN)),
        Some(format!("Token {admin}")),
        Some(admin.clone()),
    ];
    for auth in &refused {
        let reply = s.gw("POST", "/api/v2/button", auth.as_deref(), None);
        assert_gw_error(&reply, 401, &format!("button with {auth:?}"));
        let reply = s.generate();
        assert_eq!(
            reply.status, 403,
            "a refused press ({auth:?}) opened the window: {}",
            reply.body
        );
    }
    // A gateway token is not the admin token.
    let t = s.new_token();
    for auth in [basic(&t.token), bearer(&t.token)] {
        let reply = s.gw("POST", "/api/v2/button", Some(&auth), None);
        assert_gw_error(&reply, 401, "button with a gateway token");
        assert_eq!(s.generate().status, 403, "the window stayed closed");
    }
}

#[test]
fn each_press_gives_one_token_named_default_then_the_lowest_free_default_n() {
    let s = Launch::new().start();
    s.set_timezone("UTC");
    let before = now_secs();
    let t1 = s.new_token();
    let t2 = s.new_token();
    let t3 = s.new_token();
    let after = now_secs();
    assert_eq!(
        [&t1.name, &t2.name, &t3.name],
        ["default", "default-2", "default-3"]
    );
    for t in [&t1, &t2, &t3] {
        assert_time_between(&t.creation_date, 0, before, after, 2, "creation_date (UTC)");
    }
    let distinct: BTreeSet<&str> = [&t1, &t2, &t3].iter().map(|t| t.token.as_str()).collect();
    assert_eq!(distinct.len(), 3, "three different tokens");

    // The lowest free name is reused.
    assert_revoked(&revoke(&s, &s.admin_auth(), "default-2"), "default-2");
    assert_eq!(s.new_token().name, "default-2");
    assert_revoked(&revoke(&s, &s.admin_auth(), "default"), "default");
    assert_eq!(s.new_token().name, "default");
    assert_eq!(s.new_token().name, "default-4");
    assert_eq!(
        token_names(&s),
        ["default", "default-2", "default-3", "default-4"]
    );
}

#[test]
fn the_token_list_shows_names_dates_and_last_use_but_never_the_token() {
    let s = Launch::new().start();
    s.set_timezone("Europe/Moscow");
    let before = now_secs();
    let t = s.new_token();
    assert_time_between(
        &t.creation_date,
        MOSCOW_OFFSET,
        before,
        now_secs(),
        2,
        "creation_date (Moscow)",
    );
    let reply = s.gw_admin("GET", "/api/v2/accesstoken", None);
    assert!(
        !reply.body.contains(&t.token),
        "the list shows the token: {}",
        reply.body
    );
    let items = token_items(&s, &s.admin_auth());
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["name"], "default");
    assert_eq!(items[0]["creation_date"], t.creation_date.as_str());
    assert!(items[0]["last_used"].is_null(), "unused yet: {}", items[0]);
    assert!(items[0]["ip_address"].is_null(), "unused yet: {}", items[0]);

    // One use (Basic) sets last_used and ip_address.
    let reply = s.gw("GET", "/api/v2/activeorders", Some(&basic(&t.token)), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let used = token_item(&s, "default");
    let last_used = used["last_used"]
        .as_str()
        .unwrap_or_else(|| panic!("last_used after a use: {used}"));
    assert_time_between(
        last_used,
        MOSCOW_OFFSET,
        before,
        now_secs(),
        2,
        "last_used (Moscow)",
    );
    assert_eq!(used["ip_address"], "127.0.0.1", "{used}");

    // A second token: unused until its own (Bearer) use; the admin token's
    // use is nobody's.
    let t2 = s.new_token();
    let second = token_item(&s, "default-2");
    assert!(second["last_used"].is_null(), "{second}");
    assert!(second["ip_address"].is_null(), "{second}");
    let items = token_items(&s, &bearer(&t2.token));
    assert_eq!(items.len(), 2);
    let second = token_item(&s, "default-2");
    assert!(second["last_used"].is_string(), "{second}");
    assert_eq!(second["ip_address"], "127.0.0.1", "{second}");
    let reply = s.gw("GET", "/api/v2/accesstoken", Some(&bearer(&t2.token)), None);
    for token in [&t.token, &t2.token] {
        assert!(!reply.body.contains(token.as_str()), "{}", reply.body);
    }
}

#[test]
fn a_revoked_token_is_refused_at_once() {
    let s = Launch::new().start();
    let a = s.new_token();
    let b = s.new_token();
    for auth in [basic(&a.token), bearer(&a.token)] {
        let reply = s.gw("GET", "/api/v2/activeorders", Some(&auth), None);
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // b revokes a.
    assert_revoked(&revoke(&s, &basic(&b.token), "default"), "default");
    for auth in [basic(&a.token), bearer(&a.token)] {
        let reply = s.gw("GET", "/api/v2/activeorders", Some(&auth), None);
        assert_gw_error(&reply, 401, "a revoked token");
    }
    let reply = s.gw("GET", "/api/v2/activeorders", Some(&basic(&b.token)), None);
    assert_eq!(reply.status, 200, "the other token still works");
    // Unknown names.
    for name in ["default", "nosuch", "default-9"] {
        assert_gw_error(
            &revoke(&s, &s.admin_auth(), name),
            404,
            &format!("revoke {name}"),
        );
    }
    assert_eq!(token_names(&s), ["default-2"]);
    // A token can revoke itself.
    assert_revoked(&revoke(&s, &bearer(&b.token), "default-2"), "default-2");
    let reply = s.gw("GET", "/api/v2/activeorders", Some(&bearer(&b.token)), None);
    assert_gw_error(&reply, 401, "a token that revoked itself");
    assert!(token_items(&s, &s.admin_auth()).is_empty());
}

// ---------------------------------------------------------------------------
// [SECURED]: every route, every form
// ---------------------------------------------------------------------------

struct Call {
    method: &'static str,
    path: String,
    body: Option<String>,
    ok: u16,
}

fn call(method: &'static str, path: String, body: Option<String>, ok: u16) -> Call {
    Call {
        method,
        path,
        body,
        ok,
    }
}

/// One request to every [SECURED] route (and both ways of addressing an
/// order): `a` is an active order (`uuid`), `b` a free name, `victim` a
/// token to revoke, `target` a new targetTimeDefault.
fn secured_calls(a: &str, uuid: &str, b: &str, victim: &str, target: u32) -> Vec<Call> {
    let order = |k: &str| format!("/api/v2/activeorders/{k}");
    vec![
        call("GET", "/api/v2/accesstoken".into(), None, 200),
        call("GET", "/api/v2/activeorders".into(), None, 200),
        call("GET", order(a), None, 200),
        call("GET", order(uuid), None, 200),
        call(
            "PUT",
            order(a),
            Some(r#"{"locationName":"44"}"#.into()),
            200,
        ),
        call(
            "PUT",
            order(uuid),
            Some(r#"{"orderType":"ON_PREMISE"}"#.into()),
            200,
        ),
        call("POST", format!("{}/page", order(a)), None, 200),
        call(
            "POST",
            format!("{}/page", order(uuid)),
            Some(r#"{"tracking":true}"#.into()),
            200,
        ),
        call("DELETE", order(a), None, 200),
        call(
            "POST",
            "/api/v2/activeorders".into(),
            Some(start_body(b)),
            201,
        ),
        call("DELETE", "/api/v2/activeorders".into(), None, 200),
        call("GET", "/api/v2/orders?limit=5&offset=0".into(), None, 200),
        call("GET", "/api/v2/statistics".into(), None, 200),
        call("GET", "/api/v2/statistics?target_time=60".into(), None, 200),
        call("GET", "/api/v2/gateway/settings".into(), None, 200),
        call(
            "POST",
            "/api/v2/gateway/settings".into(),
            Some(format!(r#"{{"targetTimeDefault":{target}}}"#)),
            200,
        ),
        call("DELETE", format!("/api/v2/accesstoken/{victim}"), None, 200),
    ]
}

#[test]
fn every_secured_route_accepts_basic_bearer_and_the_admin_token() {
    let (s, t) = server_and_token();
    let forms = [
        ("Basic token", basic(&t.token)),
        ("Bearer token", bearer(&t.token)),
        ("Bearer admin", s.admin_auth()),
    ];
    for (i, (form, auth)) in forms.iter().enumerate() {
        let a = s.start_order(&format!("{i}1"), "TO_GO", None);
        let b = format!("{i}2");
        let victim = s.new_token();
        let target = 100 + i as u32;
        for c in secured_calls(&a.name, &a.uuid, &b, &victim.name, target) {
            let reply = s.gw(c.method, &c.path, Some(auth), c.body.as_deref());
            assert_eq!(
                reply.status, c.ok,
                "{form}: {} {} answered {}",
                c.method, c.path, reply.body
            );
            assert_json_content(reply.content_type.as_deref(), &reply.body);
        }
        // Every call had its effect.
        let history = s.all_history();
        let a_now = history
            .iter()
            .find(|o| o.uuid == a.uuid)
            .expect("order a in history");
        assert_eq!(
            (
                a_now.state.as_str(),
                a_now.location.as_str(),
                a_now.order_type.as_str()
            ),
            ("cleared", "44", "ON_PREMISE"),
            "{form}"
        );
        assert_eq!(a_now.seq, a.seq + 5, "{form}: 2 PUTs, 2 pages, 1 clear");
        let b_now = history.iter().find(|o| o.name == b).expect("order b");
        assert_eq!(b_now.state, "cleared", "{form}");
        assert!(s.active_orders().is_empty(), "{form}");
        assert_eq!(settings(&s)["settings"]["targetTimeDefault"], target);
        assert!(
            !token_names(&s).contains(&victim.name),
            "{form}: {} was not revoked",
            victim.name
        );
    }
    // The token itself was never revoked.
    assert_eq!(token_names(&s), ["default"]);
}

#[test]
fn every_secured_route_refuses_a_missing_or_wrong_authorization_and_changes_nothing() {
    let (s, t) = server_and_token();
    let revoked = s.new_token();
    assert_revoked(&revoke(&s, &s.admin_auth(), &revoked.name), &revoked.name);
    let victim = s.new_token();
    let a = s.start_order("11", "TO_GO", Some("3"));
    let settings_before = settings(&s);
    let forms: Vec<(&str, Option<String>)> = vec![
        ("no Authorization", None),
        (
            "Bearer wrong",
            Some(bearer("0123456789abcdef0123456789abcdef0123456789abcdef")),
        ),
        (
            "Basic wrong",
            Some(basic("0123456789abcdef0123456789abcdef0123456789abcdef")),
        ),
        ("Bearer revoked", Some(bearer(&revoked.token))),
        ("Basic revoked", Some(basic(&revoked.token))),
        ("Bearer QR token", Some(bearer(QR_TOKEN))),
        ("Bearer token+x", Some(bearer(&format!("{}x", t.token)))),
        ("Bearer uppercased", Some(bearer(&t.token.to_uppercase()))),
        ("Bearer prefix", Some(bearer(&t.token[..47]))),
        ("unknown scheme", Some(format!("Token {}", t.token))),
        ("bare token", Some(t.token.clone())),
        (
            "Basic not base64",
            Some("Basic !!!not-base64!!!".to_string()),
        ),
        ("Bearer empty", Some("Bearer ".to_string())),
        ("Basic empty", Some("Basic ".to_string())),
    ];
    for (form, auth) in &forms {
        for c in secured_calls(&a.name, &a.uuid, "12", &victim.name, 77) {
            let reply = s.gw(c.method, &c.path, auth.as_deref(), c.body.as_deref());
            assert_gw_error(&reply, 401, &format!("{form}: {} {}", c.method, c.path));
        }
    }
    // Nothing changed.
    let now = s.active_orders();
    assert_eq!(now.len(), 1, "active orders: {now:?}");
    assert_same_order(&now[0], &a, 100, "order 11 after the refused calls");
    assert_eq!(s.all_history().len(), 1, "no order 12");
    assert_eq!(settings(&s), settings_before);
    // The revoked default-2's name went to the victim, still there.
    assert_eq!(victim.name, "default-2");
    assert_eq!(token_names(&s), ["default", "default-2"]);
    assert_eq!(
        s.probe_seq("99"),
        a.seq + 1,
        "no change took a seq while refused"
    );
}

// ---------------------------------------------------------------------------
// §3.3 Orders: the write path
// ---------------------------------------------------------------------------

#[test]
fn starting_an_order_answers_201_with_the_whole_summary() {
    let (s, t) = server_and_token();
    s.set_timezone("UTC");
    let before = now_secs();
    let reply = s.gw(
        "POST",
        "/api/v2/activeorders",
        Some(&basic(&t.token)),
        Some(r#"{"name":"66","orderType":"TO_GO","locationName":"22"}"#),
    );
    let after = now_secs();
    let o = one_order(&reply, 201, "start 66");
    assert_eq!(
        (
            o.name.as_str(),
            o.order_type.as_str(),
            o.location.as_str(),
            o.state.as_str()
        ),
        ("66", "TO_GO", "22", "located")
    );
    assert_time_between(&o.created, 0, before, after, 2, "created (UTC)");
    assert_eq!(o.state_started, o.created);
    assert!(o.elapsed <= 1, "elapsedTime of a new order: {}", o.elapsed);

    // Without a location, or with "", it is `started`.
    let o2 = s.start_order("67", "ON_PREMISE", None);
    let o3 = s.start_order("68", "TO_GO", Some(""));
    // Unknown keys are ignored.
    let reply = s.gw_admin(
        "POST",
        "/api/v2/activeorders",
        Some(
            r#"{"name":"69","orderType":"TO_GO","colour":"red","tracking":true,"extra":{"a":[1]}}"#,
        ),
    );
    let o4 = one_order(&reply, 201, "start with unknown keys");
    assert_eq!((o4.name.as_str(), o4.state.as_str()), ("69", "started"));
    // Boundaries: 6 digits, a single digit, 64 bytes of location.
    let o5 = s.start_order("123456", "TO_GO", Some(&"L".repeat(64)));
    let o6 = s.start_order("0", "ON_PREMISE", Some(&"é".repeat(32)));

    let all = [&o, &o2, &o3, &o4, &o5, &o6];
    for w in all.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "one seq per start");
    }
    let uuids: BTreeSet<&str> = all.iter().map(|o| o.uuid.as_str()).collect();
    assert_eq!(uuids.len(), all.len(), "distinct uuids");
    // Each can be read back by name and by uuid.
    for o in all {
        for key in [&o.name, &o.uuid] {
            let reply = s.gw(
                "GET",
                &format!("/api/v2/activeorders/{key}"),
                Some(&bearer(&t.token)),
                None,
            );
            let got = one_order(&reply, 200, &format!("GET {key}"));
            assert_same_order(&got, o, 2, &format!("GET {key}"));
        }
    }
    assert_eq!(
        names(&s.active_orders()),
        ["66", "67", "68", "69", "123456", "0"]
    );
}

#[test]
fn starting_an_order_with_a_bad_body_is_400_and_starts_nothing() {
    let s = Launch::new().start();
    let long = "a".repeat(65);
    let long_utf8 = "é".repeat(33);
    let bodies: Vec<String> = vec![
        "".into(),
        "not json".into(),
        "{".into(),
        "[]".into(),
        "null".into(),
        r#""66""#.into(),
        "{}".into(),
        r#"{"orderType":"TO_GO"}"#.into(),
        r#"{"name":"66"}"#.into(),
        r#"{"name":66,"orderType":"TO_GO"}"#.into(),
        r#"{"name":"","orderType":"TO_GO"}"#.into(),
        r#"{"name":"1234567","orderType":"TO_GO"}"#.into(),
        r#"{"name":"12a","orderType":"TO_GO"}"#.into(),
        r#"{"name":" 12","orderType":"TO_GO"}"#.into(),
        r#"{"name":"-1","orderType":"TO_GO"}"#.into(),
        r#"{"name":"+1","orderType":"TO_GO"}"#.into(),
        r#"{"name":"1.5","orderType":"TO_GO"}"#.into(),
        r#"{"name":"١٢","orderType":"TO_GO"}"#.into(),
        r#"{"name":["1"],"orderType":"TO_GO"}"#.into(),
        r#"{"name":"1","orderType":"to_go"}"#.into(),
        r#"{"name":"1","orderType":"EAT_IN"}"#.into(),
        r#"{"name":"1","orderType":""}"#.into(),
        r#"{"name":"1","orderType":1}"#.into(),
        r#"{"name":"1","orderType":"TO_GO","locationName":22}"#.into(),
        r#"{"name":"1","orderType":"TO_GO","locationName":true}"#.into(),
        format!(r#"{{"name":"1","orderType":"TO_GO","locationName":"{long}"}}"#),
        format!(r#"{{"name":"1","orderType":"TO_GO","locationName":"{long_utf8}"}}"#),
        // A key given twice: the last one used to count.
        r#"{"name":"1","orderType":"TO_GO","name":"2"}"#.into(),
    ];
    for body in &bodies {
        let reply = s.gw_admin("POST", "/api/v2/activeorders", Some(body));
        assert_gw_error(&reply, 400, &format!("start with body {body:?}"));
    }
    assert!(
        s.active_orders().is_empty(),
        "a refused start left an order"
    );
    assert!(s.all_history().is_empty(), "a refused start left history");
}

#[test]
fn a_name_already_active_is_409_and_free_again_once_cleared() {
    let s = Launch::new().start();
    let first = s.start_order("7", "TO_GO", None);
    for (ty, loc) in [("TO_GO", None), ("ON_PREMISE", Some("3"))] {
        let reply = s.post_order(&s.admin_auth(), "7", ty, loc);
        assert_gw_error(&reply, 409, "a second active 7");
    }
    assert_eq!(s.active_orders().len(), 1);
    s.clear_order("7");
    let second = s.start_order("7", "ON_PREMISE", Some("5"));
    assert_ne!(second.uuid, first.uuid, "a new order, a new uuid");
    assert_eq!(
        second.seq,
        first.seq + 2,
        "the 409s took no seq (start, clear, start)"
    );
    let history = s.all_history();
    assert_eq!(history.len(), 2);
    assert_eq!(
        (history[0].uuid.as_str(), history[0].state.as_str()),
        (first.uuid.as_str(), "cleared")
    );
    assert_eq!(
        (history[1].uuid.as_str(), history[1].state.as_str()),
        (second.uuid.as_str(), "located")
    );
}

#[test]
fn modify_changes_type_location_and_state_by_name_and_by_uuid() {
    let s = Launch::new().start();
    s.set_timezone("UTC");
    let o = s.start_order("12", "TO_GO", None);
    wait_past_second(naive_secs(&o.created));

    // started → located: stateStarted moves.
    let m1 = s.modify_order("12", r#"{"locationName":"4"}"#);
    assert_eq!(
        (
            m1.state.as_str(),
            m1.location.as_str(),
            m1.order_type.as_str()
        ),
        ("located", "4", "TO_GO")
    );
    assert_eq!(
        (m1.uuid.as_str(), m1.created.as_str()),
        (o.uuid.as_str(), o.created.as_str())
    );
    assert!(
        m1.state_started > o.state_started,
        "stateStarted did not reset: {} then {}",
        o.state_started,
        m1.state_started
    );
    assert_eq!(m1.seq, o.seq + 1);
    assert_time_between(
        &m1.state_started,
        0,
        now_secs() - 1,
        now_secs(),
        2,
        "stateStarted",
    );

    // Type only, by uuid: state and stateStarted stay.
    let m2 = s.modify_order(&o.uuid, r#"{"orderType":"ON_PREMISE"}"#);
    assert_eq!(
        (
            m2.state.as_str(),
            m2.location.as_str(),
            m2.order_type.as_str()
        ),
        ("located", "4", "ON_PREMISE")
    );
    assert_eq!(m2.state_started, m1.state_started);
    assert_eq!(m2.seq, m1.seq + 1);

    // Another table: still located, stateStarted stays.
    let m3 = s.modify_order("12", r#"{"locationName":"10"}"#);
    assert_eq!((m3.state.as_str(), m3.location.as_str()), ("located", "10"));
    assert_eq!(m3.state_started, m1.state_started);
    assert_eq!(m3.seq, m2.seq + 1);

    wait_past_second(naive_secs(&m3.state_started));
    // "" → started again, stateStarted moves.
    let m4 = s.modify_order(&o.uuid, r#"{"locationName":""}"#);
    assert_eq!((m4.state.as_str(), m4.location.as_str()), ("started", ""));
    assert!(m4.state_started > m3.state_started, "{m4:?}");
    assert_eq!(m4.seq, m3.seq + 1);

    // Both at once, unknown keys ignored.
    let m5 = s.modify_order(
        "12",
        r#"{"orderType":"TO_GO","locationName":"3","colour":"red","note":{"x":1}}"#,
    );
    assert_eq!(
        (
            m5.name.as_str(),
            m5.state.as_str(),
            m5.location.as_str(),
            m5.order_type.as_str()
        ),
        ("12", "located", "3", "TO_GO")
    );
    assert_eq!(m5.seq, m4.seq + 1);
    assert!(m5.state_started >= m4.state_started);

    // elapsedTime counts up from `created`.
    let reply = s.gw_admin("GET", "/api/v2/activeorders/12", None);
    let got = one_order(&reply, 200, "GET 12");
    let expected = now_secs() - naive_secs(&o.created);
    // Two second boundaries were waited for: more than a second has passed.
    assert!(
        got.elapsed >= 1,
        "elapsedTime {} after over 1 s",
        got.elapsed
    );
    assert!(
        (got.elapsed as i64 - expected).abs() <= 2,
        "elapsedTime {} vs {expected} by the clock",
        got.elapsed
    );
    assert_eq!(got.timeless(), m5.timeless());
}

#[test]
fn a_put_that_changes_nothing_answers_200_and_takes_no_seq() {
    let s = Launch::new().start();
    let o = s.start_order("5", "TO_GO", Some("1"));
    for body in [
        "{}",
        r#"{"orderType":"TO_GO"}"#,
        r#"{"locationName":"1"}"#,
        r#"{"orderType":"TO_GO","locationName":"1"}"#,
        r#"{"unknown":"key"}"#,
    ] {
        for key in [&o.name, &o.uuid] {
            let got = s.modify_order(key, body);
            assert_same_order(&got, &o, 2, &format!("PUT {key} {body}"));
        }
    }
    let paged = s.page_order("5");
    assert_eq!(paged.seq, o.seq + 1, "the no-op PUTs took no seq");
}

#[test]
fn modify_with_a_bad_body_is_400_and_changes_nothing() {
    let s = Launch::new().start();
    let o = s.start_order("8", "TO_GO", Some("2"));
    let long = "a".repeat(65);
    let bodies: Vec<String> = vec![
        "".into(),
        "nope".into(),
        "[]".into(),
        "5".into(),
        r#"{"orderType":"X"}"#.into(),
        r#"{"orderType":5}"#.into(),
        r#"{"locationName":5}"#.into(),
        format!(r#"{{"locationName":"{long}"}}"#),
        r#"{"orderType":"ON_PREMISE","locationName":7}"#.into(),
        r#"{"orderType":"WRONG","locationName":"9"}"#.into(),
    ];
    for body in &bodies {
        for key in [&o.name, &o.uuid] {
            let reply = s.gw_admin("PUT", &format!("/api/v2/activeorders/{key}"), Some(body));
            assert_gw_error(&reply, 400, &format!("PUT {key} {body:?}"));
        }
    }
    let reply = s.gw_admin("GET", "/api/v2/activeorders/8", None);
    assert_same_order(
        &one_order(&reply, 200, "GET 8"),
        &o,
        2,
        "order 8 after the 400s",
    );
    assert_eq!(s.page_order("8").seq, o.seq + 1, "the 400s took no seq");
}

#[test]
fn paging_is_a_change_every_time_by_name_and_by_uuid() {
    let s = Launch::new().start();
    let o = s.start_order("21", "ON_PREMISE", Some("9"));
    let mut last = o.clone();
    let pages: [(&str, Option<&str>); 5] = [
        ("21", None),
        (&o.uuid, Some(r#"{"tracking":true}"#)),
        ("21", Some(r#"{"tracking":false}"#)),
        (&o.uuid, Some("{}")),
        ("21", Some(r#"{"tracking":true,"unknown":1}"#)),
    ];
    for (key, body) in pages {
        let reply = s.gw_admin("POST", &format!("/api/v2/activeorders/{key}/page"), body);
        let p = one_order(&reply, 200, &format!("page {key} {body:?}"));
        assert_eq!(p.seq, last.seq + 1, "every page is a change");
        assert_eq!(
            Order {
                seq: o.seq,
                ..p.timeless()
            },
            o.timeless(),
            "a page changes nothing but seq"
        );
        last = p;
    }
    for body in [r#"{"tracking":"yes"}"#, r#"{"tracking":1}"#, "[]", "nope"] {
        let reply = s.gw_admin("POST", "/api/v2/activeorders/21/page", Some(body));
        assert_gw_error(&reply, 400, &format!("page with {body:?}"));
    }
    // A started order can be paged too.
    let started = s.start_order("22", "TO_GO", None);
    assert_eq!(started.seq, last.seq + 1, "the 400s took no seq");
    let p = s.page_order("22");
    assert_eq!((p.state.as_str(), p.seq), ("started", started.seq + 1));
}

#[test]
fn unknown_orders_are_404() {
    let s = Launch::new().start();
    s.start_order("1", "TO_GO", None);
    for key in [
        "999",
        "0b0e8a3e-7f1c-4a57-9a51-6a3c2f1d9e77",
        "not-an-order",
    ] {
        let path = format!("/api/v2/activeorders/{key}");
        let calls: [(&str, String, Option<&str>); 4] = [
            ("GET", path.clone(), None),
            ("PUT", path.clone(), Some(r#"{"locationName":"1"}"#)),
            ("POST", format!("{path}/page"), None),
            ("DELETE", path.clone(), None),
        ];
        for (method, p, body) in calls {
            let reply = s.gw_admin(method, &p, body);
            assert_gw_error(&reply, 404, &format!("{method} {p}"));
        }
    }
    assert_eq!(s.active_orders().len(), 1);
}

#[test]
fn clearing_by_name_or_uuid_moves_the_order_to_history() {
    let s = Launch::new().start();
    s.set_timezone("UTC");
    let a = s.start_order("31", "TO_GO", Some("1"));
    let b = s.start_order("32", "ON_PREMISE", None);
    wait_past_second(naive_secs(&b.created));
    let ca = s.clear_order("31");
    let cb = s.clear_order(&b.uuid);
    assert_eq!((ca.seq, cb.seq), (b.seq + 1, b.seq + 2));
    for (cleared, was) in [(&ca, &a), (&cb, &b)] {
        assert_eq!(
            (
                cleared.uuid.as_str(),
                cleared.name.as_str(),
                cleared.created.as_str(),
                cleared.order_type.as_str(),
                cleared.location.as_str()
            ),
            (
                was.uuid.as_str(),
                was.name.as_str(),
                was.created.as_str(),
                was.order_type.as_str(),
                was.location.as_str()
            ),
            "the clear changes the state only"
        );
        assert!(
            cleared.state_started > was.state_started,
            "stateStarted resets on the clear: {cleared:?}"
        );
        let span = naive_secs(&cleared.state_started) - naive_secs(&cleared.created);
        assert!(
            (cleared.elapsed as i64 - span).abs() <= 1,
            "elapsedTime {} of a cleared order vs {span} s from created to the clear",
            cleared.elapsed
        );
    }
    assert!(s.active_orders().is_empty());

    // No longer active: 404 by name (the name is free), 409 by uuid.
    for (o, key) in [(&a, a.name.as_str()), (&b, b.name.as_str())] {
        let path = format!("/api/v2/activeorders/{key}");
        assert_gw_error(&s.gw_admin("GET", &path, None), 404, &format!("GET {key}"));
        assert_gw_error(
            &s.gw_admin("PUT", &path, Some(r#"{"locationName":"2"}"#)),
            404,
            &format!("PUT {key}"),
        );
        assert_gw_error(
            &s.gw_admin("POST", &format!("{path}/page"), None),
            404,
            &format!("page {key}"),
        );
        assert_gw_error(
            &s.gw_admin("DELETE", &path, None),
            404,
            &format!("DELETE {key}"),
        );
        let path = format!("/api/v2/activeorders/{}", o.uuid);
        assert_gw_error(&s.gw_admin("GET", &path, None), 404, "GET a cleared uuid");
        assert_gw_error(
            &s.gw_admin("PUT", &path, Some(r#"{"locationName":"2"}"#)),
            409,
            "PUT a cleared uuid",
        );
        assert_gw_error(
            &s.gw_admin("POST", &format!("{path}/page"), None),
            409,
            "page a cleared uuid",
        );
        assert_gw_error(
            &s.gw_admin("DELETE", &path, None),
            409,
            "DELETE a cleared uuid",
        );
    }

    // In history, frozen: elapsedTime no longer counts.
    wait_past_second(now_secs());
    let history = s.all_history();
    assert_eq!(
        history,
        [ca.clone(), cb.clone()],
        "history, exactly as cleared"
    );
    // The name is free again; the new order is a new one.
    let again = s.start_order("31", "TO_GO", None);
    assert_ne!(again.uuid, a.uuid);
    assert_eq!(again.seq, cb.seq + 1, "the refused changes took no seq");
}

#[test]
fn clearing_all_clears_every_active_order_and_counts_them() {
    let s = Launch::new().start();
    let orders = [
        s.start_order("1", "TO_GO", Some("5")),
        s.start_order("2", "ON_PREMISE", None),
        s.start_order("3", "TO_GO", None),
    ];
    let last = orders[2].seq;
    let reply = s.gw_admin("DELETE", "/api/v2/activeorders", None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_json_content(reply.content_type.as_deref(), &reply.body);
    assert_eq!(reply.body, r#"{"status":200,"count":3}"#);
    assert!(s.active_orders().is_empty());
    let history = s.all_history();
    assert_eq!(names(&history), ["1", "2", "3"]);
    let seqs: BTreeSet<u64> = history.iter().map(|o| o.seq).collect();
    assert_eq!(
        seqs,
        [last + 1, last + 2, last + 3].into(),
        "one seq per cleared order"
    );
    for (h, o) in history.iter().zip(&orders) {
        assert_eq!(h.state, "cleared");
        assert_eq!((&h.uuid, &h.location), (&o.uuid, &o.location));
    }
    let reply = s.gw_admin("DELETE", "/api/v2/activeorders", None);
    assert_eq!(reply.body, r#"{"status":200,"count":0}"#);
    assert_eq!(s.probe_seq("9"), last + 4, "clearing nothing took no seq");
}

// ---------------------------------------------------------------------------
// §3.3 Orders: the read path
// ---------------------------------------------------------------------------

#[test]
fn active_orders_are_listed_oldest_first() {
    let (s, t) = server_and_token();
    assert!(s.active_orders().is_empty());
    let reply = s.gw("GET", "/api/v2/activeorders", Some(&basic(&t.token)), None);
    assert_eq!(reply.body, r#"{"status":200,"count":0,"items":[]}"#);
    for name in ["3", "1", "2"] {
        s.start_order(name, "TO_GO", None);
    }
    assert_eq!(names(&s.active_orders()), ["3", "1", "2"]);
    s.modify_order("3", r#"{"locationName":"8"}"#);
    s.page_order("1");
    assert_eq!(
        names(&s.active_orders()),
        ["3", "1", "2"],
        "changes do not reorder"
    );
    s.clear_order("1");
    assert_eq!(names(&s.active_orders()), ["3", "2"]);
    s.start_order("1", "ON_PREMISE", None);
    let list = s.active_orders();
    assert_eq!(names(&list), ["3", "2", "1"]);
    for o in &list {
        let reply = s.gw(
            "GET",
            &format!("/api/v2/activeorders/{}", o.uuid),
            Some(&bearer(&t.token)),
            None,
        );
        assert_same_order(&one_order(&reply, 200, "GET by uuid"), o, 2, "list vs GET");
    }
}

#[test]
fn seq_rises_by_one_per_change_of_any_order() {
    let s = Launch::new().start();
    let a = s.start_order("1", "TO_GO", None);
    let first = a.seq;
    let b = s.start_order("2", "TO_GO", None);
    let a2 = s.modify_order("1", r#"{"locationName":"7"}"#);
    let a3 = s.modify_order("1", r#"{"locationName":"7"}"#);
    let b2 = s.page_order("2");
    let b3 = s.page_order(&b.uuid);
    let a4 = s.clear_order(&a.uuid);
    let reply = s.gw_admin("DELETE", "/api/v2/activeorders", None);
    assert_eq!(reply.body, r#"{"status":200,"count":1}"#);
    let c = s.start_order("3", "TO_GO", None);
    assert_eq!(
        [b.seq, a2.seq, a3.seq, b2.seq, b3.seq, a4.seq, c.seq],
        [
            first + 1,
            first + 2,
            first + 2,
            first + 3,
            first + 4,
            first + 5,
            first + 7
        ],
        "b start, a located, no-op, two pages, clear a, (clear-all b), c start"
    );
    let b_cleared = s
        .all_history()
        .into_iter()
        .find(|o| o.uuid == b.uuid)
        .unwrap();
    assert_eq!(
        (b_cleared.state.as_str(), b_cleared.seq),
        ("cleared", first + 6)
    );
}

#[test]
fn history_holds_active_and_cleared_orders_filtered_by_type_and_location() {
    let s = Launch::new().start();
    let o1 = s.start_order("1", "TO_GO", Some("1"));
    let o2 = s.start_order("2", "ON_PREMISE", Some("Patio 2"));
    let o3 = s.start_order("3", "TO_GO", None);
    let o4 = s.start_order("4", "ON_PREMISE", Some("1"));
    let c2 = s.clear_order("2");
    let all = s.history("");
    assert_eq!(names(&all), ["1", "2", "3", "4"], "oldest first");
    assert_eq!(all[1], c2, "the cleared order as its clear left it");
    for (got, want) in [(&all[0], &o1), (&all[2], &o3), (&all[3], &o4)] {
        assert_same_order(got, want, 2, "an active order in history");
    }
    let cases: [(&str, &[&str]); 9] = [
        ("order_type=TO_GO", &["1", "3"]),
        ("order_type=ON_PREMISE", &["2", "4"]),
        ("location_name=1", &["1", "4"]),
        ("location_name=Patio%202", &["2"]),
        ("location_name=Patio+2", &["2"]),
        ("order_type=ON_PREMISE&location_name=1", &["4"]),
        ("order_type=TO_GO&location_name=Patio%202", &[]),
        ("location_name=nowhere", &[]),
        ("unknown=1&order_type=TO_GO&another=x", &["1", "3"]),
    ];
    for (query, expected) in cases {
        assert_eq!(names(&s.history(query)), expected, "?{query}");
    }
    let _ = o2;
}

#[test]
fn history_pages_with_offset_and_limit() {
    let s = Launch::new().start();
    let all: Vec<String> = (1..=30).map(|i| i.to_string()).collect();
    // Started as fast as the server takes them, several in one millisecond
    // on a fast machine: they keep their start order through the clears
    // below (until session 22 a change moved an order behind the others of
    // its millisecond, and this test failed in CI).
    for name in &all {
        s.start_order(name, "TO_GO", None);
    }
    for name in all.iter().step_by(3) {
        s.clear_order(name);
    }
    let slice =
        |a: usize, b: usize| -> Vec<&str> { all[a..b].iter().map(String::as_str).collect() };
    let cases: [(&str, Vec<&str>); 13] = [
        ("", slice(0, 25)),
        ("offset=0", slice(0, 25)),
        ("limit=10", slice(0, 10)),
        ("limit=10&offset=10", slice(10, 20)),
        ("offset=20&limit=10", slice(20, 30)),
        ("offset=25&limit=10", slice(25, 30)),
        ("offset=25", slice(25, 30)),
        ("offset=30", vec![]),
        ("offset=1000", vec![]),
        ("offset=99999999999999999999999", vec![]),
        ("limit=100", slice(0, 30)),
        ("limit=1", slice(0, 1)),
        ("offset=29&limit=1", slice(29, 30)),
    ];
    for (query, expected) in cases {
        assert_eq!(names(&s.history(query)), expected, "?{query}");
    }
}

#[test]
fn history_limit_offset_and_dates_out_of_range_are_400() {
    let s = Launch::new().start();
    s.start_order("1", "TO_GO", None);
    let bad = [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=abc",
        "limit=1.5",
        "limit=1000",
        "offset=-1",
        "offset=x",
        "offset=1.5",
        "created_after=yesterday",
        "created_after=2024-13-01",
        "created_after=2024-02-30",
        "created_after=2024-01-01T25:00:00",
        "created_after=2024-01-01T10:00",
        "created_after=12345",
        "created_before=2024-1-1",
        "created_before=01/02/2024",
        "created_before=2024-01-01T10:00:00Q",
        "limit=10&created_before=soon",
    ];
    for query in bad {
        let reply = s.gw_admin("GET", &format!("/api/v2/orders?{query}"), None);
        assert_gw_error(&reply, 400, &format!("?{query}"));
    }
    for good in [
        "limit=1",
        "limit=100",
        "offset=0",
        "created_after=2024-01-01",
    ] {
        let reply = s.gw_admin("GET", &format!("/api/v2/orders?{good}"), None);
        assert_eq!(reply.status, 200, "?{good}: {}", reply.body);
    }
}

#[test]
fn history_windows_read_times_in_the_gateway_zone() {
    let s = Launch::new().start();
    s.set_timezone("Europe/Moscow");
    let a = s.start_order("1", "TO_GO", None);
    // B one second (at least) later on the gateway's clock.
    wait_past_second(naive_secs(&a.created) - MOSCOW_OFFSET);
    let b = s.start_order("2", "ON_PREMISE", None);
    assert!(b.created > a.created, "{} then {}", a.created, b.created);
    let q = |query: String| -> Vec<String> {
        s.history(&query)
            .into_iter()
            .map(|o| o.name)
            .collect::<Vec<_>>()
    };
    let utc = |local: &str| format!("{}Z", shift(local, -MOSCOW_OFFSET));
    let both = vec!["1".to_string(), "2".to_string()];
    let only_a = vec!["1".to_string()];
    let only_b = vec!["2".to_string()];
    let none: Vec<String> = vec![];

    // Local-naive bounds, in Moscow time: [after, before).
    assert_eq!(q(format!("created_after={}", a.created)), both);
    assert_eq!(q(format!("created_after={}", b.created)), only_b);
    assert_eq!(q(format!("created_before={}", b.created)), only_a);
    assert_eq!(q(format!("created_before={}", a.created)), none);
    assert_eq!(
        q(format!(
            "created_after={}&created_before={}",
            a.created, b.created
        )),
        only_a
    );
    assert_eq!(
        q(format!("created_after={}", b.created.replace(':', "%3A"))),
        only_b,
        "percent-encoded colons"
    );
    // An empty window.
    assert_eq!(
        q(format!(
            "created_after={}&created_before={}",
            b.created, a.created
        )),
        none
    );
    // RFC 3339 UTC.
    assert_eq!(q(format!("created_after={}", utc(&b.created))), only_b);
    assert_eq!(q(format!("created_before={}", utc(&b.created))), only_a);
    assert_eq!(q(format!("created_before={}", utc(&a.created))), none);
    // A bound three hours off (local read as UTC, or the reverse) would
    // select nothing or everything.
    assert_eq!(
        q(format!(
            "created_after={}",
            shift(&b.created, -MOSCOW_OFFSET)
        )),
        both
    );
    assert_eq!(
        q(format!(
            "created_after={}",
            shift(&a.created, MOSCOW_OFFSET)
        )),
        none
    );
    // Dates: midnight in Moscow.
    let day = &a.created[..10];
    if &b.created[..10] == day {
        let next = date_of(naive_secs(&a.created) + 86_400);
        assert_eq!(q(format!("created_after={day}")), both);
        assert_eq!(q(format!("created_before={day}")), none);
        assert_eq!(q(format!("created_after={next}")), none);
        assert_eq!(q(format!("created_before={next}")), both);
        assert_eq!(
            q(format!(
                "created_after={day}&created_before={next}&order_type=TO_GO"
            )),
            only_a
        );
    }
    // Cleared orders stay in their window.
    s.clear_order("1");
    let got = s.history(&format!("created_before={}", b.created));
    assert_eq!(names(&got), ["1"]);
    assert_eq!(got[0].state, "cleared");
}

// ---------------------------------------------------------------------------
// §3.3 Statistics
// ---------------------------------------------------------------------------

#[test]
fn statistics_count_todays_orders_against_a_target() {
    let s = Launch::new().start();
    s.set_timezone("UTC");
    let today = date_of(now_secs());
    let reply = s.gw_admin("GET", "/api/v2/statistics?target_time=300", None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_json_content(reply.content_type.as_deref(), &reply.body);
    assert_eq!(
        reply.body,
        format!(
            r#"{{"status":200,"statistics":{{"date":"{today}","targetTime":300,"orders":0,"located":0,"onTarget":0,"averageTimeToLocate":0}}}}"#
        ),
        "no orders yet"
    );

    // 1: located at once (0 s). 2: located after about 2.1 s. 3: never.
    // The mean time to locate is then just over a second.
    s.start_order("1", "TO_GO", Some("5"));
    let t0 = Instant::now();
    s.start_order("2", "TO_GO", None);
    let t1 = Instant::now();
    s.start_order("3", "ON_PREMISE", None);
    thread::sleep(Duration::from_millis(2100));
    let t2 = Instant::now();
    s.modify_order("2", r#"{"locationName":"6"}"#);
    let t3 = Instant::now();
    // The mean time to locate is between these two bounds (1 and 2 s).
    let lo = ((t2 - t1).as_secs_f64() / 2.0).floor() as u64;
    let hi = ((t3 - t0).as_secs_f64() / 2.0).ceil() as u64;

    let check = |st: &Value, target: u64, on_target: u64, what: &str| {
        assert_eq!(st["date"], today.as_str(), "{what}: {st}");
        assert_eq!(n(st, "targetTime"), target, "{what}: {st}");
        assert_eq!(n(st, "orders"), 3, "{what}: {st}");
        assert_eq!(n(st, "located"), 2, "{what}: {st}");
        assert_eq!(n(st, "onTarget"), on_target, "{what}: {st}");
        let avg = n(st, "averageTimeToLocate");
        assert!(
            lo <= avg && avg <= hi,
            "{what}: averageTimeToLocate {avg} not in [{lo}, {hi}]: {st}"
        );
    };
    check(&statistics(&s, "target_time=0"), 0, 1, "target 0");
    check(
        &statistics(&s, "target_time=86400"),
        86_400,
        2,
        "target 86400",
    );
    check(&statistics(&s, ""), 300, 2, "the default target");
    let reply = post_settings(&s, r#"{"targetTimeDefault":0}"#);
    assert_eq!(reply.body, SETTINGS_CHANGED);
    check(&statistics(&s, ""), 0, 1, "the changed default");
    check(
        &statistics(&s, "target_time=300"),
        300,
        2,
        "an explicit target",
    );
    // Clearing does not un-start or un-locate an order.
    s.clear_order("1");
    s.clear_order("3");
    check(&statistics(&s, "target_time=0"), 0, 1, "after clears");
    for bad in ["target_time=-1", "target_time=abc", "target_time=1.5"] {
        let reply = s.gw_admin("GET", &format!("/api/v2/statistics?{bad}"), None);
        assert_gw_error(&reply, 400, &format!("?{bad}"));
    }
    if date_of(now_secs()) != today {
        eprintln!("the date changed during the test; its counts may be off");
    }
}

// ---------------------------------------------------------------------------
// §3.3 Settings
// ---------------------------------------------------------------------------

#[test]
fn settings_are_read_and_changed() {
    let s = Launch::new().start();
    let v = settings(&s);
    assert_eq!(v["status"], 200);
    assert_eq!(v["settings"]["targetTimeDefault"], 300, "default target");
    assert!(
        v["settings"]["timezone"]
            .as_str()
            .is_some_and(|z| !z.is_empty()),
        "default zone: {v}"
    );
    let exact = |target: u32, zone: &str| {
        format!(
            r#"{{"status":200,"settings":{{"targetTimeDefault":{target},"timezone":"{zone}"}}}}"#
        )
    };
    let steps: [(&str, u32, &str); 5] = [
        (r#"{"timezone":"Europe/Moscow"}"#, 300, "Europe/Moscow"),
        (r#"{"targetTimeDefault":120}"#, 120, "Europe/Moscow"),
        (r#"{"targetTimeDefault":0,"timezone":"UTC"}"#, 0, "UTC"),
        (r#"{"targetTimeDefault":86400}"#, 86_400, "UTC"),
        (
            r#"{"timezone":"America/New_York","targetTimeDefault":45}"#,
            45,
            "America/New_York",
        ),
    ];
    for (body, target, zone) in steps {
        let reply = post_settings(&s, body);
        assert_eq!(reply.status, 200, "{body}: {}", reply.body);
        assert_json_content(reply.content_type.as_deref(), &reply.body);
        assert_eq!(reply.body, SETTINGS_CHANGED, "{body}");
        let reply = s.gw_admin("GET", "/api/v2/gateway/settings", None);
        assert_eq!(reply.body, exact(target, zone), "after {body}");
    }
}

#[test]
fn bad_settings_are_400_and_change_nothing() {
    let s = Launch::new().start();
    let reply = post_settings(
        &s,
        r#"{"targetTimeDefault":200,"timezone":"Europe/Moscow"}"#,
    );
    assert_eq!(reply.body, SETTINGS_CHANGED);
    let baseline = s.gw_admin("GET", "/api/v2/gateway/settings", None).body;
    let bodies = [
        "{}",
        "",
        "nope",
        "[]",
        "null",
        r#"{"timezone":"Mars/Olympus_Mons"}"#,
        r#"{"timezone":""}"#,
        r#"{"timezone":5}"#,
        r#"{"timezone":null}"#,
        r#"{"timezone":"europe/moscow/extra"}"#,
        r#"{"targetTimeDefault":-1}"#,
        r#"{"targetTimeDefault":86401}"#,
        r#"{"targetTimeDefault":"300"}"#,
        r#"{"targetTimeDefault":1.5}"#,
        r#"{"targetTimeDefault":null}"#,
        r#"{"targetTimeDefault":1e9}"#,
        r#"{"foo":1}"#,
        r#"{"targetTimeDefault":100,"foo":1}"#,
        r#"{"timezone":"UTC","foo":1}"#,
        r#"{"targetTimeDefault":100,"timezone":"Nowhere/Land"}"#,
        r#"{"timezone":"UTC","targetTimeDefault":-5}"#,
        r#"{"timezone":"UTC","timezone":"Europe/Berlin"}"#,
    ];
    for body in bodies {
        let reply = post_settings(&s, body);
        assert_gw_error(&reply, 400, &format!("settings {body:?}"));
        let now = s.gw_admin("GET", "/api/v2/gateway/settings", None).body;
        assert_eq!(now, baseline, "settings changed by the refused {body:?}");
    }
}

#[test]
fn times_are_shown_in_the_zone_in_force_when_read() {
    let s = Launch::new().start();
    s.set_timezone("UTC");
    let t = s.new_token();
    let active = s.start_order("1", "TO_GO", Some("2"));
    let cleared = s.clear_order(&s.start_order("2", "ON_PREMISE", None).uuid);
    let before = now_secs();
    s.set_timezone("Europe/Moscow");
    // Every time moves by +3 h; nothing else changes.
    let get = one_order(
        &s.gw_admin("GET", "/api/v2/activeorders/1", None),
        200,
        "GET 1",
    );
    assert_eq!(get.created, shift(&active.created, MOSCOW_OFFSET));
    assert_eq!(
        get.state_started,
        shift(&active.state_started, MOSCOW_OFFSET)
    );
    assert_eq!(
        Order {
            created: active.created.clone(),
            state_started: active.state_started.clone(),
            ..get.timeless()
        },
        active.timeless()
    );
    let history = s.all_history();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].created, shift(&cleared.created, MOSCOW_OFFSET));
    assert_eq!(
        history[1].state_started,
        shift(&cleared.state_started, MOSCOW_OFFSET)
    );
    assert_eq!(history[1].elapsed, cleared.elapsed);
    let item = token_item(&s, "default");
    assert_eq!(
        item["creation_date"],
        shift(&t.creation_date, MOSCOW_OFFSET).as_str()
    );
    // New times are Moscow times.
    let fresh = s.start_order("3", "TO_GO", None);
    assert_time_between(
        &fresh.created,
        MOSCOW_OFFSET,
        before,
        now_secs(),
        2,
        "created (Moscow)",
    );
    let day = date_of(now_secs() + MOSCOW_OFFSET);
    let st = statistics(&s, "");
    if date_of(now_secs() + MOSCOW_OFFSET) == day {
        assert_eq!(st["date"], day.as_str(), "today in Moscow");
        assert_eq!(n(&st, "orders"), 3);
    }
    // "Today" is the gateway's: these two zones are 25 hours apart, so
    // their dates always differ.
    for (zone, offset) in [
        ("Pacific/Kiritimati", 14 * 3600),
        ("Pacific/Pago_Pago", -11 * 3600),
    ] {
        s.set_timezone(zone);
        let day = date_of(now_secs() + offset);
        let st = statistics(&s, "");
        if date_of(now_secs() + offset) == day {
            assert_eq!(st["date"], day.as_str(), "today in {zone}");
            assert_eq!(n(&st, "orders"), 3, "today's orders in {zone}");
        }
        let got = one_order(
            &s.gw_admin("GET", "/api/v2/activeorders/1", None),
            200,
            "GET 1",
        );
        assert_eq!(
            got.created,
            shift(&active.created, offset),
            "created in {zone}"
        );
    }
    // And back.
    s.set_timezone("UTC");
    let history = s.all_history();
    assert_eq!(history[0].created, active.created);
    assert_eq!(history[1], cleared);
    assert_eq!(
        token_item(&s, "default")["creation_date"],
        t.creation_date.as_str()
    );
}

// ---------------------------------------------------------------------------
// §0 for the gateway's paths
// ---------------------------------------------------------------------------

#[test]
fn other_methods_are_405_and_unknown_paths_404() {
    let s = Launch::new().start();
    s.start_order("1", "TO_GO", None);
    let admin = s.admin_auth();
    let cases: [(&str, &str, Option<&str>, u16); 9] = [
        ("GET", "/api/v2/button", None, 405),
        ("POST", "/api/v2/accesstoken/generate", Some("{}"), 405),
        ("PUT", "/api/v2/activeorders", Some("{}"), 405),
        ("POST", "/api/v2/activeorders/1", Some("{}"), 405),
        ("GET", "/api/v2/activeorders/1/page", None, 405),
        ("POST", "/api/v2/orders", Some("{}"), 405),
        ("DELETE", "/api/v2/gateway/settings", None, 405),
        ("GET", "/api/v2/nothing-here", None, 404),
        ("GET", "/api/v2/activeorders/1/nothing", None, 404),
    ];
    for (method, path, body, status) in cases {
        let reply = s.gw(method, path, Some(&admin), body);
        assert_gw_error(&reply, status, &format!("{method} {path}"));
    }
    assert_eq!(s.active_orders().len(), 1);
}
