//! The order tracker of SPEC §3.3 (seeds `table-tracker-*.txt`): a guest's
//! tracker or pager from start to clear, the active set, history and the
//! day's statistics.
//!
//! [`OrderTracker`] is a sans-I/O state machine. The shell calls it with what
//! a client asked for — [`OrderTracker::start`], [`OrderTracker::modify`],
//! [`OrderTracker::page`], [`OrderTracker::clear`],
//! [`OrderTracker::clear_all`] — and gets back each [`Change`]: the order as
//! it is after the change, carrying the change's `seq`. It opens no socket,
//! starts no thread, never reads the clock (`now_ms`, Unix milliseconds, is
//! an argument) and never draws random numbers (a new order's uuid is made
//! from the `random` argument). [`wire`] spells the JSON; [`zone`] turns
//! instants into the gateway's local-naive timestamps.
//!
//! # Durability contract
//!
//! Every [`Change`] holds the whole order. The caller persists it (an upsert
//! keyed by `uuid`) durably (SPEC §0) and only then answers the request and
//! sends the change's message, in `seq` order. The caller also persists
//! [`OrderTracker::next_seq`]: [`OrderTracker::purge`] can remove the order
//! that holds the highest `seq`, so the orders alone cannot always tell where
//! `seq` stands. After a restart, [`OrderTracker::restore`] rebuilds the
//! tracker from the persisted orders and that `next_seq` (the higher of it and
//! one past the highest persisted `seq` wins), so `seq` never goes back.
//! A [`OrderTracker::modify`] that changes nothing returns no change: nothing
//! to persist, no message.
//!
//! # Ordering
//!
//! "Oldest first" is by `created`, then by `created_seq` (the `seq` of the
//! order's start). Both are persisted, so a restored tracker lists orders
//! exactly as before, and an order's place never moves: orders started in
//! the same millisecond keep their start order through every change (until
//! session 22 the second key was the latest change's `seq`, so a change
//! moved an order behind others of its millisecond, and a client paging
//! the history by offset could see one twice and miss another).
//!
//! # Decisions where SPEC §3.3 is silent
//!
//! Each is marked `SPEC gap:` where it is implemented.
//!
//! * `seq` starts at 1; 0 is never a change's `seq`.
//! * A name is kept as sent: `"066"` and `"66"` are different orders.
//!   `locationName` is at most [`MAX_LOCATION_LEN`] bytes with no control
//!   characters, kept as sent (no trimming).
//! * A `key` of 36 characters that parses as a hyphenated UUID (any case) is
//!   a uuid; anything else is a name. Names are never 36 characters long, so
//!   the two never meet.
//! * A cleared order looked up by uuid through [`OrderTracker::active_order`]
//!   is 404 (it is not active); changing it by uuid is 409 (SPEC).
//! * `page` changes nothing in the order but its `seq`; `tracking` is
//!   accepted and has no effect on the order or its message (SPEC names no
//!   field that carries it).
//! * `located_ms` is when the order first became `located`; leaving and
//!   re-entering `located` keeps the first time. Statistics count an order
//!   as located from that first time, even if it went back to `started`.
//! * Statistics: `onTarget` compares whole seconds (milliseconds divided by
//!   1000, rounded down) with the target; `averageTimeToLocate` is the mean
//!   of the exact millisecond durations, rounded half up to whole seconds.
//! * A uuid that `random` would repeat (a broken random source, or a test
//!   that passes the same number twice) is stepped deterministically to the
//!   next free one rather than refused.
//! * [`OrderTracker::restore`] trusts its input as the tracker wrote it. If
//!   it holds the same uuid twice, the copy with the higher `seq` wins,
//!   unless another order holds that copy's `(created, created_seq)`: the
//!   first restored there (the lower `seq`) keeps it; a name active
//!   twice is addressed to the one with the higher `seq` (both stay listed
//!   until cleared).

pub mod wire;
pub mod zone;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

pub(crate) use crate::echo::Echo;

pub use zone::Zone;

