//! Receiver URLs (SPEC §3.6 `http_client`): what may be registered, and the
//! parts an HTTP client needs to reach it. A strict, ASCII-only reading of
//! RFC 3986 for `http` and `https`; no `url` crate (its IDNA tables cost more
//! to build than this whole module, and a receiver's host is ASCII anyway).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest receiver URL accepted, in bytes. SPEC gap: §3.6 sets none; 2048
/// is the de-facto limit browsers and proxies have long agreed on, far past
/// any real callback URL, and it bounds what each delivery record repeats.
pub const MAX_URL_LEN: usize = 2048;

/// Longest host name (RFC 1035 §2.3.4: 255 octets on the wire, 253 as text).
const MAX_HOST_LEN: usize = 253;
/// Longest label of a host name (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP, default port 80.
    Http,
    /// HTTP over TLS, default port 443.
    Https,
}

impl Scheme {
    /// The port used when the URL names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A receiver URL taken apart: everything the shell's HTTP client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// The host as written, without the brackets of an IPv6 literal: a DNS
    /// name, an IPv4 address or an IPv6 address.
    pub host: String,
    /// Whether `host` is an IPv6 literal (it needs brackets in `Host:`).
    pub host_is_ipv6: bool,
    /// The port to connect to: the URL's, or the scheme's default.
    pub port: u16,
    /// Whether the URL names its port (then `Host:` repeats it).
    pub explicit_port: bool,
    /// The request target: path and query, `/` when the URL has no path.
    pub target: String,
}

impl WebhookUrl {
    /// The value of the `Host:` header for a request to this URL
    /// (RFC 9110 §7.2: the authority without userinfo).
    pub fn host_header(&self) -> String {
        let host = if self.host_is_ipv6 {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.explicit_port {
            format!("{host}:{}", self.port)
        } else {
            host
        }
    }
}

/// Why a receiver URL was refused. The messages are meant for the person
/// who typed the URL (they become the text of a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The URL is the empty string.
    #[error("the receiver URL is empty")]
    Empty,
    /// Longer than [`MAX_URL_LEN`] bytes.
    #[error("the receiver URL is longer than {limit} bytes")]
    TooLong {
        /// [`MAX_URL_LEN`].
        limit: usize,
    },
    /// A space, a control character or a non-ASCII character.
    #[error("the receiver URL contains a space, a control character or a non-ASCII character (percent-encode it)")]
    BadCharacter,
    /// Not `http://` or `https://`.
    #[error("the receiver URL must start with http:// or https://")]
    UnsupportedScheme,
    /// `user:password@` before the host.
    #[error("the receiver URL must not contain a user name or password")]
    UserInfo,
    /// A `#fragment` (never sent to a server, so surely a mistake).
    #[error("the receiver URL must not contain a #fragment")]
    Fragment,
    /// Nothing between `//` and the path.
    #[error("the receiver URL has no host")]
    NoHost,
    /// A host that is not a DNS name, an IPv4 address or a bracketed IPv6
    /// address.
    #[error("the receiver URL's host is not a valid host name or IP address")]
    BadHost,
    /// A port that is not a number from 1 to 65535.
    #[error("the receiver URL's port must be a number from 1 to 65535")]
    BadPort,
    /// A character a path or query may not hold raw, or a `%` not followed by
    /// two hex digits.
    #[error("the receiver URL's path or query contains a character that must be percent-encoded")]
    BadPath,
}

