//! Reading a JSON object's known fields in one pass: the top-level object is
//! walked, every value is checked against the JSON grammar (RFC 8259) as it
//! is skipped, and each known field comes back as the slice of the input it
//! occupies, with what the caller needs to copy it out (whether it holds
//! insignificant whitespace, how deep it nests).
//!
//! Why by hand: a published event is mostly `invoice` and `order`, which
//! floorbell never looks inside but must pass through valid and unchanged.
//! One pass that only checks and remembers spans costs a fraction of
//! building a tape or a tree and writing it back out: for the ≈300-byte
//! event of the C-ABI goal, simd-json's tape plus the writer took ~1.6 µs
//! and serde_json skipping into `RawValue`s plus a compaction pass ~1.1 µs on
//! the CI machine; this pass is measured in `benches/ffi_publish.rs`. It is
//! checked against serde_json by the property tests below: it accepts
//! exactly what serde_json reads into a `Value`, which refuses lone UTF-16
//! surrogates in `\u` escapes and numbers past a double's range (serde_json
//! merely skipping a value lets both through).
//!
//! The per-token cost is what is left to spend on such a body (about 45
//! tokens, two dozen of them short strings), so the common case goes
//! straight through: the cursor is the unread slice, strings and digit runs
//! are read eight bytes at a time, whitespace is looked for only where an
//! unexpected byte is met, and top-level scalars skip the nesting machinery.
//! Under callgrind, `prepare_event_str` on the bench's event went from 6,210
//! to about 3,950 instructions, and to about 3,470 with the output fast
//! paths in `mod.rs`.

use std::borrow::Cow;

use super::json::MAX_DEPTH;
use super::{truncate, QrError};

/// One field's value as it stands in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Raw<'a> {
    /// The value's text, from its first byte to its last.
    pub text: &'a str,
    /// Holds insignificant whitespace (between tokens).
    pub spaced: bool,
    /// Deepest nesting of arrays and objects inside it (0 for a scalar).
    pub depth: usize,
}

/// The raw values of an object's fields, in the order of the names asked for.
pub(super) type Fields<'a, const N: usize> = [Option<Raw<'a>>; N];

/// Reads the top-level object of `input`, whose keys must be among `names`
/// and appear once each.
///
/// # Errors
///
/// [`QrError::InvalidJson`] when `input` is not JSON (this wins over the
/// rest: an unknown key in a truncated body is reported as the truncation),
/// [`QrError::NotAnObject`], then the first unknown or repeated key.
pub(super) fn read_object<'a, const N: usize>(
    input: &'a str,
    names: &[&'static str; N],
) -> Result<Fields<'a, N>, QrError> {
    let len = input.len();
    let invalid = |stop: Stop| stop.into_error(len);
    let mut values: Fields<'a, N> = [None; N];
    let mut problem = None;
    let mut spaced = false;
    let mut r = ws(input.as_bytes(), &mut spaced);
    let Some(after_brace) = r.strip_prefix(b"{") else {
        // Some other JSON value, or not JSON at all.
        let value = skip_value(r).map_err(invalid)?;
        end(value.rest).map_err(invalid)?;
        return Err(QrError::NotAnObject);
    };
    r = ws(after_brace, &mut spaced);
    if let Some(rest) = r.strip_prefix(b"}") {
        r = rest;
    } else {
        'members: loop {
            // The key: `r` is at its opening quote, `rest` after its closing one.
            let rest = match r.first() {
                Some(b'"') => skip_string(r).map_err(invalid)?,
                Some(&b) if is_ws(b) => {
                    r = skip_ws(r, &mut spaced);
                    continue;
                }
                _ => return Err(invalid(Stop::at(Syntax::ExpectedKey, r))),
            };
            let key = &r[1..r.len() - rest.len() - 1];
            let found = match names.iter().position(|n| n.as_bytes() == key) {
                Some(at) => Ok(at),
                // Names hold no backslash: only an escaped key can still match.
                None if key.contains(&b'\\') => {
                    let literal = &input[len - r.len()..len - rest.len()];
                    let key = decode(literal)?;
                    names
                        .iter()
                        .position(|n| *n == key)
                        .ok_or_else(|| key.into_owned())
                }
                None => {
                    let start = len - r.len() + 1;
                    Err(input[start..start + key.len()].to_string())
                }
            };
            r = colon(rest, &mut spaced).map_err(invalid)?;
            // The value. Scalars, the most of an event's fields, go without
            // the machinery for nesting.
            let scalar = |rest| Skipped {
                rest,
                spaced: false,
                depth: 0,
            };
            let value = loop {
                break match r.first() {
                    Some(b'"') => skip_string(r).map(scalar),
                    Some(b'n') => literal(r, b"null").map(scalar),
                    Some(b'-' | b'0'..=b'9') => number(r).map(scalar),
                    Some(&b) if is_ws(b) => {
                        r = skip_ws(r, &mut spaced);
                        continue;
                    }
                    _ => skip_value(r),
                };
            }
            .map_err(invalid)?;
            let raw = Raw {
                text: &input[len - r.len()..len - value.rest.len()],
                spaced: value.spaced,
                depth: value.depth,
            };
            r = value.rest;
            match found {
                Ok(at) if values[at].is_none() => values[at] = Some(raw),
                // Reported once the whole body is known to be JSON.
                found if problem.is_none() => {
                    problem = Some(match found {
                        Ok(at) => QrError::DuplicateField(names[at].to_string()),
                        Err(key) => QrError::UnknownField(truncate(&key)),
                    });
                }
                _ => {}
            }
            loop {
                match r.split_first() {
                    Some((b',', rest)) => {
                        r = rest;
                        continue 'members;
                    }
                    Some((b'}', rest)) => {
                        r = rest;
                        break 'members;
                    }
                    Some((&b, _)) if is_ws(b) => r = skip_ws(r, &mut spaced),
                    _ => return Err(invalid(Stop::at(Syntax::ExpectedCommaOrBrace, r))),
                }
            }
        }
    }
    end(r).map_err(invalid)?;
    problem.map_or(Ok(values), Err)
}

