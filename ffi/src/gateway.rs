//! The table-tracking gateway through the C ABI (SPEC §3.2–§3.4): the
//! button, and starting, changing, paging and clearing orders.
//!
//! Each call is the HTTP request of the same name without the socket: the
//! body is parsed by `floorbell_core::orders::wire` and the change applied
//! by the engine exactly as `/api/v2/activeorders` does, so a change made
//! here reaches WebSocket clients and subscribers (`FLOORBELL_CHANGE_ORDER`)
//! like one made over HTTP, and is on disk when the call returns.
//!
//! Decision: the strings handed out are the HTTP answer's body, byte for
//! byte (`{"status":201,"activeorder":{…}}`, `{"status":200,"count":N,
//! "items":[…]}`), as `floorbell_engine_events_since` hands out the body of
//! `GET /api/v4/events`: code that reads the HTTP API reads these too. The
//! HTTP error statuses become status codes: 400 → `INVALID_ARGUMENT`,
//! 404 → `NOT_FOUND`, 409 → `CONFLICT`, with the HTTP message as the last
//! error.

use std::ffi::c_char;

use floorbell_core::orders::{wire, OrderError};
use floorbell_server::engine::{now_ms, GatewayChange, Outcome, WriteRequest};

use crate::boundary::{c_str, guard, non_null, Failure};
use crate::status::FloorbellStatus;
use crate::{engine_failure, engine_ref, give_string, outcome_failure, FloorbellEngine};

/// A refusal of the parsers, as the HTTP API would answer it.
fn order_failure(e: OrderError) -> Failure {
    outcome_failure(Outcome::Rejected {
        status: e.status(),
        message: e.to_string(),
    })
}

/// Applies a gateway change and waits for its commit; the HTTP body.
fn gateway_write(handle: &FloorbellEngine, change: GatewayChange) -> Result<Vec<u8>, Failure> {
    match handle
        .engine
        .write_blocking(WriteRequest::Gateway(change))
        .map_err(engine_failure)?
    {
        Outcome::Respond { body, .. } => Ok(body),
        other => Err(outcome_failure(other)),
    }
}

/// Hands an HTTP body to C through `out` (skipped when `out` is NULL).
fn give_body(body: Vec<u8>, out: *mut *mut c_char) -> Result<(), Failure> {
    if out.is_null() {
        return Ok(());
    }
    let text = String::from_utf8(body)
        .map_err(|_| Failure::new(FloorbellStatus::Store, "an answer was not UTF-8"))?;
    give_string(text, out)
}

/// Presses the gateway's button (SPEC §3.2, as `POST /api/v2/button`): for
/// the next 120 seconds one `GET /api/v2/accesstoken/generate` over HTTP
/// gets a token. Nothing is written to disk.
///
/// Threads: any, concurrently, a subscriber callback included.
///
/// # Safety
///
/// `engine` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn floorbell_engine_press_button(
    engine: *const FloorbellEngine,
) -> FloorbellStatus {
    guard(|| {
        engine_ref(engine)?.engine.press_button();
        Ok(())
    })
}

/// Starts an order (SPEC §3.3, as `POST /api/v2/activeorders`): `order_json`
/// is `{"name":"66","orderType":"TO_GO","locationName":"22"}` (`name`, 1–6
/// digits, and `orderType`, `ON_PREMISE` or `TO_GO`, required). Returns after
/// the order is on disk, and writes the answer,
/// `{"status":201,"activeorder":{…}}`, to `*out_order` (NULL: not wanted;
/// free it with `floorbell_string_free`).
///
/// Errors: `FLOORBELL_STATUS_INVALID_ARGUMENT` for a missing or malformed
/// field, bad JSON, a key given twice or over 1 MiB of JSON (HTTP's limit),
/// `FLOORBELL_STATUS_CONFLICT` when the name is active;
/// nothing changes then.
///
/// Threads: any, concurrently, a subscriber callback included.
///
/// # Safety
///
/// `engine` is a live handle; `order_json` is NUL-terminated; `out_order` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn floorbell_engine_order_start(
    engine: *const FloorbellEngine,
    order_json: *const c_char,
    out_order: *mut *mut c_char,
) -> FloorbellStatus {
    guard(|| {
        let handle = engine_ref(engine)?;
        // SAFETY: per this function's contract.
        let json = unsafe { c_str(order_json, "order_json") }?;
        let start = wire::parse_start(json.as_bytes()).map_err(order_failure)?;
        give_body(
            gateway_write(handle, GatewayChange::Start(start))?,
            out_order,
        )
    })
}

/// Changes an active order (as `PUT /api/v2/activeorders/{key}`): `key` is
/// its `name` or `uuid`, `changes_json` any of `orderType` and
/// `locationName` (`{"locationName":"22"}` locates it, `""` un-locates it).
/// Writes `{"status":200,"activeorder":{…}}` to `*out_order` (NULL: not
/// wanted). A change that changes nothing is still `FLOORBELL_STATUS_OK` and
/// is not a change (no `seq`, no callback).
///
/// Errors: `FLOORBELL_STATUS_INVALID_ARGUMENT` for bad JSON (a key given
/// twice, over 1 MiB) or a bad field,
/// `FLOORBELL_STATUS_NOT_FOUND` for an unknown name or uuid (or a cleared
/// order's name), `FLOORBELL_STATUS_CONFLICT` for a cleared order's uuid;
/// nothing changes then.
///
/// Threads: any, concurrently, a subscriber callback included.
///
/// # Safety
///
/// `engine` is a live handle; `key` and `changes_json` are NUL-terminated;
/// `out_order` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn floorbell_engine_order_modify(
    engine: *const FloorbellEngine,
    key: *const c_char,
    changes_json: *const c_char,
    out_order: *mut *mut c_char,
) -> FloorbellStatus {
    guard(|| {
        let handle = engine_ref(engine)?;
        // SAFETY: per this function's contract.
        let key = unsafe { c_str(key, "key") }?;
        // SAFETY: per this function's contract.
        let json = unsafe { c_str(changes_json, "changes_json") }?;
        let modify = wire::parse_modify(json.as_bytes()).map_err(order_failure)?;
        give_body(
            gateway_write(handle, GatewayChange::Modify(key.to_owned(), modify))?,
            out_order,
        )
    })
}

