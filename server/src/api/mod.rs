//! Routing and the §1 handlers: a parsed request in, an [`Action`] out. No
//! socket here: the reactor writes what this returns. The gateway's routes
//! (§3) are in [`gateway`].

pub mod gateway;

use std::borrow::Cow;

use bytes::Bytes;
use floorbell_core::json_object::UniqueKeys;
use floorbell_core::qr::{self, TableSet};
use floorbell_core::ring::{parse_hash, Cursor};

use crate::engine::{Engine, Outcome, TicketChange, WriteRequest};
use crate::fanout::WsRole;
use crate::http::{Head, Method, MAX_BODY_BYTES};

/// What the reactor does with a request.
#[derive(Debug)]
pub enum Action {
    /// Answer now.
    Respond {
        /// Status code.
        status: u16,
        /// JSON body.
        body: Body,
    },
    /// A 405: the path exists, the method is not one it takes.
    NotAllowed {
        /// The methods it takes, for the `Allow` header.
        allow: &'static str,
        /// JSON body.
        body: Body,
    },
    /// Answer a poll: the events [`handle`] put into its `events` buffer, in
    /// order, inside the updates envelope.
    Events,
    /// Hand this change to the writer and answer when it is committed.
    Write(WriteRequest),
    /// Answer a read of state that changes are applied to before their
    /// commit, once the changes it saw are on disk (`engine::Read`).
    AfterCommit {
        /// Status code.
        status: u16,
        /// JSON body.
        body: Vec<u8>,
    },
    /// Switch the connection to WebSocket (SPEC §2): answer 101 with this
    /// `Sec-WebSocket-Accept`.
    Upgrade {
        /// The endpoint.
        role: WsRole,
        /// The accept key.
        accept: String,
        /// `/api/v2/websocket`: the handshake's `Authorization` value, if
        /// any, for the reactor to check (it knows the peer's address).
        authorization: Option<Vec<u8>>,
    },
    /// Answer with a built-in page or asset (its own headers).
    Asset(crate::pages::Asset),
}

/// Working memory a reactor keeps between requests.
pub struct Scratch {
    /// The events of the poll being answered. A long answer's handles are
    /// let go of once it is written, so no event outlives its read in the
    /// queue's memory; the last short answer's copy stays for the next
    /// poll of the same cursor (`PollEvents`).
    pub events: crate::http::PollEvents,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            events: crate::http::PollEvents {
                joined: Vec::with_capacity(16 * 1024),
                mark: None,
                shared: Vec::new(),
            },
        }
    }
}

/// A response body: static, shared, or built for this answer.
#[derive(Debug)]
pub enum Body {
    /// A constant.
    Static(&'static [u8]),
    /// Shared bytes (a serialized snapshot).
    Shared(Bytes),
    /// Built for this answer.
    Owned(Vec<u8>),
}

impl Body {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Body::Static(b) => b,
            Body::Shared(b) => b,
            Body::Owned(b) => b,
        }
    }
}

/// The routes floorbell knows, for 404 vs 405.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Events,
    Tables,
    Table,
    Ws(WsRole),
    StaffList,
    StaffMember,
    Serving,
    Health,
    Gw(gateway::GwRoute),
    Page,
}

fn route(path: &[u8]) -> Option<Route> {
    match path {
        b"/api/v4/events" => Some(Route::Events),
        b"/api/v4/tables" => Some(Route::Tables),
        b"/ws/staff" => Some(Route::Ws(WsRole::Staff)),
        b"/ws/kiosk" => Some(Route::Ws(WsRole::Kiosk)),
        b"/ws/display" => Some(Route::Ws(WsRole::Display)),
        b"/api/tickets/staff" => Some(Route::StaffList),
        b"/api/tickets/serving" => Some(Route::Serving),
        b"/healthz" => Some(Route::Health),
        p if p.starts_with(STAFF_PREFIX)
            && p.len() > STAFF_PREFIX.len()
            && !p[STAFF_PREFIX.len()..].contains(&b'/') =>
        {
            Some(Route::StaffMember)
        }
        p if p.starts_with(b"/api/v2") || p == b"/api/v1/register" => {
            gateway::route(p).map(Route::Gw)
        }
        p if crate::pages::is_page_path(p) => Some(Route::Page),
        p => match p.strip_prefix(b"/api/v4/tables/") {
            // One path segment: `/api/v4/tables/{id}`.
            Some(id) if !id.is_empty() && !id.contains(&b'/') => Some(Route::Table),
            _ => None,
        },
    }
}

