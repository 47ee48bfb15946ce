//! The event hash: a keyed permutation of the low 32 bits of an event's
//! sequence number.
//!
//! SPEC §1.1 asks for a `0x` + 8 lowercase hex digit hash that is unique among
//! retained events and lets a poller say "everything after this one". Instead
//! of drawing random hashes and keeping a hash → position map beside the ring,
//! the hash *is* the position, disguised: a 4-round Feistel network over the
//! 32-bit value `seq mod 2^32`, keyed by a secret the store keeps. Because it is
//! a bijection on 32-bit values, two events whose sequence numbers differ by
//! less than 2^32 never share a hash, and the retained window is always far
//! smaller than that (the ring's capacity bounds it). Decoding a hash back to a
//! sequence number is four rounds of arithmetic: the "index from hash to
//! position" costs O(1), takes no lock and uses no memory.
//!
//! The key makes hashes look random (like the seed's `0xd8833dd3`) and differ
//! between installations; it is not a security boundary — the poll endpoint is
//! guarded by the QR token, not by unguessable hashes.

/// A keyed 32-bit permutation (4-round balanced Feistel network, 16-bit halves).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashKey {
    /// One 32-bit round key per round.
    rounds: [u32; 4],
}

impl HashKey {
    /// Builds the permutation from a 128-bit secret.
    pub fn from_secret(secret: u128) -> Self {
        let b = secret.to_le_bytes();
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        HashKey {
            rounds: [word(0), word(4), word(8), word(12)],
        }
    }

    /// The round function: any mixing function works for a Feistel network's
    /// invertibility; this one (multiply, xor-shift) spreads every input bit
    /// over the 16 output bits.
    #[inline]
    fn f(half: u32, key: u32) -> u32 {
        let mut h = (half ^ key).wrapping_mul(0x9E37_79B1);
        h ^= h >> 15;
        h = h.wrapping_mul(0x85EB_CA77);
        h >> 16
    }

    /// The hash of the event whose sequence number is `seq`.
    #[inline]
    pub fn encode(&self, seq: u64) -> u32 {
        let v = seq as u32; // only the low 32 bits: see the module doc
        let (mut l, mut r) = (v >> 16, v & 0xFFFF);
        for &k in &self.rounds {
            let nl = r;
            r = l ^ Self::f(r, k);
            l = nl;
        }
        (l << 16) | r
    }

    /// The low 32 bits of the sequence number whose hash is `hash`.
    #[inline]
    pub fn decode(&self, hash: u32) -> u32 {
        let (mut l, mut r) = (hash >> 16, hash & 0xFFFF);
        for &k in self.rounds.iter().rev() {
            let pl = r ^ Self::f(l, k);
            r = l;
            l = pl;
        }
        (l << 16) | r
    }
}

/// Formats a hash the way SPEC §1.1 shows it: `0x` and 8 lowercase hex digits.
pub fn format_hash(hash: u32) -> [u8; 10] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"0x00000000";
    for i in 0..8 {
        out[2 + i] = HEX[((hash >> (28 - 4 * i)) & 0xF) as usize];
    }
    out
}

/// Parses `0x` + 8 hex digits (either case, as a lenient reader should).
/// Anything else is `None`: SPEC §1.1 treats it like an unknown hash.
pub fn parse_hash(text: &[u8]) -> Option<u32> {
    let digits = text.strip_prefix(b"0x")?;
    if digits.len() != 8 {
        return None;
    }
    let mut v = 0u32;
    for &c in digits {
        let d = (c as char).to_digit(16)?;
        v = (v << 4) | d;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn format_and_parse_round_trip() {
        assert_eq!(&format_hash(0xd8833dd3), b"0xd8833dd3");
        assert_eq!(parse_hash(b"0xd8833dd3"), Some(0xd8833dd3));
        assert_eq!(parse_hash(b"0xD8833DD3"), Some(0xd8833dd3));
        assert_eq!(parse_hash(b"none"), None);
        assert_eq!(parse_hash(b"0x123"), None);
        assert_eq!(parse_hash(b"0x12345678a"), None);
        assert_eq!(parse_hash(b"0x1234567g"), None);
        assert_eq!(parse_hash(b"0x+1234567"), None);
    }

    #[test]
    fn consecutive_sequences_get_distinct_scattered_hashes() {
        let key = HashKey::from_secret(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        let mut seen = std::collections::HashSet::new();
        for seq in 0..200_000u64 {
            assert!(seen.insert(key.encode(seq)), "collision at {seq}");
        }
        // Not simply counting up: neighbours differ in many bits.
        let d = (key.encode(1) ^ key.encode(2)).count_ones();
        assert!(d > 4, "hashes of neighbours differ in only {d} bits");
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(secret: u128, seq: u64) {
            let key = HashKey::from_secret(secret);
            prop_assert_eq!(key.decode(key.encode(seq)), seq as u32);
        }
    }
}
