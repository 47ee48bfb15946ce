//! [`TicketBoard`]: the state of SPEC §2 and the rules that change it.
//!
//! Who sits where is kept twice on purpose — per table (`seats`, the answer to
//! "is it taken, by whom") and per connection (`StaffConn::seat`, the answer
//! to "where am I") — and every change of seating goes through
//! [`TicketBoard::announce_seating`], which compares the seating before and
//! after and derives every `pick`, `unpick`, `claimed` and `taken` message
//! from the difference. No command announces seating by hand, so the
//! displays and the table-less consoles cannot drift from the board.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bytes::Bytes;
use subtle::ConstantTimeEq;

use super::wire::{self, CloseKind, KioskCommand, StaffCommand, TicketArg};
use super::{
    AcceptError, CloseError, ConnId, Output, PickError, QueryError, Role, StaffAccount, StaffError,
    Target, Ticket, TicketRecord, TicketState, TokenHasher, UnpickError, MAX_STAFF_NAME_LEN,
};

/// One taken table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seat {
    /// The staff connection sitting there.
    conn: ConnId,
    /// The member it picked as: owns the tickets claimed from this table.
    member: String,
}

/// What the board knows about one staff connection.
#[derive(Debug, Clone, Default)]
struct StaffConn {
    /// The member of the last successful `pick` on this connection; kept after
    /// `unpick` so that `remove_staff` can find the connection.
    member: Option<String>,
    /// The table it sits at (mirrors `seats`).
    seat: Option<u32>,
    /// The member was removed after this connection picked: `accept` answers
    /// the invalid-session error until the next successful `pick`.
    revoked: bool,
}

/// One open connection.
#[derive(Debug, Clone)]
enum Conn {
    Staff(StaffConn),
    Kiosk,
    Display,
}

/// The service-ticket board (SPEC §2). See the [module docs](super) for the
/// contract; every method is deterministic in its inputs.
pub struct TicketBoard {
    /// Number of tables: they are numbered `0 … tables-1`.
    tables: u32,
    /// Hashes a `pick` token for comparison with [`StaffAccount::token_hash`].
    hash_token: TokenHasher,
    /// Staff accounts by name.
    staff: BTreeMap<String, [u8; 32]>,
    /// Every ticket ever created, open and closed, by id.
    tickets: BTreeMap<u64, Ticket>,
    /// Waiting tickets, oldest first, with their `new TICKETJSON` frame
    /// serialized once (replayed to every staff console that connects).
    waiting: BTreeMap<u64, Bytes>,
    /// The most tickets that may wait at once (see [`Self::max_waiting`]).
    max_waiting: usize,
    /// Claimed, still open tickets by owner (drawn on displays at the owner's table).
    in_service: HashMap<String, BTreeSet<u64>>,
    /// Visitor names by email. A visitor is remembered while a ticket of
    /// theirs is on the board, and forgotten with their last one (see
    /// [`Self::forget_closed`]).
    visitors: HashMap<String, String>,
    /// Visitors restored from the store may have no ticket left (a store
    /// written before visitors were forgotten with their tickets): the next
    /// [`Self::forget_closed`] looks for them once.
    orphans_possible: bool,
    /// The id the next ticket gets.
    next_id: u64,
    /// Open connections.
    conns: BTreeMap<ConnId, Conn>,
    /// Taken tables.
    seats: BTreeMap<u32, Seat>,
    /// The current `taken …` frame, rebuilt when the set of taken tables changes.
    taken_frame: Bytes,
}

impl std::fmt::Debug for TicketBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketBoard")
            .field("tables", &self.tables)
            .field("staff", &self.staff.keys().collect::<Vec<_>>())
            .field("tickets", &self.tickets.len())
            .field("next_id", &self.next_id)
            .field("conns", &self.conns.len())
            .field("seats", &self.seats)
            .finish()
    }
}

/// The member sitting at table `t`, if any.
fn member_at(seats: &BTreeMap<u32, Seat>, t: u32) -> Option<&str> {
    seats.get(&t).map(|s| s.member.as_str())
}

/// A reply that is a fixed string.
fn static_frame(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

/// Compares two hashes in time independent of where they differ (`subtle`,
/// as every other secret comparison in floorbell).
fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    bool::from(a.ct_eq(b))
}