/// Longest order name: SPEC §3.3, "a string of 1–6 digits".
pub const MAX_NAME_LEN: usize = 6;
/// Longest `locationName`, in bytes. SPEC gap: §3.3 sets none; a table name
/// is a few characters, and 64 bytes keeps every summary small.
pub const MAX_LOCATION_LEN: usize = 64;
/// `limit` of a history query when none is given (SPEC §3.3).
pub const DEFAULT_HISTORY_LIMIT: usize = 25;
/// Largest `limit` of a history query (SPEC §3.3).
pub const MAX_HISTORY_LIMIT: usize = 100;
/// `targetTimeDefault` out of the box (SPEC §3.3).
pub const DEFAULT_TARGET_TIME_SECS: u32 = 300;
/// Largest target time accepted, in seconds. SPEC gap: one day; a longer
/// target would count every order as on target.
pub const MAX_TARGET_TIME_SECS: u32 = 86_400;
/// Length of a hyphenated UUID.
const UUID_LEN: usize = 36;

/// `orderType` (SPEC §3.3). It can change during an order's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderType {
    /// The guest eats in: `ON_PREMISE`.
    OnPremise,
    /// The guest takes the order away: `TO_GO`.
    ToGo,
}

impl OrderType {
    /// The wire spelling: `ON_PREMISE` or `TO_GO`.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::OnPremise => "ON_PREMISE",
            OrderType::ToGo => "TO_GO",
        }
    }

    /// The type a wire spelling names (exact, uppercase), if any.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ON_PREMISE" => Some(OrderType::OnPremise),
            "TO_GO" => Some(OrderType::ToGo),
            _ => None,
        }
    }
}

/// `state` (SPEC §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderState {
    /// Active, with no table yet: `started`.
    Started,
    /// Active, on a table: `located`.
    Located,
    /// Finished, no longer active, now history: `cleared`.
    Cleared,
}

impl OrderState {
    /// The wire spelling: `started`, `located` or `cleared`.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Started => "started",
            OrderState::Located => "located",
            OrderState::Cleared => "cleared",
        }
    }

    /// The state a wire spelling names (exact, lowercase), if any.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "started" => Some(OrderState::Started),
            "located" => Some(OrderState::Located),
            "cleared" => Some(OrderState::Cleared),
            _ => None,
        }
    }

    /// `started` or `located`: the order is in the active set.
    pub fn is_active(self) -> bool {
        !matches!(self, OrderState::Cleared)
    }
}

/// One order, as persisted and as its summary shows it (SPEC §3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    /// Lowercase hyphenated UUID v4: the order's identity for its whole
    /// life, and the only address left once it is cleared.
    pub uuid: String,
    /// The number printed on the tracker, 1–6 ASCII digits, unique among
    /// active orders (a cleared order's name is free again).
    pub name: String,
    /// Eat in or take away; the POS may change it.
    pub order_type: OrderType,
    /// The table the tracker sits on, `""` while unknown.
    pub location: String,
    /// Where the order is in its life.
    pub state: OrderState,
    /// When the order was started (Unix ms): `created`, and the history key.
    pub created_ms: i64,
    /// When `state` last changed (Unix ms): `stateStarted`; for a cleared
    /// order, the clear's time, which ends `elapsedTime`.
    pub state_started_ms: i64,
    /// When the order first became `located` (Unix ms), kept through later
    /// state changes, for the statistics' time to locate.
    pub located_ms: Option<i64>,
    /// The `seq` of this order's latest change.
    pub seq: u64,
    /// The `seq` of the change that started the order: breaks ties in
    /// "oldest first" between orders created in the same millisecond.
    pub created_seq: u64,
}

impl Order {
    /// Where the order sits in "oldest first": `(created_ms, created_seq)`.
    fn key(&self) -> Key {
        (self.created_ms, self.created_seq)
    }

    /// `elapsedTime`: whole seconds from `created` to `now_ms` while active,
    /// to the clear (`stateStarted`) once cleared; never negative.
    pub fn elapsed_secs(&self, now_ms: i64) -> u64 {
        let end = if self.state.is_active() {
            now_ms
        } else {
            self.state_started_ms
        };
        let ms = i128::from(end) - i128::from(self.created_ms);
        u64::try_from(ms.max(0) / 1000).unwrap_or(u64::MAX)
    }
}

/// What kind of message a change makes (SPEC §3.4 `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A start: `ORDER_CREATED`.
    Created,
    /// A page: `ORDER_PAGED`.
    Paged,
    /// Every other change, the clear included: `ORDER_MODIFIED`.
    Modified,
}

impl ChangeKind {
    /// The wire spelling of the message's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "ORDER_CREATED",
            ChangeKind::Paged => "ORDER_PAGED",
            ChangeKind::Modified => "ORDER_MODIFIED",
        }
    }
}