const STAFF_PREFIX: &[u8] = b"/api/tickets/staff/";

/// The answer to a read of live state (`engine::Read`): now when it is
/// settled, else once the changes it saw are on disk.
pub(crate) fn read_answer(status: u16, body: Vec<u8>, settled: bool) -> Action {
    if settled {
        Action::Respond {
            status,
            body: Body::Owned(body),
        }
    } else {
        Action::AfterCommit { status, body }
    }
}

/// [`read_answer`] of a 200.
pub(crate) fn read_ok(read: crate::engine::Read<Vec<u8>>) -> Action {
    read_answer(200, read.value, read.settled)
}

pub(crate) fn error(status: u16, path: &[u8], message: &str) -> Action {
    Action::Respond {
        status,
        body: Body::Owned(crate::http::error_body(path, status, message)),
    }
}

/// Whether the head is allowed to send a body of its announced size: the
/// reactor asks before reading the body, so an oversize one is answered at
/// once (§1.2: 400 on `POST /api/v4/events`, else 413, SPEC §0).
pub fn check_body_size(head: &Head, buf: &[u8]) -> Option<Action> {
    if head.body_len <= MAX_BODY_BYTES {
        return None;
    }
    let path = &buf[head.path.clone()];
    let status = if route(path) == Some(Route::Events) && head.method == Method::Post {
        400
    } else {
        413
    };
    Some(error(status, path, "request body larger than 1 MiB"))
}

/// Checks authorization before the body is read, so that a refused upload is
/// answered without waiting for it.
///
/// `peer` is the client's address, kept as a gateway token's `ip_address`.
pub fn check_auth(
    engine: &Engine,
    head: &Head,
    buf: &[u8],
    peer: Option<std::net::IpAddr>,
) -> Option<Action> {
    let path = &buf[head.path.clone()];
    let needs = match (route(path)?, head.method) {
        (Route::Gw(r), method) => match gateway::auth_needed(r, method)? {
            gateway::GwAuth::Admin => Auth::Admin,
            gateway::GwAuth::Secured => {
                let ok = head.authorization.as_ref().is_some_and(|r| {
                    let ip = peer.map(|p| p.to_string());
                    engine
                        .gateway_auth(&buf[r.clone()], ip.as_deref())
                        .is_some()
                });
                return (!ok).then(|| error(401, path, "missing or invalid access token"));
            }
        },
        (Route::Events | Route::Tables, Method::Get | Method::Head) => Auth::Qr,
        (Route::Events, Method::Post) | (Route::Table, Method::Put) => Auth::Admin,
        (Route::StaffList, Method::Get | Method::Head | Method::Post)
        | (Route::StaffMember, Method::Delete) => Auth::Admin,
        _ => return None,
    };
    let ok = match needs {
        Auth::Qr => head
            .token
            .as_ref()
            .is_some_and(|r| engine.is_qr_token(&buf[r.clone()])),
        Auth::Admin => head
            .authorization
            .as_ref()
            .and_then(|r| bearer(&buf[r.clone()]))
            .is_some_and(|t| engine.is_admin_token(t)),
    };
    // §1's exact body on /api/v4 paths (error_body gives it), §3's shape elsewhere.
    (!ok).then(|| error(401, path, "invalid token"))
}

enum Auth {
    Qr,
    Admin,
}

