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
//! checked against serde_json (accepts exactly what serde_json accepts) by
//! the property tests below.

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
    let mut scan = Scanner::new(input);
    let mut values: Fields<'a, N> = [None; N];
    let mut problem = None;
    scan.ws();
    if scan.peek() != Some(b'{') {
        // Some other JSON value, or not JSON at all.
        scan.value().map_err(|e| e.into_error(&scan))?;
        scan.end().map_err(|e| e.into_error(&scan))?;
        return Err(QrError::NotAnObject);
    }
    scan.i += 1;
    scan.ws();
    if scan.peek() == Some(b'}') {
        scan.i += 1;
    } else {
        loop {
            let key = scan.key().map_err(|e| e.into_error(&scan))?;
            scan.ws();
            scan.expect(b':').map_err(|e| e.into_error(&scan))?;
            scan.ws();
            let raw = scan.value().map_err(|e| e.into_error(&scan))?;
            let found = match key {
                Cow::Borrowed(k) => names.iter().position(|n| *n == k),
                Cow::Owned(ref k) => names.iter().position(|n| n == k),
            };
            let this = match found {
                Some(at) => values[at]
                    .replace(raw)
                    .map(|_| QrError::DuplicateField(names[at].to_string())),
                None => Some(QrError::UnknownField(truncate(&key))),
            };
            if problem.is_none() {
                problem = this;
            }
            scan.ws();
            match scan.peek() {
                Some(b',') => {
                    scan.i += 1;
                    scan.ws();
                }
                Some(b'}') => {
                    scan.i += 1;
                    break;
                }
                _ => return Err(Syntax::Expected("',' or '}'").into_error(&scan)),
            }
        }
    }
    scan.end().map_err(|e| e.into_error(&scan))?;
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

/// A string literal with escapes, decoded (the scanner has checked it; a
/// lone surrogate such as `"\ud800"` is the one thing it lets through that
/// text cannot hold).
fn decode(literal: &str) -> Result<Cow<'_, str>, QrError> {
    serde_json::from_str::<String>(literal)
        .map(Cow::Owned)
        .map_err(|e| QrError::InvalidJson(e.to_string()))
}

/// Why the input is not JSON.
#[derive(Debug, Clone, Copy)]
enum Syntax {
    /// Something else was expected here.
    Expected(&'static str),
    /// A bad escape, control character or number.
    Bad(&'static str),
    /// Arrays and objects nest deeper than [`Scanner::MAX_NESTING`].
    TooDeep,
}

impl Syntax {
    fn into_error(self, at: &Scanner<'_>) -> QrError {
        let column = at.i + 1;
        QrError::InvalidJson(match self {
            Syntax::Expected(what) if at.i >= at.s.len() => {
                format!("the body ends where {what} was expected")
            }
            Syntax::Expected(what) => format!("expected {what} at byte {column}"),
            Syntax::Bad(what) => format!("{what} at byte {column}"),
            Syntax::TooDeep => format!(
                "arrays and objects nest deeper than {} at byte {column}",
                Scanner::MAX_NESTING
            ),
        })
    }
}

/// A cursor over the input.
struct Scanner<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
    /// Whitespace was skipped since this was last cleared.
    spaced: bool,
}

impl<'a> Scanner<'a> {
    /// Deepest nesting the scanner follows (fields are held to
    /// [`MAX_DEPTH`] below the top-level object by their readers).
    const MAX_NESTING: usize = MAX_DEPTH * 2;

    fn new(text: &'a str) -> Self {
        Scanner {
            s: text.as_bytes(),
            text,
            i: 0,
            spaced: false,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek();
        self.i += 1;
        b
    }

    fn ws(&mut self) {
        // Compact JSON has none: one look decides.
        if !matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            return;
        }
        let start = self.i;
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
        self.spaced |= self.i != start;
    }

    fn expect(&mut self, b: u8) -> Result<(), Syntax> {
        if self.peek() == Some(b) {
            self.i += 1;
            Ok(())
        } else {
            Err(Syntax::Expected(match b {
                b':' => "':'",
                _ => "a value",
            }))
        }
    }

    /// Only whitespace is left.
    fn end(&mut self) -> Result<(), Syntax> {
        self.ws();
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(Syntax::Expected("the end of the body")),
        }
    }

