//! The webhook outbox of SPEC §3.6 (seed `table-tracker-webhook.txt`): which
//! order change to POST to which receiver, when, and how it is signed.
//!
//! [`Outbox`] is a sans-I/O state machine. It opens no socket, starts no
//! thread, reads no clock and draws no random number: every time is a
//! `now_ms` argument (ms since the Unix epoch) and the retry jitter comes from
//! a seed the caller gives. The shell feeds it what happened —
//! a registration ([`Outbox::register`], [`Outbox::unregister`]), an order
//! change ([`Outbox::enqueue`]), the outcome of a POST
//! ([`Outbox::on_result`]) — and asks it what to do now
//! ([`Outbox::poll_attempts`]) and when to ask next
//! ([`Outbox::next_deadline`]). Each call returns an [`Output`]: the
//! [`WebhookRecord`]s to persist, the [`Attempt`]s to start (only from
//! `poll_attempts`) and the deliveries given up on, each with a reason fit
//! for the log ([`Dropped`]).
//!
//! # Delivery rules
//!
//! * Each change is one delivery per receiver registered when it was
//!   enqueued, with a delivery id (a `u64` counting up from 0, never reused,
//!   across restarts too) that every retry repeats in
//!   [`DELIVERY_HEADER`].
//! * Per receiver, strictly in enqueue (`seq`) order: only a receiver's
//!   oldest pending delivery is ever attempted, and at most one attempt per
//!   receiver is in flight. Receivers never wait for each other.
//! * A failure (the shell's word: no answer in time, or not 2xx) is retried
//!   after an exponential backoff with jitter ([`backoff_delay_ms`]): base
//!   [`BACKOFF_BASE_MS`], doubling, capped at [`BACKOFF_MAX_MS`].
//! * A delivery enqueued [`MAX_DELIVERY_AGE_MS`] (24 h) ago or more is never
//!   attempted again: it is dropped when it is next due, which its retry
//!   schedule never puts later than its 24 h mark.
//! * Every [`Attempt`] carries the key in force when it was polled, so a
//!   re-registration's new key signs the next attempt (SPEC §3.6).
//!
//! # Durability contract
//!
//! The caller persists an [`Output`]'s `records` in order, in the same group
//! commit as the change that caused them (an [`Outbox::enqueue`]'s records go
//! with the order change they carry), and starts its `attempts` only after
//! that commit. Records are idempotent upserts and deletes, so replaying
//! them in order gives the persisted state, which [`Outbox::restore`] turns
//! back into an outbox. The shell must report every attempt it was given
//! exactly once through [`Outbox::on_result`] (a timeout is a failure);
//! until then that receiver gets no other attempt. Nothing is in flight
//! after a restore: an attempt interrupted by a crash is made again, with the
//! same delivery id (delivery is at least once).
//!
//! # Decisions where SPEC §3.6 is silent
//!
//! Each is marked `SPEC gap:` where it is implemented.
//!
//! * At most [`DEFAULT_MAX_RECEIVERS`] (64) registered URLs; another is
//!   refused ([`RegisterError::TooMany`], a 409 in the shell). Re-registering
//!   a known URL always succeeds: it replaces the key and registration time
//!   and keeps the URL's pending deliveries.
//! * At most [`DEFAULT_MAX_PENDING_PER_RECEIVER`] (100,000) deliveries wait
//!   behind a receiver's oldest one (the one in flight or next to go); past
//!   that the oldest of those waiting is dropped ([`DropReason::Overflow`]),
//!   so a dead receiver costs bounded memory and disk within its 24 h. The
//!   oldest one itself leaves only by delivery or expiry.
//! * URLs are compared as text, exactly as registered (no case folding, no
//!   default-port removal): `DELETE /api/v2/register` must name the same text.
//!   [`parse_url`] decides what may be registered.
//! * Jitter keeps the upper half of the backoff window: the delay after the
//!   n-th failure is uniform in `[b/2, b]` with `b = min(1 s · 2^(n-1), 10
//!   min)`, so delays never exceed the cap and do not shrink from one failure
//!   to the next before it.
//! * An attempt number and a backoff step survive a restart (records carry
//!   them); the error text of the last failure does not (it only enriches
//!   the log line of a drop).
//! * Unregistering discards the URL's pending deliveries silently (the
//!   caller asked for it); a result that arrives afterwards for an attempt
//!   made before is ignored.
//! * Pending deliveries found at restore time for a URL that is no longer
//!   registered are dropped ([`DropReason::Orphaned`]).

mod outbox;
mod sign;
mod url;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::fmt;

use bytes::Bytes;

