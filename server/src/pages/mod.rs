//! The built-in web pages: `/` (index), `/display` (the board of tables),
//! `/staff` (the staff console), `/kiosk` (take a ticket) and `/orders` (the
//! live order board), with their scripts and stylesheet under `/assets/`.
//!
//! Everything is embedded in the binary (`include_str!`/`include_bytes!`):
//! nothing to deploy, no CDN, no request leaves the server's origin (the
//! pages' `Content-Security-Policy` enforces that). The pages speak the same
//! public protocols as any other client (SPEC §2 over `/ws/…`, §3 over
//! `/api/v2/…`); this module only serves files.
//!
//! A page is its template with three markers filled in per request:
//! `{{TABLES}}` (`--tables`, so the display and the console draw the right
//! tables without another round trip), `{{VERSION}}` and `{{BUILD}}` (a hash
//! of every embedded asset). Pages link their assets as
//! `/assets/NAME?v=BUILD`: such a request is cached for a year
//! (`immutable`), since a new binary links new URLs; pages, and assets asked
//! for without the current `v`, are `no-cache`, so a browser revalidates
//! them with `If-None-Match` and gets a 304 while they are unchanged. Every
//! answer has a strong `ETag` (a 64-bit FNV-1a of the bytes sent).

use std::fmt::Write as _;
use std::sync::OnceLock;

use crate::api::{error, Action, Body};
use crate::engine::Engine;
use crate::http::{DateCache, Head, MAX_HEADERS};

/// One embedded asset.
struct File {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// The files under `/assets/`.
const FILES: &[File] = &[
    File {
        name: "floorbell.css",
        content_type: CSS,
        bytes: include_bytes!("assets/floorbell.css"),
    },
    File {
        name: "common.js",
        content_type: JS,
        bytes: include_bytes!("assets/common.js"),
    },
    File {
        name: "index.js",
        content_type: JS,
        bytes: include_bytes!("assets/index.js"),
    },
    File {
        name: "display.js",
        content_type: JS,
        bytes: include_bytes!("assets/display.js"),
    },
    File {
        name: "staff.js",
        content_type: JS,
        bytes: include_bytes!("assets/staff.js"),
    },
    File {
        name: "kiosk.js",
        content_type: JS,
        bytes: include_bytes!("assets/kiosk.js"),
    },
    File {
        name: "orders.js",
        content_type: JS,
        bytes: include_bytes!("assets/orders.js"),
    },
    File {
        name: "icon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("assets/icon.svg"),
    },
];

/// The pages: path and template.
const PAGES: &[(&[u8], &str)] = &[
    (b"/", include_str!("assets/index.html")),
    (b"/display", include_str!("assets/display.html")),
    (b"/staff", include_str!("assets/staff.html")),
    (b"/kiosk", include_str!("assets/kiosk.html")),
    (b"/orders", include_str!("assets/orders.html")),
];

const ASSET_PREFIX: &[u8] = b"/assets/";

/// Pages may load scripts, styles and images from their own origin and talk
/// to it (HTTP and WebSocket), nothing else; no inline script or style.
/// `connect-src` is completed per request (see [`csp`]).
const CSP_BEFORE_CONNECT: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'";
const CSP_AFTER_CONNECT: &str = "; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The page's `Content-Security-Policy`. CSP Level 3 lets `'self'` cover
/// `ws:`/`wss:` to the page's own host, but browsers from before it (Safari
/// before 16, the iPads and TVs kiosks and displays run on) refuse the
/// pages' WebSockets under `'self'` alone: the request's `Host` is named as
/// well, when it is a plain `host[:port]` (nothing else is copied into the
/// header).
fn csp(host: Option<&[u8]>) -> String {
    let mut out = String::from(CSP_BEFORE_CONNECT);
    if let Some(host) = host.filter(|h| is_plain_host(h)) {
        // Checked ASCII just above.
        let host = std::str::from_utf8(host).unwrap_or_default();
        let _ = write!(out, " ws://{host} wss://{host}");
    }
    out.push_str(CSP_AFTER_CONNECT);
    out
}

/// A `Host` value safe to repeat in a header: a name, an IPv4 address or a
/// bracketed IPv6 address, and an optional port.
fn is_plain_host(host: &[u8]) -> bool {
    !host.is_empty()
        && host.len() <= 261
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

const NO_CACHE: &str = "no-cache";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// What the reactor writes for a page or asset request.
#[derive(Debug)]
pub struct Asset {
    /// 200, or 304 when the client's copy is current.
    pub status: u16,
    /// `Content-Type` (not sent with a 304).
    pub content_type: &'static str,
    /// `Cache-Control`.
    pub cache_control: &'static str,
    /// The strong `ETag`, quoted.
    pub etag: String,
    /// A page's `Content-Security-Policy` (assets have none).
    pub csp: Option<String>,
    /// The bytes (empty for a 304).
    pub body: Body,
}

/// Whether `path` is one of the pages or assets (routing: GET and HEAD are
/// served, other methods get 405; any other path is a 404).
pub fn is_page_path(path: &[u8]) -> bool {
    match path.strip_prefix(ASSET_PREFIX) {
        Some(name) => FILES.iter().any(|f| f.name.as_bytes() == name),
        None => PAGES.iter().any(|(p, _)| *p == path),
    }
}

/// 64-bit FNV-1a: a fingerprint for `ETag`s and the build tag, not a MAC.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

fn quoted(hash: u64) -> String {
    format!("\"{hash:016x}\"")
}

/// The hash of every embedded file and template: the `v` of asset URLs.
fn build_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let mut parts: Vec<&[u8]> = FILES.iter().map(|f| f.bytes).collect();
        parts.extend(PAGES.iter().map(|(_, t)| t.as_bytes()));
        format!("{:012x}", fnv1a(&parts) >> 16)
    })
}