impl TicketBoard {
    /// An empty board with `tables` tables (`0 … tables-1`); `hash_token`
    /// turns a `pick` token into the hash [`StaffAccount`]s hold.
    pub fn new(tables: u32, hash_token: TokenHasher) -> Self {
        TicketBoard {
            tables,
            hash_token,
            staff: BTreeMap::new(),
            tickets: BTreeMap::new(),
            waiting: BTreeMap::new(),
            max_waiting: super::DEFAULT_MAX_WAITING,
            in_service: HashMap::new(),
            visitors: HashMap::new(),
            orphans_possible: false,
            next_id: 0,
            conns: BTreeMap::new(),
            seats: BTreeMap::new(),
            taken_frame: wire::taken([]),
        }
    }

    /// Rebuilds the board after a restart from what was persisted: staff
    /// accounts, every ticket (open and closed), visitors (email, name), and
    /// the next ticket id. No connection is open and no table is taken.
    ///
    /// The next id is the larger of `next_ticket_id` and one past the highest
    /// ticket id, so passing `0` and letting the tickets decide is correct for
    /// a store that never deletes tickets; after [`Self::forget_closed`],
    /// pass the `next_id` of its last [`TicketRecord::TicketsForgotten`].
    /// Input is trusted but never panics: a later duplicate (of a name, id
    /// or email) replaces an earlier one.
    pub fn restore(
        tables: u32,
        hash_token: TokenHasher,
        staff: Vec<StaffAccount>,
        tickets: Vec<Ticket>,
        visitors: Vec<(String, String)>,
        next_ticket_id: u64,
    ) -> Self {
        let mut board = TicketBoard::new(tables, hash_token);
        board.staff = staff.into_iter().map(|a| (a.name, a.token_hash)).collect();
        board.visitors = visitors.into_iter().collect();
        board.orphans_possible = !board.visitors.is_empty();
        board.next_id = next_ticket_id;
        for ticket in tickets {
            board.next_id = board.next_id.max(ticket.id.saturating_add(1));
            board.put_ticket(ticket);
        }
        board
    }

    /// Stores `ticket` (new or changed) and keeps the indexes in step.
    fn put_ticket(&mut self, ticket: Ticket) {
        if let Some(old) = self.tickets.get(&ticket.id) {
            if let Some(owner) = &old.staff {
                if let Some(set) = self.in_service.get_mut(owner) {
                    set.remove(&old.id);
                    if set.is_empty() {
                        self.in_service.remove(owner);
                    }
                }
            }
        }
        self.waiting.remove(&ticket.id);
        match (ticket.state, &ticket.staff) {
            (TicketState::Waiting, _) => {
                self.waiting.insert(ticket.id, wire::new_ticket(&ticket));
            }
            (TicketState::Claimed, Some(owner)) => {
                self.in_service
                    .entry(owner.clone())
                    .or_default()
                    .insert(ticket.id);
            }
            _ => {}
        }
        self.tickets.insert(ticket.id, ticket);
    }

    /// Number of tables.
    pub fn tables(&self) -> u32 {
        self.tables
    }

    /// Staff names, ascending.
    pub fn staff_names(&self) -> Vec<String> {
        self.staff.keys().cloned().collect()
    }

    /// Every ticket, open and closed, ascending by id.
    pub fn tickets(&self) -> impl Iterator<Item = &Ticket> {
        self.tickets.values()
    }

    /// The tickets in service (claimed, still open), ascending by id: from
    /// the owners' index, so it costs their number, not the history's.
    pub fn serving(&self) -> Vec<&Ticket> {
        let mut ids: Vec<u64> = self.in_service.values().flatten().copied().collect();
        ids.sort_unstable();
        ids.iter().filter_map(|id| self.tickets.get(id)).collect()
    }

    /// The ticket with this id.
    pub fn ticket(&self, id: u64) -> Option<&Ticket> {
        self.tickets.get(&id)
    }

    /// Visitors (email, name), in no particular order.
    pub fn visitors(&self) -> impl Iterator<Item = (&str, &str)> {
        self.visitors.iter().map(|(e, n)| (e.as_str(), n.as_str()))
    }

    /// The name remembered for this email.
    pub fn visitor_name(&self, email: &str) -> Option<&str> {
        self.visitors.get(email).map(String::as_str)
    }

    /// The most tickets that may wait at once: a kiosk's `new` beyond it is
    /// refused with [`wire::NEW_TOO_MANY_WAITING`] and changes nothing.
    pub fn max_waiting(&self) -> usize {
        self.max_waiting
    }