pub use outbox::{backoff_bounds_ms, backoff_delay_ms, Outbox};
pub use sign::{registration_key, sign, CONTENT_TYPE, DELIVERY_HEADER, SIGNATURE_HEADER};
pub use url::{parse_url, Scheme, UrlError, WebhookUrl, MAX_URL_LEN};

/// The first retry's backoff window (SPEC gap: §3.6 says "exponential
/// backoff" only; 1 s, doubling per failure, is the usual start).
pub const BACKOFF_BASE_MS: i64 = 1_000;
/// The longest wait between two attempts of one delivery. SPEC gap: 10 min
/// keeps a receiver that comes back within a few minutes of its outage, and
/// still gives about 190 attempts in the 24 h window.
pub const BACKOFF_MAX_MS: i64 = 10 * 60 * 1_000;
/// How long a delivery is retried, from its enqueue (SPEC §3.6: "for up to
/// 24 h").
pub const MAX_DELIVERY_AGE_MS: i64 = 24 * 60 * 60 * 1_000;
/// Default for [`OutboxConfig::max_receivers`]. SPEC gap: a venue has a few
/// integrations; 64 bounds the fan-out work per change and the threads or
/// connections the shell spends on receivers.
pub const DEFAULT_MAX_RECEIVERS: usize = 64;
/// Default for [`OutboxConfig::max_pending_per_receiver`]. SPEC gap: a busy
/// venue makes a few thousand changes a day; 100,000 is a day's worth with a
/// wide margin, and at about 1 KiB per delivery (body, record) caps a dead
/// receiver near 100 MiB.
pub const DEFAULT_MAX_PENDING_PER_RECEIVER: usize = 100_000;
/// Longest error text kept for a drop's log line; longer text is cut.
pub const MAX_ERROR_LEN: usize = 256;

/// The outbox's limits, with SPEC-gap defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxConfig {
    /// Most URLs registered at once ([`DEFAULT_MAX_RECEIVERS`]).
    pub max_receivers: usize,
    /// Most deliveries waiting behind a receiver's oldest pending one
    /// ([`DEFAULT_MAX_PENDING_PER_RECEIVER`]); at least 1 is used.
    pub max_pending_per_receiver: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_receivers: DEFAULT_MAX_RECEIVERS,
            max_pending_per_receiver: DEFAULT_MAX_PENDING_PER_RECEIVER,
        }
    }
}

/// A registered receiver (SPEC §3.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The URL exactly as registered; the receiver's identity.
    pub url: String,
    /// SHA-256 of the registering token ([`registration_key`]): the HMAC key.
    pub key: [u8; 32],
    /// When it was (last) registered, ms since the epoch.
    pub registered_ms: i64,
}

/// A delivery not yet made, as persisted and as handed back to
/// [`Outbox::restore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelivery {
    /// Unique across receivers and restarts; sent as [`DELIVERY_HEADER`].
    pub id: u64,
    /// The receiver's URL (its registration's key).
    pub url: String,
    /// The order change's `seq` (SPEC §3.3); orders a receiver's deliveries.
    pub seq: u64,
    /// The JSON to POST, as the WebSocket sends it.
    pub body: Vec<u8>,
    /// When the change was enqueued, ms since the epoch: the 24 h start.
    pub enqueued_ms: i64,
    /// Failed attempts so far (the next attempt is number `attempts + 1`).
    pub attempts: u32,
    /// Not attempted before this time, ms since the epoch.
    pub next_attempt_ms: i64,
}

/// What the store must persist, in order. Plain data; each is an upsert or
/// a delete, so replaying a sequence of them (last one wins) gives the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookRecord {
    /// Insert or replace the registration of this URL.
    RegistrationPut(Registration),
    /// Delete the registration of this URL **and every pending delivery to
    /// it** (one record, not one per delivery: there can be 100,000).
    RegistrationDeleted {
        /// The URL.
        url: String,
    },
    /// Insert a pending delivery.
    DeliveryPut(PendingDelivery),
    /// Update a pending delivery after a failed attempt (no-op if that id
    /// is gone).
    DeliveryRescheduled {
        /// The delivery.
        id: u64,
        /// Its new [`PendingDelivery::attempts`].
        attempts: u32,
        /// Its new [`PendingDelivery::next_attempt_ms`].
        next_attempt_ms: i64,
    },
    /// Delete a pending delivery: delivered or dropped (no-op if gone).
    DeliveryDeleted {
        /// The delivery.
        id: u64,
    },
    /// Ids below this are used: hand it back to [`Outbox::restore`] as
    /// `next_delivery_id` (the only way to know it once every delivery is
    /// deleted).
    NextDeliveryId(u64),
}

