//! WebSocket framing without a socket (RFC 6455), on tungstenite's frame
//! header parser and mask: bytes in, [`WsEvent`]s out; frames out are built
//! once as [`Bytes`] and shared by every receiver.
//!
//! A connection holds no buffer of its own while idle: the reactor reads into
//! its shared scratch buffer and keeps only an incomplete frame; a fragmented
//! message is reassembled in a buffer that exists only until its last
//! fragment.

use std::io::Cursor;

use bytes::{BufMut, Bytes, BytesMut};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Largest message accepted, fragments included (SPEC §0: 64 KiB → 1009).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Close codes floorbell sends (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure (answering the client's close).
    pub const NORMAL: u16 = 1000;
    /// Going away (the server shuts down).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error (unmasked frame, bad opcode, bad fragment order …).
    pub const PROTOCOL: u16 = 1002;
    /// Data the endpoint does not accept (binary frames: every floorbell
    /// protocol is text).
    pub const UNSUPPORTED: u16 = 1003;
    /// Text that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// Policy violation (§3.4: wrong token, silence).
    pub const POLICY: u16 = 1008;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
    /// Internal error (a commit failed: the engine takes no more changes).
    pub const INTERNAL: u16 = 1011;
    /// Try again later (§3.5: the client does not keep up).
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// What the bytes of one connection said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// A complete text message.
    Text(String),
    /// A ping: answer with this pong frame.
    Pong(Bytes),
    /// The client closed (with its code, if any): answer with a close frame.
    Closed(Option<u16>),
    /// The client broke the protocol: close with this code and reason.
    Fail(u16, &'static str),
}

/// Reassembly state of one connection (empty while idle).
#[derive(Debug, Default)]
pub struct WsReader {
    /// The fragments of a text message received so far.
    fragments: Option<Vec<u8>>,
}

impl WsReader {
    /// Decodes the complete frames at the start of `buf` (unmasking them in
    /// place); returns the bytes used and pushes what they said onto
    /// `events`. Stops after a close or a failure, and once `max_texts` text
    /// messages are out (the rest stays in `buf`, undecoded).
    pub fn decode(&mut self, buf: &mut [u8], events: &mut Vec<WsEvent>, max_texts: usize) -> usize {
        let mut used = 0;
        let mut texts = 0;
        loop {
            if texts >= max_texts {
                return used;
            }
            let mut cursor = Cursor::new(&buf[used..]);
            let (header, len) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(h)) => h,
                Ok(None) => return used,
                Err(_) => {
                    events.push(WsEvent::Fail(close_code::PROTOCOL, "reserved opcode"));
                    return used;
                }
            };
            let header_len = cursor.position() as usize;
            if matches!(header.opcode, OpCode::Control(_)) && len > 125 {
                events.push(WsEvent::Fail(close_code::PROTOCOL, "bad control frame"));
                return used;
            }
            // Only a continuation adds to the message being collected (a
            // ping between its fragments is a message of its own).
            let so_far = match header.opcode {
                OpCode::Data(Data::Continue) => self.fragments.as_ref().map_or(0, Vec::len) as u64,
                _ => 0,
            };
            // The length is the client's 64-bit claim: the sum must not wrap
            // (a continuation claiming 2^64 - 1 once passed as small).
            if len.saturating_add(so_far) > MAX_MESSAGE_BYTES as u64 {
                events.push(WsEvent::Fail(
                    close_code::TOO_BIG,
                    "message larger than 64 KiB",
                ));
                return used;
            }
            let len = len as usize;
            if buf.len() - used - header_len < len {
                return used; // the payload is not all here yet
            }
            let start = used + header_len;
            used = start + len;
            let payload = &mut buf[start..used];
            let Some(mask) = header.mask else {
                events.push(WsEvent::Fail(
                    close_code::PROTOCOL,
                    "client frames must be masked",
                ));
                return used;
            };
            apply_mask(payload, mask);
            if header.rsv1 || header.rsv2 || header.rsv3 {
                events.push(WsEvent::Fail(close_code::PROTOCOL, "reserved bits set"));
                return used;
            }
            match header.opcode {
                OpCode::Control(c) => {
                    if !header.is_final || len > 125 {
                        events.push(WsEvent::Fail(close_code::PROTOCOL, "bad control frame"));
                        return used;
                    }
                    match c {
                        Control::Ping => events.push(WsEvent::Pong(frame(
                            OpCode::Control(Control::Pong),
                            payload,
                        ))),
                        Control::Pong => {}
                        Control::Close => {
                            events.push(close_event(payload));
                            return used;
                        }
                        Control::Reserved(_) => {
                            events.push(WsEvent::Fail(close_code::PROTOCOL, "reserved opcode"));
                            return used;
                        }
                    }
                }
                OpCode::Data(Data::Text) => {
                    if self.fragments.is_some() {
                        events.push(WsEvent::Fail(
                            close_code::PROTOCOL,
                            "new message inside a fragmented one",
                        ));
                        return used;
                    }
                    if header.is_final {
                        if !push_text(events, payload.to_vec()) {
                            return used;
                        }
                        texts += 1;
                    } else {
                        self.fragments = Some(payload.to_vec());
                    }
                }
                OpCode::Data(Data::Continue) => {
                    let Some(mut message) = self.fragments.take() else {
                        events.push(WsEvent::Fail(
                            close_code::PROTOCOL,
                            "continuation without a message",
                        ));
                        return used;
                    };
                    message.extend_from_slice(payload);
                    if header.is_final {
                        if !push_text(events, message) {
                            return used;
                        }
                        texts += 1;
                    } else {
                        self.fragments = Some(message);
                    }
                }
                OpCode::Data(Data::Binary) => {
                    events.push(WsEvent::Fail(
                        close_code::UNSUPPORTED,
                        "binary messages are not supported",
                    ));
                    return used;
                }
                OpCode::Data(Data::Reserved(_)) => {
                    events.push(WsEvent::Fail(close_code::PROTOCOL, "reserved opcode"));
                    return used;
                }
            }
        }
    }

    /// Whether a fragmented message is being reassembled (so memory is held).
    pub fn is_reassembling(&self) -> bool {
        self.fragments.is_some()
    }
}

