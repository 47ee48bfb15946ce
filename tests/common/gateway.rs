//! Helpers for the table-tracking gateway v2 tests (SPEC §3.1–§3.5): the
//! two `Authorization` forms, tokens from the button, the order summary
//! checked key by key, local-naive times against the test's own clock, and
//! `/api/v2/websocket` clients (header or first-frame authentication).
//!
//! Nothing here can hang: HTTP goes through the server's agent (20 s
//! timeout), WebSocket reads through `common`'s helpers (5 s timeout).

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{assert_json_content, assert_plain_error_shape, ws_handshake, Reply, Server, Ws};
use super::{recv_text, WS_TIMEOUT};

/// The WebSocket path of SPEC §3.4.
pub const GW_WS: &str = "/api/v2/websocket";

/// The keys of an order summary, in SPEC §3.3's order.
pub const ORDER_KEYS: [&str; 9] = [
    "elapsedTime",
    "uuid",
    "seq",
    "created",
    "orderType",
    "locationName",
    "state",
    "stateStarted",
    "name",
];

/// The exact 403 body of a `generate` outside a window (SPEC §3.2).
pub const GENERATE_403: &str = r#"{"status":403,"message":"press the gateway button, then request a token within 120 seconds"}"#;

/// The exact answer to a settings change (SPEC §3.3).
pub const SETTINGS_CHANGED: &str = r#"{"status":200,"message":"Settings successfully changed."}"#;

/// Europe/Moscow's offset from UTC (no DST since 2014).
pub const MOSCOW_OFFSET: i64 = 3 * 3600;

// ---------------------------------------------------------------------------
// Authorization
// ---------------------------------------------------------------------------

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `Basic base64(TOKEN + ":")`, the form of the source's examples.
pub fn basic(token: &str) -> String {
    format!("Basic {}", base64(format!("{token}:").as_bytes()))
}

/// `Bearer TOKEN`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A token just generated, as the 201 showed it.
#[derive(Debug, Clone)]
pub struct GwToken {
    pub name: String,
    pub token: String,
    pub creation_date: String,
}

// ---------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------