/// A string field's text (borrowed unless it holds escapes).
pub(super) fn string<'a>(raw: Raw<'a>, field: &'static str) -> Result<Cow<'a, str>, QrError> {
    let inner = raw
        .text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or(QrError::WrongType {
            field,
            expected: "a string",
        })?;
    if inner.contains('\\') {
        decode(raw.text)
    } else {
        Ok(Cow::Borrowed(inner))
    }
}

/// An integer field that fits an `i64` (`1.0`, `1e3` and strings are not
/// integers).
pub(super) fn integer(
    raw: Raw<'_>,
    field: &'static str,
    expected: &'static str,
) -> Result<i64, QrError> {
    // Up to 18 digits cannot overflow: summed here, anything else parsed.
    let (negative, digits) = match raw.text.as_bytes() {
        [b'-', digits @ ..] => (true, digits),
        digits => (false, digits),
    };
    if (1..=18).contains(&digits.len()) {
        let mut n = 0i64;
        for &d in digits {
            let d = d.wrapping_sub(b'0');
            if d > 9 {
                return parse_integer(raw, field, expected);
            }
            n = n * 10 + i64::from(d);
        }
        return Ok(if negative { -n } else { n });
    }
    parse_integer(raw, field, expected)
}

/// [`integer`] the general way.
#[cold]
fn parse_integer(
    raw: Raw<'_>,
    field: &'static str,
    expected: &'static str,
) -> Result<i64, QrError> {
    raw.text
        .parse()
        .map_err(|_| QrError::WrongType { field, expected })
}

/// `null`.
pub(super) fn is_null(raw: Raw<'_>) -> bool {
    raw.text == "null"
}

/// A JSON object.
pub(super) fn is_object(raw: Raw<'_>) -> bool {
    raw.text.starts_with('{')
}

/// A string literal with escapes, decoded. The scanner has checked it, its
/// surrogates paired included, so this does not fail on scanned input.
fn decode(literal: &str) -> Result<Cow<'_, str>, QrError> {
    serde_json::from_str::<String>(literal)
        .map(Cow::Owned)
        .map_err(|e| QrError::InvalidJson(e.to_string()))
}

/// Why the input is not JSON. Field-less, so that a scanning step's result
/// stays small; [`Stop`] adds where, and the message is made only when the
/// input is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    /// A member's key (a string) was expected.
    ExpectedKey,
    /// The `:` after a member's key was expected.
    ExpectedColon,
    /// A value was expected (also: a misspelt `true`, `false` or `null`).
    ExpectedValue,
    /// The next member or the end of an object was expected.
    ExpectedCommaOrBrace,
    /// The next element or the end of an array was expected.
    ExpectedCommaOrBracket,
    /// The body ended inside a string.
    ExpectedQuote,
    /// Something follows the top-level value.
    ExpectedEnd,
    /// A backslash followed by something that is not an escape.
    BadEscape,
    /// `\u` not followed by four hex digits, or a surrogate not in a
    /// high-low pair.
    BadUnicodeEscape,
    /// A control character (below U+0020) inside a string.
    ControlCharacter,
    /// A number without the digits it needs.
    BadNumber,
    /// A number past a double's range (see [`in_range`]).
    NumberOutOfRange,
    /// Arrays and objects nest deeper than [`MAX_NESTING`].
    TooDeep,
}

/// Where the scan stopped and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stop {
    what: Syntax,
    /// How many bytes of the input are left from the offending one (0: the
    /// input ended).
    left: usize,
}

impl Stop {
    /// `what` at the first byte of `rest`, the unread end of the input.
    #[cold]
    fn at(what: Syntax, rest: &[u8]) -> Stop {
        Stop {
            what,
            left: rest.len(),
        }
    }

    /// The error for an input of `len` bytes.
    fn into_error(self, len: usize) -> QrError {
        let column = len - self.left + 1;
        let expected = |what: &str| {
            if self.left == 0 {
                format!("the body ends where {what} was expected")
            } else {
                format!("expected {what} at byte {column}")
            }
        };
        QrError::InvalidJson(match self.what {
            Syntax::ExpectedKey => expected("a string key"),
            Syntax::ExpectedColon => expected("':'"),
            Syntax::ExpectedValue => expected("a value"),
            Syntax::ExpectedCommaOrBrace => expected("',' or '}'"),
            Syntax::ExpectedCommaOrBracket => expected("',' or ']'"),
            Syntax::ExpectedQuote => expected("'\"'"),
            Syntax::ExpectedEnd => expected("the end of the body"),
            Syntax::BadEscape => format!("a bad escape at byte {column}"),
            Syntax::BadUnicodeEscape => format!("a bad \\u escape at byte {column}"),
            Syntax::ControlCharacter => {
                format!("a control character in a string at byte {column}")
            }
            Syntax::BadNumber => format!("a malformed number at byte {column}"),
            Syntax::NumberOutOfRange => {
                format!("a number out of range (past a double's) at byte {column}")
            }
            Syntax::TooDeep => {
                format!("arrays and objects nest deeper than {MAX_NESTING} at byte {column}")
            }
        })
    }
}

