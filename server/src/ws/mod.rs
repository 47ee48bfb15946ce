//! WebSocket for the reactor: [`codec`] frames and unframes without a
//! socket (tungstenite's header parser and mask); the handshake check lives
//! beside the HTTP head it reads.

pub mod codec;

pub use codec::{close_code, close_frame, text_frame, WsEvent, WsReader, MAX_MESSAGE_BYTES};