/// Parses JSON text keeping the order of object keys.
///
/// # Panics
///
/// When the text is not JSON, or when this build's `serde_json` sorts keys
/// (the workspace enables `preserve_order`; without it key-order checks
/// would be meaningless, so they fail loudly instead).
pub fn parse_json(text: &str) -> Value {
    let probe: Value = serde_json::from_str(r#"{"b":1,"a":2}"#).unwrap();
    assert_eq!(
        keys(&probe),
        ["b", "a"],
        "serde_json must be built with `preserve_order` for these tests"
    );
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// The keys of an object, in order.
pub fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// Asserts the object's keys, in order.
pub fn assert_keys(v: &Value, expected: &[&str], what: &str) {
    assert_eq!(keys(v), expected, "keys (in order) of {what}: {v}");
}

/// The body of a reply with this status, as JSON with a JSON content type.
pub fn json_reply(reply: &Reply, status: u16, what: &str) -> Value {
    assert_eq!(reply.status, status, "{what}: body {}", reply.body);
    assert_json_content(reply.content_type.as_deref(), &reply.body);
    parse_json(&reply.body)
}

/// Asserts `{"status":S,"message":"…"}` with this status.
pub fn assert_gw_error(reply: &Reply, status: u16, what: &str) {
    assert_eq!(reply.status, status, "{what}: body {}", reply.body);
    assert_json_content(reply.content_type.as_deref(), &reply.body);
    assert_plain_error_shape(&reply.body, status);
}

// ---------------------------------------------------------------------------
// Orders
// ---------------------------------------------------------------------------

/// An order summary (SPEC §3.3), every field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub elapsed: u64,
    pub uuid: String,
    pub seq: u64,
    pub created: String,
    pub order_type: String,
    pub location: String,
    pub state: String,
    pub state_started: String,
    pub name: String,
}

impl Order {
    /// Parses a summary, checking its exact keys (in order) and each
    /// field's format.
    pub fn from_value(v: &Value) -> Order {
        assert_keys(v, &ORDER_KEYS, "an order summary");
        Order::from_fields(v)
    }

    /// Reads the nine fields (whatever other keys the object has).
    fn from_fields(v: &Value) -> Order {
        let text = |k: &str| -> String {
            v[k].as_str()
                .unwrap_or_else(|| panic!("{k} is not a string in {v}"))
                .to_string()
        };
        let number = |k: &str| -> u64 {
            v[k].as_u64()
                .unwrap_or_else(|| panic!("{k} is not an unsigned integer in {v}"))
        };
        let o = Order {
            elapsed: number("elapsedTime"),
            uuid: text("uuid"),
            seq: number("seq"),
            created: text("created"),
            order_type: text("orderType"),
            location: text("locationName"),
            state: text("state"),
            state_started: text("stateStarted"),
            name: text("name"),
        };
        assert_uuid_v4(&o.uuid);
        assert!(o.seq >= 1, "seq 0 in {v}");
        assert_local_naive(&o.created);
        assert_local_naive(&o.state_started);
        assert!(
            o.state_started >= o.created,
            "stateStarted before created in {v}"
        );
        assert!(
            ["ON_PREMISE", "TO_GO"].contains(&o.order_type.as_str()),
            "orderType in {v}"
        );
        assert!(
            (1..=6).contains(&o.name.len()) && o.name.bytes().all(|b| b.is_ascii_digit()),
            "name in {v}"
        );
        match o.state.as_str() {
            "started" => assert_eq!(o.location, "", "a started order has no location: {v}"),
            "located" => assert_ne!(o.location, "", "a located order has a location: {v}"),
            "cleared" => {}
            other => panic!("state {other:?} in {v}"),
        }
        o
    }

    /// The same order with `elapsedTime` zeroed, for comparisons across
    /// reads made at different times.
    pub fn timeless(&self) -> Order {
        Order {
            elapsed: 0,
            ..self.clone()
        }
    }
}

/// Asserts that two reads show the same order, `elapsedTime` within
/// `slack` seconds (it counts up between reads of an active order).
pub fn assert_same_order(got: &Order, want: &Order, slack: u64, what: &str) {
    assert_eq!(got.timeless(), want.timeless(), "{what}");
    assert!(
        got.elapsed.abs_diff(want.elapsed) <= slack,
        "{what}: elapsedTime {} vs {}",
        got.elapsed,
        want.elapsed
    );
}

/// Parses `{"status":S,"activeorder":{…}}`.
pub fn one_order(reply: &Reply, status: u16, what: &str) -> Order {
    let v = json_reply(reply, status, what);
    assert_keys(&v, &["status", "activeorder"], what);
    assert_eq!(v["status"], status, "{what}: {}", reply.body);
    Order::from_value(&v["activeorder"])
}

/// Parses `{"status":200,"count":N,"items":[…]}`, checking `N`.
pub fn order_list(reply: &Reply, what: &str) -> Vec<Order> {
    let v = json_reply(reply, 200, what);
    assert_keys(&v, &["status", "count", "items"], what);
    assert_eq!(v["status"], 200, "{what}: {}", reply.body);
    let items = v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: items is not an array: {}", reply.body));
    assert_eq!(
        v["count"].as_u64(),
        Some(items.len() as u64),
        "{what}: count is the number of items: {}",
        reply.body
    );
    items.iter().map(Order::from_value).collect()
}

/// The names of some orders, in order.
pub fn names(orders: &[Order]) -> Vec<&str> {
    orders.iter().map(|o| o.name.as_str()).collect()
}

/// Asserts a lowercase hyphenated UUID v4 (8-4-4-4-12, version 4, RFC 4122
/// variant).
pub fn assert_uuid_v4(s: &str) {
    let b = s.as_bytes();
    let shape = b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        });
    assert!(shape, "{s:?} is not a lowercase hyphenated UUID");
    assert_eq!(b[14], b'4', "{s:?} is not a version-4 UUID");
    assert!(
        matches!(b[19], b'8' | b'9' | b'a' | b'b'),
        "{s:?} does not have the RFC 4122 variant"
    );
}

// ---------------------------------------------------------------------------
// Local-naive times
// ---------------------------------------------------------------------------

