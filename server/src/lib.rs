//! floorbell's server: the engine (store writer thread and live state), the
//! mio reactors that speak HTTP/1.1, and the configuration of `floorbell
//! serve`. The `floorbell` binary (`main.rs`) is only the command line around
//! this library; the C ABI runs the same engine and reactors.
//!
//! * [`config`] — flags, the TOML file, defaults, validation.
//! * [`engine`] — one per data directory: store writer (group commit), event
//!   queue, tables, tokens.
//! * [`reactor`] — one mio event loop; connections, timeouts, back-pressure.
//! * [`server`] — the listening socket and the event loop's threads.
//! * [`http`] — request heads (httparse) and responses, sans-I/O.
//! * [`api`] — routing and the SPEC §1 handlers, sans-I/O.
//! * [`webhooks`] — SPEC §3.6's delivery threads around core's outbox.
//! * [`discovery`] — SPEC §3.7's DNS-SD announcement (mdns-sd's own thread).
//! * [`pages`] — the built-in web pages, embedded in the binary.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod config;
pub mod courtesy;
pub mod discovery;
pub mod engine;
pub mod fanout;
pub mod fdlimit;
pub mod http;
pub mod local;
pub mod pages;
pub mod reactor;
pub mod server;
pub mod sockio;
pub mod webhooks;
pub mod ws;