    /// A member's key, decoded.
    fn key(&mut self) -> Result<Cow<'a, str>, Syntax> {
        if self.peek() != Some(b'"') {
            return Err(Syntax::Expected("a string key"));
        }
        let start = self.i;
        let escaped = self.string()?;
        let literal = &self.text[start..self.i];
        if escaped {
            // The scanner checked the literal; only a lone surrogate fails.
            serde_json::from_str::<String>(literal)
                .map(Cow::Owned)
                .map_err(|_| Syntax::Bad("a key that is not text"))
        } else {
            Ok(Cow::Borrowed(&literal[1..literal.len() - 1]))
        }
    }

    /// Skips a nested member's key, its colon and the whitespace around.
    fn member_key(&mut self) -> Result<(), Syntax> {
        if self.peek() != Some(b'"') {
            return Err(Syntax::Expected("a string key"));
        }
        self.string()?;
        self.ws();
        self.expect(b':')?;
        self.ws();
        Ok(())
    }

    /// Skips a string literal (at its opening quote); tells whether it holds
    /// escapes.
    fn string(&mut self) -> Result<bool, Syntax> {
        self.i += 1;
        let mut escaped = false;
        loop {
            self.i = plain_run(self.s, self.i);
            match self.next() {
                Some(b'"') => return Ok(escaped),
                Some(b'\\') => {
                    escaped = true;
                    match self.next() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                        Some(b'u') => {
                            for _ in 0..4 {
                                if !self.next().is_some_and(|h| h.is_ascii_hexdigit()) {
                                    self.i -= 1;
                                    return Err(Syntax::Bad("a bad \\u escape"));
                                }
                            }
                        }
                        _ => {
                            self.i -= 1;
                            return Err(Syntax::Bad("a bad escape"));
                        }
                    }
                }
                Some(_) => {
                    self.i -= 1;
                    return Err(Syntax::Bad("a control character in a string"));
                }
                None => return Err(Syntax::Expected("'\"'")),
            }
        }
    }

    /// Skips one or more digits.
    fn digits(&mut self) -> Result<(), Syntax> {
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        if self.i == start {
            Err(Syntax::Bad("a malformed number"))
        } else {
            Ok(())
        }
    }

    /// Skips a number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Result<(), Syntax> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits()?,
            _ => return Err(Syntax::Bad("a malformed number")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.digits()?;
        }
        Ok(())
    }

    fn literal(&mut self, word: &'static str) -> Result<(), Syntax> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Syntax::Expected("a value"))
        }
    }

    /// Skips the value that starts here (not at whitespace) and returns it.
    /// Iterative: hostile nesting cannot overflow the thread's stack.
    fn value(&mut self) -> Result<Raw<'a>, Syntax> {
        let start = self.i;
        self.spaced = false;
        // Open containers, innermost last: a bit per level, set for objects.
        let mut open = [0u64; Self::MAX_NESTING / 64];
        let mut depth = 0usize;
        let mut deepest = 0usize;
        'value: loop {
            match self.peek() {
                Some(c @ (b'{' | b'[')) => {
                    self.i += 1;
                    if depth == Self::MAX_NESTING {
                        return Err(Syntax::TooDeep);
                    }
                    let is_object = c == b'{';
                    let (word, bit) = (depth / 64, 1u64 << (depth % 64));
                    if is_object {
                        open[word] |= bit;
                    } else {
                        open[word] &= !bit;
                    }
                    depth += 1;
                    deepest = deepest.max(depth);
                    self.ws();
                    if self.peek() == Some(if is_object { b'}' } else { b']' }) {
                        self.i += 1;
                        depth -= 1;
                    } else {
                        if is_object {
                            self.member_key()?;
                        }
                        continue 'value;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal("true")?,
                Some(b'f') => self.literal("false")?,
                Some(b'n') => self.literal("null")?,
                _ => return Err(Syntax::Expected("a value")),
            }
            // After a value: close containers until one wants another member.
            loop {
                if depth == 0 {
                    return Ok(Raw {
                        text: &self.text[start..self.i],
                        spaced: self.spaced,
                        depth: deepest,
                    });
                }
                let level = depth - 1;
                let in_object = open[level / 64] & (1u64 << (level % 64)) != 0;
                self.ws();
                match self.next() {
                    Some(b',') => {
                        self.ws();
                        if in_object {
                            self.member_key()?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if in_object => depth -= 1,
                    Some(b']') if !in_object => depth -= 1,
                    _ => {
                        self.i -= 1;
                        return Err(Syntax::Expected(if in_object {
                            "',' or '}'"
                        } else {
                            "',' or ']'"
                        }));
                    }
                }
            }
        }
    }
}

/// The end of the run of plain string bytes (anything but a quote, a
/// backslash or a control character) that starts at `i`: eight bytes at a
/// time while it lasts (the bit tricks of "Bit Twiddling Hacks": a byte that
/// is zero, or less than n, sets its high bit; borrows can only flag bytes
/// above the first real hit, so the lowest flag is exact).
fn plain_run(s: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    while let Some(chunk) = s.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let hits = zero(x ^ (ONES * u64::from(b'"')))
            | zero(x ^ (ONES * u64::from(b'\\')))
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGH);
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
        let mut s = Scanner::new(input);
        s.ws();
        s.value().is_ok() && s.end().is_ok()
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
    fn nesting_is_followed_without_recursion_and_bounded() {
        let n = Scanner::MAX_NESTING;
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
        assert_eq!(integer(raw("-12"), "f", "x"), Ok(-12));
        for bad in ["1.0", "1e3", "\"1\"", "null", "99999999999999999999"] {
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

        /// Accepts exactly what serde_json accepts.
        #[test]
        fn agrees_with_serde_json(text in json_like()) {
            let serde = serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok();
            prop_assert_eq!(scans(&text), serde, "{:?}", text);
        }

        /// A field's raw text is the field's value.
        #[test]
        fn raw_fields_are_the_values(a in json_like(), b in json_like()) {
            let text = format!("{{\"b\": {b} ,\"a\":{a}}}");
            let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&text) else {
                return Ok(());
            };
            let fields = read_object(&text, &NAMES).unwrap();
            for (name, raw) in NAMES.iter().zip(fields) {
                let raw = raw.unwrap();
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
