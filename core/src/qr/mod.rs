//! QR-menu staff-alert events and tables (SPEC §1, seed
//! `qr-menu-events-api.ru.txt`): validating a published event, serializing it
//! once, the registered tables, and the exact JSON of every §1 answer.
//!
//! No sockets, no clock: the caller passes the body bytes and the registered
//! tables, and gets back a [`PreparedEvent`] whose bytes only lack the hash.

mod fields;
pub mod json;

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use fields::{integer, is_null, is_object, read_object, string, Raw};
use json::{write_compact, write_str};

/// Longest `code` (SPEC §1.1: `[a-z][a-z0-9_]{0,63}`).
pub const MAX_CODE_LEN: usize = 64;
/// Longest table name accepted by `PUT /api/v4/tables/{id}`.
/// SPEC gap: the spec sets none; 256 bytes is far above any venue's labels.
pub const MAX_TABLE_NAME_LEN: usize = 256;

/// The largest event body [`prepare_event`] takes: the HTTP API's body limit
/// (SPEC §0, 1 MiB), so an event published in process through the C ABI is
/// held to the same size as one sent over HTTP, and no event can outgrow
/// what the store accepts in one record.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Where the 8 hex digits of the hash sit in a [`PreparedEvent`]'s bytes:
/// right after `{"hash":"0x`.
const HASH_DIGITS: std::ops::Range<usize> = 11..19;
const EVENT_PREFIX: &[u8] = b"{\"hash\":\"0x00000000\",\"code\":";

/// Why a published event or table was refused (every one is a 400 with this
/// text in `error`, and nothing is queued).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrError {
    /// The body is not JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// The body is JSON but not an object.
    #[error("the body must be a JSON object")]
    NotAnObject,
    /// A key that an event (or table) does not have.
    #[error("unknown field \"{0}\"")]
    UnknownField(String),
    /// The same key twice.
    #[error("duplicate field \"{0}\"")]
    DuplicateField(String),
    /// A required key is absent.
    #[error("missing field \"{0}\"")]
    MissingField(&'static str),
    /// A key has the wrong JSON type.
    #[error("field \"{field}\" must be {expected}")]
    WrongType {
        /// The key.
        field: &'static str,
        /// What it must be, in words.
        expected: &'static str,
    },
    /// `code` does not match `[a-z][a-z0-9_]{0,63}`.
    #[error("field \"code\" must match [a-z][a-z0-9_]{{0,63}}")]
    BadCode,
    /// `invoice` or `order` nests deeper than [`json::MAX_DEPTH`].
    #[error("field \"{0}\" is nested too deeply")]
    TooDeep(&'static str),
    /// A table name longer than [`MAX_TABLE_NAME_LEN`].
    #[error("field \"name\" is longer than {MAX_TABLE_NAME_LEN} bytes")]
    NameTooLong,
    /// An event body longer than [`MAX_EVENT_BYTES`].
    #[error("the event is longer than {MAX_EVENT_BYTES} bytes")]
    TooLarge,
}

/// A table as SPEC §1.1's `table_repr` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRepr {
    /// The table's id (the `table` of an event).
    pub id: i64,
    /// Its label, as printed on the table.
    pub name: String,
    /// How many guests it seats.
    pub max_guests: i64,
}

impl TableRepr {
    /// Appends `{"id":…,"name":…,"max_guests":…}`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"id\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.id).as_bytes());
        out.extend_from_slice(b",\"name\":");
        write_str(out, &self.name);
        out.extend_from_slice(b",\"max_guests\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.max_guests).as_bytes());
        out.push(b'}');
    }
}

/// A validated event, serialized once, waiting for its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedEvent {
    /// The whole event object with `0x00000000` in place of the hash.
    bytes: Vec<u8>,
}

impl PreparedEvent {
    /// Writes the hash into the reserved place and freezes the bytes: the
    /// event's final JSON, shared from then on without copying.
    pub fn finish(mut self, hash: u32) -> Bytes {
        let text = crate::ring::format_hash(hash);
        if let Some(digits) = self.bytes.get_mut(HASH_DIGITS) {
            digits.copy_from_slice(&text[2..]);
        }
        Bytes::from(self.bytes)
    }

