//! Parsing a request head (httparse) into offsets, with every limit of
//! SPEC §0 checked. Sans-I/O: bytes in, a [`Head`] or "need more" out.

use std::ops::Range;

/// Largest request head (request line and headers): SPEC §0.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest request body: SPEC §0.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most header lines in one request. 64 is far beyond what any client sends
/// (curl sends 3–5, browsers ~15); more is answered 431 like an oversize head.
pub const MAX_HEADERS: usize = 64;

/// The request methods floorbell routes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD (answered like GET, without the body)
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// Anything else (answered 405 on a known path)
    Other,
}

/// What a parsed request head says, as offsets into the buffer it was parsed
/// from (so parsing allocates nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The method.
    pub method: Method,
    /// The path, without the query.
    pub path: Range<usize>,
    /// The query string, without the `?`.
    pub query: Option<Range<usize>>,
    /// Bytes of the head, the blank line included: the body starts here.
    pub head_len: usize,
    /// The `Content-Length`, 0 when absent.
    pub body_len: usize,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// The `token` header (SPEC §1.1).
    pub token: Option<Range<usize>>,
    /// The `Authorization` header.
    pub authorization: Option<Range<usize>>,
    /// `Upgrade: websocket`.
    pub upgrade_websocket: bool,
    /// `Connection` lists `upgrade`.
    pub connection_upgrade: bool,
    /// `Sec-WebSocket-Key`.
    pub ws_key: Option<Range<usize>>,
    /// `Sec-WebSocket-Version`.
    pub ws_version: Option<Range<usize>>,
}

/// A head that cannot be served. Each maps to one status (see
/// [`HeadError::status`]); the connection is closed after the answer, since
/// where the next request starts is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Over [`MAX_HEAD_BYTES`] or [`MAX_HEADERS`].
    TooLarge,
    /// Not HTTP/1.x.
    Malformed,
    /// A `Content-Length` that is not one number.
    BadContentLength,
    /// `Transfer-Encoding: chunked` (SPEC §0: decoded or refused; refused).
    Chunked,
    /// Another transfer coding.
    UnsupportedEncoding,
    /// Two `token` or two `Authorization` header lines: which one counts
    /// would be a guess (each is a single credential, RFC 9110 §11.6.2).
    DuplicateCredentials,
}

impl HeadError {
    /// The status code and message of the answer.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            HeadError::TooLarge => (
                431,
                "request header fields too large (limit 16 KiB, 64 headers)",
            ),
            HeadError::Malformed => (400, "malformed HTTP request"),
            HeadError::BadContentLength => (400, "invalid Content-Length"),
            HeadError::Chunked => (
                411,
                "chunked request bodies are not supported: send Content-Length",
            ),
            HeadError::UnsupportedEncoding => (501, "unsupported Transfer-Encoding"),
            HeadError::DuplicateCredentials => {
                (400, "more than one token or Authorization header: send one")
            }
        }
    }
}

fn offset(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    start..start + part.len()
}

/// A request target's path and query (after `?`). The absolute form
/// (`http://host:port/path?query`, RFC 9112 §3.2.2: a server must accept
/// it, and proxies send it) is routed by its path, as the origin form
/// `/path?query` would be; an empty path is `/` (the slash is borrowed from
/// the `//` after the scheme, so both stay slices of the request).
/// The path of a request target's bytes, as [`split_target`] finds it (the
/// bytes before any `?` when they are not UTF-8): the path of a request
/// that never parsed, for the shape of its error.
pub fn path_of_target(target: &[u8]) -> &[u8] {
    match std::str::from_utf8(target) {
        Ok(target) => split_target(target).0.as_bytes(),
        Err(_) => target.split(|&b| b == b'?').next().unwrap_or(b""),
    }
}

fn split_target(target: &str) -> (&str, Option<&str>) {
    // A byte search: `?` is ASCII, never inside a UTF-8 sequence, and the
    // target is a few dozen bytes (the char searcher's set-up costs more).
    let (path, query) = match target.bytes().position(|b| b == b'?') {
        Some(at) => (&target[..at], Some(&target[at + 1..])),
        None => (target, None),
    };
    let scheme = ["http://", "https://"].into_iter().find(|scheme| {
        path.get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
    });
    let Some(scheme) = scheme else {
        return (path, query);
    };
    let authority_and_path = &path[scheme.len()..];
    let path = match authority_and_path.find('/') {
        Some(slash) => &authority_and_path[slash..],
        None => &path[scheme.len() - 1..scheme.len()],
    };
    (path, query)
}