    /// Sets [`Self::max_waiting`] (at least 1). Tickets already waiting
    /// beyond a lowered bound stay; new ones wait until staff catch up.
    pub fn set_max_waiting(&mut self, max: usize) {
        self.max_waiting = max.max(1);
    }

    /// Forgets up to `max` closed tickets that ended before `ended_before`
    /// (Unix seconds), lowest ids first, so a board that runs for years
    /// does not keep every ticket it ever had, and with them the visitors
    /// (email, name) who have no ticket left: a kiosk remembers a visitor
    /// as long as it keeps their tickets. Nothing is sent; the output's
    /// records ([`TicketRecord::TicketsForgotten`], then
    /// [`TicketRecord::VisitorsForgotten`] when visitors go) delete them
    /// from the store. Empty when none is due.
    pub fn forget_closed(&mut self, ended_before: i64, max: usize) -> Output {
        let ids: Vec<u64> = self
            .tickets
            .values()
            .filter(|t| t.state.is_closed() && t.end.is_some_and(|end| end < ended_before))
            .map(|t| t.id)
            .take(max)
            .collect();
        let mut out = Output::default();
        let mut emails: Vec<String> = Vec::new();
        if self.orphans_possible {
            self.orphans_possible = false;
            emails.extend(self.visitors.keys().cloned());
        }
        if ids.is_empty() && emails.is_empty() {
            return out;
        }
        for id in &ids {
            if let Some(t) = self.tickets.remove(id) {
                emails.push(t.email);
            }
        }
        if !ids.is_empty() {
            out.records.push(TicketRecord::TicketsForgotten {
                ids,
                next_id: self.next_id,
            });
        }
        let kept: HashSet<&str> = self.tickets.values().map(|t| t.email.as_str()).collect();
        emails.retain(|e| !kept.contains(e.as_str()) && self.visitors.contains_key(e));
        emails.sort_unstable();
        emails.dedup();
        if !emails.is_empty() {
            for e in &emails {
                self.visitors.remove(e);
            }
            out.records.push(TicketRecord::VisitorsForgotten { emails });
        }
        out
    }

    /// Whether `id` belonged to a ticket that [`Self::forget_closed`] removed:
    /// ids are never reused, so an id below the next one that is no longer
    /// on the board was a closed ticket.
    fn was_forgotten(&self, id: u64) -> bool {
        id < self.next_id && !self.tickets.contains_key(&id)
    }

    /// The id the next ticket will get.
    pub fn next_ticket_id(&self) -> u64 {
        self.next_id
    }

    /// Taken tables, ascending.
    pub fn taken_tables(&self) -> Vec<u32> {
        self.seats.keys().copied().collect()
    }

    /// The table a staff connection sits at, with the member it picked as.
    pub fn seat_of(&self, conn: ConnId) -> Option<(u32, &str)> {
        let table = match self.conns.get(&conn)? {
            Conn::Staff(s) => s.seat?,
            _ => return None,
        };
        Some((table, self.seats.get(&table)?.member.as_str()))
    }

    /// The role of an open connection.
    pub fn role_of(&self, conn: ConnId) -> Option<Role> {
        Some(match self.conns.get(&conn)? {
            Conn::Staff(_) => Role::Staff,
            Conn::Kiosk => Role::Kiosk,
            Conn::Display => Role::Display,
        })
    }

    /// A connection opened. Its initial messages (SPEC §2.2, §2.4): a staff
    /// console gets `taken …` and then `new TICKETJSON` for every waiting
    /// ticket, oldest first; a display gets `pick T` for every taken table,
    /// each followed by `claimed T ID` for every ticket in service there; a
    /// kiosk gets nothing. An id that is already open is closed first
    /// ([`TicketBoard::disconnect`]) and the outputs are concatenated.
    pub fn connect(&mut self, conn: ConnId, role: Role) -> Output {
        let mut out = Output::default();
        if self.conns.contains_key(&conn) {
            out.append(self.disconnect(conn));
        }
        match role {
            Role::Staff => {
                self.conns.insert(conn, Conn::Staff(StaffConn::default()));
                out.send(Target::Conn(conn), self.taken_frame.clone());
                for frame in self.waiting.values() {
                    out.send(Target::Conn(conn), frame.clone());
                }
            }
            Role::Kiosk => {
                self.conns.insert(conn, Conn::Kiosk);
            }
            Role::Display => {
                self.conns.insert(conn, Conn::Display);
                for (&table, seat) in &self.seats {
                    out.send(Target::Conn(conn), wire::display_pick(table));
                    for &id in self.in_service.get(&seat.member).into_iter().flatten() {
                        out.send(Target::Conn(conn), wire::display_claimed(table, id));
                    }
                }
            }
        }
        out
    }