/// One POST to make now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The receiver's URL, as registered (take it apart with [`parse_url`]).
    pub url: String,
    /// The delivery id: send it as [`DELIVERY_HEADER`], report the outcome to
    /// [`Outbox::on_result`] with it.
    pub delivery_id: u64,
    /// The change's `seq`.
    pub seq: u64,
    /// The JSON to POST (`Content-Type: application/json`).
    pub body: Bytes,
    /// 1 for the first attempt of this delivery, 2 for the first retry, …
    pub attempt: u32,
    /// The receiver's key when this attempt was polled (SPEC §3.6: signed
    /// with the key in force then).
    pub key: [u8; 32],
}

impl Attempt {
    /// The [`SIGNATURE_HEADER`] value for sending this attempt at
    /// `unix_secs`.
    pub fn signature(&self, unix_secs: i64) -> String {
        sign(&self.key, unix_secs, &self.body)
    }
}

/// A delivery given up on: one line for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The receiver's URL.
    pub url: String,
    /// The delivery.
    pub delivery_id: u64,
    /// The change it carried.
    pub seq: u64,
    /// Attempts that failed.
    pub attempts: u32,
    /// Why.
    pub reason: DropReason,
}

/// Why a delivery was given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// Not delivered within [`MAX_DELIVERY_AGE_MS`] of its enqueue.
    Expired {
        /// The last failure's error text, if it failed since the last restart.
        last_error: Option<String>,
    },
    /// The receiver had more than this many deliveries waiting.
    Overflow {
        /// [`OutboxConfig::max_pending_per_receiver`].
        limit: usize,
    },
    /// Found at restore time for a URL no longer registered.
    Orphaned,
}

/// `url` as a log line may show it: without its query, fragment and user
/// information, where receivers often carry a secret of their own
/// (`https://hooks.example/in?key=…`).
pub fn loggable_url(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    match url[after_scheme..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..after_scheme], &url[after_scheme + at + 1..]),
        None => url.to_owned(),
    }
}

/// `text` (an HTTP client's error about `url`) with `url` as
/// [`loggable_url`] shows it, and without the URL's query, fragment and user
/// information wherever they stand: the client may print the URL rewritten
/// (`http://h?k=s` as `http://h/?k=s`), which a plain replacement misses.
pub fn scrub_url(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &loggable_url(url));
    if let Some(i) = url.find(['?', '#']) {
        if url.len() - i > 1 {
            out = out.replace(&url[i..], "");
        }
    }
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let authority = &url[after_scheme..];
    let authority = &authority[..authority.find(['/', '?', '#']).unwrap_or(authority.len())];
    if let Some(at) = authority.rfind('@') {
        out = out.replace(&authority[..=at], "");
    }
    out
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = loggable_url(&self.url);
        write!(
            f,
            "webhook delivery {} (seq {}) to {} dropped after {} failed attempt{}: ",
            self.delivery_id,
            self.seq,
            url,
            self.attempts,
            if self.attempts == 1 { "" } else { "s" }
        )?;
        match &self.reason {
            DropReason::Expired { last_error } => {
                f.write_str("not delivered within 24 h of the change")?;
                match last_error {
                    // The HTTP client's error may quote the whole URL.
                    Some(e) => write!(f, " (last error: {})", scrub_url(e, &self.url)),
                    None => Ok(()),
                }
            }
            DropReason::Overflow { limit } => write!(
                f,
                "the receiver has more than {limit} deliveries waiting; the oldest goes"
            ),
            DropReason::Orphaned => f.write_str("its receiver is no longer registered"),
        }
    }
}

/// What one call produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Records to persist, in order, before any attempt is started.
    pub records: Vec<WebhookRecord>,
    /// POSTs to start now (filled by [`Outbox::poll_attempts`] only).
    pub attempts: Vec<Attempt>,
    /// Deliveries given up on, to log (their deletion is in `records`).
    pub dropped: Vec<Dropped>,
}

impl Output {
    /// Nothing to persist, start or log.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.attempts.is_empty() && self.dropped.is_empty()
    }
}

/// Why a registration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The URL is not one [`parse_url`] accepts (400).
    #[error(transparent)]
    InvalidUrl(#[from] UrlError),
    /// [`OutboxConfig::max_receivers`] URLs are registered already (409).
    #[error("too many webhook receivers ({limit}); unregister one first")]
    TooMany {
        /// The limit.
        limit: usize,
    },
}

/// [`Outbox::unregister`] of a URL that is not registered (404).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this URL is not registered")]
pub struct NotRegistered;