/// Asserts `YYYY-MM-DDTHH:MM:SS` (no zone, no fraction) naming a real time.
pub fn assert_local_naive(s: &str) {
    let b = s.as_bytes();
    let shape = b.len() == 19
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            _ => c.is_ascii_digit(),
        });
    assert!(shape, "{s:?} is not local-naive YYYY-MM-DDTHH:MM:SS");
    let secs = naive_secs(s);
    assert_eq!(naive(secs), s, "{s:?} is not a real date and time");
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number (Howard Hinnant's civil_from_days).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DDTHH:MM:SS` read as if it were UTC: seconds since the epoch.
pub fn naive_secs(s: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| -> i64 {
        s.get(r)
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("bad time {s:?}"))
    };
    days_from_civil(n(0..4), n(5..7), n(8..10)) * 86_400
        + n(11..13) * 3600
        + n(14..16) * 60
        + n(17..19)
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SS` (UTC wall clock).
pub fn naive(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The date part, `YYYY-MM-DD`, of `secs` as a wall clock.
pub fn date_of(secs: i64) -> String {
    naive(secs)[..10].to_string()
}

/// Now, in whole seconds since the epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Moves a local-naive time by `delta` seconds.
pub fn shift(s: &str, delta: i64) -> String {
    naive(naive_secs(s) + delta)
}

/// Asserts that local-naive `s`, read in a zone `offset` seconds east of
/// UTC, is between `lo` and `hi` (Unix seconds), with `slack` seconds of
/// give on each side.
pub fn assert_time_between(s: &str, offset: i64, lo: i64, hi: i64, slack: i64, what: &str) {
    assert_local_naive(s);
    let t = naive_secs(s) - offset;
    assert!(
        lo - slack <= t && t <= hi + slack,
        "{what}: {s:?} (offset {offset} s) is not between {} and {} (UTC)",
        naive(lo),
        naive(hi)
    );
}

// ---------------------------------------------------------------------------
// The server's gateway endpoints
// ---------------------------------------------------------------------------

impl Server {
    /// `Authorization: Bearer ADMIN_TOKEN`.
    pub fn admin_auth(&self) -> String {
        bearer(&self.admin_token)
    }

    /// A gateway request with this whole `Authorization` value, if any, and
    /// a JSON body, if any.
    pub fn gw(&self, method: &str, path: &str, auth: Option<&str>, body: Option<&str>) -> Reply {
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        // A POST or PUT without a body still says `Content-Length: 0`
        // (left alone, the client would announce a chunked body).
        let body = match body {
            None if matches!(method, "POST" | "PUT") => Some(""),
            b => b,
        };
        self.request(method, path, &headers, body.map(str::as_bytes))
    }

    /// A gateway request with the admin token.
    pub fn gw_admin(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        let auth = self.admin_auth();
        self.gw(method, path, Some(&auth), body)
    }

    /// `POST /api/v2/button` with the admin token, checking the 200.
    pub fn press_button(&self) {
        let reply = self.gw_admin("POST", "/api/v2/button", None);
        let v = json_reply(&reply, 200, "POST /api/v2/button");
        assert_keys(&v, &["status", "message"], "the button's answer");
        assert_eq!(v["status"], 200);
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "button message: {}",
            reply.body
        );
    }

    /// `GET /api/v2/accesstoken/generate`, no authorization.
    pub fn generate(&self) -> Reply {
        self.gw("GET", "/api/v2/accesstoken/generate", None, None)
    }

    /// Presses the button and generates a token, checking the 201's exact
    /// shape (SPEC §3.2).
    pub fn new_token(&self) -> GwToken {
        self.press_button();
        parse_generated(&self.generate())
    }

    /// `POST /api/v2/gateway/settings {"timezone":ZONE}` with the admin
    /// token, checking the exact 200.
    pub fn set_timezone(&self, zone: &str) {
        let body = serde_json::json!({ "timezone": zone }).to_string();
        let reply = self.gw_admin("POST", "/api/v2/gateway/settings", Some(&body));
        assert_eq!(reply.status, 200, "set timezone {zone}: {}", reply.body);
        assert_eq!(reply.body, SETTINGS_CHANGED);
    }

    /// `POST /api/v2/activeorders` with `auth`; returns the raw reply.
    pub fn post_order(
        &self,
        auth: &str,
        name: &str,
        order_type: &str,
        location: Option<&str>,
    ) -> Reply {
        let mut body = serde_json::json!({ "name": name, "orderType": order_type });
        if let Some(l) = location {
            body["locationName"] = Value::from(l);
        }
        self.gw(
            "POST",
            "/api/v2/activeorders",
            Some(auth),
            Some(&body.to_string()),
        )
    }

    /// Starts an order with the admin token, checking the 201 and what it
    /// says about the new order.
    pub fn start_order(&self, name: &str, order_type: &str, location: Option<&str>) -> Order {
        let auth = self.admin_auth();
        let reply = self.post_order(&auth, name, order_type, location);
        let o = one_order(&reply, 201, &format!("start order {name}"));
        let location = location.unwrap_or("");
        assert_eq!(
            (o.name.as_str(), o.order_type.as_str(), o.location.as_str()),
            (name, order_type, location),
            "the started order: {}",
            reply.body
        );
        let state = if location.is_empty() {
            "started"
        } else {
            "located"
        };
        assert_eq!(o.state, state, "{}", reply.body);
        assert_eq!(o.state_started, o.created, "{}", reply.body);
        o
    }

    /// `PUT /api/v2/activeorders/{key}` with the admin token: the 200's order.
    pub fn modify_order(&self, key: &str, body: &str) -> Order {
        let reply = self.gw_admin("PUT", &format!("/api/v2/activeorders/{key}"), Some(body));
        one_order(&reply, 200, &format!("PUT {key} {body}"))
    }

    /// `POST /api/v2/activeorders/{key}/page` (no body) with the admin token.
    pub fn page_order(&self, key: &str) -> Order {
        let reply = self.gw_admin("POST", &format!("/api/v2/activeorders/{key}/page"), None);
        one_order(&reply, 200, &format!("page {key}"))
    }

    /// `DELETE /api/v2/activeorders/{key}` with the admin token: the
    /// cleared order.
    pub fn clear_order(&self, key: &str) -> Order {
        let reply = self.gw_admin("DELETE", &format!("/api/v2/activeorders/{key}"), None);
        let o = one_order(&reply, 200, &format!("clear {key}"));
        assert_eq!(o.state, "cleared", "{}", reply.body);
        o
    }

    /// `GET /api/v2/activeorders` with the admin token.
    pub fn active_orders(&self) -> Vec<Order> {
        let reply = self.gw_admin("GET", "/api/v2/activeorders", None);
        order_list(&reply, "GET /api/v2/activeorders")
    }

    /// `GET /api/v2/orders?QUERY` with the admin token (`query` without `?`).
    pub fn history(&self, query: &str) -> Vec<Order> {
        let path = if query.is_empty() {
            "/api/v2/orders".to_string()
        } else {
            format!("/api/v2/orders?{query}")
        };
        let reply = self.gw_admin("GET", &path, None);
        order_list(&reply, &format!("GET {path}"))
    }

    /// Every order the history holds, paging through it 100 at a time.
    pub fn all_history(&self) -> Vec<Order> {
        let mut all = Vec::new();
        loop {
            let page = self.history(&format!("limit=100&offset={}", all.len()));
            let n = page.len();
            all.extend(page);
            if n < 100 {
                return all;
            }
        }
    }

    /// The next order `seq`: starts a throw-away order and clears it
    /// (two changes); returns the start's `seq`.
    pub fn probe_seq(&self, name: &str) -> u64 {
        let o = self.start_order(name, "TO_GO", None);
        let cleared = self.clear_order(&o.uuid);
        assert_eq!(cleared.seq, o.seq + 1, "the clear right after the start");
        o.seq
    }

    /// A `/api/v2/websocket` client authenticated by this header value.
    pub fn gw_ws_header(&self, authorization: &str) -> Ws {
        gw_ws_with_header(self.addr, authorization)
    }

    /// A `/api/v2/websocket` client authenticated by its first frame.
    pub fn gw_ws_frame(&self, token: &str) -> Ws {
        let mut ws = super::ws_connect(self.addr, GW_WS);
        send_accesstoken(&mut ws, token);
        ws
    }
}

/// Parses a 201 from `generate`, checking its exact shape.
pub fn parse_generated(reply: &Reply) -> GwToken {
    let v = json_reply(reply, 201, "GET /api/v2/accesstoken/generate");
    assert_keys(&v, &["status", "token"], "the generate answer");
    assert_eq!(v["status"], 201);
    let t = &v["token"];
    assert_keys(
        t,
        &["name", "token", "creation_date", "last_used", "ip_address"],
        "the generated token",
    );
    assert!(t["last_used"].is_null(), "last_used: {}", reply.body);
    assert!(t["ip_address"].is_null(), "ip_address: {}", reply.body);
    let text = |k: &str| {
        t[k].as_str()
            .unwrap_or_else(|| panic!("{k} is not a string: {}", reply.body))
            .to_string()
    };
    let token = GwToken {
        name: text("name"),
        token: text("token"),
        creation_date: text("creation_date"),
    };
    assert_eq!(token.token.len(), 48, "token {:?}", token.token);
    assert!(
        token
            .token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "token {:?} is not lowercase hex",
        token.token
    );
    assert_local_naive(&token.creation_date);
    token
}

// ---------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------

/// A `/api/v2/websocket` handshake carrying `Authorization: VALUE`.
pub fn gw_ws_with_header(addr: SocketAddr, authorization: &str) -> Ws {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    gw_ws_handshake_with_header(stream, addr, authorization)
}

/// The same handshake on an already connected stream.
pub fn gw_ws_handshake_with_header(stream: TcpStream, addr: SocketAddr, authorization: &str) -> Ws {
    use tungstenite::client::IntoClientRequest;
    stream.set_read_timeout(Some(WS_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(WS_TIMEOUT)).unwrap();
    let _ = stream.set_nodelay(true);
    let url = format!("ws://{addr}{GW_WS}");
    let mut request = url.as_str().into_client_request().expect("request");
    request.headers_mut().insert(
        "Authorization",
        authorization.parse().expect("header value"),
    );
    match tungstenite::client::client(request, stream) {
        Ok((ws, _response)) => ws,
        Err(e) => panic!("WebSocket handshake with {url} (Authorization header) failed: {e}"),
    }
}

/// A plain `/api/v2/websocket` handshake on an already connected stream.
pub fn gw_ws_handshake(stream: TcpStream, addr: SocketAddr) -> Ws {
    ws_handshake(stream, addr, GW_WS)
}

/// Sends `{"accesstoken":"TOKEN"}`.
pub fn send_accesstoken(ws: &mut Ws, token: &str) {
    let frame = serde_json::json!({ "accesstoken": token }).to_string();
    super::send_text(ws, &frame);
}

/// Parses `{"type":"ACTIVE_ORDERS","count":N,"items":[…]}`.
pub fn parse_snapshot(text: &str) -> Vec<Order> {
    let v = parse_json(text);
    assert_keys(&v, &["type", "count", "items"], "the ACTIVE_ORDERS message");
    assert_eq!(v["type"], "ACTIVE_ORDERS", "{text}");
    let items = v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items is not an array: {text}"));
    assert_eq!(
        v["count"].as_u64(),
        Some(items.len() as u64),
        "count is the number of items: {text}"
    );
    let orders: Vec<Order> = items.iter().map(Order::from_value).collect();
    for o in &orders {
        assert_ne!(
            o.state, "cleared",
            "a cleared order in ACTIVE_ORDERS: {text}"
        );
    }
    orders
}

/// The next message, which must be the `ACTIVE_ORDERS` snapshot.
pub fn recv_snapshot(ws: &mut Ws) -> Vec<Order> {
    parse_snapshot(&recv_text(ws))
}

/// A change message: the nine summary keys in order, with `type` before
/// `name` (where the seed's example payload has it).
pub fn parse_change(text: &str) -> (String, Order) {
    let v = parse_json(text);
    let mut expected = ORDER_KEYS.to_vec();
    expected.insert(ORDER_KEYS.len() - 1, "type");
    assert_keys(&v, &expected, "a change message");
    let kind = v["type"].as_str().unwrap().to_string();
    assert!(
        ["ORDER_CREATED", "ORDER_MODIFIED", "ORDER_PAGED"].contains(&kind.as_str()),
        "type {kind:?} in {text}"
    );
    (kind, Order::from_fields(&v))
}

/// The next message, which must be a change.
pub fn recv_change(ws: &mut Ws) -> (String, Order) {
    parse_change(&recv_text(ws))
}

/// A connected socket whose owner reads little: a tiny receive buffer and
/// MSS keep the kernel from absorbing much of what the server sends, so the
/// server's own queue fills quickly.
pub fn stingy_socket(addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let _ = sock.set_tcp_mss(536);
    sock.connect_timeout(&addr.into(), Duration::from_secs(5))
        .expect("connect");
    sock.into()
}