    /// A connection closed. A staff console at a table leaves it (SPEC §2.5):
    /// displays get `unpick T`, table-less consoles get `taken …`. The tickets
    /// it claimed stay with its member. An unknown id does nothing.
    pub fn disconnect(&mut self, conn: ConnId) -> Output {
        let mut out = Output::default();
        let Some(Conn::Staff(sc)) = self.conns.remove(&conn) else {
            return out;
        };
        if let Some(table) = sc.seat {
            let before = self.seats.clone();
            self.seats.remove(&table);
            self.announce_seating(&before, &mut out);
        }
        out
    }

    /// Adds a staff account (`POST /api/tickets/staff`). The caller persists
    /// it; see [`StaffError`] for the answers.
    ///
    /// # Errors
    ///
    /// [`StaffError::AlreadyExists`] when the name is in use,
    /// [`StaffError::InvalidName`] when it is empty, `{}`, or longer than
    /// [`MAX_STAFF_NAME_LEN`] bytes.
    pub fn add_staff(&mut self, name: &str, token_hash: [u8; 32]) -> Result<(), StaffError> {
        // SPEC gap: §2 sets no rule for names; `{}` is refused because ticket
        // JSON uses it for "unclaimed".
        if name.is_empty() || name.len() > MAX_STAFF_NAME_LEN || name == wire::UNCLAIMED_STAFF {
            return Err(StaffError::InvalidName);
        }
        if self.staff.contains_key(name) {
            return Err(StaffError::AlreadyExists);
        }
        self.staff.insert(name.to_owned(), token_hash);
        Ok(())
    }

    /// Removes a staff account (`DELETE /api/tickets/staff/{name}`). Their
    /// table is unpicked at once (displays get `unpick T`, table-less consoles
    /// `taken …`); their connections stay open, answer `accept` with the
    /// invalid-session error and other commands as at no table (SPEC §2).
    /// Nothing to persist here: the caller deletes the account itself.
    ///
    /// # Errors
    ///
    /// [`StaffError::NotFound`] when no account has this name.
    pub fn remove_staff(&mut self, name: &str) -> Result<Output, StaffError> {
        if self.staff.remove(name).is_none() {
            return Err(StaffError::NotFound);
        }
        let before = self.seats.clone();
        for sc in self.conns.values_mut().filter_map(|c| match c {
            Conn::Staff(sc) if sc.member.as_deref() == Some(name) => Some(sc),
            _ => None,
        }) {
            sc.revoked = true;
            if let Some(table) = sc.seat.take() {
                self.seats.remove(&table);
            }
        }
        let mut out = Output::default();
        self.announce_seating(&before, &mut out);
        Ok(out)
    }

    /// One text frame from `conn`, received at `now_unix_secs`. The first
    /// message of the output is always the reply to `conn`; broadcasts the
    /// command causes follow. A frame from an id that is not open produces
    /// nothing (a caller bug, not a peer's).
    pub fn handle(&mut self, conn: ConnId, text: &str, now_unix_secs: i64) -> Output {
        let mut out = Output::default();
        match self.conns.get(&conn) {
            None => {}
            Some(Conn::Staff(_)) => match wire::parse_staff(text) {
                Ok(cmd) => self.handle_staff(conn, cmd, now_unix_secs, &mut out),
                Err(bad) => out.send(Target::Conn(conn), bad.to_wire()),
            },
            Some(Conn::Kiosk) => match wire::parse_kiosk(text) {
                Ok(cmd) => self.handle_kiosk(conn, cmd, now_unix_secs, &mut out),
                Err(bad) => out.send(Target::Conn(conn), bad.to_wire()),
            },
            Some(Conn::Display) => {
                out.send(Target::Conn(conn), wire::parse_display(text).to_wire());
            }
        }
        out
    }

