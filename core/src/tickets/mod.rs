//! The service-ticket board of SPEC §2 (seed `ticket-websocket-protocol.txt`):
//! kiosks create tickets, staff members pick a table and claim, complete or
//! cancel tickets, displays draw each table's state.
//!
//! [`TicketBoard`] is a sans-I/O state machine. The shell feeds it what
//! happened — a connection opened ([`TicketBoard::connect`]), a text frame
//! arrived ([`TicketBoard::handle`]), a connection closed
//! ([`TicketBoard::disconnect`]), an admin call ([`TicketBoard::add_staff`],
//! [`TicketBoard::remove_staff`]) — and gets back an [`Output`]: the frames to
//! send, already serialized, and the [`TicketRecord`]s to persist. It opens no
//! socket, starts no thread and never reads the clock: the time of a command
//! is the `now_unix_secs` argument.
//!
//! # Durability contract
//!
//! Every state change comes back as records. The caller persists an
//! [`Output`]'s `records` (durably: SPEC §0) and only then sends its
//! `messages`, so a `success …` frame is never seen for a change that a crash
//! could lose. Outputs must be released in the order the board produced them.
//! After a restart, [`TicketBoard::restore`] rebuilds the board from what was
//! persisted; records are idempotent upserts, so folding them in order (last
//! one wins) gives exactly the persisted state.
//!
//! Ticket ids count up from 0 and are never reused: the next id is one past
//! the highest id ever persisted (a new ticket is always persisted, so the
//! store can recover it as `max(id) + 1`), or the `next_ticket_id` given to
//! [`TicketBoard::restore`] if that is higher.
//!
//! # Recipients
//!
//! Each message is serialized once, as [`Bytes`], and the same `Bytes` is
//! cloned for every recipient. A [`Target`] is either one connection or a
//! group by role; a group means the connections of that role that were
//! connected to the board *when the output was produced* (resolve it then, not
//! after the commit). Messages for "every staff connection without a table"
//! are addressed one [`Target::Conn`] per connection, because only the board
//! knows who sits where.
//!
//! # Decisions where SPEC §2 is silent
//!
//! Each is marked `SPEC gap:` where it is implemented.
//!
//! * Command words are exact and lowercase; arguments are separated by single
//!   spaces. An empty argument (two spaces in a row, a trailing space), a
//!   missing argument or an extra argument is `error WORD malformed command`.
//!   `WORD` is the text before the first space, so an empty frame answers
//!   `error  malformed command` (WORD empty); a word longer than
//!   [`MAX_ECHOED_WORD_LEN`] bytes is cut to that length in the reply.
//! * Each endpoint knows only its own commands: `new` from a staff console or
//!   `accept` from a kiosk is an unknown word there. Displays send nothing
//!   meaningful; anything they send is an unknown word (the proptests rely on
//!   every frame getting exactly one reply).
//! * `pick`: a table argument that is not decimal digits naming a table
//!   `0 … tables-1` is "not available" (SPEC: "or not a table number"), after
//!   the token check. A staff member sits at one table at a time: picking on
//!   a second connection moves them there and the first connection loses its
//!   table (it gets `taken …`), so a console that crashed without closing
//!   does not lock its member out. Picking the table one already holds
//!   answers `success pick T` and changes nothing.
//! * `accept` of a ticket the sender's member already holds answers
//!   `success claimed ID` again and changes nothing (SPEC reserves
//!   `this ticket is now claimed` for tickets another member holds).
//!   A numeric id too large for 64 bits "does not exist".
//! * Only a ticket's owner may cancel it, so a waiting ticket cannot be
//!   cancelled by staff (`you do not own this ticket`), as the check order of
//!   SPEC §2.1 implies.
//! * A display shows a claimed ticket at its owner's current table. When a
//!   member picks a table, displays get `pick T` and then `claimed T ID` for
//!   every ticket the member still has in service, so a display that has been
//!   connected all along shows the same as one that connects now.
//! * Kiosk limits: email at most [`MAX_EMAIL_LEN`] bytes, name at most
//!   [`MAX_VISITOR_NAME_LEN`] bytes, else `error new malformed command`.
//!   Emails are compared byte for byte (no case folding).
//! * Staff names: 1 to [`MAX_STAFF_NAME_LEN`] bytes, and never the literal
//!   `{}` (it would read as "unclaimed" in ticket JSON).
//! * Tickets held by a removed member stay claimed by that name; re-adding
//!   the same name gives them back.
//! * At most [`TicketBoard::max_waiting`] tickets wait at once (default
//!   [`DEFAULT_MAX_WAITING`]): kiosks are unauthenticated, so without a cap a
//!   loop of `new` would grow memory, the store and every staff console's
//!   replay without bound. A `new` beyond it answers
//!   `error new too many tickets are waiting` and changes nothing (no ticket,
//!   no id, no visitor); the kiosk may retry once staff have accepted some.
//! * Completed and cancelled tickets stay on the board (an `accept` of one
//!   must say so rather than "does not exist") until the shell forgets the
//!   ones that closed long ago ([`TicketBoard::forget_closed`]; the server
//!   uses `--history-days`). A forgotten id is still below the next id, so
//!   `accept`, `cancel` and `complete` of it answer "already completed or
//!   cancelled" (for `cancel`/`complete` that comes before the owner check,
//!   as the owner is forgotten too).
//! * A visitor (email → name, what `query` answers) is remembered while a
//!   ticket of theirs is on the board and forgotten with the last one: the
//!   kiosk's memory of a regular lasts as long as their ticket history, and
//!   no email is kept longer than that.
//! * Times before 1970 or after 9999-12-31T23:59:59Z are written clamped to
//!   that range in ticket JSON.
//! * Staff accounts are persisted by the caller's admin path (it holds the
//!   token); they are not [`TicketRecord`]s.

