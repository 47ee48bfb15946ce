//! SPEC §3.3 and §3.4's JSON, byte for byte: the order summary, the
//! WebSocket messages, the HTTP answers, and the parsers of request bodies
//! and query strings.
//!
//! Pure functions: the tracker decides what happened, this module decides
//! how it is spelled. Writers append to a `Vec<u8>` or return one; key order
//! is exactly SPEC's (existing clients match on it).
//!
//! # Decisions where SPEC §3.3 is silent
//!
//! * Bodies: JSON objects of at most [`MAX_BODY_BYTES`]. Unknown keys are
//!   ignored in order bodies (gateway clients send more), refused in
//!   settings (SPEC); a key given twice is refused. An optional field that
//!   is `null` is the same as one left out. `name` must be a JSON string (not
//!   a number).
//! * Query strings: a leading `?` is skipped; a parameter with an empty value
//!   (`created_after=`) is the same as one left out, since SPEC's own
//!   template shows every parameter empty; a known parameter given twice is
//!   400; unknown parameters are ignored. Numbers are plain ASCII digits; an
//!   `offset` too large to count is simply past the end.

use serde_json::{Map, Value};

use super::zone::Zone;
use super::{
    check_location, check_name, Change, HistoryQuery, ModifyOrder, Order, OrderError, OrderType,
    SettingsChange, StartOrder, Statistics, MAX_HISTORY_LIMIT, MAX_TARGET_TIME_SECS,
};
use super::{Echo, Settings};
use crate::json_object::UniqueKeys;
use crate::qr::json::write_str;

/// The answer to a settings change (SPEC §3.3).
pub const SETTINGS_CHANGED: &[u8] = br#"{"status":200,"message":"Settings successfully changed."}"#;

/// Appends an order summary, keys in SPEC §3.3's order:
/// `{"elapsedTime":9,"uuid":"…","seq":196,"created":"…","orderType":"ON_PREMISE","locationName":"22","state":"located","stateStarted":"…","name":"66"}`.
/// Times are local-naive in `zone`; `elapsedTime` counts to `now_ms`.
pub fn write_order(out: &mut Vec<u8>, order: &Order, now_ms: i64, zone: &Zone) {
    write_summary(out, order, now_ms, zone, None);
}

/// The summary, with `"type":KIND` before `name` when `kind` is given (the
/// place the seed's webhook example shows it).
fn write_summary(out: &mut Vec<u8>, order: &Order, now_ms: i64, zone: &Zone, kind: Option<&str>) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"{\"elapsedTime\":");
    out.extend_from_slice(n.format(order.elapsed_secs(now_ms)).as_bytes());
    out.extend_from_slice(b",\"uuid\":");
    write_str(out, &order.uuid);
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(n.format(order.seq).as_bytes());
    out.extend_from_slice(b",\"created\":\"");
    zone.write_local_naive(out, order.created_ms);
    out.extend_from_slice(b"\",\"orderType\":\"");
    out.extend_from_slice(order.order_type.as_str().as_bytes());
    out.extend_from_slice(b"\",\"locationName\":");
    write_str(out, &order.location);
    out.extend_from_slice(b",\"state\":\"");
    out.extend_from_slice(order.state.as_str().as_bytes());
    out.extend_from_slice(b"\",\"stateStarted\":\"");
    zone.write_local_naive(out, order.state_started_ms);
    if let Some(kind) = kind {
        out.extend_from_slice(b"\",\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
    }
    out.extend_from_slice(b"\",\"name\":");
    write_str(out, &order.name);
    out.push(b'}');
}