    /// A placeholder left behind when the writer takes an event out of its
    /// job (`std::mem::replace`).
    pub fn empty() -> Self {
        PreparedEvent { bytes: Vec::new() }
    }

    /// The JSON without its hash (tests, diagnostics).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// The keys of a published event, in the order SPEC §1.1 writes them.
const EVENT_FIELDS: [&str; 5] = ["code", "table", "invoice", "order", "table_repr"];

/// Validates a `POST /api/v4/events` body (SPEC §1.2) and serializes the event
/// with exactly the keys of §1.1, in order. `invoice` and `order` pass through
/// as the publisher wrote them (key order, numbers, text and its escapes),
/// only their insignificant whitespace dropped. A missing `table_repr` is
/// filled from `tables` when `table` names a registered table, else it is
/// `null`.
///
/// # Errors
///
/// Any [`QrError`]; nothing is kept on error.
pub fn prepare_event(body: &[u8], tables: &TableSet) -> Result<PreparedEvent, QrError> {
    prepare_event_str(utf8(body)?, tables)
}

/// [`prepare_event`] for a body already known to be UTF-8 (the C ABI's
/// strings are checked at the boundary).
///
/// # Errors
///
/// Any [`QrError`]; nothing is kept on error.
pub fn prepare_event_str(body: &str, tables: &TableSet) -> Result<PreparedEvent, QrError> {
    if body.len() > MAX_EVENT_BYTES {
        return Err(QrError::TooLarge);
    }
    let [code, table, invoice, order, table_repr] = read_object(body, &EVENT_FIELDS)?;
    let mut out = Vec::with_capacity(EVENT_PREFIX.len() + body.len() + 64);
    out.extend_from_slice(EVENT_PREFIX);
    // code: a literal that is a valid code as written holds no escape, so it
    // is its own serialization; anything else is decoded, checked, escaped.
    let code = code.ok_or(QrError::MissingField("code"))?;
    if code
        .text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .is_some_and(valid_code)
    {
        out.extend_from_slice(code.text.as_bytes());
    } else {
        let code = string(code, "code")?;
        if !valid_code(&code) {
            return Err(QrError::BadCode);
        }
        write_str(&mut out, &code);
    }
    // table
    out.extend_from_slice(b",\"table\":");
    let table_id = match table {
        Some(raw) if !is_null(raw) => {
            let id = integer(raw, "table", "an integer or null")?;
            // The scanner let through only JSON's integer syntax (no `+`, no
            // leading zero), so the text is what itoa would write, but for
            // `-0`.
            if id == 0 {
                out.push(b'0');
            } else {
                out.extend_from_slice(raw.text.as_bytes());
            }
            Some(id)
        }
        _ => {
            out.extend_from_slice(b"null");
            None
        }
    };
    // invoice, order: objects passed through.
    let passed_through = [
        ("invoice", &b",\"invoice\":"[..], invoice),
        ("order", b",\"order\":", order),
    ];
    for (field, key, raw) in passed_through {
        out.extend_from_slice(key);
        match raw {
            None => out.extend_from_slice(b"null"),
            Some(raw) if is_null(raw) => out.extend_from_slice(b"null"),
            Some(raw) if is_object(raw) => {
                if raw.depth > json::MAX_DEPTH {
                    return Err(QrError::TooDeep(field));
                }
                if raw.spaced {
                    write_compact(&mut out, raw.text);
                } else {
                    out.extend_from_slice(raw.text.as_bytes());
                }
            }
            Some(_) => {
                return Err(QrError::WrongType {
                    field,
                    expected: "an object or null",
                })
            }
        }
    }
    // table_repr
    out.extend_from_slice(b",\"table_repr\":");
    match table_repr {
        Some(raw) if is_null(raw) => out.extend_from_slice(b"null"),
        Some(raw) if is_object(raw) => parse_table_repr(raw)?.write_json(&mut out),
        Some(_) => {
            return Err(QrError::WrongType {
                field: "table_repr",
                expected: "an object or null",
            })
        }
        None => match table_id.and_then(|id| tables.get(id)) {
            Some(repr) => repr.write_json(&mut out),
            None => out.extend_from_slice(b"null"),
        },
    }
    out.push(b'}');
    Ok(PreparedEvent { bytes: out })
}

/// The body as text: JSON is UTF-8 (RFC 8259 §8.1).
fn utf8(body: &[u8]) -> Result<&str, QrError> {
    simdutf8::compat::from_utf8(body).map_err(|e| QrError::InvalidJson(e.to_string()))
}

/// Keeps an echoed unknown key short: it goes back to the client in `error`.
fn truncate(key: &str) -> String {
    key.chars().take(64).collect()
}

/// `[a-z][a-z0-9_]{0,63}` (SPEC §1.1).
pub fn valid_code(code: &str) -> bool {
    let b = code.as_bytes();
    match b.split_first() {
        Some((first, rest)) if b.len() <= MAX_CODE_LEN && first.is_ascii_lowercase() => {
            code_tail(rest)
        }
        _ => false,
    }
}

/// Every byte is `[a-z0-9_]`: eight at a time, the last eight overlapping
/// the words before them.
fn code_tail(rest: &[u8]) -> bool {
    let is_code_byte = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_';
    match rest.last_chunk::<8>() {
        None => rest.iter().all(is_code_byte),
        Some(last) => {
            let (words, _) = rest.as_chunks::<8>();
            words
                .iter()
                .chain([last])
                .all(|w| code_word(u64::from_le_bytes(*w)))
        }
    }
}

/// Whether eight bytes read little-endian are all `[a-z0-9_]`. With every
/// high bit clear, adding `0x80 - lo` to a byte sets its high bit exactly
/// when the byte is at least `lo`, and carries into no other byte.
fn code_word(x: u64) -> bool {
    use fields::{HIGH, ONES};
    let at_least = |lo: u8| x.wrapping_add(ONES * u64::from(0x80 - lo)) & HIGH;
    let within = |lo: u8, hi: u8| at_least(lo) & !at_least(hi + 1);
    (x & HIGH) == 0 && (within(b'a', b'z') | within(b'0', b'9') | within(b'_', b'_')) == HIGH
}

/// Reads an event's `table_repr`: `{"id","name","max_guests"}`, all three
/// required.
fn parse_table_repr(raw: Raw<'_>) -> Result<TableRepr, QrError> {
    let [id, name, max_guests] = read_object(raw.text, &["id", "name", "max_guests"])?;
    let id = integer(id.ok_or(QrError::MissingField("id"))?, "id", "an integer")?;
    table(id, name, max_guests)
}

/// Validates a `PUT /api/v4/tables/{id}` body: `{"name":"6","max_guests":50}`
/// (the path gives the id; the body must not).
///
/// # Errors
///
/// Any [`QrError`].
pub fn parse_table_body(id: i64, body: &[u8]) -> Result<TableRepr, QrError> {
    let [name, max_guests] = read_object(utf8(body)?, &["name", "max_guests"])?;
    table(id, name, max_guests)
}

/// A table from its id and the raw `name` and `max_guests`.
fn table(
    id: i64,
    name: Option<Raw<'_>>,
    max_guests: Option<Raw<'_>>,
) -> Result<TableRepr, QrError> {
    let name = string(name.ok_or(QrError::MissingField("name"))?, "name")?;
    if name.len() > MAX_TABLE_NAME_LEN {
        return Err(QrError::NameTooLong);
    }
    let wrong_guests = QrError::WrongType {
        field: "max_guests",
        expected: "a non-negative integer",
    };
    let max_guests = max_guests.ok_or(QrError::MissingField("max_guests"))?;
    let max_guests = integer(max_guests, "max_guests", "a non-negative integer")?;
    if max_guests < 0 {
        return Err(wrong_guests);
    }
    Ok(TableRepr {
        id,
        name: name.into_owned(),
        max_guests,
    })
}

/// The registered tables: an immutable snapshot swapped on every change, so
/// readers (every publish, `GET /api/v4/tables`) never lock.
#[derive(Default)]
pub struct Tables {
    current: ArcSwap<TableSet>,
}

/// One snapshot of the registered tables, with the answer to
/// `GET /api/v4/tables` serialized once.
#[derive(Debug, Clone)]
pub struct TableSet {
    by_id: BTreeMap<i64, TableRepr>,
    /// `{"result":true,"data":{"tables":[…]}}`, ascending by id.
    list_json: Bytes,
}

impl Default for TableSet {
    fn default() -> Self {
        TableSet::from_map(BTreeMap::new())
    }
}

impl TableSet {
    fn from_map(by_id: BTreeMap<i64, TableRepr>) -> Self {
        let mut out = b"{\"result\":true,\"data\":{\"tables\":[".to_vec();
        for (n, t) in by_id.values().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            t.write_json(&mut out);
        }
        out.extend_from_slice(b"]}}");
        TableSet {
            by_id,
            list_json: out.into(),
        }
    }