/// What a client's close frame says (RFC 6455 §5.5.1, §7.4): its code, or
/// the failure to answer with when the frame breaks the protocol (a code
/// the RFC forbids on the wire, such as 1005, is never echoed back).
fn close_event(payload: &[u8]) -> WsEvent {
    match payload {
        [] => WsEvent::Closed(None),
        [_] => WsEvent::Fail(close_code::PROTOCOL, "close frame of one byte"),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                WsEvent::Fail(close_code::PROTOCOL, "invalid close code")
            } else if std::str::from_utf8(reason).is_err() {
                WsEvent::Fail(close_code::INVALID_DATA, "close reason is not UTF-8")
            } else {
                WsEvent::Closed(Some(code))
            }
        }
    }
}

/// Pushes a complete text message, or the 1007 failure when it is not
/// UTF-8; returns whether decoding may go on.
fn push_text(events: &mut Vec<WsEvent>, message: Vec<u8>) -> bool {
    match String::from_utf8(message) {
        Ok(text) => {
            events.push(WsEvent::Text(text));
            true
        }
        Err(_) => {
            events.push(WsEvent::Fail(close_code::INVALID_DATA, "text is not UTF-8"));
            false
        }
    }
}

/// Unmasks a client payload in place (RFC 6455 §5.3; tungstenite keeps its
/// own version private).
fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// One unmasked, final server frame.
pub fn frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let header = FrameHeader {
        is_final: true,
        opcode,
        ..FrameHeader::default()
    };
    let len = payload.len() as u64;
    let mut out = BytesMut::with_capacity(header.len(len) + payload.len()).writer();
    // Writing into memory cannot fail.
    let _ = header.format(len, &mut out);
    let mut out = out.into_inner();
    out.extend_from_slice(payload);
    out.freeze()
}

/// A text frame: what every floorbell message is.
pub fn text_frame(text: &[u8]) -> Bytes {
    frame(OpCode::Data(Data::Text), text)
}

/// A close frame with a code and a short reason.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut payload = code.to_be_bytes().to_vec();
    // Control frames carry at most 125 bytes.
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
    frame(OpCode::Control(Control::Close), &payload)
}