/// Deepest nesting the scanner follows (fields are held to [`MAX_DEPTH`]
/// below the top-level object by their readers).
const MAX_NESTING: usize = MAX_DEPTH * 2;

/// A value skipped by [`skip_value`].
#[derive(Debug, Clone, Copy)]
struct Skipped<'a> {
    /// The input after the value.
    rest: &'a [u8],
    /// The value holds insignificant whitespace.
    spaced: bool,
    /// Deepest nesting of arrays and objects inside it (0 for a scalar).
    depth: usize,
}

// The scanner's steps take the unread end of the input (`rest`, `r`) and
// return it advanced: a slice is its own bounds, so the common case (compact
// JSON, short strings, small numbers) reads each byte once with one length
// check per token rather than one per byte. Whitespace is looked for only
// where a step meets a byte it did not expect, so compact JSON never pays
// for it.

/// Whether `b` is JSON's insignificant whitespace.
#[inline(always)]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// `r` without its leading whitespace; `spaced` is set if there was some.
#[inline(always)]
fn ws<'a>(r: &'a [u8], spaced: &mut bool) -> &'a [u8] {
    match r.first() {
        Some(&b) if is_ws(b) => skip_ws(r, spaced),
        _ => r,
    }
}

/// `r` without its leading whitespace (at least one byte of it).
#[cold]
#[inline(never)]
fn skip_ws<'a>(r: &'a [u8], spaced: &mut bool) -> &'a [u8] {
    *spaced = true;
    let n = r.iter().take_while(|&&b| is_ws(b)).count();
    &r[n..]
}

/// Only whitespace is left.
fn end(r: &[u8]) -> Result<(), Stop> {
    let r = ws(r, &mut false);
    if r.is_empty() {
        Ok(())
    } else {
        Err(Stop::at(Syntax::ExpectedEnd, r))
    }
}

/// Skips the `:` after a member's key, and whitespace before it.
#[inline(always)]
fn colon<'a>(mut r: &'a [u8], spaced: &mut bool) -> Result<&'a [u8], Stop> {
    loop {
        match r.split_first() {
            Some((b':', rest)) => return Ok(rest),
            Some((&b, _)) if is_ws(b) => r = skip_ws(r, spaced),
            _ => return Err(Stop::at(Syntax::ExpectedColon, r)),
        }
    }
}

/// Skips a nested member's key and its colon, and whitespace before each.
#[inline(always)]
fn member_key<'a>(mut r: &'a [u8], spaced: &mut bool) -> Result<&'a [u8], Stop> {
    loop {
        match r.first() {
            Some(b'"') => return colon(skip_string(r)?, spaced),
            Some(&b) if is_ws(b) => r = skip_ws(r, spaced),
            _ => return Err(Stop::at(Syntax::ExpectedKey, r)),
        }
    }
}

/// A one in every byte of a word (for the bit tricks on eight bytes at once).
pub(super) const ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte of a word.
pub(super) const HIGH: u64 = 0x8080_8080_8080_8080;

/// The special bytes of eight string bytes read little-endian (quotes,
/// backslashes and control characters), each flagged in its high bit. The
/// bit tricks of "Bit Twiddling Hacks": a byte below n gets its high bit
/// from `byte - n` unless its own high bit is set; a byte equal to c is
/// below 1 after `^ c`. A borrow can only flag bytes above a real hit, so
/// the lowest flag is exact; the callers look at no other.
#[inline(always)]
fn specials(x: u64) -> u64 {
    let quote = (x ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES);
    let backslash = (x ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES);
    let control = x.wrapping_sub(ONES * 0x20);
    (quote | backslash | control) & !x & HIGH
}

/// Skips a string literal (`r` at its opening quote). The common string (no
/// escape) ends at the first special byte of the eight-byte words read here;
/// anything else goes on in [`string_rest`].
#[inline(always)]
fn skip_string(r: &[u8]) -> Result<&[u8], Stop> {
    let mut r = r.get(1..).unwrap_or_default();
    while let Some(chunk) = r.first_chunk::<8>() {
        let x = u64::from_le_bytes(*chunk);
        let hits = specials(x);
        if hits != 0 {
            // The flag is the high bit of byte `bit / 8`.
            let bit = hits.trailing_zeros();
            if (x >> (bit & !7)) as u8 == b'"' {
                return Ok(&r[(bit / 8) as usize + 1..]);
            }
            break;
        }
        r = &r[8..];
    }
    string_rest(r)
}