/// The `ETag` of each file in [`FILES`], computed once.
fn file_etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| FILES.iter().map(|f| quoted(fnv1a(&[f.bytes]))).collect())
}

/// Fills a template's markers.
fn render(template: &str, tables: u32) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let (value, len) = if after.starts_with("{{TABLES}}") {
            let _ = write!(out, "{tables}");
            ("", "{{TABLES}}".len())
        } else if after.starts_with("{{VERSION}}") {
            (env!("CARGO_PKG_VERSION"), "{{VERSION}}".len())
        } else if after.starts_with("{{BUILD}}") {
            (build_tag(), "{{BUILD}}".len())
        } else {
            ("{{", 2)
        };
        out.push_str(value);
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// The values of every `name` header line of a raw request head, parsed
/// again with httparse: pages are not the hot path, so the reactor's parse
/// keeps only what every request needs.
fn header_values<'a>(head_bytes: &'a [u8], name: &str) -> Vec<&'a [u8]> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    if request.parse(head_bytes).is_err() {
        return Vec::new();
    }
    request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.trim_ascii())
        .collect()
}

/// RFC 9110 §13.1.2: `*`, or a list of entity tags compared weakly.
fn matches(if_none_match: &[u8], etag: &str) -> bool {
    if_none_match.split(|&b| b == b',').any(|t| {
        let t = t.trim_ascii();
        t == b"*" || t.strip_prefix(b"W/").unwrap_or(t) == etag.as_bytes()
    })
}

/// Answers a GET or HEAD of a page or an asset. `head_bytes` is the raw
/// request head (for `If-None-Match`).
pub fn serve(engine: &Engine, head: &Head, head_bytes: &[u8], path: &[u8]) -> Action {
    let (content_type, cache_control, csp, etag, body) =
        if let Some(name) = path.strip_prefix(ASSET_PREFIX) {
            let Some(i) = FILES.iter().position(|f| f.name.as_bytes() == name) else {
                return error(404, path, "no such asset");
            };
            let query = head.query.as_ref().map(|r| &head_bytes[r.clone()]);
            let current = query
                .and_then(|q| q.strip_prefix(b"v="))
                .is_some_and(|v| v == build_tag().as_bytes());
            let cache = if current { IMMUTABLE } else { NO_CACHE };
            let file = &FILES[i];
            let etag = file_etags()[i].clone();
            (
                file.content_type,
                cache,
                None,
                etag,
                Body::Static(file.bytes),
            )
        } else {
            let Some((_, template)) = PAGES.iter().find(|(p, _)| *p == path) else {
                return error(404, path, "no such page");
            };
            let html = render(template, engine.config().tables).into_bytes();
            let etag = quoted(fnv1a(&[&html]));
            let host = header_values(head_bytes, "host").first().copied();
            (HTML, NO_CACHE, Some(csp(host)), etag, Body::Owned(html))
        };
    let not_modified = header_values(head_bytes, "if-none-match")
        .iter()
        .any(|v| matches(v, &etag));
    Action::Asset(Asset {
        status: if not_modified { 304 } else { 200 },
        content_type,
        cache_control,
        etag,
        csp,
        body: if not_modified {
            Body::Static(b"")
        } else {
            body
        },
    })
}

