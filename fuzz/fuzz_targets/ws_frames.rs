//! Any bytes as a client's WebSocket input, fed to the frame decoder in the
//! pieces the first byte chooses (as reads would split them): nothing may
//! panic, no call may claim more bytes than it was given, and every text
//! message it yields is at most the message limit.
#![no_main]

use floorbell_server::ws::codec::{WsEvent, WsReader, MAX_MESSAGE_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let step = usize::from(split).max(1);
    let mut reader = WsReader::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    for piece in input.chunks(step) {
        pending.extend_from_slice(piece);
        let used = reader.decode(&mut pending, &mut events, 64);
        assert!(used <= pending.len());
        pending.drain(..used);
        for event in events.drain(..) {
            match event {
                WsEvent::Text(text) => assert!(text.len() <= MAX_MESSAGE_BYTES),
                WsEvent::Closed(_) | WsEvent::Fail(..) => return,
                WsEvent::Pong(_) => {}
            }
        }
    }
});
