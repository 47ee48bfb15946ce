//! The engine's side of the table-tracking gateway (SPEC §3.2–§3.5): access
//! tokens, orders, settings, and the order stream.
//!
//! Like the ticket board, every write is applied to the in-memory state
//! machine under its lock and handed to the writer thread while the lock is
//! still held, so commits happen in the order of application (and `seq`
//! order is commit order). The caller's answer and the stream's message are
//! released only after the commit: a 2xx or an `ORDER_*` frame means "on
//! disk". Reads (`GET …`) are answered from memory at once.

use std::sync::Arc;

use bytes::Bytes;
use floorbell_core::access::{TokenError, TokenRecord, TokenRegistry};
use floorbell_core::orders::{
    wire, Change, ModifyOrder, OrderError, OrderTracker, Settings, SettingsChange, StartOrder,
};
use floorbell_core::store::StoreOp;
use rand::Rng;

use super::{now_ms, AppliedJob, Engine, Outcome, Read, Reply, WriterMsg};
use crate::fanout::{ConnId, Delivery, Dest};
use crate::webhooks::Webhooks;

/// `meta` key of the next order `seq` (kept so `seq` never goes back, even
/// when the order that had the highest one is purged).
pub(super) const META_ORDERS_NEXT_SEQ: &str = "orders_next_seq";
/// `meta` key of the statistics target (SPEC §3.3 settings).
pub(super) const META_TARGET_TIME: &str = "gw_target_time_default";
/// `meta` key of the gateway's time zone (an IANA name).
pub(super) const META_TIMEZONE: &str = "gw_timezone";

/// Cleared orders purged per history-purge step: small enough that the lock
/// and the transaction it costs are not felt by other requests.
pub const PURGE_BATCH: usize = 500;

/// The orders and the settings they are shown with, behind one lock.
pub struct GatewayState {
    /// The state machine of §3.3.
    pub tracker: OrderTracker,
    /// Target time and time zone (§3.3 settings).
    pub settings: Settings,
}

/// A change of the gateway, from an HTTP request or the C ABI.
#[derive(Debug)]
pub enum GatewayChange {
    /// `GET /api/v2/accesstoken/generate`.
    GenerateToken,
    /// `DELETE /api/v2/accesstoken/{name}`.
    RevokeToken(String),
    /// `POST /api/v2/activeorders`.
    Start(StartOrder),
    /// `PUT /api/v2/activeorders/{key}`.
    Modify(String, ModifyOrder),
    /// `POST /api/v2/activeorders/{key}/page`.
    Page(String, bool),
    /// `DELETE /api/v2/activeorders/{key}`.
    Clear(String),
    /// `DELETE /api/v2/activeorders`.
    ClearAll,
    /// `POST /api/v2/gateway/settings`.
    Settings(SettingsChange),
    /// `POST /api/v2/register` (and v1's GET): check the URL, then register
    /// it with this key (SHA-256 of the registering token).
    Register {
        /// The receiver's URL, as given.
        url: String,
        /// The HMAC key.
        key: [u8; 32],
    },
    /// `DELETE /api/v2/register?http_client=URL`.
    Unregister(String),
}

/// Who a secured request was authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The operator's admin token.
    Admin,
    /// A gateway access token, by its name.
    Token(Box<str>),
}

/// The token of an `Authorization` value: `Bearer TOKEN` or
/// `Basic base64(TOKEN + ":")` (SPEC §3.2; schemes case-insensitive).
pub fn presented_token(value: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    if let Some(token) = crate::api::bearer(value) {
        return Some(token.to_vec());
    }
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim_ascii())
        .ok()?;
    // `TOKEN:` — the user is the token, the password empty (or ignored).
    let user_end = decoded
        .iter()
        .position(|&b| b == b':')
        .unwrap_or(decoded.len());
    let mut decoded = decoded;
    decoded.truncate(user_end);
    Some(decoded)
}