mod board;
pub mod wire;

#[cfg(test)]
mod harness;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use board::TicketBoard;

/// The shell's id for one WebSocket connection (its slab key or similar).
pub type ConnId = u64;

/// Turns a staff token (the plaintext `pick` carries) into the 32-byte hash
/// kept in [`StaffAccount::token_hash`] (SHA-256 in floorbell: core has no
/// hashing crate, so the shell lends its function).
pub type TokenHasher = fn(&str) -> [u8; 32];

/// How many tickets may wait (unclaimed) at once unless the shell sets
/// another bound ([`TicketBoard::set_max_waiting`]). SPEC gap: §2.3 sets
/// none; a floor with 10,000 people queueing has other problems.
pub const DEFAULT_MAX_WAITING: usize = 10_000;

/// Longest visitor email a kiosk may send (RFC 5321's 254-byte path limit).
/// SPEC gap: §2.3 sets none.
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest visitor name a kiosk may send. SPEC gap: §2.3 sets none; 200 bytes
/// is far beyond any name and keeps ticket JSON small.
pub const MAX_VISITOR_NAME_LEN: usize = 200;
/// Longest staff name [`TicketBoard::add_staff`] accepts. SPEC gap: §2 sets
/// none; same bound as a visitor's name.
pub const MAX_STAFF_NAME_LEN: usize = 200;
/// Longest unknown command word echoed in `error WORD malformed command`.
/// SPEC gap: the echo goes back to the sender only, but a 64 KiB "word" is
/// not worth returning; every real word is under 10 bytes.
pub const MAX_ECHOED_WORD_LEN: usize = 64;

/// Which endpoint a connection came in on (SPEC §2: `/ws/staff`,
/// `/ws/kiosk`, `/ws/display`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A staff console: picks a table, claims and closes tickets.
    Staff,
    /// A visitor-facing kiosk: creates tickets, looks up names.
    Kiosk,
    /// A display: only listens.
    Display,
}

/// Where a ticket is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TicketState {
    /// Created by a kiosk, not claimed yet.
    Waiting,
    /// Claimed by a staff member, in service.
    Claimed,
    /// Closed by its owner with `complete`.
    Completed,
    /// Closed by its owner with `cancel`.
    Cancelled,
}

impl TicketState {
    /// Completed or cancelled: nothing more can happen to the ticket.
    pub fn is_closed(self) -> bool {
        matches!(self, TicketState::Completed | TicketState::Cancelled)
    }
}

/// One service ticket (SPEC §2's ticket JSON, plus its state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// Counts up from 0, never reused.
    pub id: u64,
    /// The visitor's email, as the kiosk sent it.
    pub email: String,
    /// The visitor's name, as the kiosk sent it.
    pub name: String,
    /// The staff member who claimed it; `None` while waiting (`"{}"` in JSON).
    pub staff: Option<String>,
    /// Creation time, seconds since the Unix epoch.
    pub start: i64,
    /// When it was completed or cancelled; `None` while open (the epoch in JSON).
    pub end: Option<i64>,
    /// Where it is in its life.
    pub state: TicketState,
}