/// Goes on with a string literal from inside it: escapes, control
/// characters, and the last bytes of the input, where no whole word is left.
#[inline(never)]
fn string_rest(mut r: &[u8]) -> Result<&[u8], Stop> {
    loop {
        r = &r[plain_run(r, 0)..];
        match r.split_first() {
            Some((b'"', rest)) => return Ok(rest),
            Some((b'\\', rest)) => {
                r = match rest.split_first() {
                    Some((b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't', rest)) => rest,
                    Some((b'u', hex)) => {
                        let unit = hex_unit(hex)?;
                        match unit {
                            // A surrogate is text only as a high-low pair: a
                            // lone one passed on would make strict parsers
                            // (serde_json, .NET) refuse every poll holding it.
                            0xD800..=0xDBFF => match &hex[4..] {
                                [b'\\', b'u', low @ ..]
                                    if matches!(hex_unit(low), Ok(0xDC00..=0xDFFF)) =>
                                {
                                    &low[4..]
                                }
                                _ => return Err(Stop::at(Syntax::BadUnicodeEscape, hex)),
                            },
                            0xDC00..=0xDFFF => return Err(Stop::at(Syntax::BadUnicodeEscape, hex)),
                            _ => &hex[4..],
                        }
                    }
                    _ => return Err(Stop::at(Syntax::BadEscape, rest)),
                }
            }
            Some(_) => return Err(Stop::at(Syntax::ControlCharacter, r)),
            None => return Err(Stop::at(Syntax::ExpectedQuote, r)),
        }
    }
}

/// The code unit of the four hex digits after a `\u`.
fn hex_unit(hex: &[u8]) -> Result<u16, Stop> {
    let mut unit = 0u16;
    for (i, &h) in hex.iter().take(4).enumerate() {
        let Some(d) = char::from(h).to_digit(16) else {
            return Err(Stop::at(Syntax::BadUnicodeEscape, &hex[i..]));
        };
        unit = unit << 4 | d as u16;
    }
    if hex.len() < 4 {
        return Err(Stop::at(Syntax::BadUnicodeEscape, &hex[hex.len()..]));
    }
    Ok(unit)
}

/// How many of eight bytes read little-endian are ASCII digits before the
/// first that is not. `d = byte ^ '0'` is below 10 exactly for a digit, and
/// stays below 0x80 after adding 0x76; any other `d` gets its high bit from
/// the sum or from itself. Only a byte already flagged can carry into the
/// next, so the lowest flag is exact.
#[inline(always)]
fn leading_digits(x: u64) -> usize {
    let d = x ^ (ONES * u64::from(b'0'));
    let flags = (d.wrapping_add(ONES * 0x76) | d) & HIGH;
    (flags.trailing_zeros() / 8) as usize
}

/// `r` after its leading digits.
#[inline(always)]
fn skip_digits(mut r: &[u8]) -> &[u8] {
    while let Some(chunk) = r.first_chunk::<8>() {
        let n = leading_digits(u64::from_le_bytes(*chunk));
        r = &r[n..];
        if n < 8 {
            return r;
        }
    }
    let n = r.iter().take_while(|b| b.is_ascii_digit()).count();
    &r[n..]
}

/// `r` after one or more digits.
#[inline(always)]
fn digits(r: &[u8]) -> Result<&[u8], Stop> {
    match r.first() {
        Some(b'0'..=b'9') => Ok(skip_digits(r)),
        _ => Err(Stop::at(Syntax::BadNumber, r)),
    }
}

/// Skips a number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`,
/// whose value is within a double's range.
#[inline(always)]
fn number(start: &[u8]) -> Result<&[u8], Stop> {
    let r = start.strip_prefix(b"-").unwrap_or(start);
    let mut r = match r.split_first() {
        Some((b'0', rest)) => rest,
        Some((b'1'..=b'9', _)) => skip_digits(r),
        _ => return Err(Stop::at(Syntax::BadNumber, r)),
    };
    if let Some((b'.', rest)) = r.split_first() {
        r = digits(rest)?;
    }
    let mut exponent = false;
    if let Some((b'e' | b'E', rest)) = r.split_first() {
        let rest = match rest.split_first() {
            Some((b'+' | b'-', rest)) => rest,
            _ => rest,
        };
        r = digits(rest)?;
        exponent = true;
    }
    let len = start.len() - r.len();
    // Only an exponent or over 300 digits can pass f64::MAX (~1.8e308).
    if (exponent || len > 300) && !in_range(&start[..len]) {
        return Err(Stop::at(Syntax::NumberOutOfRange, start));
    }
    Ok(r)
}

/// Whether a number's value is a finite double. SPEC gap: JSON's grammar
/// has no range, but strict parsers (serde_json into a value, Go's
/// encoding/json) refuse `1e400` and with it the whole poll answer that
/// holds it, so such a number is refused at the publish, as a lone
/// surrogate is. Values too small for a double read as 0 and pass. Both
/// the correctly rounded reading and serde_json's (which, without its
/// `float_roundtrip` feature, takes `1.7976931348623158e308`, a hair under
/// the largest double, past it) must be finite.
#[cold]
fn in_range(number: &[u8]) -> bool {
    std::str::from_utf8(number)
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .is_some_and(f64::is_finite)
        && serde_json::from_slice::<f64>(number).is_ok()
}

/// Skips `word` (`true`, `false` or `null`).
#[inline(always)]
fn literal<'a>(r: &'a [u8], word: &'static [u8]) -> Result<&'a [u8], Stop> {
    r.strip_prefix(word)
        .ok_or_else(|| Stop::at(Syntax::ExpectedValue, r))
}

