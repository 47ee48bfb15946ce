//! The gateway's HTTP routes (SPEC §3.1–§3.4): paths and parameters as the
//! real gateway publishes them, so a POS written for it works unchanged.
//! Parsing and the exact JSON live in `floorbell_core::orders::wire`; this
//! file only maps a request to a read of the engine or a [`GatewayChange`].

use std::borrow::Cow;

use floorbell_core::json_object::UniqueKeys;
use floorbell_core::orders::wire;
use floorbell_core::webhooks;

use super::{error, read_answer, read_ok, upgrade, Action, Body};
use crate::engine::{now_ms, Engine, GatewayChange, Read, WriteRequest};
use crate::fanout::WsRole;
use crate::http::{Head, Method};

/// The gateway's routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GwRoute {
    /// `/api/v2`: the online check.
    Online,
    /// `/api/v2/button`: the gateway's button, pressed by the operator.
    Button,
    /// `/api/v2/accesstoken/generate`.
    Generate,
    /// `/api/v2/accesstoken`.
    Tokens,
    /// `/api/v2/accesstoken/{name}`.
    Token,
    /// `/api/v2/activeorders`.
    ActiveOrders,
    /// `/api/v2/activeorders/{name or uuid}`.
    ActiveOrder,
    /// `/api/v2/activeorders/{name or uuid}/page`.
    Page,
    /// `/api/v2/orders`: the history.
    Orders,
    /// `/api/v2/statistics`.
    Statistics,
    /// `/api/v2/gateway/settings`.
    Settings,
    /// `/api/v2/websocket`.
    Websocket,
    /// `/api/v2/register`: webhooks (§3.6).
    Register,
    /// `/api/v1/register`: the same, for v1 clients.
    RegisterV1,
}

const TOKEN_PREFIX: &[u8] = b"/api/v2/accesstoken/";
const ORDER_PREFIX: &[u8] = b"/api/v2/activeorders/";

/// The route of a path under `/api/v2`.
pub fn route(path: &[u8]) -> Option<GwRoute> {
    Some(match path {
        b"/api/v2" | b"/api/v2/" => GwRoute::Online,
        b"/api/v2/button" => GwRoute::Button,
        b"/api/v2/accesstoken/generate" => GwRoute::Generate,
        b"/api/v2/accesstoken" => GwRoute::Tokens,
        b"/api/v2/activeorders" => GwRoute::ActiveOrders,
        b"/api/v2/orders" => GwRoute::Orders,
        b"/api/v2/statistics" => GwRoute::Statistics,
        b"/api/v2/gateway/settings" => GwRoute::Settings,
        b"/api/v2/websocket" => GwRoute::Websocket,
        b"/api/v2/register" => GwRoute::Register,
        b"/api/v1/register" => GwRoute::RegisterV1,
        p => {
            if let Some(name) = p.strip_prefix(TOKEN_PREFIX) {
                if !name.is_empty() && !name.contains(&b'/') {
                    return Some(GwRoute::Token);
                }
                return None;
            }
            let rest = p.strip_prefix(ORDER_PREFIX)?;
            match rest.iter().position(|&b| b == b'/') {
                None if !rest.is_empty() => GwRoute::ActiveOrder,
                Some(i) if i > 0 && &rest[i..] == b"/page" => GwRoute::Page,
                _ => return None,
            }
        }
    })
}

/// Who may call a route with a method (`None`: anyone, or a 405 follows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GwAuth {
    /// The operator's admin token (`Authorization: Bearer …`).
    Admin,
    /// [SECURED]: a gateway token (Basic or Bearer) or the admin token.
    Secured,
}

/// The authorization a request needs.
pub fn auth_needed(route: GwRoute, method: Method) -> Option<GwAuth> {
    use GwRoute::*;
    use Method::*;
    match (route, method) {
        (Button, Post) => Some(GwAuth::Admin),
        (Tokens, Get | Head)
        | (Token, Delete)
        | (ActiveOrders, Get | Head | Post | Delete)
        | (ActiveOrder, Get | Head | Put | Delete)
        | (Page, Post)
        | (Orders | Statistics, Get | Head)
        | (Settings, Get | Head | Post)
        | (Register, Post | Delete)
        | (RegisterV1, Get) => Some(GwAuth::Secured),
        _ => None,
    }
}

