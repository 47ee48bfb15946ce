//! A caller's text quoted in an error message, never all of it: an error
//! names the bad input, and a hostile caller's 10 MB string must not become
//! a 10 MB message (held per thread by the C ABI's last error, written to
//! logs, sent back over HTTP).

use std::fmt;

/// Longest piece of a caller's text echoed in an error message.
pub const MAX_ECHOED_LEN: usize = 64;

/// A caller's text for an error message: cut to [`MAX_ECHOED_LEN`] bytes on
/// a character boundary, quoted and escaped (`Debug`), `…` after a cut.
pub struct Echo<'a>(pub &'a str);

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = cut(self.0, MAX_ECHOED_LEN);
        if cut.len() == self.0.len() {
            write!(f, "{cut:?}")
        } else {
            write!(f, "{cut:?}…")
        }
    }
}

/// The longest start of `s` of at most `max` bytes that ends on a
/// character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_quoted_whole_and_long_text_is_cut_on_a_char_boundary() {
        assert_eq!(Echo("a\"b").to_string(), r#""a\"b""#);
        let exact = "x".repeat(MAX_ECHOED_LEN);
        assert_eq!(Echo(&exact).to_string(), format!("{exact:?}"));
        let long = "é".repeat(MAX_ECHOED_LEN);
        assert_eq!(
            Echo(&long).to_string(),
            format!("{:?}…", "é".repeat(MAX_ECHOED_LEN / 2))
        );
        let odd = format!("x{}", "é".repeat(MAX_ECHOED_LEN));
        assert_eq!(
            Echo(&odd).to_string(),
            format!("{:?}…", format!("x{}", "é".repeat(MAX_ECHOED_LEN / 2 - 1)))
        );
    }
}
