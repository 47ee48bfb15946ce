//! An in-memory floor for tests (after quiche's `Pipe`): one
//! [`TicketBoard`], any number of staff consoles, kiosks and displays, and an
//! inbox per connection. It routes every [`Output`] the way a shell would —
//! groups resolved against the connections open when the output was made —
//! and checks on every frame that the sender's reply comes first and alone.

use std::collections::{BTreeMap, VecDeque};

use super::{ConnId, Output, Role, Target, TicketBoard, TicketRecord};

/// A stand-in for SHA-256 in tests: deterministic, and different for every
/// token the tests use (up to 31 bytes kept verbatim, then the length).
pub(crate) fn test_hash(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, b) in token.bytes().enumerate() {
        let slot = i % 31;
        out[slot] = out[slot].wrapping_mul(31).wrapping_add(b);
    }
    out[31] = token.len() as u8;
    out
}

/// The token of a staff member called `name` in these tests.
pub(crate) fn token_of(name: &str) -> String {
    format!("tok-{name}")
}

/// A board with its connections and what each has received.
pub(crate) struct Floor {
    /// The board under test.
    pub board: TicketBoard,
    /// The time passed to every `handle`.
    pub now: i64,
    /// Open connections and their roles, as the shell sees them.
    roles: BTreeMap<ConnId, Role>,
    /// Frames received and not yet read, per connection.
    inboxes: BTreeMap<ConnId, VecDeque<String>>,
    /// Every record the board asked to persist, in order.
    pub records: Vec<TicketRecord>,
    next_conn: ConnId,
}

impl Floor {
    /// A floor of `tables` tables with these staff members (token
    /// [`token_of`] each), at 2019-10-01T04:12:19Z.
    pub fn new(tables: u32, staff: &[&str]) -> Floor {
        let mut board = TicketBoard::new(tables, test_hash);
        for name in staff {
            board
                .add_staff(name, test_hash(&token_of(name)))
                .expect("unique test names");
        }
        Floor::with_board(board)
    }

    /// A floor around an existing board (after `restore`).
    pub fn with_board(board: TicketBoard) -> Floor {
        Floor {
            board,
            now: 1_569_903_139,
            roles: BTreeMap::new(),
            inboxes: BTreeMap::new(),
            records: Vec::new(),
            next_conn: 1,
        }
    }

    /// Opens a connection; its initial messages land in its inbox.
    pub fn connect(&mut self, role: Role) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.roles.insert(conn, role);
        self.inboxes.insert(conn, VecDeque::new());
        let out = self.board.connect(conn, role);
        self.route(out);
        conn
    }

    /// A staff console.
    pub fn staff(&mut self) -> ConnId {
        self.connect(Role::Staff)
    }

    /// A kiosk.
    pub fn kiosk(&mut self) -> ConnId {
        self.connect(Role::Kiosk)
    }

    /// A display.
    pub fn display(&mut self) -> ConnId {
        self.connect(Role::Display)
    }

    /// Sends one frame from `conn` and returns the reply; everything else the
    /// frame caused is routed to the inboxes. Panics (failing the test) unless
    /// the first message is the sender's reply and no other message is a
    /// reply.
    pub fn send(&mut self, conn: ConnId, text: &str) -> String {
        let out = self.board.handle(conn, text, self.now);
        let Some((Target::Conn(to), reply)) = out.messages.first().cloned() else {
            panic!("{text:?}: the first message is not a reply: {out:?}");
        };
        assert_eq!(to, conn, "{text:?}: the reply went elsewhere");
        let reply = String::from_utf8(reply.to_vec()).expect("UTF-8 reply");
        assert!(is_reply(&reply), "{text:?}: {reply:?} is not a reply");
        for (_, frame) in &out.messages[1..] {
            assert!(
                !is_reply(&String::from_utf8_lossy(frame)),
                "{text:?}: a second reply"
            );
        }
        self.route_from(out, 1);
        reply
    }

    /// Closes a connection.
    pub fn close(&mut self, conn: ConnId) {
        self.roles.remove(&conn);
        self.inboxes.remove(&conn);
        let out = self.board.disconnect(conn);
        self.route(out);
    }

    /// Removes a staff member through the admin path.
    pub fn remove_staff(&mut self, name: &str) {
        let out = self.board.remove_staff(name).expect("known staff member");
        self.route(out);
    }

    /// Takes the frames `conn` received since the last call.
    pub fn recv(&mut self, conn: ConnId) -> Vec<String> {
        self.inboxes
            .get_mut(&conn)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    /// Empties every inbox (between the acts of a test).
    pub fn drain_all(&mut self) {
        for q in self.inboxes.values_mut() {
            q.clear();
        }
    }

    /// Open connections of a role.
    pub fn conns(&self, role: Role) -> Vec<ConnId> {
        self.roles
            .iter()
            .filter(|(_, r)| **r == role)
            .map(|(c, _)| *c)
            .collect()
    }

    fn route(&mut self, out: Output) {
        self.route_from(out, 0);
    }

    fn route_from(&mut self, out: Output, skip: usize) {
        self.records.extend(out.records);
        for (target, frame) in out.messages.into_iter().skip(skip) {
            let text = String::from_utf8(frame.to_vec()).expect("UTF-8 frame");
            let to: Vec<ConnId> = match target {
                Target::Conn(c) => vec![c],
                Target::AllStaff => self.conns(Role::Staff),
                Target::AllStaffExcept(x) => self
                    .conns(Role::Staff)
                    .into_iter()
                    .filter(|c| *c != x)
                    .collect(),
                Target::AllDisplays => self.conns(Role::Display),
            };
            for c in to {
                if let Some(q) = self.inboxes.get_mut(&c) {
                    q.push_back(text.clone());
                }
            }
        }
    }
}

/// A frame that answers a command (as opposed to a broadcast).
pub(crate) fn is_reply(frame: &str) -> bool {
    frame.starts_with("success ") || frame.starts_with("error ")
}