/// The `{name or uuid}` segment of an order path, decoded.
fn order_key(path: &[u8]) -> String {
    let rest = &path[ORDER_PREFIX.len()..];
    let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
    super::percent_decode(&rest[..end])
}

fn json(status: u16, body: Vec<u8>) -> Action {
    Action::Respond {
        status,
        body: Body::Owned(body),
    }
}

/// The answer to a read of the live state that may be refused: `Ok` a
/// 200 with its body, or the error ([`read_answer`]).
fn read_result<E: std::fmt::Display>(path: &[u8], read: Read<Result<Vec<u8>, (u16, E)>>) -> Action {
    let (status, body) = match read.value {
        Ok(body) => (200, body),
        Err((status, e)) => (
            status,
            crate::http::error_body(path, status, &e.to_string()),
        ),
    };
    read_answer(status, body, read.settled)
}

fn gw_write(change: GatewayChange) -> Action {
    Action::Write(WriteRequest::Gateway(change))
}

/// Handles a gateway request whose authorization passed.
pub fn handle(
    engine: &Engine,
    route: GwRoute,
    head: &Head,
    head_bytes: &[u8],
    path: &[u8],
    body: &[u8],
) -> Action {
    use GwRoute::*;
    use Method::*;
    let query = head
        .query
        .as_ref()
        .map(|r| &head_bytes[r.clone()])
        .unwrap_or(b"");
    match (route, head.method) {
        (Online, Get | Head) => json(200, online_json()),
        (Button, Post) => {
            engine.press_button();
            json(
                200,
                br#"{"status":200,"message":"Button pressed: request a token within 120 seconds."}"#
                    .to_vec(),
            )
        }
        (Generate, Get) => gw_write(GatewayChange::GenerateToken),
        (Tokens, Get | Head) => read_ok(engine.access_tokens_json()),
        (Token, Delete) => {
            let name = super::percent_decode(&path[TOKEN_PREFIX.len()..]);
            gw_write(GatewayChange::RevokeToken(name))
        }
        (ActiveOrders, Get | Head) => {
            let now = now_ms();
            read_ok(
                engine.read_gateway(|gw| {
                    wire::list_json(gw.tracker.active(), now, &gw.settings.zone)
                }),
            )
        }
        (ActiveOrders, Post) => match wire::parse_start(body) {
            Ok(start) => gw_write(GatewayChange::Start(start)),
            Err(e) => error(e.status(), path, &e.to_string()),
        },
        (ActiveOrders, Delete) => gw_write(GatewayChange::ClearAll),
        (ActiveOrder, Get | Head) => {
            let key = order_key(path);
            let now = now_ms();
            let read = engine.read_gateway(|gw| {
                gw.tracker
                    .active_order(&key)
                    .map(|o| wire::one_json(200, o, now, &gw.settings.zone))
                    .map_err(|e| (e.status(), e))
            });
            read_result(path, read)
        }
        (ActiveOrder, Put) => match wire::parse_modify(body) {
            Ok(modify) => gw_write(GatewayChange::Modify(order_key(path), modify)),
            Err(e) => error(e.status(), path, &e.to_string()),
        },
        (ActiveOrder, Delete) => gw_write(GatewayChange::Clear(order_key(path))),
        (Page, Post) => match wire::parse_page(body) {
            Ok(tracking) => gw_write(GatewayChange::Page(order_key(path), tracking)),
            Err(e) => error(e.status(), path, &e.to_string()),
        },
        (Orders, Get | Head) => {
            let now = now_ms();
            let read = engine.read_gateway(|gw| {
                wire::parse_history_query(query, &gw.settings.zone)
                    .map(|q| wire::list_json(gw.tracker.history(&q), now, &gw.settings.zone))
                    .map_err(|e| (e.status(), e))
            });
            read_result(path, read)
        }
        (Statistics, Get | Head) => {
            let now = now_ms();
            let read = engine.read_gateway(|gw| {
                wire::parse_target_time(query)
                    .map(|target| {
                        let target = target.unwrap_or(gw.settings.target_time_default);
                        let (start, end, date) = gw.settings.zone.day_bounds(now);
                        let stats = gw.tracker.statistics(start, end, date, target);
                        wire::statistics_json(&stats)
                    })
                    .map_err(|e| (e.status(), e))
            });
            read_result(path, read)
        }
        (Settings, Get | Head) => {
            read_ok(engine.read_gateway(|gw| wire::settings_json(&gw.settings)))
        }
        (Settings, Post) => match wire::parse_settings(body) {
            Ok(change) => gw_write(GatewayChange::Settings(change)),
            Err(e) => error(e.status(), path, &e.to_string()),
        },
        (Websocket, Get) => match upgrade(engine, WsRole::Orders, head, head_bytes, path) {
            Action::Upgrade {
                role,
                accept,
                authorization: _,
            } => Action::Upgrade {
                role,
                accept,
                // Checked by the reactor, which knows the peer's address.
                authorization: head
                    .authorization
                    .as_ref()
                    .map(|r| head_bytes[r.clone()].to_vec()),
            },
            refusal => refusal,
        },
        (Register, Post) => register(head, head_bytes, path, register_url_from_body(body)),
        (RegisterV1, Get) => register(
            head,
            head_bytes,
            path,
            super::query_param(query, b"http_client")
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .ok_or("missing query parameter \"http_client\"".into()),
        ),
        (Register, Delete) => match super::query_param(query, b"http_client") {
            Some(url) => gw_write(GatewayChange::Unregister(
                String::from_utf8_lossy(&url).into_owned(),
            )),
            None => error(400, path, "missing query parameter \"http_client\""),
        },
        (route, _) => super::not_allowed(allowed(route), path),
    }
}