/// Skips the value at the start of `r` (not at whitespace). Iterative:
/// hostile nesting cannot overflow the thread's stack.
fn skip_value(mut r: &[u8]) -> Result<Skipped<'_>, Stop> {
    let mut spaced = false;
    // Open containers, innermost last: a bit per level, set for objects.
    let mut open = [0u64; MAX_NESTING / 64];
    let mut depth = 0usize;
    let mut deepest = 0usize;
    // The innermost open container is an object.
    let mut in_object = false;
    'value: loop {
        let Some(&c) = r.first() else {
            return Err(Stop::at(Syntax::ExpectedValue, r));
        };
        match c {
            b'"' => r = skip_string(r)?,
            b'-' | b'0'..=b'9' => r = number(r)?,
            b'{' | b'[' => {
                r = &r[1..];
                if depth == MAX_NESTING {
                    return Err(Stop::at(Syntax::TooDeep, r));
                }
                in_object = c == b'{';
                let (word, bit) = (depth / 64, 1u64 << (depth % 64));
                if in_object {
                    open[word] |= bit;
                } else {
                    open[word] &= !bit;
                }
                depth += 1;
                deepest = deepest.max(depth);
                r = ws(r, &mut spaced);
                // `{` + 2 is `}`, `[` + 2 is `]`.
                if r.first() != Some(&(c + 2)) {
                    if in_object {
                        r = member_key(r, &mut spaced)?;
                    }
                    continue 'value;
                }
                r = &r[1..];
                depth -= 1;
                if let Some(level) = depth.checked_sub(1) {
                    in_object = open[level / 64] & (1u64 << (level % 64)) != 0;
                }
            }
            b't' => r = literal(r, b"true")?,
            b'f' => r = literal(r, b"false")?,
            b'n' => r = literal(r, b"null")?,
            _ if is_ws(c) => {
                r = skip_ws(r, &mut spaced);
                continue 'value;
            }
            _ => return Err(Stop::at(Syntax::ExpectedValue, r)),
        }
        // After a value: close containers until one wants another member.
        loop {
            if depth == 0 {
                return Ok(Skipped {
                    rest: r,
                    spaced,
                    depth: deepest,
                });
            }
            match r.split_first() {
                Some((b',', rest)) => {
                    r = rest;
                    if in_object {
                        r = member_key(r, &mut spaced)?;
                    }
                    continue 'value;
                }
                Some((b'}', rest)) if in_object => r = rest,
                Some((b']', rest)) if !in_object => r = rest,
                Some((&b, _)) if is_ws(b) => {
                    r = skip_ws(r, &mut spaced);
                    continue;
                }
                _ if in_object => return Err(Stop::at(Syntax::ExpectedCommaOrBrace, r)),
                _ => return Err(Stop::at(Syntax::ExpectedCommaOrBracket, r)),
            }
            depth -= 1;
            if let Some(level) = depth.checked_sub(1) {
                in_object = open[level / 64] & (1u64 << (level % 64)) != 0;
            }
        }
    }
}