/// Pages an active order's guest (as `POST /api/v2/activeorders/{key}/page`
/// with `{"tracking":…}`; HTTP's default is `true`). Every page is a change,
/// even of the same order. Writes `{"status":200,"activeorder":{…}}` to
/// `*out_order` (NULL: not wanted).
///
/// Errors: `FLOORBELL_STATUS_NOT_FOUND` / `FLOORBELL_STATUS_CONFLICT` as for
/// [`floorbell_engine_order_modify`].
///
/// Threads: any, concurrently, a subscriber callback included.
///
/// # Safety
///
/// `engine` is a live handle; `key` is NUL-terminated; `out_order` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn floorbell_engine_order_page(
    engine: *const FloorbellEngine,
    key: *const c_char,
    tracking: bool,
    out_order: *mut *mut c_char,
) -> FloorbellStatus {
    guard(|| {
        let handle = engine_ref(engine)?;
        // SAFETY: per this function's contract.
        let key = unsafe { c_str(key, "key") }?;
        give_body(
            gateway_write(handle, GatewayChange::Page(key.to_owned(), tracking))?,
            out_order,
        )
    })
}

/// Clears an active order (as `DELETE /api/v2/activeorders/{key}`): it
/// leaves the active set, `state` becomes `cleared`, and its name is free
/// again. Writes `{"status":200,"activeorder":{…}}` (the cleared order) to
/// `*out_order` (NULL: not wanted).
///
/// Errors: `FLOORBELL_STATUS_NOT_FOUND` / `FLOORBELL_STATUS_CONFLICT` as for
/// [`floorbell_engine_order_modify`].
///
/// Threads: any, concurrently, a subscriber callback included.
///
/// # Safety
///
/// `engine` is a live handle; `key` is NUL-terminated; `out_order` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn floorbell_engine_order_clear(
    engine: *const FloorbellEngine,
    key: *const c_char,
    out_order: *mut *mut c_char,
) -> FloorbellStatus {
    guard(|| {
        let handle = engine_ref(engine)?;
        // SAFETY: per this function's contract.
        let key = unsafe { c_str(key, "key") }?;
        give_body(
            gateway_write(handle, GatewayChange::Clear(key.to_owned()))?,
            out_order,
        )
    })
}

/// Clears every active order (as `DELETE /api/v2/activeorders`) in one
/// commit, and writes how many were cleared to `*out_count` (may be NULL).
///
/// Threads: any, concurrently, a subscriber callback included.
///
/// # Safety
///
/// `engine` is a live handle; `out_count` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn floorbell_engine_orders_clear_all(
    engine: *const FloorbellEngine,
    out_count: *mut usize,
) -> FloorbellStatus {
    guard(|| {
        let handle = engine_ref(engine)?;
        let body = gateway_write(handle, GatewayChange::ClearAll)?;
        // The body is `{"status":200,"count":N}` (wire::cleared_count_json).
        let count = body
            .strip_prefix(br#"{"status":200,"count":"#)
            .and_then(|rest| rest.strip_suffix(b"}"))
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| digits.parse::<usize>().ok())
            .ok_or_else(|| {
                Failure::new(
                    FloorbellStatus::Store,
                    format!(
                        "unexpected answer {}",
                        String::from_utf8_lossy(&body).into_owned()
                    ),
                )
            })?;
        if !out_count.is_null() {
            // SAFETY: writable per the contract.
            unsafe { *out_count = count };
        }
        Ok(())
    })
}

/// The active orders, oldest first, as the body of `GET
/// /api/v2/activeorders`: `{"status":200,"count":N,"items":[{…}…]}`, written
/// to `*out_json` (free it with
/// `floorbell_string_free`). Read from memory; when a change it shows is
/// not on disk yet, the call waits for that commit (as long as the store's
/// commit takes, usually a millisecond; at most 30 s), so it never shows an
/// order a crash could take back. Returns `FLOORBELL_STATUS_STORE` when
/// that commit failed or did not come, `FLOORBELL_STATUS_CLOSED` while the
/// engine is closing.
///
/// Threads: any, concurrently, a subscriber callback included.
///
/// # Safety
///
/// `engine` is a live handle; `out_json` is writable.
#[no_mangle]
pub unsafe extern "C" fn floorbell_engine_orders_active(
    engine: *const FloorbellEngine,
    out_json: *mut *mut c_char,
) -> FloorbellStatus {
    guard(|| {
        let handle = engine_ref(engine)?;
        non_null(out_json, "out_json")?;
        let now = now_ms();
        let read = handle
            .engine
            .read_gateway(|gw| wire::list_json(gw.tracker.active(), now, &gw.settings.zone));
        let body = handle
            .engine
            .settle_blocking(read)
            .map_err(engine_failure)?;
        give_body(body, out_json)
    })
}