/// The token of `Bearer TOKEN` (scheme case-insensitive, RFC 9110 §11.1).
pub fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// Handles a complete request whose authorization passed: `buf` holds the
/// head and, from `head.head_len`, the body (parsed in place, hence `mut`).
///
/// `scratch` is working memory the caller keeps between requests, so that a
/// poll allocates nothing and a publish does not allocate its parser.
pub fn handle(
    engine: &Engine,
    head: &Head,
    buf: &mut [u8],
    now_ms: i64,
    scratch: &mut Scratch,
) -> Action {
    let path_range = head.path.clone();
    let (head_bytes, body) = buf.split_at_mut(head.head_len);
    let path = &head_bytes[path_range];
    let body = &mut body[..head.body_len];
    let Some(route) = route(path) else {
        return error(404, path, "no such endpoint");
    };
    match (route, head.method) {
        (Route::Events, Method::Get | Method::Head) => {
            let query = head
                .query
                .as_ref()
                .map(|r| &head_bytes[r.clone()])
                .unwrap_or(b"");
            let Some(hash) = query_param(query, b"hash") else {
                return error(400, path, "missing query parameter \"hash\"");
            };
            let cursor = if &*hash == b"none" {
                Cursor::All
            } else {
                // An unknown or malformed hash reads everything (SPEC §1.1).
                parse_hash(&hash).map_or(Cursor::All, Cursor::After)
            };
            scratch.events.read(engine.queue(), cursor, now_ms);
            Action::Events
        }
        (Route::Events, Method::Post) => {
            let prepared = engine
                .tables()
                .with(|t: &TableSet| qr::prepare_event(body, t));
            match prepared {
                Ok(prepared) => Action::Write(WriteRequest::PublishEvent(prepared)),
                Err(e) => error(400, path, &e.to_string()),
            }
        }
        (Route::Tables, Method::Get | Method::Head) => Action::Respond {
            status: 200,
            body: Body::Shared(engine.tables().snapshot().list_json().clone()),
        },
        (Route::Table, Method::Put) => {
            let id_text = &path[b"/api/v4/tables/".len()..];
            let Some(id) = parse_table_id(id_text) else {
                return error(400, path, "the table id must be an integer");
            };
            match qr::parse_table_body(id, body) {
                Ok(t) => Action::Write(WriteRequest::PutTable(t)),
                Err(e) => error(400, path, &e.to_string()),
            }
        }
        (Route::Ws(role), Method::Get) => upgrade(engine, role, head, head_bytes, path),
        (Route::Gw(r), _) => gateway::handle(engine, r, head, head_bytes, path, body),
        (Route::Page, Method::Get | Method::Head) => {
            crate::pages::serve(engine, head, head_bytes, path)
        }
        // Public, for a supervisor or a monitor: 200 while changes are
        // taken, 503 with the reason once a commit has failed (see
        // `engine::Halt`; reads still work then, changes need a restart),
        // and 503 while one commit has run for 10 s (a stuck disk: changes
        // wait, then give up; `engine::CommitClock`).
        (Route::Health, Method::Get | Method::Head) => match (engine.halted(), engine.stuck_commit()) {
            (None, None) => Action::Respond {
                status: 200,
                body: Body::Static(br#"{"status":200,"message":"ok"}"#),
            },
            (Some(reason), _) => error(503, path, reason),
            (None, Some(took)) => error(
                503,
                path,
                &format!(
                    "the store has been writing one commit for {} s (a stuck disk?); changes wait for it",
                    took.as_secs()
                ),
            ),
        },
        // Public, like /ws/display: exactly what a display shows.
        (Route::Serving, Method::Get | Method::Head) => read_ok(engine.serving_json()),
        (Route::StaffList, Method::Get | Method::Head) => read_ok(engine.staff_list_json()),
        (Route::StaffList, Method::Post) => match parse_staff_name(body) {
            Ok(name) => Action::Write(WriteRequest::Ticket(TicketChange::AddStaff {
                name,
                token: crate::engine::random_token(),
            })),
            Err(message) => error(400, path, &message),
        },
        (Route::StaffMember, Method::Delete) => {
            let raw = &path[STAFF_PREFIX.len()..];
            let name = percent_decode(raw);
            Action::Write(WriteRequest::Ticket(TicketChange::RemoveStaff { name }))
        }
        (route, _) => not_allowed(allowed(route), path),
    }
}

/// The methods a route takes (the `Allow` of its 405s). Kept beside the
/// match in [`handle`]; a unit test checks the two agree.
fn allowed(route: Route) -> &'static str {
    match route {
        Route::Events | Route::StaffList => "GET, HEAD, POST",
        Route::Tables | Route::Serving | Route::Health | Route::Page => "GET, HEAD",
        Route::Table => "PUT",
        Route::Ws(_) => "GET",
        Route::StaffMember => "DELETE",
        Route::Gw(r) => gateway::allowed(r),
    }
}