/// A new access token: 24 random bytes as 48 lowercase hex digits (SPEC §3.2).
fn new_access_token() -> String {
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn token_op(record: TokenRecord) -> StoreOp {
    match record {
        TokenRecord::Put(t) => StoreOp::PutAccessToken(t),
        TokenRecord::Delete(name) => StoreOp::DeleteAccessToken(name),
    }
}

fn rejected(e: OrderError) -> Outcome {
    Outcome::Rejected {
        status: e.status(),
        message: e.to_string(),
    }
}

impl Engine {
    /// Authenticates a [SECURED] request by its `Authorization` value: the
    /// admin token or a gateway token (whose use is recorded with `ip`).
    pub fn gateway_auth(&self, authorization: &[u8], ip: Option<&str>) -> Option<Principal> {
        self.gateway_principal(&presented_token(authorization)?, ip)
    }

    /// Who `token` is (the admin token, or a gateway token whose use is
    /// recorded with `ip`), or `None`; also the check of the first frame
    /// `{"accesstoken":…}` on `/api/v2/websocket`.
    pub fn gateway_principal(&self, token: &[u8], ip: Option<&str>) -> Option<Principal> {
        if self.admin_token.matches(token) {
            return Some(Principal::Admin);
        }
        self.access
            .lock()
            .verify(token, now_ms(), ip)
            .map(|name| Principal::Token(name.into()))
    }

    /// The gateway's button (`POST /api/v2/button`, the C ABI): a token may
    /// be generated within the next 120 s.
    pub fn press_button(&self) {
        self.access.lock().press_button(now_ms());
    }

    /// The body of `GET /api/v2/accesstoken` ([`Read`]).
    pub fn access_tokens_json(&self) -> Read<Vec<u8>> {
        let zone = self.gateway.lock().settings.zone.clone();
        let access = self.access.lock();
        // Under the registry's lock, after the zone's: covers both.
        let settled = self.writer.settled();
        let items: Vec<serde_json::Value> = access
            .list()
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "creation_date": zone.local_naive(t.created_ms),
                    "last_used": t.last_used_ms.map(|ms| zone.local_naive(ms)),
                    "ip_address": t.ip,
                })
            })
            .collect();
        drop(access);
        Read {
            value: serde_json::to_vec(&serde_json::json!({"status": 200, "items": items}))
                .unwrap_or_default(),
            settled,
        }
    }

    /// Reads the gateway state under its lock (the read-only endpoints):
    /// what `f` makes of it, and whether it may be shown now ([`Read`]).
    pub fn read_gateway<R>(&self, f: impl FnOnce(&GatewayState) -> R) -> Read<R> {
        let gw = self.gateway.lock();
        let value = f(&gw);
        Read {
            value,
            settled: self.writer.settled(),
        }
    }

    /// Applies a gateway change; `reply` is answered after its commit (or at
    /// once when it is refused).
    pub fn gateway_change(&self, change: GatewayChange, reply: Reply) {
        let now = now_ms();
        match change {
            GatewayChange::GenerateToken => {
                let token = new_access_token();
                // The zone is read first: the two locks are never held together
                // in the other order.
                let zone = self.gateway.lock().settings.zone.clone();
                let mut access = self.access.lock();
                let result = access.generate(&token, now).map(|(entry, record)| {
                    let body = serde_json::to_vec(&serde_json::json!({
                        "status": 201,
                        "token": {
                            "name": entry.name,
                            "token": token,
                            "creation_date": zone.local_naive(entry.created_ms),
                            "last_used": null,
                            "ip_address": null,
                        }
                    }))
                    .unwrap_or_default();
                    (record, 201, body)
                });
                self.finish_token_change(access, result, reply, None);
            }
            GatewayChange::RevokeToken(name) => {
                let mut access = self.access.lock();
                let result = access.revoke(&name).map(|record| {
                    let body = serde_json::to_vec(&serde_json::json!({
                        "status": 200,
                        "message": format!("Access token {name} revoked."),
                    }))
                    .unwrap_or_default();
                    (record, 200, body)
                });
                // Streams the token opened end with it (SPEC gap: §3.2
                // names no effect on them; a revoked token must not keep
                // receiving every order).
                let closing = Arc::new(Delivery {
                    revoked: Some(name.as_str().into()),
                    ..Delivery::default()
                });
                self.finish_token_change(access, result, reply, Some(closing));
            }
            GatewayChange::Settings(change) => {
                let mut gw = self.gateway.lock();
                let mut records = Vec::new();
                if let Some(target) = change.target_time_default {
                    gw.settings.target_time_default = target;
                    records.push(StoreOp::PutMeta(
                        META_TARGET_TIME.into(),
                        target.to_string(),
                    ));
                }
                if let Some(zone) = change.zone {
                    records.push(StoreOp::PutMeta(
                        META_TIMEZONE.into(),
                        zone.name().to_owned(),
                    ));
                    gw.settings.zone = zone;
                }
                self.send_applied(AppliedJob {
                    records,
                    delivery: None,
                    reply: Some((
                        reply,
                        Outcome::Respond {
                            status: 200,
                            body: wire::SETTINGS_CHANGED.to_vec(),
                        },
                    )),
                    ..AppliedJob::default()
                });
            }
            GatewayChange::Register { url, key } => {
                self.webhooks.register(url, key, reply, self.writer.clone());
            }
            GatewayChange::Unregister(url) => self.webhooks.unregister(&url, reply, &self.writer),
            order_change => self.order_change(order_change, reply, now),
        }
    }

    /// Hands a token change to the writer while the registry's lock is
    /// still held (commit order is application order), or refuses it.
    fn finish_token_change(
        &self,
        access: parking_lot::MutexGuard<'_, TokenRegistry>,
        result: Result<(TokenRecord, u16, Vec<u8>), TokenError>,
        reply: Reply,
        delivery: Option<Arc<Delivery>>,
    ) {
        match result {
            Ok((record, status, body)) => {
                self.send_applied(AppliedJob {
                    records: vec![token_op(record)],
                    delivery,
                    reply: Some((reply, Outcome::Respond { status, body })),
                    ..AppliedJob::default()
                });
                drop(access);
            }
            Err(e) => {
                let settled = self.writer.settled();
                drop(access);
                self.answer_seen(
                    settled,
                    Some(reply),
                    Outcome::Rejected {
                        status: e.status(),
                        message: e.to_string(),
                    },
                );
            }
        }
    }

    /// Applies a change of the orders (§3.3).
    fn order_change(&self, change: GatewayChange, reply: Reply, now: i64) {
        let mut gw = self.gateway.lock();
        let GatewayState { tracker, settings } = &mut *gw;
        let zone = &settings.zone;
        let result: Result<(u16, Vec<u8>, Vec<Change>), OrderError> = match change {
            GatewayChange::Start(start) => tracker
                .start(start, rand::rng().random(), now)
                .map(|c| (201, wire::one_json(201, &c.order, now, zone), vec![c])),
            GatewayChange::Modify(key, modify) => {
                tracker.modify(&key, modify, now).map(|(order, change)| {
                    (
                        200,
                        wire::one_json(200, &order, now, zone),
                        change.into_iter().collect(),
                    )
                })
            }
            GatewayChange::Page(key, tracking) => tracker
                .page(&key, tracking, now)
                .map(|c| (200, wire::one_json(200, &c.order, now, zone), vec![c])),
            GatewayChange::Clear(key) => tracker
                .clear(&key, now)
                .map(|c| (200, wire::one_json(200, &c.order, now, zone), vec![c])),
            GatewayChange::ClearAll => {
                let changes = tracker.clear_all(now);
                Ok((200, wire::cleared_count_json(changes.len()), changes))
            }
            _ => return, // handled by gateway_change
        };
        let (status, body, changes) = match result {
            Ok(r) => r,
            Err(e) => {
                let settled = self.writer.settled();
                drop(gw);
                self.answer_seen(settled, Some(reply), rejected(e));
                return;
            }
        };
        let mut records = Vec::with_capacity(changes.len() + 1);
        let mut messages = Vec::with_capacity(changes.len());
        // Held until the change is sent (Webhooks::enqueue); the order of
        // the locks is the gateway's, then the outbox's, everywhere.
        let mut outbox = (!changes.is_empty()).then(|| self.webhooks.outbox());
        for change in &changes {
            records.push(StoreOp::PutOrder(change.order.clone()));
            let message = wire::change_message(change, now, zone);
            messages.push((Dest::AllOrders, crate::ws::text_frame(&message)));
            // Webhooks POST the same JSON (SPEC §3.6), shared, not copied.
            if let Some(outbox) = outbox.as_deref_mut() {
                records.extend(Webhooks::enqueue(
                    outbox,
                    Bytes::from(message),
                    change.order.seq,
                    now,
                ));
            }
        }
        if !changes.is_empty() {
            records.push(StoreOp::PutMeta(
                META_ORDERS_NEXT_SEQ.into(),
                tracker.next_seq().to_string(),
            ));
        }
        let delivery = (!messages.is_empty()).then(|| {
            Arc::new(Delivery {
                activate: None,
                messages,
                reply_to: None,
                halt: false,
                revoked: None,
            })
        });
        // Sent under the lock: commit order is seq order.
        self.send_applied(AppliedJob {
            records,
            delivery,
            reply: Some((reply, Outcome::Respond { status, body })),
            order_seq: changes.last().map(|c| c.order.seq),
            ..AppliedJob::default()
        });
        drop(outbox);
    }

    /// Subscribes an authenticated `/api/v2/websocket` connection: its
    /// `ACTIVE_ORDERS` snapshot goes out in the writer's order, after every
    /// change applied before it and before every change applied after it,
    /// so the client sees each change exactly once.
    pub fn orders_subscribe(&self, conn: ConnId) {
        let gw = self.gateway.lock();
        let now = now_ms();
        let snapshot = wire::active_orders_message(gw.tracker.active(), now, &gw.settings.zone);
        let frame: Bytes = crate::ws::text_frame(&snapshot);
        self.send_applied(AppliedJob {
            records: Vec::new(),
            delivery: Some(Arc::new(Delivery {
                activate: Some(conn),
                messages: vec![(Dest::Conn(conn), frame)],
                reply_to: None,
                halt: false,
                revoked: None,
            })),
            reply: None,
            ..AppliedJob::default()
        });
    }

    /// Hands an applied change to the writer (call with the state's lock held).
    pub(super) fn send_applied(&self, job: AppliedJob) {
        if self.writer.send(WriterMsg::Applied(job)).is_err() {
            tracing::warn!("a change arrived after shutdown; dropped");
        }
    }
}