/// An order summary as a `String` (tests, diagnostics).
pub fn order_json(order: &Order, now_ms: i64, zone: &Zone) -> String {
    let mut out = Vec::with_capacity(240);
    write_order(&mut out, order, now_ms, zone);
    // Every piece written is UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// A change's message (SPEC §3.4, and the webhook body of §3.6): the summary
/// with `type` added where the seed's example payload
/// (`table-tracker-webhook.txt`) has it, after `stateStarted`:
/// `{"elapsedTime":9,…,"stateStarted":"…","type":"ORDER_MODIFIED","name":"66"}`.
pub fn change_message(change: &Change, now_ms: i64, zone: &Zone) -> Vec<u8> {
    let mut out = Vec::with_capacity(260);
    write_summary(
        &mut out,
        &change.order,
        now_ms,
        zone,
        Some(change.kind.as_str()),
    );
    out
}

/// Appends `"count":N,"items":[…]}` (the list's closing brace included).
fn write_items<'a>(
    out: &mut Vec<u8>,
    orders: impl IntoIterator<Item = &'a Order>,
    now_ms: i64,
    zone: &Zone,
) {
    let mut items = Vec::with_capacity(1024);
    let mut count = 0usize;
    for order in orders {
        if count > 0 {
            items.push(b',');
        }
        write_order(&mut items, order, now_ms, zone);
        count += 1;
    }
    out.extend_from_slice(b"\"count\":");
    out.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
    out.extend_from_slice(b",\"items\":[");
    out.extend_from_slice(&items);
    out.extend_from_slice(b"]}");
}

/// The WebSocket snapshot (SPEC §3.4):
/// `{"type":"ACTIVE_ORDERS","count":N,"items":[…]}`.
pub fn active_orders_message<'a>(
    orders: impl IntoIterator<Item = &'a Order>,
    now_ms: i64,
    zone: &Zone,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"{\"type\":\"ACTIVE_ORDERS\",");
    write_items(&mut out, orders, now_ms, zone);
    out
}

/// One order: `{"status":S,"activeorder":{…}}`.
pub fn one_json(status: u16, order: &Order, now_ms: i64, zone: &Zone) -> Vec<u8> {
    let mut out = Vec::with_capacity(260);
    out.extend_from_slice(b"{\"status\":");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.extend_from_slice(b",\"activeorder\":");
    write_order(&mut out, order, now_ms, zone);
    out.push(b'}');
    out
}

/// A list: `{"status":200,"count":N,"items":[…]}`, `N` the number of items.
pub fn list_json<'a>(
    orders: impl IntoIterator<Item = &'a Order>,
    now_ms: i64,
    zone: &Zone,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"{\"status\":200,");
    write_items(&mut out, orders, now_ms, zone);
    out
}

/// The answer to `DELETE /api/v2/activeorders`: `{"status":200,"count":N}`.
pub fn cleared_count_json(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(b"{\"status\":200,\"count\":");
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.push(b'}');
    out
}

/// `{"status":200,"statistics":{"date":…,"targetTime":…,"orders":…,"located":…,"onTarget":…,"averageTimeToLocate":…}}`.
pub fn statistics_json(s: &Statistics) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"{\"status\":200,\"statistics\":{\"date\":");
    write_str(&mut out, &s.date);
    out.extend_from_slice(b",\"targetTime\":");
    out.extend_from_slice(n.format(s.target_time).as_bytes());
    out.extend_from_slice(b",\"orders\":");
    out.extend_from_slice(n.format(s.orders).as_bytes());
    out.extend_from_slice(b",\"located\":");
    out.extend_from_slice(n.format(s.located).as_bytes());
    out.extend_from_slice(b",\"onTarget\":");
    out.extend_from_slice(n.format(s.on_target).as_bytes());
    out.extend_from_slice(b",\"averageTimeToLocate\":");
    out.extend_from_slice(n.format(s.average_time_to_locate).as_bytes());
    out.extend_from_slice(b"}}");
    out
}

/// `{"status":200,"settings":{"targetTimeDefault":300,"timezone":"Europe/Moscow"}}`.
pub fn settings_json(s: &Settings) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(b"{\"status\":200,\"settings\":{\"targetTimeDefault\":");
    out.extend_from_slice(itoa::Buffer::new().format(s.target_time_default).as_bytes());
    out.extend_from_slice(b",\"timezone\":");
    write_str(&mut out, s.zone.name());
    out.extend_from_slice(b"}}");
    out
}

/// An error answer: `{"status":S,"message":"…"}`.
pub fn error_json(err: &OrderError) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(b"{\"status\":");
    out.extend_from_slice(itoa::Buffer::new().format(err.status()).as_bytes());
    out.extend_from_slice(b",\"message\":");
    write_str(&mut out, err.message());
    out.push(b'}');
    out
}

fn bad(message: impl Into<String>) -> OrderError {
    OrderError::BadRequest(message.into())
}