/// A 405 for `path`, which takes `allow`.
pub(crate) fn not_allowed(allow: &'static str, path: &[u8]) -> Action {
    Action::NotAllowed {
        allow,
        body: Body::Owned(crate::http::error_body(
            path,
            405,
            "method not allowed on this endpoint",
        )),
    }
}

/// Checks a WebSocket handshake (RFC 6455 §4.2.1); a bad one is a 400.
/// Once a commit has failed ([`crate::engine::Halt`]) a good one is a 503:
/// every WebSocket protocol here sends changes, and none would be taken.
pub(crate) fn upgrade(
    engine: &Engine,
    role: WsRole,
    head: &Head,
    head_bytes: &[u8],
    path: &[u8],
) -> Action {
    let field = |r: &Option<std::ops::Range<usize>>| r.as_ref().map(|r| &head_bytes[r.clone()]);
    let problem = if !head.upgrade_websocket {
        Some("this endpoint speaks WebSocket: send Upgrade: websocket")
    } else if !head.connection_upgrade {
        Some("bad WebSocket handshake: Connection must include Upgrade")
    } else if field(&head.ws_version) != Some(b"13") {
        Some("bad WebSocket handshake: Sec-WebSocket-Version must be 13")
    } else if !field(&head.ws_key).is_some_and(|k| k.len() == 24 && k.ends_with(b"==")) {
        Some("bad WebSocket handshake: Sec-WebSocket-Key must be 16 bytes in base64")
    } else if head.body_len > 0 {
        Some("bad WebSocket handshake: a body is not allowed")
    } else {
        None
    };
    match (problem, engine.halted()) {
        (Some(message), _) => error(400, path, message),
        (None, Some(reason)) => error(503, path, reason),
        (None, None) => Action::Upgrade {
            role,
            accept: crate::ws::codec::accept_key(field(&head.ws_key).unwrap_or_default()),
            authorization: None,
        },
    }
}

/// Longest staff name. SPEC gap: §2 sets none; a name is shown on consoles
/// and in every ticket JSON, so it is kept short and printable.
pub const MAX_STAFF_NAME_BYTES: usize = 64;

/// A table id in a path: an integer written as JSON writes it (`5`, `-3`,
/// `0`), so one table has one URL and the id in the path is the `table` of
/// its events. `+5`, `05` and `-0` are refused like any non-integer.
fn parse_table_id(text: &[u8]) -> Option<i64> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    let canonical = match digits {
        [b'0'] => text.len() == 1,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !canonical {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// `{"name":"StaffMember"}` → the name (1–64 bytes, no control characters,
/// no `/` since the name is a path segment of DELETE).
fn parse_staff_name(body: &[u8]) -> Result<String, Cow<'static, str>> {
    let name = staff_name_field(body)?;
    check_staff_name(&name)?;
    Ok(name)
}

/// Checks a staff name (1–64 bytes, printable, no `/`, no surrounding
/// spaces): the rules of `POST /api/tickets/staff` and `floorbell staff add`.
///
/// # Errors
///
/// What is wrong, in words.
pub fn check_staff_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_STAFF_NAME_BYTES {
        return Err("field \"name\" must be 1 to 64 bytes");
    }
    if name.chars().any(|c| c.is_control() || c == '/') || name.trim() != name || name == "{}" {
        return Err(
            "field \"name\" must be printable, without '/' or surrounding spaces, and not \"{}\"",
        );
    }
    Ok(())
}

