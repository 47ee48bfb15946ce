//! Compact JSON output: a writer over simd-json's tape that keeps key order,
//! duplicate-free objects as given, and non-ASCII text as it came (SPEC §1.1:
//! Cyrillic text passes through unchanged), plus the string escaper used by
//! every JSON producer in floorbell.

use simd_json::{tape::Node, StaticNode};

/// Deepest nesting accepted inside `invoice` / `order` (arrays and objects).
/// The seed's documents nest five levels; 128 leaves room for any POS while
/// keeping the writer's explicit stack small.
pub const MAX_DEPTH: usize = 128;

/// Why a value could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A number that JSON cannot carry (NaN or infinity).
    BadNumber,
    /// The tape ended early or had a non-string key (a parser bug, never
    /// expected from simd-json).
    Malformed,
}

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

/// Appends a static node (number, bool, null).
pub fn write_static(out: &mut Vec<u8>, node: &StaticNode) -> Result<(), WriteError> {
    match *node {
        StaticNode::I64(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
        StaticNode::U64(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
        StaticNode::F64(v) => {
            if !v.is_finite() {
                return Err(WriteError::BadNumber);
            }
            out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
        }
        StaticNode::Bool(true) => out.extend_from_slice(b"true"),
        StaticNode::Bool(false) => out.extend_from_slice(b"false"),
        StaticNode::Null => out.extend_from_slice(b"null"),
    }
    Ok(())
}

/// Appends the value that starts at `nodes[0]` compactly and returns how many
/// tape nodes it spans. Iterative (an explicit stack), so hostile nesting
/// cannot overflow the thread's stack.
pub fn write_value(out: &mut Vec<u8>, nodes: &[Node<'_>]) -> Result<usize, WriteError> {
    /// An open container.
    struct Frame {
        /// Members (pairs, for an object) not yet written.
        remaining: usize,
        /// Object (keys and values) or array.
        is_object: bool,
        /// No member written yet (so no ',' before the next one).
        first: bool,
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    loop {
        if let Some(top) = stack.last_mut() {
            if top.remaining == 0 {
                out.push(if top.is_object { b'}' } else { b']' });
                stack.pop();
                if stack.is_empty() {
                    return Ok(i);
                }
                continue;
            }
            if !top.first {
                out.push(b',');
            }
            top.first = false;
            top.remaining -= 1;
            if top.is_object {
                let Some(Node::String(key)) = nodes.get(i) else {
                    return Err(WriteError::Malformed);
                };
                write_str(out, key);
                out.push(b':');
                i += 1;
            }
        }
        let Some(node) = nodes.get(i) else {
            return Err(WriteError::Malformed);
        };
        i += 1;
        match node {
            Node::String(s) => write_str(out, s),
            Node::Static(s) => write_static(out, s)?,
            Node::Object { len, .. } | Node::Array { len, .. } => {
                if stack.len() >= MAX_DEPTH {
                    return Err(WriteError::TooDeep);
                }
                let is_object = matches!(node, Node::Object { .. });
                out.push(if is_object { b'{' } else { b'[' });
                stack.push(Frame {
                    remaining: *len,
                    is_object,
                    first: true,
                });
                continue;
            }
        }
        if stack.is_empty() {
            return Ok(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(input: &str) -> String {
        let mut bytes = input.as_bytes().to_vec();
        let tape = simd_json::to_tape(&mut bytes).unwrap();
        let mut out = Vec::new();
        let used = write_value(&mut out, &tape.0).unwrap();
        assert_eq!(used, tape.0.len());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn keeps_order_and_text() {
        assert_eq!(
            round_trip(r#" { "z" : 1, "a" : [ 1.5, -2, true, null, "Блюдо" ], "m":{}, "e":[] } "#),
            r#"{"z":1,"a":[1.5,-2,true,null,"Блюдо"],"m":{},"e":[]}"#
        );
    }

    #[test]
    fn numbers_as_json_writes_them() {
        assert_eq!(
            round_trip("[186.0,12,1e300,18446744073709551615]"),
            "[186.0,12,1e300,18446744073709551615]"
        );
    }

    #[test]
    fn nested_containers_close_in_order() {
        assert_eq!(
            round_trip(r#"{"a":{"b":[{"c":[[]]},{}],"d":"x"},"e":[[1],[2,{"f":null}]]}"#),
            r#"{"a":{"b":[{"c":[[]]},{}],"d":"x"},"e":[[1],[2,{"f":null}]]}"#
        );
    }

    #[test]
    fn escapes_what_json_requires() {
        let mut out = Vec::new();
        write_str(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\"b\\c\nd\u0001é""#);
        assert_eq!(round_trip(r#"["\u0041\n\"\\\/"]"#), r#"["A\n\"\\/"]"#);
    }

    #[test]
    fn refuses_hostile_nesting() {
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        let mut bytes = deep.into_bytes();
        let tape = simd_json::to_tape(&mut bytes).unwrap();
        assert_eq!(
            write_value(&mut Vec::new(), &tape.0),
            Err(WriteError::TooDeep)
        );
    }
}