/// Appends the response for `asset`. With `head_only` (HEAD) the body is
/// left out but its length is announced; a 304 has neither body nor length.
pub fn write(out: &mut Vec<u8>, asset: &Asset, close: bool, head_only: bool, date: &DateCache) {
    let body = asset.body.as_slice();
    out.extend_from_slice(b"HTTP/1.1 ");
    if asset.status == 304 {
        out.extend_from_slice(b"304 Not Modified");
    } else {
        out.extend_from_slice(b"200 OK\r\nContent-Type: ");
        out.extend_from_slice(asset.content_type.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\nETag: ");
    out.extend_from_slice(asset.etag.as_bytes());
    out.extend_from_slice(b"\r\nCache-Control: ");
    out.extend_from_slice(asset.cache_control.as_bytes());
    out.extend_from_slice(b"\r\nX-Content-Type-Options: nosniff");
    if let Some(csp) = &asset.csp {
        out.extend_from_slice(b"\r\nContent-Security-Policy: ");
        out.extend_from_slice(csp.as_bytes());
        out.extend_from_slice(b"\r\nReferrer-Policy: no-referrer");
    }
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(date.get());
    if close {
        out.extend_from_slice(b"\r\nConnection: close");
    }
    out.extend_from_slice(b"\r\n\r\n");
    if !head_only && asset.status != 304 {
        out.extend_from_slice(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_every_marker() {
        for (path, template) in PAGES {
            let html = render(template, 7);
            assert!(!html.contains("{{"), "{}", String::from_utf8_lossy(path));
            assert!(html.starts_with("<!doctype html>"));
            assert!(html.contains(&format!("?v={}", build_tag())));
            // Every asset a page links exists.
            for part in html.split("/assets/").skip(1) {
                let name = part.split('?').next().unwrap_or("");
                assert!(FILES.iter().any(|f| f.name == name), "{name}");
            }
        }
        assert!(render("{{TABLES}} {{x", 16).starts_with("16 {{x"));
    }

    #[test]
    fn routes_and_conditionals() {
        assert!(is_page_path(b"/"));
        assert!(is_page_path(b"/display"));
        assert!(is_page_path(b"/assets/kiosk.js"));
        assert!(
            !is_page_path(b"/assets/nope.js"),
            "an unknown asset is a 404"
        );
        assert!(!is_page_path(b"/display/"));
        assert!(!is_page_path(b"/favicon.ico"));
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: W/\"a\", \"b\"\r\n\r\n";
        let v = header_values(head, "if-none-match");
        assert_eq!(v.len(), 1);
        assert!(matches(v[0], "\"a\""));
        assert!(matches(v[0], "\"b\""));
        assert!(!matches(v[0], "\"c\""));
        assert!(matches(b"*", "\"c\""));
        assert!(header_values(b"GET / HTTP/1.1\r\n\r\n", "if-none-match").is_empty());
        // RFC 9110 §5.3: a list may be split over several lines.
        let split = b"GET / HTTP/1.1\r\nIf-None-Match: \"x\"\r\nif-none-match: \"y\"\r\n\r\n";
        let v = header_values(split, "if-none-match");
        assert!(v.iter().any(|v| matches(v, "\"y\"")));
    }

    #[test]
    fn the_policy_names_the_host_for_older_browsers_websockets() {
        let with = csp(Some(b"192.168.1.20:8000"));
        assert!(with.contains("connect-src 'self' ws://192.168.1.20:8000 wss://192.168.1.20:8000;"));
        assert!(csp(Some(b"[fe80::1]:80")).contains(" ws://[fe80::1]:80 "));
        assert!(csp(Some(b"pos.local")).contains(" wss://pos.local;"));
        // Nothing that could end the directive or the header is copied.
        for bad in [&b"x; script-src *"[..], b"a b", b"", b"x\"y", b"h/p"] {
            assert!(
                csp(Some(bad)).contains("connect-src 'self'; base-uri"),
                "{bad:?}"
            );
        }
        assert!(csp(None).starts_with("default-src 'none'; script-src 'self';"));
        assert!(csp(None).ends_with("frame-ancestors 'none'"));
    }

    #[test]
    fn response_bytes() {
        let date = DateCache::default();
        let asset = Asset {
            status: 200,
            content_type: CSS,
            cache_control: IMMUTABLE,
            etag: quoted(1),
            csp: None,
            body: Body::Static(b"a{}"),
        };
        let mut out = Vec::new();
        write(&mut out, &asset, false, true, &date);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/css; charset=utf-8\r\nContent-Length: 3\r\nETag: \"0000000000000001\"\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        let mut out = Vec::new();
        let asset = Asset {
            status: 304,
            body: Body::Static(b""),
            ..asset
        };
        write(&mut out, &asset, true, false, &date);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 304 Not Modified\r\nETag: "));
        assert!(!text.contains("Content-Length"));
        assert!(text.ends_with("Connection: close\r\n\r\n"));
    }
}