/// The writer's periodic gateway work: token uses to persist, and one batch
/// of the history purge. Returns the records (applied in memory already).
pub(super) fn housekeeping(
    access: &parking_lot::Mutex<TokenRegistry>,
    gateway: &parking_lot::Mutex<GatewayState>,
    history_days: u32,
    now: i64,
    purge: bool,
    unsettled: &std::sync::atomic::AtomicUsize,
) -> (Vec<StoreOp>, usize) {
    let mut ops: Vec<StoreOp> = access
        .lock()
        .take_dirty()
        .into_iter()
        .map(token_op)
        .collect();
    let mut counted = 0;
    if purge {
        let cutoff = now - i64::from(history_days) * 86_400_000;
        let mut gw = gateway.lock();
        let purged = gw.tracker.purge(cutoff, PURGE_BATCH);
        if !purged.is_empty() {
            // Counted under the lock, as a change is (WriterTx::settled):
            // reads do not show the purge before its commit.
            unsettled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            counted = 1;
            drop(gw);
            tracing::info!(orders = purged.len(), "purged order history");
            ops.push(StoreOp::DeleteOrders(purged));
        }
    }
    (ops, counted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn both_authorization_forms() {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("abc:")
        );
        assert_eq!(
            presented_token(basic.as_bytes()).as_deref(),
            Some(&b"abc"[..])
        );
        let no_colon = format!(
            "basic {}",
            base64::engine::general_purpose::STANDARD.encode("abc")
        );
        assert_eq!(
            presented_token(no_colon.as_bytes()).as_deref(),
            Some(&b"abc"[..])
        );
        assert_eq!(presented_token(b"Bearer abc").as_deref(), Some(&b"abc"[..]));
        assert_eq!(presented_token(b"Basic !!!"), None);
        assert_eq!(presented_token(b"Digest abc"), None);
    }

    #[test]
    fn access_tokens_are_48_hex_digits() {
        let t = new_access_token();
        assert_eq!(t.len(), 48);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
}

#[cfg(test)]
mod engine_tests {
    use floorbell_core::orders::{wire, Order, OrderState, OrderType};
    use floorbell_core::store::{Store, StoreOp};

    use crate::config::Config;
    use crate::engine::{now_ms, Engine, EngineError, GatewayChange, Outcome, Read, Reply};

    fn order(uuid: &str, name: &str, state: OrderState, created_ms: i64, seq: u64) -> Order {
        Order {
            uuid: uuid.into(),
            name: name.into(),
            order_type: OrderType::OnPremise,
            location: String::new(),
            state,
            created_ms,
            state_started_ms: created_ms + 1000,
            located_ms: None,
            seq,
            created_seq: seq,
        }
    }

    /// The writer's housekeeping purges cleared orders older than
    /// `--history-days` from memory and from the store, at start and without
    /// touching active or recent ones (SPEC §3.3).
    #[test]
    fn history_older_than_the_window_is_purged_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let day = 86_400_000;
        let now = now_ms();
        {
            let mut store = Store::open(dir.path()).unwrap();
            store
                .commit(&[
                    StoreOp::PutOrder(order(
                        "00000000-0000-4000-8000-000000000001",
                        "1",
                        OrderState::Cleared,
                        now - 3 * day,
                        1,
                    )),
                    StoreOp::PutOrder(order(
                        "00000000-0000-4000-8000-000000000002",
                        "2",
                        OrderState::Started,
                        now - 3 * day,
                        2,
                    )),
                    StoreOp::PutOrder(order(
                        "00000000-0000-4000-8000-000000000003",
                        "3",
                        OrderState::Cleared,
                        now - day / 2,
                        3,
                    )),
                ])
                .unwrap();
        }
        let config = Config::from_toml_text("history-days = 1", dir.path()).unwrap();
        let (engine, _) = Engine::open(config).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while engine.read_gateway(|gw| gw.tracker.len_all()).value != 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "the old cleared order was not purged"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        engine.shutdown();
        drop(engine);
        let store = Store::open(dir.path()).unwrap();
        let mut names: Vec<String> = store
            .load_orders()
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        names.sort();
        assert_eq!(names, ["2", "3"], "purged from the store too");
    }

    /// Reads are settled once the changes they could see are committed, and
    /// a read answered after the commit gets its own answer back.
    #[test]
    fn reads_settle_with_the_commit_of_what_they_saw() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_toml_text("", dir.path()).unwrap();
        let (engine, _) = Engine::open(config).unwrap();
        assert!(engine.read_gateway(|_| ()).settled, "nothing applied yet");
        for name in ["7", "8", "9"] {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let body = format!(r#"{{"name":"{name}","orderType":"TO_GO"}}"#);
            let start = wire::parse_start(body.as_bytes()).unwrap();
            engine.gateway_change(GatewayChange::Start(start), Reply::Channel(tx));
            // Applied in memory at once; this read may come before the
            // commit, and is answered after it then.
            let read =
                engine.read_gateway(|gw| gw.tracker.active().count().to_string().into_bytes());
            let seen = engine.settle_blocking(read).unwrap();
            assert!(!seen.is_empty());
            assert!(matches!(
                rx.recv(),
                Ok(Outcome::Respond { status: 201, .. })
            ));
            // Its answer is sent after the count went down.
            assert!(engine.read_gateway(|_| ()).settled, "order {name}");
        }
        let waited = engine.settle_blocking(Read {
            value: b"after".to_vec(),
            settled: false,
        });
        assert_eq!(waited.unwrap(), b"after");
        engine.shutdown();
        let late = engine.settle_blocking(Read {
            value: Vec::new(),
            settled: false,
        });
        assert!(matches!(late, Err(EngineError::Closed)), "{late:?}");
    }
}
