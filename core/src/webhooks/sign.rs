//! The headers of a webhook POST (SPEC §3.6): the HMAC-SHA256 signature a
//! receiver checks, the delivery id it drops duplicates by, and the key.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The signature header (SPEC §3.6), value from [`sign`].
pub const SIGNATURE_HEADER: &str = "X-Floorbell-Signature";
/// The delivery-id header (SPEC §3.6): the decimal delivery id, the same on
/// every retry of one change to one receiver.
pub const DELIVERY_HEADER: &str = "X-Floorbell-Delivery";
/// The body's content type (SPEC §3.6).
pub const CONTENT_TYPE: &str = "application/json";

/// The signing key of a registration: SHA-256 of the access token that
/// registered the URL (SPEC §3.6), the same digest
/// [`crate::access::hash_token`] keeps, so the shell never needs the token
/// itself to sign.
pub fn registration_key(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// The `X-Floorbell-Signature` value for `body` sent at `unix_secs`:
/// exactly `t=UNIXTIME,v1=HEX` where HEX is the lowercase hex of
/// HMAC-SHA256(key, `"UNIXTIME." + body`) (SPEC §3.6).
///
/// `unix_secs` is the time of sending (core reads no clock), written in
/// decimal as is, a minus sign included should the clock say so.
pub fn sign(key: &[u8; 32], unix_secs: i64, body: &[u8]) -> String {
    let mut mac = hmac_of(key);
    let mut digits = itoa::Buffer::new();
    let t = digits.format(unix_secs);
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();

    let mut out = String::with_capacity(2 + t.len() + 4 + 64);
    out.push_str("t=");
    out.push_str(t);
    out.push_str(",v1=");
    out.push_str(&hex::encode(tag));
    out
}

/// HMAC-SHA256 keyed with `key`.
fn hmac_of(key: &[u8; 32]) -> Hmac<Sha256> {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length (RFC 2104 §2); `hmac` only reports
        // an error for MACs with fixed key sizes.
        Err(_) => unreachable!("HMAC accepts a key of any length"),
    }
}
