//! JSON output: the string escaper used by every JSON producer in floorbell,
//! and the compactor that passes a publisher's `invoice` / `order` through
//! with its key order, numbers and text unchanged (SPEC §1.1: Cyrillic text
//! passes through unchanged) and only its insignificant whitespace dropped.

/// Deepest nesting accepted inside `invoice` / `order` (arrays and objects).
/// The seed's documents nest five levels; 128 leaves room for any POS.
pub const MAX_DEPTH: usize = 128;

/// Appends `s` as a JSON string literal (quotes included).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xF) as usize],
                ]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends `raw`, a JSON value the parser has already checked (nesting
/// included), without its insignificant whitespace: key order, numbers and
/// string contents (escapes included) exactly as the publisher wrote them.
pub fn write_compact(out: &mut Vec<u8>, raw: &str) {
    let bytes = raw.as_bytes();
    // `bytes[run..i]` is copied when whitespace (or the end) interrupts it.
    let mut run = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                // Skip the string: its end is the next quote not escaped.
                i += 1;
                loop {
                    let rest = bytes.get(i..).unwrap_or_default();
                    match memchr::memchr2(b'"', b'\\', rest) {
                        Some(at) if rest[at] == b'"' => {
                            i += at;
                            break;
                        }
                        Some(at) => i += at + 2,
                        None => {
                            i = bytes.len();
                            break;
                        }
                    }
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' => {
                out.extend_from_slice(&bytes[run..i]);
                run = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[run.min(bytes.len())..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compact(raw: &str) -> String {
        let mut out = b"x".to_vec();
        write_compact(&mut out, raw);
        String::from_utf8(out[1..].to_vec()).unwrap()
    }

    #[test]
    fn drops_only_insignificant_whitespace() {
        assert_eq!(
            compact(" { \"z\" : 1,\n\t\"a\" : [ 1.50, -2e3, true, null, \"Блюдо 2\" ], \"m\":{ }, \"e\":[] }\r\n"),
            r#"{"z":1,"a":[1.50,-2e3,true,null,"Блюдо 2"],"m":{},"e":[]}"#
        );
    }

    #[test]
    fn strings_pass_through_with_their_escapes() {
        assert_eq!(
            compact(r#"{"a b":"x \" y \\", "c":"\u0041 \/\n"}"#),
            r#"{"a b":"x \" y \\","c":"\u0041 \/\n"}"#
        );
        assert_eq!(compact(r#"["\\", " "]"#), r#"["\\"," "]"#);
    }

    #[test]
    fn escapes_what_json_requires() {
        let mut out = Vec::new();
        write_str(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn brackets_inside_strings_are_text() {
        let text = format!(r#"["{}", "]"]"#, "[".repeat(MAX_DEPTH * 2));
        assert_eq!(
            compact(&text),
            format!(r#"["{}","]"]"#, "[".repeat(MAX_DEPTH * 2))
        );
    }
}