/// One change of one order: what to persist and what to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Which message it makes.
    pub kind: ChangeKind,
    /// The order after the change; `order.seq` is the change's `seq`.
    pub order: Order,
}

/// Why a request on orders was refused. Each carries the message for
/// `{"status":S,"message":"…"}`; [`OrderError::status`] gives `S`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// The caller's input is missing or malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such order, or none active by that name (404).
    #[error("{0}")]
    NotFound(String),
    /// The name is taken by an active order, or the order is cleared (409).
    #[error("{0}")]
    Conflict(String),
}

impl OrderError {
    /// The HTTP status: 400, 404 or 409.
    pub fn status(&self) -> u16 {
        match self {
            OrderError::BadRequest(_) => 400,
            OrderError::NotFound(_) => 404,
            OrderError::Conflict(_) => 409,
        }
    }

    /// The human-readable message (the same text as `Display`).
    pub fn message(&self) -> &str {
        match self {
            OrderError::BadRequest(m) | OrderError::NotFound(m) | OrderError::Conflict(m) => m,
        }
    }
}

/// `POST /api/v2/activeorders`: a new order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOrder {
    /// The tracker's number (checked by [`check_name`]).
    pub name: String,
    /// Eat in or take away.
    pub order_type: OrderType,
    /// The table, `""` when not known yet (then the order is `started`).
    pub location: String,
}

/// `PUT /api/v2/activeorders/{key}`: what to change; `None` leaves a field
/// as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModifyOrder {
    /// A new `orderType`.
    pub order_type: Option<OrderType>,
    /// A new `locationName`; `""` makes a located order `started` again.
    pub location: Option<String>,
}

impl ModifyOrder {
    /// Neither field is given (`{}`).
    pub fn is_empty(&self) -> bool {
        self.order_type.is_none() && self.location.is_none()
    }
}

/// `GET /api/v2/orders`: which part of the history to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// How many matching orders to skip, oldest first.
    pub offset: usize,
    /// At most this many orders in the answer.
    pub limit: usize,
    /// Only orders created at or after this instant (Unix ms).
    pub created_after_ms: Option<i64>,
    /// Only orders created before this instant (Unix ms).
    pub created_before_ms: Option<i64>,
    /// Only orders of this type (their current type).
    pub order_type: Option<OrderType>,
    /// Only orders at this location (their current `locationName`, exact).
    pub location: Option<String>,
}

impl Default for HistoryQuery {
    /// Everything: offset 0, [`DEFAULT_HISTORY_LIMIT`], no filter.
    fn default() -> Self {
        HistoryQuery {
            offset: 0,
            limit: DEFAULT_HISTORY_LIMIT,
            created_after_ms: None,
            created_before_ms: None,
            order_type: None,
            location: None,
        }
    }
}

/// `GET /api/v2/statistics`: one day's orders (SPEC §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statistics {
    /// The day, `YYYY-MM-DD` in the gateway's zone.
    pub date: String,
    /// The target time used for `on_target`, in seconds.
    pub target_time: u32,
    /// Orders created that day.
    pub orders: u64,
    /// Of those, how many were ever located.
    pub located: u64,
    /// Of those, how many were located within the target time.
    pub on_target: u64,
    /// Mean seconds from start to (first) located; 0 when none was located.
    pub average_time_to_locate: u64,
}

/// The gateway settings of SPEC §3.3.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The default `target_time` of the statistics, in seconds.
    pub target_time_default: u32,
    /// The zone timestamps are shown in, and "today" is counted in.
    pub zone: Zone,
}

impl Default for Settings {
    /// [`DEFAULT_TARGET_TIME_SECS`] and [`Zone::system`] (which reads the
    /// machine's time-zone configuration).
    fn default() -> Self {
        Settings {
            target_time_default: DEFAULT_TARGET_TIME_SECS,
            zone: Zone::system(),
        }
    }
}

impl Settings {
    /// Applies a change (each given field replaces the current value).
    pub fn apply(&mut self, change: SettingsChange) {
        if let Some(t) = change.target_time_default {
            self.target_time_default = t;
        }
        if let Some(zone) = change.zone {
            self.zone = zone;
        }
    }
}