/// Parses the head at the start of `buf`. `Ok(None)`: incomplete, read more
/// (unless `buf` already holds [`MAX_HEAD_BYTES`], which is `TooLarge`).
///
/// # Errors
///
/// [`HeadError`] for a head that will never be served.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, HeadError> {
    // Uninitialized header slots: httparse fills only what it uses, so the
    // 64 × 32 bytes are not zeroed on every request.
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_HEAD_BYTES {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    if head_len > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let method = match req.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        _ => Method::Other,
    };
    let (path, query) = split_target(req.path.unwrap_or(""));
    let path = offset(buf, path.as_bytes());
    let query = query.map(|q| offset(buf, q.as_bytes()));
    let http11 = req.version == Some(1);
    let mut head = Head {
        method,
        path,
        query,
        head_len,
        body_len: 0,
        keep_alive: http11,
        expect_continue: false,
        token: None,
        authorization: None,
        upgrade_websocket: false,
        connection_upgrade: false,
        ws_key: None,
        ws_version: None,
    };
    let mut content_length: Option<usize> = None;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            // RFC 9110 §8.6: 1*DIGIT (usize's parser would take a `+`).
            let v = h.value.trim_ascii();
            if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                return Err(HeadError::BadContentLength);
            }
            let n: usize = std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or(HeadError::BadContentLength)?;
            // Two different lengths make the body's end ambiguous.
            if content_length.is_some_and(|c| c != n) {
                return Err(HeadError::BadContentLength);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let chunked = h
                .value
                .split(|&b| b == b',')
                .any(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            return Err(if chunked {
                HeadError::Chunked
            } else {
                HeadError::UnsupportedEncoding
            });
        } else if name.eq_ignore_ascii_case(b"connection") {
            for opt in h.value.split(|&b| b == b',') {
                let opt = opt.trim_ascii();
                if opt.eq_ignore_ascii_case(b"close") {
                    head.keep_alive = false;
                } else if opt.eq_ignore_ascii_case(b"keep-alive") {
                    head.keep_alive = true;
                } else if opt.eq_ignore_ascii_case(b"upgrade") {
                    head.connection_upgrade = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            // RFC 9110 §10.1.1: an HTTP/1.0 request's expectation is ignored.
            head.expect_continue =
                http11 && h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(b"token") {
            if head.token.replace(offset(buf, h.value)).is_some() {
                return Err(HeadError::DuplicateCredentials);
            }
        } else if name.eq_ignore_ascii_case(b"authorization") {
            if head.authorization.replace(offset(buf, h.value)).is_some() {
                return Err(HeadError::DuplicateCredentials);
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            head.upgrade_websocket = h
                .value
                .split(|&b| b == b',')
                .any(|p| p.trim_ascii().eq_ignore_ascii_case(b"websocket"));
        } else if name.eq_ignore_ascii_case(b"sec-websocket-key") {
            head.ws_key = Some(offset(buf, h.value.trim_ascii()));
        } else if name.eq_ignore_ascii_case(b"sec-websocket-version") {
            head.ws_version = Some(offset(buf, h.value.trim_ascii()));
        }
    }
    head.body_len = content_length.unwrap_or(0);
    Ok(Some(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_absolute_form_is_routed_by_its_path() {
        for (target, path, query) in [
            (
                "/api/v4/events?hash=none",
                "/api/v4/events",
                Some("hash=none"),
            ),
            (
                "http://127.0.0.1:8080/api/v4/events?hash=none",
                "/api/v4/events",
                Some("hash=none"),
            ),
            ("HTTPS://floor.local/api/v4/tables", "/api/v4/tables", None),
            ("http://floor.local", "/", None),
            ("http://floor.local?x=1", "/", Some("x=1")),
            ("httpx://floor.local/a", "httpx://floor.local/a", None),
            ("http:/a", "http:/a", None),
            ("", "", None),
        ] {
            assert_eq!(split_target(target), (path, query), "{target}");
        }
        let buf = b"GET http://h:1/api/v4/events?hash=none HTTP/1.1\r\nHost: h\r\n\r\n";
        let h = parse_head(buf).unwrap().unwrap();
        assert_eq!(&buf[h.path.clone()], b"/api/v4/events");
        assert_eq!(&buf[h.query.clone().unwrap()], b"hash=none");
        let buf = b"GET http://h HTTP/1.1\r\n\r\n";
        let h = parse_head(buf).unwrap().unwrap();
        assert_eq!(&buf[h.path.clone()], b"/");
    }

    #[test]
    fn a_poll_request() {
        let buf =
            b"GET /api/v4/events?hash=0xd8833dd3 HTTP/1.1\r\nHost: x\r\ntoken: abc\r\n\r\nNEXT";
        let h = parse_head(buf).unwrap().unwrap();
        assert_eq!(h.method, Method::Get);
        assert_eq!(&buf[h.path.clone()], b"/api/v4/events");
        assert_eq!(&buf[h.query.clone().unwrap()], b"hash=0xd8833dd3");
        assert_eq!(&buf[h.token.clone().unwrap()], b"abc");
        assert_eq!(&buf[h.head_len..], b"NEXT");
        assert!(h.keep_alive);
    }

    /// A second credential header is refused, whatever its value: the last
    /// one used to win, so a wrong token before a right one passed.
    #[test]
    fn a_second_token_or_authorization_header_is_refused() {
        for head in [
            &b"GET /api/v4/events?hash=none HTTP/1.1\r\ntoken: nope\r\ntoken: abc\r\n\r\n"[..],
            b"GET /api/v4/events?hash=none HTTP/1.1\r\ntoken: abc\r\nTOKEN: abc\r\n\r\n",
            b"POST /api/v4/events HTTP/1.1\r\nAuthorization: Bearer nope\r\nauthorization: Bearer a\r\n\r\n",
        ] {
            assert_eq!(
                parse_head(head),
                Err(HeadError::DuplicateCredentials),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
        // One of each is two different credentials, not a duplicate.
        let h = parse_head(b"GET / HTTP/1.1\r\ntoken: t\r\nAuthorization: Bearer a\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.token.is_some() && h.authorization.is_some());
    }

    #[test]
    fn the_path_of_a_target_that_never_parsed() {
        for (target, path) in [
            (&b"/api/v4/events?hash=x"[..], &b"/api/v4/events"[..]),
            (b"http://h:1/api/v4/events?hash=x", b"/api/v4/events"),
            (b"HTTP://h", b"/"),
            (b"/a\xff?b", b"/a\xff"),
            (b"", b""),
        ] {
            assert_eq!(path_of_target(target), path);
        }
    }

    #[test]
    fn partial_heads_ask_for_more_until_the_limit() {
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost:"), Ok(None));
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD_BYTES, b'a');
        assert_eq!(parse_head(&big), Err(HeadError::TooLarge));
    }

    #[test]
    fn bodies_and_connection_options() {
        let h =
            parse_head(b"POST /x HTTP/1.0\r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\n")
                .unwrap()
                .unwrap();
        // RFC 9110 §10.1.1: HTTP/1.0's expectation is ignored.
        assert_eq!(
            (h.body_len, h.keep_alive, h.expect_continue),
            (12, false, false)
        );
        let h =
            parse_head(b"POST /x HTTP/1.1\r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(h.expect_continue);
        let h = parse_head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h = parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
    }

    #[test]
    fn refusals() {
        let p = |s: &[u8]| parse_head(s).unwrap_err();
        assert_eq!(
            p(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HeadError::Chunked
        );
        assert_eq!(
            p(b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            HeadError::UnsupportedEncoding
        );
        assert_eq!(
            p(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            HeadError::BadContentLength
        );
        assert_eq!(
            p(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            HeadError::BadContentLength
        );
        assert_eq!(p(b"GARBAGE\r\n\r\n"), HeadError::Malformed);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(p(&many), HeadError::TooLarge);
    }

    proptest::proptest! {
        /// Hostile bytes never panic, and every offset a head reports lies
        /// inside the buffer it was parsed from.
        #[test]
        fn any_bytes_parse_or_fail_cleanly(prefix in proptest::sample::select(vec![
            &b""[..], b"GET / HTTP/1.1\r\n", b"POST /api/v4/events HTTP/1.1\r\nContent-Length: ",
        ]), tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut buf = prefix.to_vec();
            buf.extend_from_slice(&tail);
            buf.extend_from_slice(b"\r\n\r\n");
            if let Ok(Some(h)) = parse_head(&buf) {
                proptest::prop_assert!(h.head_len <= buf.len());
                for r in [Some(h.path), h.query, h.token, h.authorization, h.ws_key, h.ws_version].into_iter().flatten() {
                    proptest::prop_assert!(r.end <= buf.len());
                }
            }
        }
    }
}
