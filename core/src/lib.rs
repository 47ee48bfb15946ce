//! floorbell's core: the venue's live state, with no sockets, no threads of
//! its own and no clock reads (every time is a parameter).
//!
//! * [`ring`] — the hashed event queue of SPEC §1: a lock-free ring that one
//!   publisher appends to and any thread reads, each event serialized once as
//!   shared `Bytes`, hashes that decode to ring positions in O(1).
//! * [`access`] — SPEC §3.2's access tokens: the button window, one token
//!   per press, hashes only, constant-time checks, uses kept in memory.
//! * [`qr`] — SPEC §1's wire format: validating a published event
//!   (one checking pass, `qr::fields`), serializing it once, registered
//!   tables, the exact answers.
//! * [`tickets`] — SPEC §2's service-ticket board: a sans-I/O state machine
//!   that takes staff, kiosk and display frames and returns the frames to
//!   send (each serialized once) and the records to persist first.
//! * [`orders`] — SPEC §3.3's order tracker: a sans-I/O state machine for
//!   guests' trackers from start to clear (active set, history, statistics,
//!   `seq`), the gateway's time zone and local-naive timestamps, and the
//!   exact JSON of the order API and its WebSocket messages.
//! * [`webhooks`] — SPEC §3.6's webhook outbox: a sans-I/O state machine
//!   that says which change to POST to which receiver when (one attempt in
//!   flight per receiver, `seq` order per receiver, exponential backoff,
//!   dropped after 24 h), the records to persist, receiver-URL validation
//!   and the `X-Floorbell-Signature` HMAC. No HTTP client.
//! * [`store`] — the durable store (SQLite in WAL mode): the records, one
//!   transaction per group commit, schema versions, the data-directory lock.
//!
//! The server crate wraps these in an engine with a writer thread and mio
//! reactors; the ffi crate exposes the same engine to C.

#![deny(missing_docs)]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod access;
pub mod echo;
pub mod json_object;
pub mod orders;
pub mod qr;
pub mod ring;
pub mod store;
pub mod tickets;
pub mod webhooks;