/// The methods a route takes (the `Allow` of its 405s), as [`handle`]
/// serves them.
pub fn allowed(route: GwRoute) -> &'static str {
    use GwRoute::*;
    match route {
        Online | Tokens | Orders | Statistics => "GET, HEAD",
        Button | Page => "POST",
        Generate | Websocket | RegisterV1 => "GET",
        Token => "DELETE",
        ActiveOrders => "GET, HEAD, POST, DELETE",
        ActiveOrder => "GET, HEAD, PUT, DELETE",
        Settings => "GET, HEAD, POST",
        Register => "POST, DELETE",
    }
}

/// A registration (SPEC §3.6): the URL is checked for form here (400), for
/// an answer by the engine (404), and signed deliveries use the SHA-256 of
/// the token that registered it.
fn register(
    head: &Head,
    head_bytes: &[u8],
    path: &[u8],
    url: Result<String, Cow<'static, str>>,
) -> Action {
    let url = match url {
        Ok(url) => url,
        Err(message) => return error(400, path, &message),
    };
    if let Err(e) = webhooks::parse_url(&url) {
        return error(400, path, &format!("http_client: {e}"));
    }
    let Some(token) = head
        .authorization
        .as_ref()
        .and_then(|r| crate::engine::gateway::presented_token(&head_bytes[r.clone()]))
    else {
        return error(401, path, "missing or invalid access token");
    };
    gw_write(GatewayChange::Register {
        url,
        key: webhooks::registration_key(&token),
    })
}

/// `{"http_client":"URL"}` or `http_client=URL` (form-encoded); `http_client`
/// given twice, in either form, is refused (which URL was meant?).
pub(super) fn register_url_from_body(body: &[u8]) -> Result<String, Cow<'static, str>> {
    const MISSING: &str = "the body must be {\"http_client\":\"URL\"} or the form http_client=URL";
    const TWICE: &str = "http_client is given twice";
    let trimmed = body.trim_ascii_start();
    if trimmed.starts_with(b"{") {
        let UniqueKeys(value) = serde_json::from_slice(body).map_err(|e| {
            match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(_) => super::twice_message(&e),
                Err(_) => MISSING.into(),
            }
        })?;
        return value
            .get("http_client")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or(MISSING.into());
    }
    let mut urls = form_urlencoded::parse(body).filter(|(k, _)| k == "http_client");
    let url = urls.next().map(|(_, v)| v.into_owned()).ok_or(MISSING)?;
    match urls.next() {
        Some(_) => Err(TWICE.into()),
        None => Ok(url),
    }
}

/// The body of `GET /api/v2` (SPEC §3.1).
fn online_json() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "status": 200,
        "message": "online",
        "name": "floorbell",
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .unwrap_or_default()
}