    fn handle_staff(&mut self, conn: ConnId, cmd: StaffCommand<'_>, now: i64, out: &mut Output) {
        // The reply goes first, the broadcasts the command caused after it.
        let mut effects = Output::default();
        let reply = match cmd {
            StaffCommand::Pick { table, token } => {
                match self.pick(conn, table, token, &mut effects) {
                    Ok(t) => wire::success_pick(t),
                    Err(e) => static_frame(e.to_wire()),
                }
            }
            StaffCommand::Unpick => match self.unpick(conn, &mut effects) {
                Ok(()) => static_frame(wire::SUCCESS_UNPICK),
                Err(e) => static_frame(e.to_wire()),
            },
            StaffCommand::Accept(id) => match self.accept(conn, id, &mut effects) {
                Ok(id) => wire::success_claimed(id),
                Err(e) => static_frame(e.to_wire()),
            },
            StaffCommand::Cancel(id) | StaffCommand::Complete(id) => {
                let kind = match cmd {
                    StaffCommand::Cancel(_) => CloseKind::Cancel,
                    _ => CloseKind::Complete,
                };
                match self.close(conn, id, kind, now, &mut effects) {
                    Ok(id) => wire::success_close(kind, id),
                    Err(e) => static_frame(e.to_wire(kind)),
                }
            }
        };
        out.send(Target::Conn(conn), reply);
        out.append(effects);
    }

    /// The staff member whose token hashes to the same value, comparing
    /// against every account in constant time per account.
    fn member_for_token(&self, token: &str) -> Option<String> {
        let hash = (self.hash_token)(token);
        let mut found = None;
        for (name, account_hash) in &self.staff {
            // No early exit: every account is compared.
            if hashes_equal(account_hash, &hash) && found.is_none() {
                found = Some(name);
            }
        }
        found.cloned()
    }

    fn staff_conn(&mut self, conn: ConnId) -> Option<&mut StaffConn> {
        match self.conns.get_mut(&conn) {
            Some(Conn::Staff(sc)) => Some(sc),
            _ => None,
        }
    }

    /// `pick TABLE TOKEN`: checks in SPEC §2.1's order, then seats the
    /// connection, moving it (and its member) from any other table.
    fn pick(
        &mut self,
        conn: ConnId,
        table: &str,
        token: &str,
        out: &mut Output,
    ) -> Result<u32, PickError> {
        let member = self
            .member_for_token(token)
            .ok_or(PickError::UnknownToken)?;
        let table = wire::parse_table(table, self.tables).ok_or(PickError::TableNotAvailable)?;
        if let Some(seat) = self.seats.get(&table) {
            // SPEC gap: a table held by the member themself (on this or another
            // connection) is theirs to take; see the module docs.
            if seat.conn != conn && seat.member != member {
                return Err(PickError::TableNotAvailable);
            }
        }
        let before = self.seats.clone();
        // One table per connection: leave the old one first (SPEC §2.1).
        // One table per member: a member seated elsewhere moves here.
        let displaced: Vec<(u32, ConnId)> = self
            .seats
            .iter()
            .filter(|(_, s)| s.conn == conn || s.member == member)
            .map(|(&t, s)| (t, s.conn))
            .collect();
        for (t, c) in displaced {
            self.seats.remove(&t);
            if let Some(sc) = self.staff_conn(c) {
                sc.seat = None;
            }
        }
        self.seats.insert(
            table,
            Seat {
                conn,
                member: member.clone(),
            },
        );
        if let Some(sc) = self.staff_conn(conn) {
            sc.member = Some(member);
            sc.seat = Some(table);
            sc.revoked = false;
        }
        self.announce_seating(&before, out);
        Ok(table)
    }

    /// `unpick`.
    fn unpick(&mut self, conn: ConnId, out: &mut Output) -> Result<(), UnpickError> {
        let table = self
            .staff_conn(conn)
            .and_then(|sc| sc.seat.take())
            .ok_or(UnpickError::NoTable)?;
        let before = self.seats.clone();
        self.seats.remove(&table);
        self.announce_seating(&before, out);
        Ok(())
    }

    /// The connection's table and member, if it sits at one.
    fn seated(&self, conn: ConnId) -> Option<(u32, String)> {
        self.seat_of(conn).map(|(t, m)| (t, m.to_owned()))
    }