    /// The table with this id.
    pub fn get(&self, id: i64) -> Option<&TableRepr> {
        self.by_id.get(&id)
    }

    /// The body of `GET /api/v4/tables`.
    pub fn list_json(&self) -> &Bytes {
        &self.list_json
    }

    /// Every table, ascending by id.
    pub fn iter(&self) -> impl Iterator<Item = &TableRepr> {
        self.by_id.values()
    }
}

impl Tables {
    /// Tables as loaded from the store.
    pub fn new(initial: impl IntoIterator<Item = TableRepr>) -> Self {
        let map = initial.into_iter().map(|t| (t.id, t)).collect();
        Tables {
            current: ArcSwap::from_pointee(TableSet::from_map(map)),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<TableSet> {
        self.current.load_full()
    }

    /// Reads the current snapshot without touching its reference count.
    pub fn with<R>(&self, f: impl FnOnce(&TableSet) -> R) -> R {
        f(&self.current.load())
    }

    /// Registers or replaces tables (the caller serializes writers: in
    /// floorbell, the store writer thread after the commit).
    pub fn put_all(&self, tables: impl IntoIterator<Item = TableRepr>) {
        let mut map = self.current.load().by_id.clone();
        for t in tables {
            map.insert(t.id, t);
        }
        self.current.store(Arc::new(TableSet::from_map(map)));
    }
}

/// `{"result":true,"data":{"hash":"0x…"}}`: the 201 of `POST /api/v4/events`.
pub fn published_json(hash: u32) -> Vec<u8> {
    let mut out = b"{\"result\":true,\"data\":{\"hash\":\"".to_vec();
    out.extend_from_slice(&crate::ring::format_hash(hash));
    out.extend_from_slice(b"\"}}");
    out
}

/// `{"result":true,"data":{"table":{…}}}`: the 200 of `PUT /api/v4/tables/{id}`.
/// SPEC gap: §1.3 names only the status; the body echoes the stored table.
pub fn table_put_json(table: &TableRepr) -> Vec<u8> {
    let mut out = b"{\"result\":true,\"data\":{\"table\":".to_vec();
    table.write_json(&mut out);
    out.extend_from_slice(b"}}");
    out
}

/// `{"result":false,"error":"…"}`: every §1 error.
pub fn error_json(message: &str) -> Vec<u8> {
    let mut out = b"{\"result\":false,\"error\":".to_vec();
    write_str(&mut out, message);
    out.push(b'}');
    out
}

/// The start and end of a poll answer; the events go between, comma-separated.
pub const UPDATES_PREFIX: &[u8] = b"{\"result\":true,\"data\":{\"updates\":[";
/// See [`UPDATES_PREFIX`].
pub const UPDATES_SUFFIX: &[u8] = b"]}}";
/// The 401 of §1.1, exact.
pub const INVALID_TOKEN_JSON: &[u8] = b"{\"result\":false,\"error\":\"invalid token\"}";

#[cfg(test)]
mod tests;
