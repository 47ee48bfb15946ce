//! Writing an HTTP/1.1 response into a connection's output buffer, and the two
//! JSON error shapes of the spec.

use std::time::SystemTime;

use bytes::Bytes;

/// The reason phrase of every status floorbell sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// The `Date` header's value, formatted once per second per reactor
/// (RFC 9110 §6.6.1 asks an origin server with a clock to send it).
pub struct DateCache {
    second: u64,
    text: [u8; 29],
}

impl Default for DateCache {
    fn default() -> Self {
        let mut d = DateCache {
            second: u64::MAX,
            text: [b' '; 29],
        };
        d.refresh(SystemTime::now());
        d
    }
}

impl DateCache {
    /// Re-formats when the second has changed.
    pub fn refresh(&mut self, now: SystemTime) {
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if second != self.second {
            self.second = second;
            let s = httpdate::fmt_http_date(now);
            if s.len() == self.text.len() {
                self.text.copy_from_slice(s.as_bytes());
            }
        }
    }

    /// The current value.
    pub fn get(&self) -> &[u8] {
        &self.text
    }
}

/// Appends a status line and headers for a JSON body of `body_len` bytes.
pub fn write_head(out: &mut Vec<u8>, status: u16, body_len: usize, close: bool, date: &DateCache) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(date.get());
    if close {
        out.extend_from_slice(b"\r\nConnection: close");
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// Appends a whole response. With `head_only` (a HEAD request) the body is
/// left out but its length is announced.
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    body: &[u8],
    close: bool,
    head_only: bool,
    date: &DateCache,
) {
    write_head(out, status, body.len(), close, date);
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// Which JSON shape an error takes: SPEC §1's `{"result":false,"error":…}` on
/// `/api/v4/` paths, else `{"status":N,"message":…}` (the shape of §3, used
/// for every path outside §1). SPEC gap: §0 only says "JSON with a
/// human-readable message".
pub fn error_body(path: &[u8], status: u16, message: &str) -> Vec<u8> {
    if path.starts_with(b"/api/v4/") || path == b"/api/v4" {
        floorbell_core::qr::error_json(message)
    } else {
        let mut out = b"{\"status\":".to_vec();
        out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
        out.extend_from_slice(b",\"message\":");
        floorbell_core::qr::json::write_str(&mut out, message);
        out.push(b'}');
        out
    }
}

/// Writes a poll answer: the envelope around the shared event bytes.
pub fn write_events(
    out: &mut Vec<u8>,
    events: &[Bytes],
    close: bool,
    head_only: bool,
    date: &DateCache,
) {
    use floorbell_core::qr::{UPDATES_PREFIX, UPDATES_SUFFIX};
    let body_len = UPDATES_PREFIX.len()
        + UPDATES_SUFFIX.len()
        + events.iter().map(|e| e.len()).sum::<usize>()
        + events.len().saturating_sub(1);
    out.reserve(body_len + 160);
    write_head(out, 200, body_len, close, date);
    if head_only {
        return;
    }
    out.extend_from_slice(UPDATES_PREFIX);
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e);
    }
    out.extend_from_slice(UPDATES_SUFFIX);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_bytes() {
        let mut date = DateCache::default();
        date.refresh(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(784111777));
        let mut out = Vec::new();
        write_response(&mut out, 201, b"{}", false, false, &date);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n{}"
        );
        let mut out = Vec::new();
        write_response(&mut out, 404, b"{}", true, true, &date);
        assert!(out.ends_with(b"Connection: close\r\n\r\n"));
    }

    #[test]
    fn error_shapes() {
        assert_eq!(
            error_body(b"/api/v4/x", 404, "not found"),
            br#"{"result":false,"error":"not found"}"#
        );
        assert_eq!(
            error_body(b"/nope", 404, "not found"),
            br#"{"status":404,"message":"not found"}"#
        );
    }
}