/// `POST /api/v2/gateway/settings`: the settings to replace; at least one is
/// given when it comes from [`wire::parse_settings`].
#[derive(Debug, Clone, PartialEq)]
pub struct SettingsChange {
    /// A new `targetTimeDefault`.
    pub target_time_default: Option<u32>,
    /// A new `timezone`.
    pub zone: Option<Zone>,
}

/// Checks an order name: 1 to [`MAX_NAME_LEN`] ASCII digits.
///
/// # Errors
///
/// [`OrderError::BadRequest`] naming the field.
pub fn check_name(name: &str) -> Result<(), OrderError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(OrderError::BadRequest(format!(
            "\"name\" must be a string of 1 to {MAX_NAME_LEN} digits"
        )));
    }
    Ok(())
}

/// Checks a `locationName`: at most [`MAX_LOCATION_LEN`] bytes, no control
/// characters (`""` is fine: "not known yet").
///
/// # Errors
///
/// [`OrderError::BadRequest`] naming the field.
pub fn check_location(location: &str) -> Result<(), OrderError> {
    if location.len() > MAX_LOCATION_LEN {
        return Err(OrderError::BadRequest(format!(
            "\"locationName\" must be at most {MAX_LOCATION_LEN} bytes"
        )));
    }
    if location.chars().any(char::is_control) {
        return Err(OrderError::BadRequest(
            "\"locationName\" must not contain control characters".into(),
        ));
    }
    Ok(())
}

/// `(created_ms, created_seq)`: where an order sits in "oldest first".
type Key = (i64, u64);

