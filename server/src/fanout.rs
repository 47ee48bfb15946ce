//! Delivering ticket-board messages (SPEC §2) to connections of the event
//! loop and to in-process clients.
//!
//! The store writer releases a change's messages only after the change is on
//! disk, as one [`Delivery`] shared (`Arc`) by every receiver: the event loop
//! gets the pointer through its mailbox, walks its WebSocket connections (in
//! one shard per thread), and queues the same [`Bytes`] frame to each
//! receiver. No message is formatted or copied per receiver, and the event
//! loop is woken once per committed batch.

use bytes::Bytes;

/// A connection's id across event loops: loop index (8 bits), table key (24
/// bits) and the low 32 bits of the loop's own connection counter (so a
/// reused table key is not mistaken for the connection that had it before).
pub type ConnId = u64;

/// Builds a [`ConnId`].
pub fn conn_id(reactor: usize, key: usize, serial: u64) -> ConnId {
    ((reactor as u64 & 0xFF) << 56) | ((key as u64 & 0xFF_FFFF) << 32) | (serial & 0xFFFF_FFFF)
}

/// Splits a [`ConnId`] into loop index, table key and serial.
pub fn split_conn_id(id: ConnId) -> (usize, usize, u32) {
    (
        (id >> 56) as usize,
        ((id >> 32) & 0xFF_FFFF) as usize,
        id as u32,
    )
}

/// Which endpoint a WebSocket connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsRole {
    /// `/ws/staff`
    Staff,
    /// `/ws/kiosk`
    Kiosk,
    /// `/ws/display`
    Display,
    /// `/api/v2/websocket` (SPEC §3.4): not a ticket-board client.
    Orders,
}

/// Who receives a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// One connection.
    Conn(ConnId),
    /// Every staff connection.
    AllStaff,
    /// Every staff connection but one (the sender of a claim).
    AllStaffExcept(ConnId),
    /// Every display.
    AllDisplays,
    /// Every authenticated `/api/v2/websocket` client.
    AllOrders,
}

/// The messages of one committed change, in send order.
#[derive(Debug, Default)]
pub struct Delivery {
    /// A connection that starts receiving broadcasts with this delivery
    /// (its initial state is in `messages`): broadcasts of changes released
    /// earlier were already part of that state.
    pub activate: Option<ConnId>,
    /// Frames (WebSocket header included) and their receivers.
    pub messages: Vec<(Dest, Bytes)>,
    /// The connection whose command this delivery answers: its count of
    /// commands awaiting their commit goes down by one.
    pub reply_to: Option<ConnId>,
    /// A commit failed and the engine takes no more changes
    /// ([`crate::engine::Halt`]): every WebSocket client is closed with
    /// 1011 (a command of theirs may never be answered). Sent as a delivery
    /// so that it comes after the frames of every change committed before.
    pub halt: bool,
    /// An access token was revoked (SPEC §3.2): every `/api/v2/websocket`
    /// stream it authenticated is closed with 1008, after the frames of
    /// every change committed before.
    pub revoked: Option<Box<str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_ids_round_trip() {
        let id = conn_id(3, 0xABCDEF, 0x1_2345_6789);
        assert_eq!(split_conn_id(id), (3, 0xABCDEF, 0x2345_6789));
    }
}