fn staff_name_field(body: &[u8]) -> Result<String, Cow<'static, str>> {
    let obj = match serde_json::from_slice::<UniqueKeys>(body) {
        Ok(UniqueKeys(obj)) => obj,
        // Say why (a cold path): a key twice, another type, not JSON.
        Err(e) => {
            return Err(match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(serde_json::Value::Object(_)) => twice_message(&e),
                Ok(_) => "the body must be a JSON object".into(),
                Err(_) => "the body must be JSON: {\"name\":\"…\"}".into(),
            })
        }
    };
    if obj.keys().any(|k| k != "name") {
        return Err("the only field is \"name\"".into());
    }
    let name = obj
        .get("name")
        .and_then(|v| v.as_str())
        .ok_or("field \"name\" must be a string")?;
    Ok(name.to_string())
}

/// The 400's message for a body [`UniqueKeys`] refused although it is a
/// JSON object: serde's message, which names the key (`the key "name"
/// appears twice at line 1 column 20`).
pub(super) fn twice_message(e: &serde_json::Error) -> Cow<'static, str> {
    e.to_string().into()
}

pub(crate) fn percent_decode(raw: &[u8]) -> String {
    percent_encoding::percent_decode(raw)
        .decode_utf8_lossy()
        .into_owned()
}

/// Turns a committed change into its answer; `qr_api` when the request was
/// one of SPEC §1's (`/api/v4/…`), whose errors have their own JSON.
pub fn answer(outcome: Outcome, qr_api: bool) -> (u16, Vec<u8>) {
    let error = |status: u16, message: &str| {
        let path: &[u8] = if qr_api { b"/api/v4/" } else { b"/api/" };
        (status, crate::http::error_body(path, status, message))
    };
    match outcome {
        Outcome::Published { hash } => (201, qr::published_json(hash)),
        Outcome::TablePut(t) => (200, qr::table_put_json(&t)),
        Outcome::Failed(message) => error(500, &message),
        Outcome::Unavailable(message) => error(503, &message),
        Outcome::StaffAdded { name, token } => (
            201,
            serde_json::to_vec(&serde_json::json!({"name": name, "token": token})).unwrap_or_default(),
        ),
        Outcome::StaffRemoved { name } => (
            200,
            serde_json::to_vec(&serde_json::json!({"status": 200, "message": format!("staff member {name} removed")}))
                .unwrap_or_default(),
        ),
        Outcome::Respond { status, body } => (status, body),
        Outcome::Rejected { status, message } => error(status, &message),
    }
}