/// `Sec-WebSocket-Accept` for a client's key (RFC 6455 §4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    tungstenite::handshake::derive_accept_key(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: masked, as browsers send them.
    fn client(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n < 65536 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn decode_all(bytes: &[u8]) -> (usize, Vec<WsEvent>) {
        let mut buf = bytes.to_vec();
        let mut events = Vec::new();
        let used = WsReader::default().decode(&mut buf, &mut events, usize::MAX);
        (used, events)
    }

    #[test]
    fn text_ping_and_close() {
        let mut bytes = client(0x1, true, b"pick 0 tok");
        bytes.extend(client(0x9, true, b"hi"));
        bytes.extend(client(0x8, true, &1000u16.to_be_bytes()));
        let (used, events) = decode_all(&bytes);
        assert_eq!(used, bytes.len());
        assert_eq!(
            events,
            [
                WsEvent::Text("pick 0 tok".into()),
                WsEvent::Pong(Bytes::from_static(b"\x8a\x02hi")),
                WsEvent::Closed(Some(1000))
            ]
        );
    }

    #[test]
    fn decoding_stops_after_max_texts_and_resumes_where_it_stopped() {
        let mut bytes = Vec::new();
        for i in 0..5 {
            bytes.extend(client(0x1, true, format!("query {i}@x.y").as_bytes()));
            bytes.extend(client(0x9, true, b""));
        }
        let mut reader = WsReader::default();
        let mut events = Vec::new();
        let mut buf = bytes.clone();
        let used = reader.decode(&mut buf, &mut events, 2);
        // Two texts and the ping after the first; the second's ping waits.
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[2], WsEvent::Text("query 1@x.y".into()));
        let mut rest = bytes[used..].to_vec();
        let more = reader.decode(&mut rest, &mut events, usize::MAX);
        assert_eq!(used + more, bytes.len());
        let texts: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                WsEvent::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            texts,
            [
                "query 0@x.y",
                "query 1@x.y",
                "query 2@x.y",
                "query 3@x.y",
                "query 4@x.y"
            ]
        );
        assert_eq!(events.len(), 10);
        assert_eq!(reader.decode(&mut bytes.clone(), &mut Vec::new(), 0), 0);
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let bytes = client(0x1, true, b"accept 12");
        for cut in 0..bytes.len() {
            let (used, events) = decode_all(&bytes[..cut]);
            assert_eq!((used, events.len()), (0, 0), "cut at {cut}");
        }
    }

    #[test]
    fn fragments_are_reassembled_with_control_frames_between() {
        let mut reader = WsReader::default();
        let mut events = Vec::new();
        let mut part = client(0x1, false, b"new a@b.c ");
        part.extend(client(0x9, true, b""));
        reader.decode(&mut part, &mut events, usize::MAX);
        assert!(reader.is_reassembling());
        let mut rest = client(0x0, true, "Анна".as_bytes());
        reader.decode(&mut rest, &mut events, usize::MAX);
        assert_eq!(
            events,
            [
                WsEvent::Pong(Bytes::from_static(b"\x8a\x00")),
                WsEvent::Text("new a@b.c Анна".into())
            ]
        );
        assert!(!reader.is_reassembling());
    }

    /// A ping between the fragments of a message near the 64 KiB limit is
    /// answered: only continuations count towards the message's size.
    #[test]
    fn a_ping_between_large_fragments_does_not_count_towards_the_message() {
        let mut reader = WsReader::default();
        let mut events = Vec::new();
        let first = "a".repeat(MAX_MESSAGE_BYTES - 100);
        let mut bytes = client(0x1, false, first.as_bytes());
        bytes.extend(client(0x9, true, &[b'p'; 125]));
        bytes.extend(client(0x0, true, &[b'b'; 100]));
        let used = reader.decode(&mut bytes, &mut events, usize::MAX);
        assert_eq!(used, bytes.len());
        assert!(matches!(events[0], WsEvent::Pong(_)), "{:?}", &events[0]);
        assert!(matches!(&events[1], WsEvent::Text(t) if t.len() == MAX_MESSAGE_BYTES));
        // One byte more is too big.
        let mut bytes = client(0x1, false, first.as_bytes());
        bytes.extend(client(0x0, true, &[b'b'; 101]));
        let (_, events) = decode_all(&bytes);
        assert_eq!(
            events,
            [WsEvent::Fail(
                close_code::TOO_BIG,
                "message larger than 64 KiB"
            )]
        );
        // A control frame over 125 bytes is refused as soon as its header
        // arrives, without waiting for a payload it claims.
        let mut huge_ping = vec![0x89, 0x80 | 127];
        huge_ping.extend_from_slice(&(1u64 << 40).to_be_bytes());
        huge_ping.extend_from_slice(&[0; 4]);
        let (_, events) = decode_all(&huge_ping);
        assert_eq!(
            events,
            [WsEvent::Fail(close_code::PROTOCOL, "bad control frame")]
        );
    }

    #[test]
    fn refusals() {
        let fail = |bytes: Vec<u8>| decode_all(&bytes).1.pop().unwrap();
        assert_eq!(
            fail(client(0x2, true, b"x")),
            WsEvent::Fail(close_code::UNSUPPORTED, "binary messages are not supported")
        );
        assert!(matches!(
            fail(client(0x1, true, &[0xff, 0xfe])),
            WsEvent::Fail(close_code::INVALID_DATA, _)
        ));
        assert!(matches!(
            fail(client(0x0, true, b"x")),
            WsEvent::Fail(close_code::PROTOCOL, _)
        ));
        assert!(matches!(
            fail(client(0x3, true, b"x")),
            WsEvent::Fail(close_code::PROTOCOL, _)
        ));
        assert!(matches!(
            fail(client(0x9, false, b"x")),
            WsEvent::Fail(close_code::PROTOCOL, _)
        ));
        let mut unmasked = vec![0x81, 0x01, b'x'];
        assert!(matches!(
            WsReader::default().decode(&mut unmasked, &mut Vec::new(), usize::MAX),
            3
        ));
        assert!(matches!(
            fail(vec![0x81, 0x01, b'x']),
            WsEvent::Fail(close_code::PROTOCOL, _)
        ));
        // Too big is refused from the header alone, before the payload arrives.
        let big = client(0x1, true, &vec![b'a'; MAX_MESSAGE_BYTES + 1]);
        assert_eq!(
            decode_all(&big[..20]).1,
            [WsEvent::Fail(
                close_code::TOO_BIG,
                "message larger than 64 KiB"
            )]
        );
        let exactly = client(0x1, true, &vec![b'a'; MAX_MESSAGE_BYTES]);
        assert!(matches!(decode_all(&exactly).1[0], WsEvent::Text(_)));
    }

    #[test]
    fn a_length_that_would_wrap_is_too_big() {
        let mut reader = WsReader::default();
        let mut events = Vec::new();
        let mut first = client(0x1, false, b"acc");
        reader.decode(&mut first, &mut events, usize::MAX);
        assert!(events.is_empty());
        // A continuation claiming 2^64 - 1 bytes, header only.
        let mut huge = vec![0x80, 0x80 | 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        huge.extend_from_slice(&[1, 2, 3, 4]);
        reader.decode(&mut huge, &mut events, usize::MAX);
        assert_eq!(
            events,
            [WsEvent::Fail(
                close_code::TOO_BIG,
                "message larger than 64 KiB"
            )]
        );
    }

    #[test]
    fn close_frames_are_checked() {
        let close = |payload: &[u8]| decode_all(&client(0x8, true, payload)).1;
        assert_eq!(close(b""), [WsEvent::Closed(None)]);
        assert_eq!(close(b"\x03\xe8bye"), [WsEvent::Closed(Some(1000))]);
        assert_eq!(close(b"\x0f\xa0"), [WsEvent::Closed(Some(4000))]);
        for bad in [
            &b"\x03"[..],
            b"\x03\xed",
            b"\x03\xee",
            b"\x03\xe7",
            b"\x03\xf7",
            b"\x0b\xb7",
        ] {
            assert!(
                matches!(close(bad)[..], [WsEvent::Fail(close_code::PROTOCOL, _)]),
                "{bad:?}"
            );
        }
        assert!(matches!(
            close(b"\x03\xe8\xff")[..],
            [WsEvent::Fail(close_code::INVALID_DATA, _)]
        ));
    }

    #[test]
    fn server_frames() {
        assert_eq!(&text_frame(b"taken")[..], b"\x81\x05taken");
        let long = text_frame(&[b'a'; 300]);
        assert_eq!(&long[..4], &[0x81, 126, 1, 44]);
        assert_eq!(&close_frame(1013, "slow")[..], b"\x88\x06\x03\xf5slow");
        // RFC 6455 §1.3's example.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    proptest::proptest! {
        /// Hostile bytes never panic and never claim more than they were given.
        #[test]
        fn any_bytes_decode_or_fail_cleanly(chunks in proptest::collection::vec(
            proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 1..6)) {
            let mut reader = WsReader::default();
            let mut pending = Vec::new();
            let mut events = Vec::new();
            for chunk in chunks {
                pending.extend_from_slice(&chunk);
                let used = reader.decode(&mut pending, &mut events, usize::MAX);
                proptest::prop_assert!(used <= pending.len());
                pending.drain(..used);
                if matches!(events.last(), Some(WsEvent::Fail(..) | WsEvent::Closed(_))) {
                    break;
                }
            }
        }
    }
}