    /// `accept ID`.
    fn accept(
        &mut self,
        conn: ConnId,
        id: TicketArg,
        out: &mut Output,
    ) -> Result<u64, AcceptError> {
        if self.staff_conn(conn).is_some_and(|sc| sc.revoked) {
            return Err(AcceptError::InvalidSession);
        }
        let (table, member) = self.seated(conn).ok_or(AcceptError::NoTable)?;
        if id.is_some_and(|id| self.was_forgotten(id)) {
            return Err(AcceptError::AlreadyClosed);
        }
        let ticket = id
            .and_then(|id| self.tickets.get(&id))
            .ok_or(AcceptError::UnknownTicket)?;
        // SPEC §2.1's clarification: closed first, then held by another.
        if ticket.state.is_closed() {
            return Err(AcceptError::AlreadyClosed);
        }
        if let Some(owner) = &ticket.staff {
            if *owner != member {
                return Err(AcceptError::ClaimedByOther);
            }
            // SPEC gap: accepting one's own ticket again changes nothing.
            return Ok(ticket.id);
        }
        let mut ticket = ticket.clone();
        ticket.staff = Some(member);
        ticket.state = TicketState::Claimed;
        let id = ticket.id;
        out.send(Target::AllStaffExcept(conn), wire::claimed_ticket(&ticket));
        out.send(Target::AllDisplays, wire::display_claimed(table, id));
        out.records
            .push(TicketRecord::TicketUpserted(ticket.clone()));
        self.put_ticket(ticket);
        Ok(id)
    }

    /// `cancel ID` / `complete ID`: only the owner, from a table.
    fn close(
        &mut self,
        conn: ConnId,
        id: TicketArg,
        kind: CloseKind,
        now: i64,
        out: &mut Output,
    ) -> Result<u64, CloseError> {
        let (table, member) = self.seated(conn).ok_or(CloseError::NoTable)?;
        if id.is_some_and(|id| self.was_forgotten(id)) {
            // SPEC gap: the owner is forgotten too (see the module docs).
            return Err(CloseError::AlreadyClosed);
        }
        let ticket = id
            .and_then(|id| self.tickets.get(&id))
            .ok_or(CloseError::UnknownTicket)?;
        // SPEC §2.1's order: ownership before state, so a waiting ticket
        // (no owner) is "not yours".
        if ticket.staff.as_deref() != Some(member.as_str()) {
            return Err(CloseError::NotOwner);
        }
        if ticket.state.is_closed() {
            return Err(CloseError::AlreadyClosed);
        }
        let mut ticket = ticket.clone();
        ticket.state = match kind {
            CloseKind::Cancel => TicketState::Cancelled,
            CloseKind::Complete => TicketState::Completed,
        };
        ticket.end = Some(now);
        let id = ticket.id;
        out.send(Target::AllDisplays, wire::display_close(kind, table));
        out.records
            .push(TicketRecord::TicketUpserted(ticket.clone()));
        self.put_ticket(ticket);
        Ok(id)
    }

    fn handle_kiosk(&mut self, conn: ConnId, cmd: KioskCommand<'_>, now: i64, out: &mut Output) {
        let reply = Target::Conn(conn);
        match cmd {
            KioskCommand::New { email, name } => {
                if self.waiting.len() >= self.max_waiting {
                    // SPEC gap: see the module docs (the waiting cap).
                    out.send(reply, static_frame(wire::NEW_TOO_MANY_WAITING));
                    return;
                }
                let id = self.next_id;
                let Some(next) = id.checked_add(1) else {
                    // SPEC gap: the id space is exhausted (2^64 tickets: never
                    // in practice); refuse rather than reuse an id.
                    out.send(reply, wire::Malformed { word: "new" }.to_wire());
                    return;
                };
                self.next_id = next;
                if self.visitors.get(email).map(String::as_str) != Some(name) {
                    self.visitors.insert(email.to_owned(), name.to_owned());
                    out.records.push(TicketRecord::VisitorUpserted {
                        email: email.to_owned(),
                        name: name.to_owned(),
                    });
                }
                let ticket = Ticket {
                    id,
                    email: email.to_owned(),
                    name: name.to_owned(),
                    staff: None,
                    start: now,
                    end: None,
                    state: TicketState::Waiting,
                };
                out.send(reply, wire::success_new(&ticket));
                out.records
                    .push(TicketRecord::TicketUpserted(ticket.clone()));
                self.put_ticket(ticket);
                let frame = self.waiting.get(&id).cloned().unwrap_or_default();
                out.send(Target::AllStaff, frame);
            }
            KioskCommand::Query { email } => match self.visitors.get(email) {
                Some(name) => out.send(reply, wire::success_query(name)),
                None => out.send(reply, static_frame(QueryError::UnknownVisitor.to_wire())),
            },
        }
    }