/// The first value of `name` in a query string. Values with `%`-escapes or
/// `+` are decoded (form_urlencoded); plain ones are borrowed as they are.
pub(crate) fn query_param<'a>(query: &'a [u8], name: &[u8]) -> Option<std::borrow::Cow<'a, [u8]>> {
    for pair in query.split(|&b| b == b'&') {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        if k == name {
            if v.iter().any(|&b| b == b'%' || b == b'+') {
                let decoded: Vec<u8> = form_urlencoded::parse(pair)
                    .next()
                    .map(|(_, v)| v.into_owned().into_bytes())
                    .unwrap_or_default();
                return Some(decoded.into());
            }
            return Some(v.into());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A staff name or a webhook URL given twice is refused, in JSON
    /// (escaped or not) and in a form: the last (or, in a form, the first)
    /// used to count.
    #[test]
    fn a_name_or_url_given_twice_is_refused() {
        assert_eq!(staff_name_field(br#"{"name":"Kim"}"#), Ok("Kim".to_owned()));
        for twice in [
            &br#"{"name":"a","name":"b"}"#[..],
            br#"{"name":"a","\u006eame":"b"}"#,
        ] {
            let e = staff_name_field(twice).unwrap_err();
            assert!(e.starts_with("the key \"name\" appears twice"), "{e}");
        }
        assert_eq!(
            staff_name_field(b"[1]"),
            Err("the body must be a JSON object".into())
        );
        assert_eq!(
            staff_name_field(b"{"),
            Err("the body must be JSON: {\"name\":\"…\"}".into())
        );
        let register = gateway::register_url_from_body;
        assert_eq!(
            register(br#"{"http_client":"http://a/"}"#),
            Ok("http://a/".to_owned())
        );
        assert_eq!(
            register(b"http_client=http%3A%2F%2Fa%2F&x=1"),
            Ok("http://a/".to_owned())
        );
        let e = register(br#"{"http_client":"http://a/","http_client":"http://b/"}"#).unwrap_err();
        assert!(
            e.starts_with("the key \"http_client\" appears twice"),
            "{e}"
        );
        assert_eq!(
            register(b"http_client=http://a/&http_client=http://b/"),
            Err("http_client is given twice".into())
        );
    }

    /// `allowed` (the 405's `Allow`) names exactly the methods `handle`
    /// serves on each route.
    #[test]
    fn every_405_allows_what_the_route_serves() {
        let dir = tempfile::tempdir().unwrap();
        let config =
            crate::config::Config::from_toml_text("no-mdns = true", &dir.path().join("data"))
                .unwrap();
        let (engine, _) = Engine::open(config).unwrap();
        let mut scratch = Scratch::default();
        let paths = [
            "/api/v4/events",
            "/api/v4/tables",
            "/api/v4/tables/1",
            "/ws/staff",
            "/ws/kiosk",
            "/ws/display",
            "/api/tickets/staff",
            "/api/tickets/staff/Bob",
            "/api/tickets/serving",
            "/healthz",
            "/",
            "/display",
            "/assets/common.js",
            "/api/v2",
            "/api/v2/button",
            "/api/v2/accesstoken/generate",
            "/api/v2/accesstoken",
            "/api/v2/accesstoken/pos",
            "/api/v2/activeorders",
            "/api/v2/activeorders/12",
            "/api/v2/activeorders/12/page",
            "/api/v2/orders",
            "/api/v2/statistics",
            "/api/v2/gateway/settings",
            "/api/v2/websocket",
            "/api/v2/register",
            "/api/v1/register",
        ];
        for path in paths {
            let allow = allowed(route(path.as_bytes()).expect(path));
            for method in ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"] {
                let mut buf = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
                let head = crate::http::parse_head(&buf).unwrap().unwrap();
                let action = handle(&engine, &head, &mut buf, 0, &mut scratch);
                let listed = allow.split(", ").any(|m| m == method);
                match action {
                    Action::NotAllowed { allow: a, .. } => {
                        assert!(!listed, "{method} {path}: 405, but Allow: {allow}");
                        assert_eq!(a, allow);
                    }
                    other => assert!(listed, "{method} {path}: {other:?}, not in Allow: {allow}"),
                }
            }
        }
        engine.shutdown();
    }

    #[test]
    fn query_params() {
        assert_eq!(
            query_param(b"hash=none", b"hash").as_deref(),
            Some(&b"none"[..])
        );
        assert_eq!(
            query_param(b"a=1&hash=0x1&hash=2", b"hash").as_deref(),
            Some(&b"0x1"[..])
        );
        assert_eq!(
            query_param(b"hash=%30x1", b"hash").as_deref(),
            Some(&b"0x1"[..])
        );
        assert_eq!(query_param(b"hash", b"hash").as_deref(), Some(&b""[..]));
        assert_eq!(query_param(b"hashx=1", b"hash"), None);
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bear"), None);
    }
}
