//! HTTP/1.1 for the reactor: [`request`] parses heads (httparse) with the
//! limits of SPEC §0, [`response`] writes answers and the JSON error shapes.
//! Neither touches a socket.

pub mod request;
pub mod response;

pub use request::{
    parse_head, Head, HeadError, Method, MAX_BODY_BYTES, MAX_HEADERS, MAX_HEAD_BYTES,
};
pub use response::{
    error_body, write_events, write_not_allowed, write_response, DateCache, PollEvents,
    StreamBudget, StreamedEvents, MAX_STREAMED_BYTES, MIN_STREAM_RATE,
};