/// Longest body an order call takes: HTTP's limit (SPEC §0: 1 MiB), kept
/// here too so the C ABI's order calls, which have no HTTP head, refuse
/// the same bodies.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The body as a JSON object of at most [`MAX_BODY_BYTES`], each key once.
fn object(body: &[u8]) -> Result<Map<String, Value>, OrderError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(bad(format!(
            "the request body is longer than {MAX_BODY_BYTES} bytes"
        )));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("the request body is empty; a JSON object is expected"));
    }
    match serde_json::from_slice::<UniqueKeys>(body) {
        Ok(UniqueKeys(map)) => Ok(map),
        // Not an object with each key once: say which (a cold path).
        Err(e) => Err(bad(match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(_)) => format!("the request body is refused: {e}"),
            Ok(_) => "the request body must be a JSON object".to_owned(),
            Err(e) => format!("the request body is not valid JSON: {e}"),
        })),
    }
}

/// A field's value, `None` when absent or `null`.
fn field<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn order_type_field(map: &Map<String, Value>) -> Result<Option<OrderType>, OrderError> {
    match field(map, "orderType") {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .and_then(OrderType::parse)
            .map(Some)
            .ok_or_else(|| bad("\"orderType\" must be \"ON_PREMISE\" or \"TO_GO\"")),
    }
}

fn location_field(map: &Map<String, Value>) -> Result<Option<String>, OrderError> {
    match field(map, "locationName") {
        None => Ok(None),
        Some(Value::String(s)) => {
            check_location(s)?;
            Ok(Some(s.clone()))
        }
        Some(_) => Err(bad("\"locationName\" must be a string")),
    }
}

/// Parses `POST /api/v2/activeorders`' body:
/// `{"name":"66","orderType":"TO_GO","locationName":"22"}`.
///
/// # Errors
///
/// [`OrderError::BadRequest`] naming the field: `name` missing or not a
/// string of 1–6 digits, `orderType` missing or not `ON_PREMISE`/`TO_GO`,
/// `locationName` not a string, too long or with control characters; or a
/// body that is empty, not JSON or not an object.
pub fn parse_start(body: &[u8]) -> Result<StartOrder, OrderError> {
    let map = object(body)?;
    let name = match field(&map, "name") {
        None => return Err(bad("\"name\" is required")),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad("\"name\" must be a string of 1 to 6 digits")),
    };
    check_name(&name)?;
    let order_type = order_type_field(&map)?.ok_or_else(|| bad("\"orderType\" is required"))?;
    let location = location_field(&map)?.unwrap_or_default();
    Ok(StartOrder {
        name,
        order_type,
        location,
    })
}

/// Parses `PUT /api/v2/activeorders/{key}`' body: any of `orderType`,
/// `locationName`; `{}` is valid and changes nothing.
///
/// # Errors
///
/// As [`parse_start`], both fields optional.
pub fn parse_modify(body: &[u8]) -> Result<ModifyOrder, OrderError> {
    let map = object(body)?;
    Ok(ModifyOrder {
        order_type: order_type_field(&map)?,
        location: location_field(&map)?,
    })
}

/// Parses a page's optional body `{"tracking":true}`: an empty body (or no
/// `tracking`) means `true`.
///
/// # Errors
///
/// [`OrderError::BadRequest`] for a body that is not a JSON object, or a
/// `tracking` that is not a boolean.
pub fn parse_page(body: &[u8]) -> Result<bool, OrderError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(true);
    }
    let map = object(body)?;
    match field(&map, "tracking") {
        None => Ok(true),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad("\"tracking\" must be true or false")),
    }
}

/// The known parameters of a query string, each at most once, empty values
/// dropped.
fn query_params<const N: usize>(
    query: &[u8],
    names: [&str; N],
) -> Result<[Option<String>; N], OrderError> {
    let query = query.strip_prefix(b"?").unwrap_or(query);
    let mut seen = [false; N];
    let mut values: [Option<String>; N] = std::array::from_fn(|_| None);
    for (key, value) in form_urlencoded::parse(query) {
        let Some(i) = names.iter().position(|n| *n == key) else {
            continue;
        };
        if seen[i] {
            return Err(bad(format!(
                "query parameter \"{}\" is given more than once",
                names[i]
            )));
        }
        seen[i] = true;
        // SPEC gap: an empty value is the same as leaving the parameter out.
        if !value.is_empty() {
            values[i] = Some(value.into_owned());
        }
    }
    Ok(values)
}

/// Plain ASCII digits as a number, saturating at `u64::MAX`.
fn decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