/// Checks a receiver URL and takes it apart.
///
/// Accepted: `http://` or `https://` (scheme in any case), a host (DNS
/// name, dotted IPv4, or `[IPv6]`), an optional port 1–65535, an optional
/// path and query; ASCII only, at most [`MAX_URL_LEN`] bytes.
///
/// # Errors
///
/// [`UrlError`] says what is wrong; its `Display` is fit for a 400 message.
pub fn parse_url(text: &str) -> Result<WebhookUrl, UrlError> {
    if text.is_empty() {
        return Err(UrlError::Empty);
    }
    if text.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong { limit: MAX_URL_LEN });
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(UrlError::BadCharacter);
    }
    let (scheme, rest) = split_scheme(text).ok_or(UrlError::UnsupportedScheme)?;
    if rest.contains('#') {
        return Err(UrlError::Fragment);
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(UrlError::UserInfo);
    }
    if authority.is_empty() {
        return Err(UrlError::NoHost);
    }
    let (host, host_is_ipv6, port_text) = split_host_port(authority)?;
    let port = match port_text {
        None => None,
        Some(p) => Some(parse_port(p)?),
    };
    check_target(target)?;
    let target = if target.starts_with('/') {
        target.to_owned()
    } else {
        // "http://h?x=1" — the path is empty, the query stays (RFC 9112 §3.2.1).
        format!("/{target}")
    };
    Ok(WebhookUrl {
        scheme,
        host: host.to_owned(),
        host_is_ipv6,
        port: port.unwrap_or(scheme.default_port()),
        explicit_port: port.is_some(),
        target,
    })
}

/// `http://` or `https://`, in any case, and what follows.
fn split_scheme(text: &str) -> Option<(Scheme, &str)> {
    for (prefix, scheme) in [("http://", Scheme::Http), ("https://", Scheme::Https)] {
        // `get` rather than slicing: `text` is ASCII here, but stay panic-free.
        if let Some(head) = text.get(..prefix.len()) {
            if head.eq_ignore_ascii_case(prefix) {
                return Some((scheme, &text[prefix.len()..]));
            }
        }
    }
    None
}

/// Host (brackets removed), whether it is IPv6, and the port text if any.
fn split_host_port(authority: &str) -> Result<(&str, bool, Option<&str>), UrlError> {
    if let Some(inner) = authority.strip_prefix('[') {
        let close = inner.find(']').ok_or(UrlError::BadHost)?;
        let (host, after) = (&inner[..close], &inner[close + 1..]);
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(UrlError::BadHost);
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(UrlError::BadHost)?),
        };
        return Ok((host, true, port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    check_host(host)?;
    Ok((host, false, port))
}

/// A DNS name (letters, digits, `-`, `_`, dot-separated labels of 1–63
/// bytes, an optional final dot) or, when it looks numeric, a dotted IPv4
/// address. `_` is let through: it is common in container and LAN names.
fn check_host(host: &str) -> Result<(), UrlError> {
    if host.len() > MAX_HOST_LEN {
        return Err(UrlError::BadHost);
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let mut labels = name.split('.');
    let all_numeric = name.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if all_numeric {
        // "10.0.1.18" must be a real address: "999.1.1.1" or "1.2.3" are
        // typos, not host names (WHATWG would even rewrite "1.2.3").
        return match name.parse::<Ipv4Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(UrlError::BadHost),
        };
    }
    let ok = labels.all(|label| {
        !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    if ok {
        Ok(())
    } else {
        Err(UrlError::BadHost)
    }
}

/// 1 to 65535, digits only.
fn parse_port(text: &str) -> Result<u16, UrlError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlError::BadPort);
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(UrlError::BadPort),
        Ok(port) => Ok(port),
    }
}

/// Path and query: RFC 3986 `pchar`, `/` and `?`, with well-formed `%XX`.
fn check_target(target: &str) -> Result<(), UrlError> {
    let bytes = target.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(|c| c.is_ascii_hexdigit());
            if !(hex(i + 1) && hex(i + 2)) {
                return Err(UrlError::BadPath);
            }
            i += 3;
            continue;
        }
        let unreserved = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
        let sub_delim = b"!$&'()*+,;=".contains(&b);
        if !(unreserved || sub_delim || b":@/?".contains(&b)) {
            return Err(UrlError::BadPath);
        }
        i += 1;
    }
    Ok(())
}

impl fmt::Display for WebhookUrl {
    /// The URL rebuilt from its parts (scheme lowercased, default port left
    /// out when the original left it out).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.host_header(),
            self.target
        )
    }
}