/// A staff account: a name and the hash of the token its member picks with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffAccount {
    /// Unique name; shown as `staff` in ticket JSON.
    pub name: String,
    /// [`TokenHasher`] of the token (the board never sees the token at rest).
    pub token_hash: [u8; 32],
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// One connection (a reply, an initial message, a `taken` update).
    Conn(ConnId),
    /// Every staff connection.
    AllStaff,
    /// Every staff connection but this one (the sender of an `accept`).
    AllStaffExcept(ConnId),
    /// Every display connection.
    AllDisplays,
}

/// A change the caller must persist before it sends the [`Output`] that
/// carries it. Each record is an upsert keyed by id or email, so replaying
/// them in order (last one wins) rebuilds the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketRecord {
    /// Insert or replace the ticket with this id.
    TicketUpserted(Ticket),
    /// Insert or replace the name remembered for this email (SPEC §2.3).
    VisitorUpserted {
        /// The key.
        email: String,
        /// The name to answer `query` with.
        name: String,
    },
    /// Delete these closed tickets ([`TicketBoard::forget_closed`]), and
    /// remember `next_id` (a restart must not hand out their ids again).
    TicketsForgotten {
        /// The tickets' ids, ascending.
        ids: Vec<u64>,
        /// The board's next ticket id when they were forgotten.
        next_id: u64,
    },
    /// Delete the visitors with these emails: their last ticket was
    /// forgotten ([`TicketBoard::forget_closed`]).
    VisitorsForgotten {
        /// The emails, ascending.
        emails: Vec<String>,
    },
}

/// What one input produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Frames in send order. For [`TicketBoard::handle`] the first one is
    /// always the reply to the sender ([`Target::Conn`] of the sender).
    pub messages: Vec<(Target, Bytes)>,
    /// Records to persist, in order, before any message is sent.
    pub records: Vec<TicketRecord>,
}

impl Output {
    /// Nothing to send and nothing to persist.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.records.is_empty()
    }

    fn send(&mut self, target: Target, frame: Bytes) {
        self.messages.push((target, frame));
    }

    fn append(&mut self, mut other: Output) {
        self.messages.append(&mut other.messages);
        self.records.append(&mut other.records);
    }
}

/// Why an admin call on staff accounts was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StaffError {
    /// `add_staff` with a name already in use (409).
    #[error("a staff member with this name already exists")]
    AlreadyExists,
    /// `remove_staff` of an unknown name (404).
    #[error("no staff member has this name")]
    NotFound,
    /// `add_staff` with an empty name, `{}`, or one longer than
    /// [`MAX_STAFF_NAME_LEN`] bytes (400).
    #[error("a staff name must be 1 to {MAX_STAFF_NAME_LEN} bytes and not \"{{}}\"")]
    InvalidName,
}

/// Why a `pick` was refused (SPEC §2.1, checked in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    /// No staff account has this token.
    #[error("the provided token does not belong to any staff member")]
    UnknownToken,
    /// The table is held by another member, or is not a table number.
    #[error("the chosen table is not available")]
    TableNotAvailable,
}

/// Why an `unpick` was refused (SPEC §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnpickError {
    /// The connection holds no table.
    #[error("you do not have a table assigned")]
    NoTable,
}

/// Why an `accept` was refused (SPEC §2.1, checked in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AcceptError {
    /// The member this connection picked as was removed since.
    #[error("your session token was found to be invalid. please relogin")]
    InvalidSession,
    /// The connection holds no table.
    #[error("you do not have a table chosen")]
    NoTable,
    /// No ticket has this id.
    #[error("ticket id does not exist")]
    UnknownTicket,
    /// The ticket is completed or cancelled.
    #[error("the ticket has already been completed or cancelled")]
    AlreadyClosed,
    /// Another member holds the ticket and it is still open.
    #[error("this ticket is now claimed")]
    ClaimedByOther,
}

/// Why a `cancel` or `complete` was refused (SPEC §2.1, checked in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    /// The connection holds no table.
    #[error("you are not assigned to any table")]
    NoTable,
    /// No ticket has this id.
    #[error("ticket id does not exist")]
    UnknownTicket,
    /// The ticket is waiting, or another member holds it.
    #[error("you do not own this ticket")]
    NotOwner,
    /// The ticket is completed or cancelled.
    #[error("the ticket has already been completed or cancelled")]
    AlreadyClosed,
}

/// Why a `query` found nothing (SPEC §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// No `new` ever came with this email.
    #[error("visitor email does not exist")]
    UnknownVisitor,
}