/// The length of the run of plain string bytes (anything but a quote, a
/// backslash or a control character) that starts at `s[i]`, plus `i`:
/// eight bytes at a time while it lasts.
fn plain_run(s: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = s.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let hits = specials(u64::from_le_bytes(*chunk));
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = s.get(i) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NAMES: [&str; 2] = ["a", "b"];

    fn read(input: &str) -> Result<[Option<String>; 2], QrError> {
        read_object(input, &NAMES).map(|v| v.map(|r| r.map(|r| r.text.to_string())))
    }

    /// Whether `input` is JSON, by the scanner.
    fn scans(input: &str) -> bool {
        let r = ws(input.as_bytes(), &mut false);
        skip_value(r).is_ok_and(|v| end(v.rest).is_ok())
    }

    #[test]
    fn values_come_back_raw_in_the_order_asked() {
        assert_eq!(
            read(r#" { "b" : [1, {"x": "y"}] , "a":"t\u0041" } "#).unwrap(),
            [
                Some(r#""t\u0041""#.into()),
                Some(r#"[1, {"x": "y"}]"#.into())
            ]
        );
        assert_eq!(read("{}").unwrap(), [None, None]);
        assert_eq!(read(" { } ").unwrap(), [None, None]);
        // An escaped key is still the key.
        assert_eq!(read(r#"{"\u0061":1}"#).unwrap(), [Some("1".into()), None]);
        // A surrogate pair is text (U+1F600).
        assert_eq!(
            read(r#"{"a":"\ud83d\uDE00"}"#).unwrap(),
            [Some(r#""\ud83d\uDE00""#.into()), None]
        );
        let fields = read_object(r#"{"a":{"x":[[]]},"b":[ 1 ]}"#, &NAMES).unwrap();
        assert_eq!(fields[0].map(|r| (r.spaced, r.depth)), Some((false, 3)));
        assert_eq!(fields[1].map(|r| (r.spaced, r.depth)), Some((true, 1)));
    }

    #[test]
    fn malformed_json_wins_over_a_bad_key() {
        assert!(matches!(
            read(r#"{"c":1,"a":"#),
            Err(QrError::InvalidJson(_))
        ));
        assert!(matches!(read(r#"{"a":1} x"#), Err(QrError::InvalidJson(_))));
        assert!(matches!(read(""), Err(QrError::InvalidJson(_))));
        assert!(matches!(read("[1"), Err(QrError::InvalidJson(_))));
        assert_eq!(read("[1]"), Err(QrError::NotAnObject));
        assert_eq!(read("\"x\""), Err(QrError::NotAnObject));
        assert_eq!(
            read(r#"{"a":1,"c":2}"#),
            Err(QrError::UnknownField("c".into()))
        );
        assert_eq!(
            read(r#"{"a":1,"a":2}"#),
            Err(QrError::DuplicateField("a".into()))
        );
    }

    #[test]
    fn errors_say_where() {
        let err = |s: &str| read(s).unwrap_err().to_string();
        assert_eq!(
            err(r#"{"a":1,}"#),
            "invalid JSON: expected a string key at byte 8"
        );
        assert_eq!(err(r#"{"a" 1}"#), "invalid JSON: expected ':' at byte 6");
        assert_eq!(
            err(r#"{"a":01}"#),
            "invalid JSON: expected ',' or '}' at byte 7"
        );
        assert_eq!(
            err("{\"a\":\"\u{1}\"}"),
            "invalid JSON: a control character in a string at byte 7"
        );
        assert_eq!(
            err(r#"{"a":[1}"#),
            "invalid JSON: expected ',' or ']' at byte 8"
        );
        assert_eq!(
            err(r#"{"a":"#),
            "invalid JSON: the body ends where a value was expected"
        );
    }

    #[test]
    fn every_refusal_says_where() {
        let err = |s: &str| read(s).unwrap_err().to_string();
        let cases: &[(&str, &str)] = &[
            (r#"{"a":"x\q"}"#, "a bad escape at byte 9"),
            (r#"{"a":"x\"#, "a bad escape at byte 9"),
            (r#"{"a":"\u12G4"}"#, "a bad \\u escape at byte 11"),
            (r#"{"a":"\u12"#, "a bad \\u escape at byte 11"),
            (r#"{"a":"abc"#, "the body ends where '\"' was expected"),
            (
                r#"{"a":"abcdefghijklmnop"#,
                "the body ends where '\"' was expected",
            ),
            (r#"{"a":-}"#, "a malformed number at byte 7"),
            (r#"{"a":-x}"#, "a malformed number at byte 7"),
            (r#"{"a":1.}"#, "a malformed number at byte 8"),
            (r#"{"a":1.e5}"#, "a malformed number at byte 8"),
            (r#"{"a":1e}"#, "a malformed number at byte 8"),
            (r#"{"a":1E+}"#, "a malformed number at byte 9"),
            (
                r#"{"a":12345678901234567.}"#,
                "a malformed number at byte 24",
            ),
            (r#"{"a":.5}"#, "expected a value at byte 6"),
            (r#"{"a":+1}"#, "expected a value at byte 6"),
            (r#"{"a":tru}"#, "expected a value at byte 6"),
            (r#"{"a":[nul]}"#, "expected a value at byte 7"),
            (r#"{"a":[1, ]}"#, "expected a value at byte 10"),
            (r#"{"a":{"x" 1}}"#, "expected ':' at byte 11"),
            (r#"{"a":{ 1}}"#, "expected a string key at byte 8"),
            (r#"{"a":{"x":1,}}"#, "expected a string key at byte 13"),
            (r#"{"a":{"x":1 2}}"#, "expected ',' or '}' at byte 13"),
            (r#"{"a":-01}"#, "expected ',' or '}' at byte 8"),
            (r#"{"a":1} x"#, "expected the end of the body at byte 9"),
            (r#"{"a":1 "#, "the body ends where ',' or '}' was expected"),
            (r#"{"a":[1 "#, "the body ends where ',' or ']' was expected"),
            (r#"{"a":{"x""#, "the body ends where ':' was expected"),
            (
                r#"{"a":1,"#,
                "the body ends where a string key was expected",
            ),
            (r#"{"\ud800":1}"#, "a bad \\u escape at byte 5"),
            (r#"{"\ud800" 1}"#, "a bad \\u escape at byte 5"),
            (r#"{"a":"\ud800"}"#, "a bad \\u escape at byte 9"),
            (r#"{"a":"\ud800\u0041"}"#, "a bad \\u escape at byte 9"),
            (r#"{"a":"\udc00\ud800"}"#, "a bad \\u escape at byte 9"),
            (r#"{"a":"x\uDBFF\"#, "a bad \\u escape at byte 10"),
            ("\"x\u{1}\"", "a control character in a string at byte 3"),
        ];
        for (body, want) in cases {
            assert_eq!(err(body), format!("invalid JSON: {want}"), "{body}");
        }
        let deep = format!(r#"{{"a":{}"#, "[".repeat(MAX_NESTING + 1));
        assert_eq!(
            err(&deep),
            format!(
                "invalid JSON: arrays and objects nest deeper than {MAX_NESTING} at byte {}",
                6 + MAX_NESTING + 1
            )
        );
    }

    /// Strings end where serde_json says, whatever the offset of the end,
    /// of an escape or of a multibyte character within the eight-byte words
    /// of the fast path, and however near the end of the input.
    #[test]
    fn strings_agree_with_serde_json_at_every_word_offset() {
        let tails = [
            "\"",
            "\\\"\"",
            "\\\\\"",
            "\\u0416\"",
            "\\/x\"",
            "Ж\"",
            "😀\"",
            "\u{7f}\"",
            "\u{1}\"",
            "\\q\"",
            "\\u12\"",
            "\\",
            "",
            "\\u",
        ];
        for filler in ["", "a", "Ж", "é😀"] {
            for n in 0..20 {
                let text: String = filler.chars().cycle().take(n).collect();
                for tail in tails {
                    for after in ["}", "", " }", ",\"b\":1}"] {
                        let body = format!("{{\"a\":\"{text}{tail}{after}");
                        let serde = serde_json::from_str::<serde_json::Value>(&body);
                        let ours = read_object(&body, &NAMES);
                        assert_eq!(ours.is_ok(), serde.is_ok(), "{body:?}: {ours:?}");
                        if let (Ok(fields), Ok(value)) = (ours, serde) {
                            let raw: serde_json::Value =
                                serde_json::from_str(fields[0].unwrap().text).unwrap();
                            assert_eq!(raw, value["a"], "{body:?}");
                        }
                    }
                }
            }
        }
    }

    /// Numbers too: integer runs of every length around the eight-digit
    /// words, fractions and exponents, at the end of the input or not.
    #[test]
    fn numbers_agree_with_serde_json_at_every_length() {
        for n in 1..=20 {
            let digits: String = "1234567890".chars().cycle().take(n).collect();
            for sign in ["", "-"] {
                for rest in ["", ".5", ".", ".123456789", "e5", "E+12", "e-", "0", "x"] {
                    let number = format!("{sign}{digits}{rest}");
                    for body in [number.clone(), format!("{{\"a\":{number}}}")] {
                        let serde = serde_json::from_str::<serde_json::Value>(&body).is_ok();
                        assert_eq!(scans(&body), serde, "{body:?}");
                    }
                }
            }
        }
        for ok in [
            "0",
            "-0",
            "0.0",
            "-0e0",
            "1e5",
            "1E+2",
            "0e-7",
            "1.7976931348623157e308",
            "1e-400",
            "0e99999999999999999999",
        ] {
            assert!(scans(ok), "{ok}");
        }
        for bad in [
            "01", "-01", "00", "1.", ".5", "-", "+1", "1e", "1e+", "0x1", "1.e2", "--1",
        ] {
            assert!(!scans(bad), "{bad}");
        }
        // Past a double's range: serde_json refuses these as values (and
        // so would every strict client reading a poll answer).
        let long = "9".repeat(400);
        for out in [
            "1e309",
            "-1e400",
            "1.8e308",
            "1.7976931348623158e308",
            "44444430e0330004444444333330444402",
            &long,
        ] {
            assert!(!scans(out), "{out}");
            assert!(!scans(&format!("{{\"a\":[{out}]}}")), "{out}");
            assert!(
                serde_json::from_str::<serde_json::Value>(out).is_err(),
                "{out}"
            );
        }
        assert!(scans(&"9".repeat(300)));
    }

    /// Keys match only as a whole, escaped or not.
    #[test]
    fn keys_match_whole_names_only() {
        let names = ["code", "table", "table_repr"];
        fn field<'a>(
            body: &'a str,
            names: &[&'static str; 3],
        ) -> Result<[Option<&'a str>; 3], QrError> {
            read_object(body, names).map(|f| f.map(|r| r.map(|r| r.text)))
        }
        for (key, at) in [
            ("code", 0),
            ("table", 1),
            ("table_repr", 2),
            ("\\u0063ode", 0),
        ] {
            let body = format!("{{\"{key}\":7}}");
            let mut want = [None; 3];
            want[at] = Some("7");
            assert_eq!(field(&body, &names), Ok(want), "{key}");
        }
        for (key, echoed) in [
            ("cod", "cod"),
            ("codes", "codes"),
            ("code ", "code "),
            ("Code", "Code"),
            ("", ""),
            ("tabl", "tabl"),
            ("table_", "table_"),
            ("table_rep", "table_rep"),
            ("table_reprx", "table_reprx"),
            ("\\u0063od", "cod"),
            ("cod\\u0065\\u0000", "code\u{0}"),
        ] {
            let body = format!("{{\"{key}\":7}}");
            assert_eq!(
                field(&body, &names),
                Err(QrError::UnknownField(echoed.into())),
                "{key}"
            );
        }
    }

    #[test]
    fn leading_digits_stop_at_the_first_other_byte() {
        for other in [
            b'/', b':', b' ', b'.', b'e', 0x00, 0x7f, 0x80, 0x89, 0x8a, 0xff,
        ] {
            for at in 0..8 {
                let mut word = *b"90123456";
                word[at] = other;
                // Bytes after the first non-digit do not matter.
                word[at + 1..].fill(0xff);
                assert_eq!(
                    leading_digits(u64::from_le_bytes(word)),
                    at,
                    "{other} at {at}"
                );
            }
        }
        assert_eq!(leading_digits(u64::from_le_bytes(*b"09876543")), 8);
    }

    /// The lowest flag of `specials` is the first special byte, whatever
    /// the bytes around it.
    #[test]
    fn specials_flag_the_first_special_byte_exactly() {
        let special = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
        let plain = [b'a', b' ', b'!', b'#', b'[', b']', 0x7f, 0x80, 0xd0, 0xff];
        for b in 0..=255u8 {
            for at in 0..8 {
                for &before in &plain {
                    for after in [b'a', 0x00, b'"', 0xff] {
                        let mut word = [before; 8];
                        word[at] = b;
                        for x in &mut word[at + 1..] {
                            *x = after;
                        }
                        let hits = specials(u64::from_le_bytes(word));
                        let first = word.iter().position(|&x| special(x));
                        let flagged = (hits != 0).then(|| hits.trailing_zeros() as usize / 8);
                        assert_eq!(flagged, first, "{word:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn nesting_is_followed_without_recursion_and_bounded() {
        let n = MAX_NESTING;
        let ok = "[".repeat(n) + &"]".repeat(n);
        assert!(scans(&ok));
        let deep = "[".repeat(n + 1) + &"]".repeat(n + 1);
        assert!(!scans(&deep));
        let mixed = r#"{"a":[{"b":[{"c":{}}]}]}"#;
        assert!(scans(mixed));
        assert!(!scans(r#"{"a":[{"b":[{"c":{}]}]}"#));
    }

    #[test]
    fn plain_runs_stop_at_the_first_special_byte() {
        for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for at in 0..20 {
                for start in 0..=at {
                    let mut s = "aЖ~ \x7f".repeat(5).into_bytes();
                    s.truncate(20);
                    s[at] = special;
                    assert_eq!(plain_run(&s, start), at, "{special} at {at} from {start}");
                }
            }
        }
        let plain = "aЖ~ \x7f!#[]".repeat(3);
        assert_eq!(plain_run(plain.as_bytes(), 0), plain.len());
    }

    #[test]
    fn field_readers() {
        let raw = |text: &'static str| Raw {
            text,
            spaced: false,
            depth: 0,
        };
        assert_eq!(string(raw(r#""abc""#), "f").unwrap(), "abc");
        assert!(matches!(
            string(raw(r#""abc""#), "f").unwrap(),
            Cow::Borrowed(_)
        ));
        assert_eq!(string(raw(r#""a\nb\u0416""#), "f").unwrap(), "a\nbЖ");
        assert!(string(raw("1"), "f").is_err());
        assert!(string(raw(r#""\ud800""#), "f").is_err());
        for n in [
            "-12",
            "0",
            "-0",
            "7",
            "123456789012345678",
            "-123456789012345678",
            "1234567890123456789",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            assert_eq!(integer(raw(n), "f", "x"), Ok(n.parse().unwrap()), "{n}");
        }
        for bad in [
            "1.0",
            "1e3",
            "\"1\"",
            "null",
            "-",
            "",
            "12a",
            "99999999999999999999",
            "9223372036854775808",
            "-9223372036854775809",
        ] {
            assert!(integer(raw(bad), "f", "x").is_err(), "{bad}");
        }
        assert!(is_null(raw("null")));
        assert!(is_object(raw("{}")));
    }

    /// JSON-like text: valid documents, and valid ones with one byte
    /// changed, dropped or added, so that both sides of the grammar are hit.
    fn json_like() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("false".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:e}")),
            "[ -~]{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            "\\PC{0,4}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            Just(r#""\u00e9\n\"\\\/""#.to_string()),
        ];
        let doc = leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(("[a-c]{1,2}", inner), 0..5).prop_map(|v| {
                    let members: Vec<String> = v
                        .into_iter()
                        .map(|(k, v)| format!("\"{k}\" : {v}"))
                        .collect();
                    format!(" {{ {} }}\n", members.join(" ,\t"))
                }),
            ]
        });
        (doc, 0usize..3, any::<prop::sample::Index>(), any::<u8>()).prop_map(
            |(doc, how, at, byte)| {
                let mut b = doc.into_bytes();
                let i = at.index(b.len() + 1);
                match how {
                    0 => {}
                    1 if i < b.len() => {
                        b.remove(i);
                    }
                    _ => b.insert(i, b"{}[],:\"\\ 0-e.tfn\x01"[usize::from(byte) % 17]),
                }
                String::from_utf8(b).unwrap_or_default()
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Accepts exactly what serde_json reads into a `Value`.
        #[test]
        fn agrees_with_serde_json(text in json_like()) {
            let serde = serde_json::from_str::<serde_json::Value>(&text).is_ok();
            prop_assert_eq!(scans(&text), serde, "{:?}", text);
        }

        /// A field's raw text is the field's value.
        #[test]
        fn raw_fields_are_the_values(a in json_like(), b in json_like()) {
            let text = format!("{{\"b\": {b} ,\"a\":{a}}}");
            let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&text) else {
                return Ok(());
            };
            // The pieces can close the outer object early and nest the rest
            // (`b` = `{"a": 1`, `a` = `2}`): serde_json then keeps the last of
            // a repeated key, which `read_object` refuses.
            let fields = match read_object(&text, &NAMES) {
                Ok(fields) => fields,
                Err(e) => {
                    prop_assert!(matches!(e, QrError::DuplicateField(_)), "{:?}: {:?}", text, e);
                    return Ok(());
                }
            };
            for (name, raw) in NAMES.iter().zip(fields) {
                let Some(raw) = raw else {
                    prop_assert!(!map.contains_key(*name), "{:?}", text);
                    continue;
                };
                let value: serde_json::Value = serde_json::from_str(raw.text).unwrap();
                prop_assert_eq!(Some(&value), map.get(*name));
                // Compacted, it is the same value; without whitespace to
                // drop, it is the same text.
                let mut compact = Vec::new();
                super::super::json::write_compact(&mut compact, raw.text);
                let compact = String::from_utf8(compact).unwrap();
                prop_assert_eq!(serde_json::from_str::<serde_json::Value>(&compact).unwrap(), value);
                prop_assert_eq!(!raw.spaced, compact == raw.text);
            }
        }
    }
}