/// How a request names an order.
enum Address<'a> {
    /// A uuid, lowercased.
    Uuid(Cow<'a, str>),
    /// A name among the active orders.
    Name(&'a str),
}

impl<'a> Address<'a> {
    // SPEC gap: 36 characters that parse as a hyphenated UUID (any case) are a
    // uuid; everything else is a name (names are at most 6 characters).
    fn of(key: &'a str) -> Self {
        if key.len() == UUID_LEN && uuid::Uuid::try_parse(key).is_ok() {
            if key.bytes().any(|b| b.is_ascii_uppercase()) {
                return Address::Uuid(Cow::Owned(key.to_ascii_lowercase()));
            }
            return Address::Uuid(Cow::Borrowed(key));
        }
        Address::Name(key)
    }
}

/// Every order, active and cleared, with the indexes SPEC §3.3 reads by.
///
/// See the [module documentation](self) for the durability contract.
#[derive(Debug, Clone)]
pub struct OrderTracker {
    /// Every order, oldest first: history, statistics and purge read ranges
    /// of it by creation time.
    orders: BTreeMap<Key, Order>,
    /// uuid → key, for addressing by uuid (active or cleared).
    by_uuid: HashMap<String, Key>,
    /// Name → key of the active order that has it: names are unique among
    /// active orders only.
    active_names: HashMap<String, Key>,
    /// Keys of the active orders, oldest first (the snapshot, `GET`).
    active: BTreeSet<Key>,
    /// Keys of the cleared orders, oldest first, so purge never walks past
    /// active orders.
    cleared: BTreeSet<Key>,
    /// The `seq` the next change takes.
    next_seq: u64,
}

impl Default for OrderTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl OrderTracker {
    /// An empty tracker; the first change takes `seq` 1.
    pub fn new() -> Self {
        OrderTracker {
            orders: BTreeMap::new(),
            by_uuid: HashMap::new(),
            active_names: HashMap::new(),
            active: BTreeSet::new(),
            cleared: BTreeSet::new(),
            // SPEC gap: seq starts at 1, so 0 can mean "nothing yet".
            next_seq: 1,
        }
    }

    /// Rebuilds a tracker from persisted orders and the persisted `next_seq`.
    /// The next change takes the highest of `next_seq`, one past the highest
    /// order `seq`, and 1. See the module documentation for what happens to
    /// input the tracker could not have written.
    pub fn restore(mut orders: Vec<Order>, next_seq: u64) -> Self {
        let mut tracker = OrderTracker::new();
        // Fold in seq order, so the latest copy of a uuid wins.
        orders.sort_by_key(|o| o.seq);
        for order in orders {
            tracker.next_seq = tracker.next_seq.max(order.seq.saturating_add(1));
            // Another order's place: keep that one.
            if tracker
                .orders
                .get(&order.key())
                .is_some_and(|there| there.uuid != order.uuid)
            {
                continue;
            }
            // An older copy of this order gives way.
            if let Some(&old) = tracker.by_uuid.get(&order.uuid) {
                tracker.take(old);
            }
            tracker.put(order);
        }
        tracker.next_seq = tracker.next_seq.max(next_seq);
        tracker
    }

    /// The `seq` the next change will take (persist it: see the module
    /// documentation).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Starts an order: `located` if `req.location` is non-empty, else
    /// `started`. Its uuid is a v4 UUID made from `random`.
    ///
    /// # Errors
    ///
    /// [`OrderError::BadRequest`] for a bad name or location;
    /// [`OrderError::Conflict`] when an active order already has the name.
    pub fn start(
        &mut self,
        req: StartOrder,
        random: u128,
        now_ms: i64,
    ) -> Result<Change, OrderError> {
        check_name(&req.name)?;
        check_location(&req.location)?;
        if self.active_names.contains_key(&req.name) {
            return Err(OrderError::Conflict(format!(
                "an active order is already named {}",
                Echo(&req.name)
            )));
        }
        let located = !req.location.is_empty();
        let seq = self.take_seq();
        let order = Order {
            uuid: self.fresh_uuid(random),
            name: req.name,
            order_type: req.order_type,
            location: req.location,
            state: if located {
                OrderState::Located
            } else {
                OrderState::Started
            },
            created_ms: now_ms,
            state_started_ms: now_ms,
            located_ms: located.then_some(now_ms),
            seq,
            created_seq: seq,
        };
        self.put(order.clone());
        Ok(Change {
            kind: ChangeKind::Created,
            order,
        })
    }

    /// Changes an active order's type and/or location. A non-empty location
    /// on a `started` order makes it `located`, `""` makes it `started`;
    /// `stateStarted` resets when the state changes.
    ///
    /// Returns the order as it is now, and the change — `None` when the
    /// request sets only values the order already has (no `seq` is used).
    ///
    /// # Errors
    ///
    /// [`OrderError::BadRequest`] for a bad location; [`OrderError::NotFound`]
    /// for an unknown uuid or no active order by that name;
    /// [`OrderError::Conflict`] for the uuid of a cleared order.
    pub fn modify(
        &mut self,
        key: &str,
        m: ModifyOrder,
        now_ms: i64,
    ) -> Result<(Order, Option<Change>), OrderError> {
        if let Some(location) = &m.location {
            check_location(location)?;
        }
        let k = self.find_for_change(key)?;
        let Some(current) = self.orders.get(&k) else {
            return Err(not_found(key));
        };
        let type_changes = m.order_type.is_some_and(|t| t != current.order_type);
        let location_changes = m.location.as_ref().is_some_and(|l| *l != current.location);
        if !type_changes && !location_changes {
            return Ok((current.clone(), None));
        }
        let Some(mut order) = self.take(k) else {
            return Err(not_found(key));
        };
        if let Some(t) = m.order_type {
            order.order_type = t;
        }
        if let Some(location) = m.location {
            order.location = location;
        }
        let state = if order.location.is_empty() {
            OrderState::Started
        } else {
            OrderState::Located
        };
        if state != order.state {
            order.state = state;
            order.state_started_ms = now_ms;
            if state == OrderState::Located && order.located_ms.is_none() {
                order.located_ms = Some(now_ms);
            }
        }
        order.seq = self.take_seq();
        self.put(order.clone());
        Ok((
            order.clone(),
            Some(Change {
                kind: ChangeKind::Modified,
                order,
            }),
        ))
    }

    /// Pages the guest of an active order. Every page is a change (a new
    /// `seq`, an `ORDER_PAGED` message), even of the same order; nothing else
    /// in the order changes. `tracking` is accepted for the gateway's API
    /// and changes nothing here.
    ///
    /// # Errors
    ///
    /// As [`OrderTracker::modify`], without the 400.
    pub fn page(&mut self, key: &str, tracking: bool, now_ms: i64) -> Result<Change, OrderError> {
        // SPEC gap: nothing in the order or its message carries `tracking`,
        // nor the time of the page.
        let _ = (tracking, now_ms);
        let k = self.find_for_change(key)?;
        let Some(mut order) = self.take(k) else {
            return Err(not_found(key));
        };
        order.seq = self.take_seq();
        self.put(order.clone());
        Ok(Change {
            kind: ChangeKind::Paged,
            order,
        })
    }

    /// Clears an active order: state `cleared`, `stateStarted` = `now_ms`; it
    /// leaves the active set and its name is free again. The change is an
    /// `ORDER_MODIFIED`.
    ///
    /// # Errors
    ///
    /// As [`OrderTracker::page`].
    pub fn clear(&mut self, key: &str, now_ms: i64) -> Result<Change, OrderError> {
        let k = self.find_for_change(key)?;
        self.clear_key(k, now_ms).ok_or_else(|| not_found(key))
    }

    /// Clears every active order, oldest first, one change (and `seq`) each.
    pub fn clear_all(&mut self, now_ms: i64) -> Vec<Change> {
        let keys: Vec<Key> = self.active.iter().copied().collect();
        keys.into_iter()
            .filter_map(|k| self.clear_key(k, now_ms))
            .collect()
    }

    /// The active orders, oldest first.
    pub fn active(&self) -> impl Iterator<Item = &Order> + '_ {
        self.active.iter().filter_map(|k| self.orders.get(k))
    }

    /// One active order, by name or uuid.
    ///
    /// # Errors
    ///
    /// [`OrderError::NotFound`] when there is no such active order, a
    /// cleared one included.
    pub fn active_order(&self, key: &str) -> Result<&Order, OrderError> {
        let order = match Address::of(key) {
            Address::Uuid(uuid) => self.by_uuid.get(&*uuid).and_then(|k| self.orders.get(k)),
            Address::Name(name) => self.active_names.get(name).and_then(|k| self.orders.get(k)),
        };
        match order {
            Some(order) if order.state.is_active() => Ok(order),
            Some(order) => Err(OrderError::NotFound(format!(
                "order {} is cleared, not active",
                order.uuid
            ))),
            None => Err(not_found(key)),
        }
    }

    /// Any order, active or cleared, by its (lowercase) uuid.
    pub fn get(&self, uuid: &str) -> Option<&Order> {
        self.by_uuid.get(uuid).and_then(|k| self.orders.get(k))
    }

    /// Every order (active and cleared) created in
    /// `[created_after_ms, created_before_ms)`, of the type and at the
    /// location asked for, oldest first, `offset` skipped, at most `limit`.
    /// Reads only the orders inside the date bounds.
    pub fn history(&self, q: &HistoryQuery) -> Vec<&Order> {
        self.created_in(q.created_after_ms, q.created_before_ms)
            .filter(|o| q.order_type.is_none_or(|t| o.order_type == t))
            .filter(|o| q.location.as_deref().is_none_or(|l| o.location == l))
            .skip(q.offset)
            .take(q.limit)
            .collect()
    }

    /// Statistics of the orders created in `[day_start_ms, day_end_ms)`
    /// (see [`Zone::day_bounds`]), against `target_secs`.
    pub fn statistics(
        &self,
        day_start_ms: i64,
        day_end_ms: i64,
        date: String,
        target_secs: u32,
    ) -> Statistics {
        let (mut orders, mut located, mut on_target, mut total_ms) = (0u64, 0u64, 0u64, 0u128);
        for order in self.created_in(Some(day_start_ms), Some(day_end_ms)) {
            orders += 1;
            let Some(at) = order.located_ms else { continue };
            located += 1;
            let ms = u128::try_from(i128::from(at) - i128::from(order.created_ms)).unwrap_or(0);
            total_ms += ms;
            // SPEC gap: whole seconds, rounded down, against the target.
            if ms / 1000 <= u128::from(target_secs) {
                on_target += 1;
            }
        }
        // SPEC gap: the mean of exact durations, rounded half up.
        let average_time_to_locate = match u128::from(located) {
            0 => 0,
            n => u64::try_from((total_ms + n * 500) / (n * 1000)).unwrap_or(u64::MAX),
        };
        Statistics {
            date,
            target_time: target_secs,
            orders,
            located,
            on_target,
            average_time_to_locate,
        }
    }

    /// Removes up to `max` cleared orders created before `created_before_ms`,
    /// oldest first, and returns their uuids (for the store to delete).
    /// Active orders are never purged, however old.
    pub fn purge(&mut self, created_before_ms: i64, max: usize) -> Vec<String> {
        let keys: Vec<Key> = self
            .cleared
            .range(..(created_before_ms, 0))
            .take(max)
            .copied()
            .collect();
        keys.into_iter()
            .filter_map(|k| {
                let order = self.take(k)?;
                self.by_uuid.remove(&order.uuid);
                Some(order.uuid)
            })
            .collect()
    }

    /// How many orders are active.
    pub fn len_active(&self) -> usize {
        self.active.len()
    }

    /// How many orders are kept, active and cleared.
    pub fn len_all(&self) -> usize {
        self.orders.len()
    }

    /// Orders created in `[after, before)` (either bound optional), oldest
    /// first, from the index (never a scan outside the bounds).
    fn created_in(&self, after: Option<i64>, before: Option<i64>) -> impl Iterator<Item = &Order> {
        let lo = after.map_or(Bound::Unbounded, |a| Bound::Included((a, 0)));
        let hi = before.map_or(Bound::Unbounded, |b| Bound::Excluded((b, 0)));
        // BTreeMap::range panics on an inverted range: such a range is empty.
        let empty = matches!((after, before), (Some(a), Some(b)) if a >= b);
        let range = if empty {
            None
        } else {
            Some(self.orders.range((lo, hi)))
        };
        range.into_iter().flatten().map(|(_, o)| o)
    }

    /// The key of the active order a change addresses.
    fn find_for_change(&self, key: &str) -> Result<Key, OrderError> {
        match Address::of(key) {
            Address::Uuid(uuid) => {
                let Some(&k) = self.by_uuid.get(&*uuid) else {
                    return Err(not_found(key));
                };
                match self.orders.get(&k) {
                    Some(order) if order.state.is_active() => Ok(k),
                    Some(order) => Err(OrderError::Conflict(format!(
                        "order {} is cleared and cannot be changed",
                        order.uuid
                    ))),
                    None => Err(not_found(key)),
                }
            }
            Address::Name(name) => self
                .active_names
                .get(name)
                .copied()
                .ok_or_else(|| not_found(key)),
        }
    }

    /// Clears the active order at `k` (None if there is none).
    fn clear_key(&mut self, k: Key, now_ms: i64) -> Option<Change> {
        let mut order = self.take(k)?;
        order.state = OrderState::Cleared;
        order.state_started_ms = now_ms;
        order.seq = self.take_seq();
        self.put(order.clone());
        Some(Change {
            kind: ChangeKind::Modified,
            order,
        })
    }

    /// The next `seq`, used up.
    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// A uuid v4 from `random`, stepped until no order has it.
    fn fresh_uuid(&self, random: u128) -> String {
        // SPEC gap: a repeat is stepped, not refused. The step changes the
        // low bytes, which the version and variant bits never touch, so the
        // first `len_all() + 1` steps give distinct uuids and one is free.
        let mut r = random;
        loop {
            let uuid = uuid::Builder::from_random_bytes(r.to_be_bytes())
                .into_uuid()
                .hyphenated()
                .to_string();
            if !self.by_uuid.contains_key(&uuid) {
                return uuid;
            }
            r = r.wrapping_add(1);
        }
    }

    /// Removes the order at `k` from every index but `by_uuid` (the caller
    /// either puts it back, which rewrites that entry, or removes it).
    fn take(&mut self, k: Key) -> Option<Order> {
        let order = self.orders.remove(&k)?;
        if order.state.is_active() {
            self.active.remove(&k);
            if self.active_names.get(&order.name) == Some(&k) {
                self.active_names.remove(&order.name);
            }
        } else {
            self.cleared.remove(&k);
        }
        Some(order)
    }

    /// Adds an order to every index, at its [`Order::key`].
    fn put(&mut self, order: Order) {
        let k = order.key();
        match self.by_uuid.get_mut(&order.uuid) {
            Some(slot) => *slot = k,
            None => {
                self.by_uuid.insert(order.uuid.clone(), k);
            }
        }
        if order.state.is_active() {
            self.active.insert(k);
            match self.active_names.get_mut(&order.name) {
                Some(slot) => *slot = k,
                None => {
                    self.active_names.insert(order.name.clone(), k);
                }
            }
        } else {
            self.cleared.insert(k);
        }
        self.orders.insert(k, order);
    }
}

/// The 404 for a key: by uuid or by name.
fn not_found(key: &str) -> OrderError {
    match Address::of(key) {
        Address::Uuid(uuid) => OrderError::NotFound(format!("no order has uuid {uuid}")),
        Address::Name(name) => {
            OrderError::NotFound(format!("no active order named {}", Echo(name)))
        }
    }
}