/// Parses `GET /api/v2/orders`' query string (raw, percent-encoded):
/// `offset`, `limit`, `created_after`, `created_before`, `order_type`,
/// `location_name`. Dates are read in `zone` by [`Zone::parse_local`].
///
/// # Errors
///
/// [`OrderError::BadRequest`] naming the parameter: `offset` not a
/// non-negative integer, `limit` not 1 to 100, a date that does not parse,
/// an `order_type` other than `ON_PREMISE`/`TO_GO`, or a parameter given
/// twice.
pub fn parse_history_query(query: &[u8], zone: &Zone) -> Result<HistoryQuery, OrderError> {
    let [offset, limit, after, before, order_type, location] = query_params(
        query,
        [
            "offset",
            "limit",
            "created_after",
            "created_before",
            "order_type",
            "location_name",
        ],
    )?;
    let mut q = HistoryQuery::default();
    if let Some(offset) = offset {
        let n = decimal(&offset).ok_or_else(|| bad("\"offset\" must be a non-negative integer"))?;
        q.offset = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(limit) = limit {
        q.limit = decimal(&limit)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_HISTORY_LIMIT).contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "\"limit\" must be an integer from 1 to {MAX_HISTORY_LIMIT}"
                ))
            })?;
    }
    let date = |name: &str, text: Option<String>| -> Result<Option<i64>, OrderError> {
        text.map(|t| {
            zone.parse_local(&t).ok_or_else(|| {
                bad(format!(
                    "\"{name}\" must be YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS or an RFC 3339 time, not {}",
                    Echo(&t)
                ))
            })
        })
        .transpose()
    };
    q.created_after_ms = date("created_after", after)?;
    q.created_before_ms = date("created_before", before)?;
    if let Some(t) = order_type {
        q.order_type = Some(
            OrderType::parse(&t)
                .ok_or_else(|| bad("\"order_type\" must be ON_PREMISE or TO_GO"))?,
        );
    }
    q.location = location;
    Ok(q)
}

/// Parses `GET /api/v2/statistics`' query string: `target_time` in seconds,
/// 0 to 86400; `None` when not given (use the setting).
///
/// # Errors
///
/// [`OrderError::BadRequest`] for any other value, or `target_time` twice.
pub fn parse_target_time(query: &[u8]) -> Result<Option<u32>, OrderError> {
    let [target] = query_params(query, ["target_time"])?;
    target
        .map(|t| {
            decimal(&t)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n <= MAX_TARGET_TIME_SECS)
                .ok_or_else(|| {
                    bad(format!(
                        "\"target_time\" must be an integer from 0 to {MAX_TARGET_TIME_SECS}"
                    ))
                })
        })
        .transpose()
}

/// Parses `POST /api/v2/gateway/settings`' body: `targetTimeDefault`
/// (integer seconds, 0 to 86400) and/or `timezone` (an IANA name).
///
/// # Errors
///
/// [`OrderError::BadRequest`] for an unknown key, a bad value, neither key
/// (`{}`: nothing to change), or a body that is not a JSON object. Nothing
/// is returned to apply, so a refused request changes nothing.
pub fn parse_settings(body: &[u8]) -> Result<SettingsChange, OrderError> {
    let map = object(body)?;
    let mut change = SettingsChange {
        target_time_default: None,
        zone: None,
    };
    for (key, value) in &map {
        match key.as_str() {
            "targetTimeDefault" => {
                let t = value
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n <= MAX_TARGET_TIME_SECS)
                    .ok_or_else(|| {
                        bad(format!(
                            "\"targetTimeDefault\" must be an integer from 0 to {MAX_TARGET_TIME_SECS}"
                        ))
                    })?;
                change.target_time_default = Some(t);
            }
            "timezone" => {
                let name = value
                    .as_str()
                    .ok_or_else(|| bad("\"timezone\" must be an IANA time zone name"))?;
                let zone = Zone::from_iana(name).map_err(|e| bad(format!("\"timezone\": {e}")))?;
                change.zone = Some(zone);
            }
            other => return Err(bad(format!("unknown setting {}", Echo(other)))),
        }
    }
    if change.target_time_default.is_none() && change.zone.is_none() {
        return Err(bad(
            "nothing to change: give \"targetTimeDefault\" and/or \"timezone\"",
        ));
    }
    Ok(change)
}