    /// Announces a change of seating from `before` to the current `seats`:
    ///
    /// 1. to displays, for each table whose member changed, ascending:
    ///    `unpick T` if it was taken; then for each table now taken by a new
    ///    member: `pick T` and `claimed T ID` for each of that member's tickets
    ///    in service;
    /// 2. to staff without a table: the new `taken …` when the set of taken
    ///    tables changed, else to the consoles that just lost their table.
    fn announce_seating(&mut self, before: &BTreeMap<u32, Seat>, out: &mut Output) {
        let touched: BTreeSet<u32> = before.keys().chain(self.seats.keys()).copied().collect();
        let changed: Vec<u32> = touched
            .into_iter()
            .filter(|t| member_at(before, *t) != member_at(&self.seats, *t))
            .collect();
        let mut display = Vec::new();
        for t in &changed {
            if before.contains_key(t) {
                display.push(wire::display_unpick(*t));
            }
        }
        for t in &changed {
            if let Some(seat) = self.seats.get(t) {
                display.push(wire::display_pick(*t));
                for &id in self.in_service.get(&seat.member).into_iter().flatten() {
                    display.push(wire::display_claimed(*t, id));
                }
            }
        }

        let set_changed = !before.keys().eq(self.seats.keys());
        if set_changed {
            self.taken_frame = wire::taken(self.seats.keys().copied());
        }
        let was_seated: BTreeSet<ConnId> = before.values().map(|s| s.conn).collect();
        for (&id, c) in &self.conns {
            if let Conn::Staff(sc) = c {
                if sc.seat.is_none() && (set_changed || was_seated.contains(&id)) {
                    out.send(Target::Conn(id), self.taken_frame.clone());
                }
            }
        }
        for frame in display {
            out.send(Target::AllDisplays, frame);
        }
    }

    /// Checks the board's internal invariants (tests): seats and connections
    /// agree, every seated member exists, the indexes match the tickets.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        for (&t, seat) in &self.seats {
            assert!(t < self.tables);
            match self.conns.get(&seat.conn) {
                Some(Conn::Staff(sc)) => {
                    assert_eq!(sc.seat, Some(t));
                    assert_eq!(sc.member.as_ref(), Some(&seat.member));
                    assert!(!sc.revoked);
                }
                other => panic!("seat {t} held by {other:?}"),
            }
            assert!(self.staff.contains_key(&seat.member));
        }
        let members: Vec<&String> = self.seats.values().map(|s| &s.member).collect();
        let unique: BTreeSet<&String> = members.iter().copied().collect();
        assert_eq!(members.len(), unique.len(), "a member at two tables");
        for (&id, c) in &self.conns {
            if let Conn::Staff(StaffConn { seat: Some(t), .. }) = c {
                assert_eq!(self.seats.get(t).map(|s| s.conn), Some(id));
            }
        }
        assert_eq!(
            self.taken_frame,
            wire::taken(self.seats.keys().copied()),
            "stale taken frame"
        );
        for (id, t) in &self.tickets {
            assert_eq!(*id, t.id);
            assert!(*id < self.next_id);
            assert_eq!(
                self.waiting.contains_key(id),
                t.state == TicketState::Waiting
            );
            let serving = t.state == TicketState::Claimed;
            let indexed = t
                .staff
                .as_ref()
                .is_some_and(|s| self.in_service.get(s).is_some_and(|set| set.contains(id)));
            assert_eq!(serving, indexed, "ticket {id}");
            assert_eq!(t.staff.is_some(), t.state != TicketState::Waiting);
            assert_eq!(t.end.is_some(), t.state.is_closed());
        }
        let serving: Vec<u64> = self.serving().iter().map(|t| t.id).collect();
        let claimed: Vec<u64> = self
            .tickets
            .values()
            .filter(|t| t.state == TicketState::Claimed)
            .map(|t| t.id)
            .collect();
        assert_eq!(serving, claimed, "serving");
    }
}

#[cfg(test)]
mod tests {
    use super::hashes_equal;

    #[test]
    fn hash_comparison_sees_every_byte() {
        let a = [7u8; 32];
        for i in 0..32 {
            let mut b = a;
            b[i] ^= 0x80;
            assert!(!hashes_equal(&a, &b), "byte {i}");
        }
        assert!(hashes_equal(&a, &[7u8; 32]));
    }
}
