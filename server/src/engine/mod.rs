//! The engine: one per data directory, shared by the standalone server and the
//! C ABI. It owns the store writer thread and the live state (the event queue,
//! the registered tables, the tokens); reactors and C callers reach it through
//! [`Engine::submit`] and read its state without locks.
//!
//! The write path (DESIGN.md): a caller validates and prepares a change, hands
//! it to the writer thread with a [`Reply`] address, and answers only when the
//! writer reports that the batch holding it is committed — so a 2xx means "on
//! disk". The writer makes the change visible to readers only after the
//! commit, so no poller ever sees an event that a crash could undo.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use floorbell_core::qr::{PreparedEvent, TableRepr, Tables};
use floorbell_core::ring::{EventQueue, HashKey, Publisher, QueuedEvent, DEFAULT_CAPACITY};
use floorbell_core::store::eventlog::{EventLog, LogRecord};
use floorbell_core::store::{Store, StoreError, StoreOp, EVENT_LOG_DIR};
use parking_lot::{Mutex, RwLock};
use rand::Rng;
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::fanout::{ConnId, Delivery, Dest, WsRole};
use crate::local::{Change, Local};
use crate::reactor::{Mailbox, ReactorMsg};
use crate::webhooks::Webhooks;
use bytes::Bytes;
use floorbell_core::access::TokenRegistry;
use floorbell_core::orders::{OrderTracker, Settings, Zone};
use floorbell_core::tickets::{Role, Target, TicketBoard, TicketRecord};
use floorbell_core::webhooks::{Outbox, OutboxConfig};

pub mod gateway;
pub use gateway::{GatewayChange, GatewayState, Principal};

/// Most changes committed in one transaction. Bounds the latency one batch
/// adds for the changes queued behind it; at 64 concurrent publishers a
/// batch is ~64 anyway.
pub const MAX_BATCH: usize = 4096;
/// How often the writer drops expired events when idle.
pub const EXPIRY_TICK: Duration = Duration::from_secs(1);
/// How often token uses (`last_used`, `ip_address`) are written to disk.
pub const HOUSEKEEPING_TICK: Duration = Duration::from_secs(10);
/// How often the order history is purged (SPEC §3.3, `--history-days`).
pub const PURGE_TICK: Duration = Duration::from_secs(60);
/// How long [`Engine::session_command`] waits for its reply.
pub const SESSION_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

const META_QR_TOKEN: &str = "qr_token";
const META_ADMIN_TOKEN: &str = "admin_token";
const META_HASH_KEY: &str = "event_hash_key";
/// Every QR sequence number handed out is below this (a reservation, see
/// [`SEQ_RESERVE`]); a restart numbers on from at least it.
const META_NEXT_SEQ: &str = "qr_next_seq";
/// How far ahead the writer reserves QR sequence numbers: when a batch
/// would hand out a number at or past the persisted reservation, the same
/// commit moves it to this much past the batch (as database sequences cache
/// values). So one commit in 16,384 events or more writes a `meta` row, and
/// a restart starts past every hash ever handed out, even if the newest
/// log records were lost (a deleted or damaged segment): a client still
/// holding one of their hashes resynchronises instead of being answered
/// from the wrong place. A restart leaves a gap of up to this many numbers,
/// a sixteenth of the ring's window.
const SEQ_RESERVE: u64 = 16_384;
/// Events below this sequence number are gone: the event log's segments
/// holding only such events are reused (written before they are).
const META_EXPIRED_BEFORE: &str = "qr_expired_before";

/// A change for the writer thread.
#[derive(Debug)]
pub enum WriteRequest {
    /// Publish a QR event (SPEC §1.2).
    PublishEvent(PreparedEvent),
    /// Register or replace a table (SPEC §1.3).
    PutTable(TableRepr),
    /// A change of the ticket board (SPEC §2), applied under the board's
    /// lock when submitted, released after its commit.
    Ticket(TicketChange),
    /// A change of the gateway (SPEC §3), applied the same way.
    Gateway(GatewayChange),
}

/// An input of the ticket board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketChange {
    /// A WebSocket client connected on `/ws/{role}`.
    Opened {
        /// Its id.
        conn: ConnId,
        /// Its endpoint.
        role: WsRole,
    },
    /// A text message from a WebSocket client.
    Text {
        /// Its id.
        conn: ConnId,
        /// Its endpoint.
        role: WsRole,
        /// The message.
        text: String,
    },
    /// A WebSocket client went away.
    Closed {
        /// Its id.
        conn: ConnId,
        /// Its endpoint.
        role: WsRole,
    },
    /// `POST /api/tickets/staff`: a new account with this token.
    AddStaff {
        /// The name.
        name: String,
        /// The token (shown once in the answer; only its hash is kept).
        token: String,
    },
    /// `DELETE /api/tickets/staff/{name}`.
    RemoveStaff {
        /// The name.
        name: String,
    },
}

/// What became of a [`WriteRequest`], reported after the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The event is on disk and visible, with this hash.
    Published {
        /// Its hash.
        hash: u32,
    },
    /// The table is on disk and visible.
    TablePut(TableRepr),
    /// The store failed; nothing changed.
    Failed(String),
    /// Refused without being tried: an earlier commit failed, and the
    /// engine takes no change until it is restarted (see [`Halt`]).
    Unavailable(String),
    /// A staff account was created (SPEC §2).
    StaffAdded {
        /// Its name.
        name: String,
        /// Its token, shown only now.
        token: String,
    },
    /// A staff account was removed.
    StaffRemoved {
        /// Its name.
        name: String,
    },
    /// An answer decided when the change was applied, sent after its commit.
    Respond {
        /// HTTP status.
        status: u16,
        /// JSON body.
        body: Vec<u8>,
    },
    /// Refused before anything was written.
    Rejected {
        /// HTTP status.
        status: u16,
        /// Why.
        message: String,
    },
}

/// Where the writer sends an [`Outcome`].
pub enum Reply {
    /// A connection of a reactor: the outcome goes to its mailbox, and the
    /// reactor is woken once per batch.
    Reactor {
        /// The reactor's mailbox.
        mailbox: Arc<Mailbox>,
        /// The connection's slab key.
        token: usize,
        /// The connection's unique id (slab keys are reused).
        conn_id: u64,
    },
    /// A blocking caller (the C ABI, tests).
    Channel(Sender<Outcome>),
    /// A caller that does not wait ([`Engine::submit_event`]): the outcome
    /// is dropped, and the engine's count of submitted events still waiting
    /// for the store goes down once the writer has committed the event.
    Counted,
}

/// A change and where to report it.
pub struct Job {
    /// The change.
    pub request: WriteRequest,
    /// Where its outcome goes.
    pub reply: Reply,
}

pub(crate) enum WriterMsg {
    Job(Job),
    Applied(AppliedJob),
    Stop,
}

/// The way to the store writer: a channel that closes for good at
/// [`Engine::shutdown`].
///
/// The writer commits what came before its `Stop` and then leaves; a message
/// sent after the `Stop` but before the writer dropped its receiver would be
/// taken by the channel and never read: a change acknowledged (a C-ABI
/// submit returning 0) and lost. So every send holds `open` for reading and
/// checks it, and the `Stop` is sent holding it for writing: once it is
/// sent, every later send is refused to its caller instead.
///
/// It also counts the applied changes not yet committed ([`WriterTx::settled`]).
#[derive(Clone)]
pub(crate) struct WriterTx {
    tx: Sender<WriterMsg>,
    open: Arc<RwLock<bool>>,
    /// Applied changes with records sent and not committed yet (the writer
    /// lowers it after each successful commit; a failed one leaves it up).
    unsettled: Arc<AtomicUsize>,
}

impl WriterTx {
    fn new(tx: Sender<WriterMsg>, unsettled: Arc<AtomicUsize>) -> Self {
        WriterTx {
            tx,
            open: Arc::new(RwLock::new(true)),
            unsettled,
        }
    }

    /// Hands `msg` to the writer; gives it back once the writer was told to
    /// stop (or has stopped).
    // The message comes back whole, as crossbeam's `SendError` gives it.
    #[allow(clippy::result_large_err)]
    pub(crate) fn send(&self, msg: WriterMsg) -> Result<(), WriterMsg> {
        // Counted before the send, so the writer's decrement never comes
        // first; and never taken back when the send fails: the change is
        // applied in memory and will not reach the disk, so reads of its
        // state must not answer from memory any more.
        if matches!(&msg, WriterMsg::Applied(job) if job.counts()) {
            self.unsettled.fetch_add(1, Ordering::Relaxed);
        }
        let open = self.open.read();
        if !*open {
            return Err(msg);
        }
        self.tx.send(msg).map_err(|e| e.0)
    }

    /// Whether every change applied in memory so far is on disk. Called
    /// holding the lock of the state about to be read (changes to it are
    /// applied and sent under that lock), `true` means what the reader sees
    /// there is durable: each change adds one before it is sent and the
    /// writer takes it off only after the change's commit, so a change
    /// sent before the lock was taken keeps the count above zero until it
    /// is on disk (and for ever if its commit failed).
    pub(crate) fn settled(&self) -> bool {
        // Pairs with the writer's Release decrement after its commit.
        self.unsettled.load(Ordering::Acquire) == 0
    }

    /// Whether sends are still taken (no [`WriterTx::stop`] yet).
    fn is_open(&self) -> bool {
        *self.open.read()
    }

    /// Tells the writer to stop after what was sent; later sends fail.
    fn stop(&self) {
        let mut open = self.open.write();
        if std::mem::replace(&mut *open, false) {
            let _ = self.tx.send(WriterMsg::Stop);
        }
    }
}

/// A change already applied in memory (ticket board, gateway, webhooks), to
/// persist and release.
#[derive(Default)]
pub(crate) struct AppliedJob {
    /// What to write.
    pub(crate) records: Vec<StoreOp>,
    /// Frames to release to the reactors after the commit.
    pub(crate) delivery: Option<Arc<Delivery>>,
    /// The HTTP caller to answer, if any, and with what.
    pub(crate) reply: Option<(Reply, Outcome)>,
    /// The highest order `seq` in this change: once committed, its webhook
    /// deliveries may go.
    pub(crate) order_seq: Option<u64>,
    /// A read of state with changes not yet on disk ([`Engine::answer_after_commit`]):
    /// it changed nothing, so a failed commit refuses it with 503.
    pub(crate) read: bool,
    /// Its records change nothing a read shows (the webhook outbox's rows):
    /// not counted by [`WriterTx::settled`], so webhook traffic neither
    /// delays reads nor, refused after a failure, stops them.
    pub(crate) unseen: bool,
}

impl AppliedJob {
    /// Whether [`WriterTx::settled`] counts it.
    fn counts(&self) -> bool {
        !self.records.is_empty() && !self.unseen
    }
}

/// A read of live state (the ticket board, the orders, the access
/// tokens): changes are applied there before their commit, so what a read
/// sees may not be on disk yet. Shown before the commit, a change that is
/// then lost to a crash or a failed commit would have been seen (an order's
/// `seq` given out again after the restart), so such a read is answered
/// after the commit ([`Engine::answer_after_commit`]). Nearly always
/// nothing is pending and the answer goes at once.
#[derive(Debug)]
pub struct Read<R> {
    /// What the read made of the state, under its lock.
    pub value: R,
    /// Every change applied to the state before the read is on disk
    /// ([`WriterTx::settled`]).
    pub settled: bool,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed (or the data directory is in use).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writer thread could not be started.
    #[error("cannot start the store writer thread: {0}")]
    Thread(std::io::Error),
    /// The engine is shut down.
    #[error("the engine is shut down")]
    Closed,
    /// A commit failed earlier: changes are refused until a restart
    /// (see [`Halt`]).
    #[error("{0}")]
    Halted(String),
}

/// Whether the engine took a ticket-board change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Applied, and on its way to the store.
    Yes,
    /// Refused: the engine is shutting down.
    ShuttingDown,
    /// Refused: the store failed earlier (see [`Halt`]).
    Halted,
}

/// Fail-stop for writes. When a commit fails (a full disk, an I/O error),
/// changes already applied in memory (the ticket board, the orders) are
/// ahead of the disk, and no later commit can be trusted to put them right:
/// a change acknowledged after that could rest on one that is lost. So the
/// first failure stops every write, as PostgreSQL stops on a failed WAL
/// flush: from then on each change is refused at once (HTTP 503, C-ABI
/// `FLOORBELL_STATUS_STORE`, WebSocket clients closed with 1011 and new ones
/// refused with 503), while reads go on where they can (polls from what was
/// committed; the board and the orders only while nothing applied to them
/// is uncommitted, see [`Read`], else 503), until the operator fixes the
/// disk and restarts floorbell, which
/// then loads what the disk holds. Set once; never cleared.
#[derive(Debug, Default)]
pub struct Halt(OnceLock<String>);

impl Halt {
    /// Why changes are refused, once a commit has failed.
    pub fn reason(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }

    /// Records the first failure; true if this call set it.
    fn set(&self, reason: String) -> bool {
        self.0.set(reason).is_ok()
    }
}

/// A commit that has run this long makes `/healthz` answer 503: the disk
/// is stuck (a healthy commit takes milliseconds; changes give up after
/// 30 s).
pub const STUCK_COMMIT: Duration = Duration::from_secs(10);

/// When the writer's commit under way began, so that `/healthz` tells a
/// stuck disk from a healthy one: every change then waits (and gives up
/// with a 503 after 30 s) though nothing has failed. A lock is honest: it
/// is taken twice per commit and once per health check.
#[derive(Debug, Default)]
pub struct CommitClock(Mutex<Option<Instant>>);

impl CommitClock {
    /// A commit begins at `at`.
    pub fn begin(&self, at: Instant) {
        *self.0.lock() = Some(at);
    }

    /// The commit under way has ended.
    pub fn end(&self) {
        *self.0.lock() = None;
    }

    /// How long the commit under way has run at `now`; `None` when none is.
    pub fn running_for(&self, now: Instant) -> Option<Duration> {
        self.0.lock().map(|at| now.saturating_duration_since(at))
    }
}

/// The two tokens of SPEC §0.
pub struct Tokens {
    /// Sent by pollers in the `token` header (SPEC §1.1).
    pub qr: String,
    /// Sent by the host program as `Authorization: Bearer …`.
    pub admin: String,
}

/// A token generated on first start (the caller shows it once).
#[derive(Debug, Clone)]
pub struct GeneratedToken {
    /// `qr-token` or `admin-token`.
    pub name: &'static str,
    /// The token.
    pub value: String,
}

/// The engine (see the module doc).
pub struct Engine {
    config: Config,
    queue: Arc<EventQueue>,
    tables: Arc<Tables>,
    /// The QR token (SPEC §1.1), as a digest.
    qr_token: SecretDigest,
    /// The admin token, as a digest.
    admin_token: SecretDigest,
    writer: WriterTx,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    /// The ticket board. A lock is honest here: every command changes shared
    /// state, the critical section is short (no I/O: the commit happens on
    /// the writer thread), and holding it while handing the change to the
    /// writer keeps the commit order equal to the order of application.
    board: Arc<Mutex<TicketBoard>>,
    /// Every running reactor's mailbox, for releasing ticket deliveries.
    reactors: Arc<RwLock<Vec<Arc<Mailbox>>>>,
    /// In-process ticket sessions and change subscribers (the C ABI).
    local: Arc<Local>,
    /// The gateway's access tokens (SPEC §3.2). A lock is honest: every
    /// secured request records its use, and the section is a few hashes.
    access: Arc<Mutex<TokenRegistry>>,
    /// The orders and gateway settings (SPEC §3.3), under the same rule as
    /// the ticket board.
    gateway: Arc<Mutex<GatewayState>>,
    /// Webhook receivers, the outbox and its delivery threads (SPEC §3.6).
    webhooks: Arc<Webhooks>,
    /// Events given to [`Engine::submit_event`] and not committed yet.
    submitted: Arc<AtomicUsize>,
    /// Set by the writer when a commit fails: every later change is refused.
    halt: Arc<Halt>,
    /// When the writer's commit under way began.
    commit_clock: Arc<CommitClock>,
}

/// A token kept as its SHA-256 digest, to check presented ones against.
pub(crate) struct SecretDigest([u8; 32]);

impl SecretDigest {
    pub(crate) fn of(secret: &str) -> Self {
        SecretDigest(hash_token(secret))
    }

    /// Whether `presented` is the secret, in time that depends on neither
    /// where they differ nor the secret's length: digests of equal length
    /// are compared (a slice comparison returns early on a length
    /// mismatch, which would let a client measure the token's length), by
    /// OR-ing their bytes' differences, without a branch, and `subtle`'s
    /// comparison of that one byte with zero. (`subtle`'s comparison of
    /// the arrays passes every byte through an optimisation barrier: ~1 %
    /// of a poll's CPU in a profile.) The secret's digest is made once, at
    /// start: one SHA-256 per check.
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(presented).into();
        let diff = digest
            .iter()
            .zip(&self.0)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        bool::from(diff.ct_eq(&0))
    }
}

/// SHA-256 of a staff token: what the store and the board keep.
pub fn hash_token(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

fn to_board_role(role: WsRole) -> Option<Role> {
    match role {
        WsRole::Staff => Some(Role::Staff),
        WsRole::Kiosk => Some(Role::Kiosk),
        WsRole::Display => Some(Role::Display),
        WsRole::Orders => None,
    }
}

fn to_dest(target: Target) -> Dest {
    match target {
        Target::Conn(id) => Dest::Conn(id),
        Target::AllStaff => Dest::AllStaff,
        Target::AllStaffExcept(id) => Dest::AllStaffExcept(id),
        Target::AllDisplays => Dest::AllDisplays,
    }
}

fn record_op(record: TicketRecord) -> StoreOp {
    match record {
        TicketRecord::TicketUpserted(t) => StoreOp::PutTicket(t),
        TicketRecord::VisitorUpserted { email, name } => StoreOp::PutVisitor { email, name },
        TicketRecord::TicketsForgotten { ids, next_id } => StoreOp::ForgetTickets { ids, next_id },
        TicketRecord::VisitorsForgotten { emails } => StoreOp::ForgetVisitors(emails),
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A random 32-hex-digit token: 128 bits from the thread's CSPRNG (rand's
/// `ThreadRng`, seeded from the OS).
pub fn random_token() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Engine {
    /// Opens the data directory, restores the retained state, and starts the
    /// writer thread. Returns the engine and the tokens generated now (on a
    /// first start), which the caller shows once.
    ///
    /// # Errors
    ///
    /// [`EngineError`]: the directory is in use, the store is unreadable, or a
    /// thread cannot start.
    pub fn open(config: Config) -> Result<(Arc<Engine>, Vec<GeneratedToken>), EngineError> {
        let mut store = Store::open(&config.data_dir)?;
        // A database without its hash key is new; beside a log of events
        // it is a lost one (StoreError::DatabaseLost), refused before
        // anything is generated or written.
        if store.meta(META_HASH_KEY)?.is_none()
            && EventLog::holds_records(&config.data_dir.join(EVENT_LOG_DIR))
                .map_err(StoreError::EventLog)?
        {
            return Err(StoreError::DatabaseLost(config.data_dir.clone()).into());
        }
        let mut first_writes = Vec::new();
        let mut generated = Vec::new();
        // A token given by flag or file is the one in force: the generated
        // one is stored for later starts but not shown now.
        let overridden = |name: &str| match name {
            "qr-token" => config.qr_token.is_some(),
            "admin-token" => config.admin_token.is_some(),
            _ => false,
        };
        let mut stored_or_new =
            |key: &str, name: &'static str, store: &Store| -> Result<String, EngineError> {
                Ok(match store.meta(key)? {
                    Some(v) => v,
                    None => {
                        let v = random_token();
                        first_writes.push(StoreOp::PutMeta(key.into(), v.clone()));
                        if !name.is_empty() && !overridden(name) {
                            generated.push(GeneratedToken {
                                name,
                                value: v.clone(),
                            });
                        }
                        v
                    }
                })
            };
        let qr = stored_or_new(META_QR_TOKEN, "qr-token", &store)?;
        let admin = stored_or_new(META_ADMIN_TOKEN, "admin-token", &store)?;
        let key_hex = stored_or_new(META_HASH_KEY, "", &store)?;
        if !first_writes.is_empty() {
            store.commit(&first_writes)?;
        }
        let tokens = Tokens {
            qr: config.qr_token.clone().unwrap_or(qr),
            admin: config.admin_token.clone().unwrap_or(admin),
        };
        let key = HashKey::from_secret(u128::from_str_radix(&key_hex, 16).unwrap_or(0));

        // Restore the retained events with their original hashes and times:
        // from the event log, and from `qr_events` rows a version before it
        // wrote (until they expire).
        let retention_ms = config.event_retention.as_millis() as i64;
        let now = now_ms();
        let expired_before: u64 = store
            .meta(META_EXPIRED_BEFORE)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (log, logged) = EventLog::open(&config.data_dir.join(EVENT_LOG_DIR), expired_before)
            .map_err(StoreError::EventLog)?;
        let stored_next: u64 = store
            .meta(META_NEXT_SEQ)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let next_seq = stored_next
            .max(store.max_event_seq()?.map_or(0, |s| s + 1))
            .max(log.last_seq().map_or(0, |s| s + 1));
        // Restored events numbered at or past the stored reservation (a
        // store of a version before it, or a crash between the log's write
        // and the database's commit) are about to be served: reserve their
        // numbers first, so a restart after losing them starts past them.
        if next_seq > stored_next {
            store.commit(&[StoreOp::PutMeta(META_NEXT_SEQ.into(), next_seq.to_string())])?;
        }
        let mut events = store.load_events(now - retention_ms)?;
        events.extend(
            logged
                .into_iter()
                .filter(|e| e.time_ms > now - retention_ms),
        );
        events.sort_by_key(|e| e.seq);
        events.dedup_by_key(|e| e.seq);
        let first = events.first().map_or(next_seq, |e| e.seq);
        let (queue, mut publisher) = EventQueue::new(DEFAULT_CAPACITY, retention_ms, key, first);
        for e in events {
            if e.hash != key.encode(e.seq) {
                tracing::warn!(
                    seq = e.seq,
                    "stored event hash does not match its sequence number; skipped"
                );
                continue;
            }
            publisher.push(QueuedEvent {
                seq: e.seq,
                hash: e.hash,
                time_ms: e.time_ms,
                json: e.json,
            });
        }
        publisher.skip_to(next_seq);
        let tables = Arc::new(Tables::new(store.load_tables()?));
        let tickets = store.load_tickets()?;
        // Forgotten tickets leave their next id behind (restore takes the
        // larger of it and one past the highest stored ticket).
        let next_ticket_id = store
            .meta(floorbell_core::store::META_TICKETS_NEXT_ID)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut board = TicketBoard::restore(
            config.tables,
            hash_token,
            store.load_staff()?,
            tickets,
            store.load_visitors()?,
            next_ticket_id,
        );
        board.set_max_waiting(config.max_waiting_tickets);
        let board = Arc::new(Mutex::new(board));
        let access = Arc::new(Mutex::new(TokenRegistry::restore(
            store.load_access_tokens()?,
        )));
        let orders_next_seq: u64 = store
            .meta(gateway::META_ORDERS_NEXT_SEQ)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
            .max(store.max_order_seq()?.map_or(0, |s| s + 1));
        let settings = Settings {
            target_time_default: store
                .meta(gateway::META_TARGET_TIME)?
                .and_then(|v| v.parse().ok())
                .unwrap_or(300),
            zone: store
                .meta(gateway::META_TIMEZONE)?
                .and_then(|name| Zone::from_iana(&name).ok())
                .unwrap_or_else(Zone::system),
        };
        let gateway = Arc::new(Mutex::new(GatewayState {
            tracker: OrderTracker::restore(store.load_orders()?, orders_next_seq),
            settings,
        }));
        let (outbox, orphans) = Outbox::restore(
            OutboxConfig::default(),
            rand::rng().random(),
            store.load_webhook_receivers()?,
            store.load_webhook_outbox()?,
            store
                .meta(floorbell_core::store::META_NEXT_DELIVERY_ID)?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        );
        for d in &orphans.dropped {
            tracing::warn!("{d}");
        }
        if !orphans.records.is_empty() {
            let ops: Vec<StoreOp> = orphans.records.into_iter().map(StoreOp::Webhook).collect();
            store.commit(&ops)?;
        }
        let webhooks = Webhooks::new(outbox, orders_next_seq.saturating_sub(1));
        let reactors = Arc::new(RwLock::new(Vec::new()));

        let (tx, rx) = crossbeam_channel::unbounded();
        let local = Arc::new(Local::new(config.callback_queue_bytes));
        let submitted = Arc::new(AtomicUsize::new(0));
        let unsettled = Arc::new(AtomicUsize::new(0));
        let halt = Arc::new(Halt::default());
        let commit_clock = Arc::new(CommitClock::default());
        let writer = Writer {
            halt: Arc::clone(&halt),
            commit_clock: Arc::clone(&commit_clock),
            unsettled: Arc::clone(&unsettled),
            submitted: Arc::clone(&submitted),
            local: Arc::clone(&local),
            reactors: Arc::clone(&reactors),
            expired_before,
            seq_reserved: next_seq,
            stats: CommitStats::default(),
            store,
            log,
            publisher,
            tables: Arc::clone(&tables),
            rx,
            access: Arc::clone(&access),
            gateway: Arc::clone(&gateway),
            board: Arc::clone(&board),
            history_days: config.history_days,
            webhooks: Arc::clone(&webhooks),
        };
        let handle = std::thread::Builder::new()
            .name("floorbell-store".into())
            .spawn(move || writer.run())
            .map_err(EngineError::Thread)?;
        let tx = WriterTx::new(tx, unsettled);
        webhooks.start(tx.clone()).map_err(EngineError::Thread)?;
        let engine = Engine {
            config,
            queue,
            tables,
            qr_token: SecretDigest::of(&tokens.qr),
            admin_token: SecretDigest::of(&tokens.admin),
            writer: tx,
            writer_thread: Mutex::new(Some(handle)),
            board,
            reactors,
            local,
            access,
            gateway,
            webhooks,
            submitted,
            halt,
            commit_clock,
        };
        Ok((Arc::new(engine), generated))
    }

    /// Reads the stored tokens of a data directory without opening it for
    /// writing (works beside a running server).
    ///
    /// # Errors
    ///
    /// When there is no store there or it cannot be read.
    pub fn stored_tokens(data_dir: &Path) -> Result<Tokens, StoreError> {
        let store = Store::open_read_only(data_dir)?;
        Ok(Tokens {
            qr: store.meta(META_QR_TOKEN)?.unwrap_or_default(),
            admin: store.meta(META_ADMIN_TOKEN)?.unwrap_or_default(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The event queue (read side).
    pub fn queue(&self) -> &EventQueue {
        &self.queue
    }

    /// The registered tables.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Whether `presented` is the QR token, in constant time.
    pub fn is_qr_token(&self, presented: &[u8]) -> bool {
        self.qr_token.matches(presented)
    }

    /// Whether `presented` is the admin token, in constant time.
    pub fn is_admin_token(&self, presented: &[u8]) -> bool {
        self.admin_token.matches(presented)
    }

    /// Hands a change to the writer thread.
    ///
    /// # Errors
    ///
    /// Gives the job back when the writer has stopped.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        if let Some(reason) = self.halted() {
            answer_now(Some(job.reply), Outcome::Unavailable(reason.to_owned()));
            return Ok(());
        }
        match job.request {
            WriteRequest::Ticket(change) => {
                self.apply_ticket(change, Some(job.reply));
                Ok(())
            }
            WriteRequest::Gateway(change) => {
                self.gateway_change(change, job.reply);
                Ok(())
            }
            request => self
                .writer
                .send(WriterMsg::Job(Job {
                    request,
                    reply: job.reply,
                }))
                .map_err(|msg| match msg {
                    WriterMsg::Job(job) => job,
                    _ => unreachable!("only jobs are sent here"),
                }),
        }
    }

    /// Publishes a prepared event without waiting for its commit (the C
    /// ABI's submit): subscribers hear it once it is on disk. Events
    /// submitted by one thread are published in the order submitted.
    ///
    /// # Errors
    ///
    /// [`EngineError::Closed`] when the writer has stopped.
    pub fn submit_event(&self, prepared: PreparedEvent) -> Result<(), EngineError> {
        if self.halted().is_some() {
            return Err(self.refusal());
        }
        self.submitted.fetch_add(1, Ordering::Relaxed);
        let job = Job {
            request: WriteRequest::PublishEvent(prepared),
            reply: Reply::Counted,
        };
        self.writer.send(WriterMsg::Job(job)).map_err(|_| {
            self.submitted.fetch_sub(1, Ordering::Relaxed);
            EngineError::Closed
        })
    }

    /// How many events given to [`Engine::submit_event`] still wait for the
    /// store (an upper bound: the writer lowers it after each commit).
    pub fn submitted_waiting(&self) -> usize {
        self.submitted.load(Ordering::Acquire)
    }

    /// Why changes are refused, once a commit has failed (see [`Halt`]).
    pub fn halted(&self) -> Option<&str> {
        self.halt.reason()
    }

    /// How long the commit under way has run, once that is
    /// [`STUCK_COMMIT`] or more (see [`CommitClock`]).
    pub fn stuck_commit(&self) -> Option<Duration> {
        self.commit_clock
            .running_for(Instant::now())
            .filter(|d| *d >= STUCK_COMMIT)
    }

    /// Feeds the ticket board an input from a WebSocket connection; its
    /// messages go out after the change is on disk.
    pub fn ticket_change(&self, change: TicketChange) -> Taken {
        self.apply_ticket(change, None)
    }

    /// Applies a change to the board and hands its records and messages to
    /// the writer, under the board's lock (see the `board` field). When the
    /// engine is shutting down or halted nothing is applied, and a caller
    /// waiting for a reply would wait in vain. A connection that goes away
    /// is still let go of while halted: that keeps the board's memory
    /// bounded, and the records it makes are refused by the writer.
    fn apply_ticket(&self, change: TicketChange, reply: Option<Reply>) -> Taken {
        let now = now_ms().div_euclid(1000);
        let mut board = self.board.lock();
        // The writer is told to stop under this lock, so every change
        // applied here reaches the writer ahead of its Stop, and none is
        // applied in memory after it.
        if !self.writer.is_open() {
            drop(board);
            answer_now(reply, Outcome::Failed("the engine is shutting down".into()));
            return Taken::ShuttingDown;
        }
        if let Some(reason) = self.halted() {
            if !matches!(change, TicketChange::Closed { .. }) {
                drop(board);
                answer_now(reply, Outcome::Unavailable(reason.to_owned()));
                return Taken::Halted;
            }
        }
        let mut activate = None;
        let mut reply_to = None;
        let mut extra = Vec::new();
        let (output, outcome) = match change {
            TicketChange::Opened { conn, role } => {
                activate = Some(conn);
                let Some(role) = to_board_role(role) else {
                    return Taken::Yes; // not a ticket-board client
                };
                (board.connect(conn, role), None)
            }
            TicketChange::Text { conn, text, .. } => {
                reply_to = Some(conn);
                (board.handle(conn, &text, now), None)
            }
            TicketChange::Closed { conn, .. } => (board.disconnect(conn), None),
            TicketChange::AddStaff { name, token } => {
                let token_hash = hash_token(&token);
                match board.add_staff(&name, token_hash) {
                    Ok(()) => {
                        extra.push(StoreOp::PutStaff(floorbell_core::tickets::StaffAccount {
                            name: name.clone(),
                            token_hash,
                        }));
                        (
                            Default::default(),
                            Some(Outcome::StaffAdded { name, token }),
                        )
                    }
                    Err(e) => {
                        let status = match e {
                            floorbell_core::tickets::StaffError::AlreadyExists => 409,
                            floorbell_core::tickets::StaffError::NotFound => 404,
                            floorbell_core::tickets::StaffError::InvalidName => 400,
                        };
                        let settled = self.writer.settled();
                        drop(board);
                        self.answer_seen(
                            settled,
                            reply,
                            Outcome::Rejected {
                                status,
                                message: e.to_string(),
                            },
                        );
                        return Taken::Yes;
                    }
                }
            }
            TicketChange::RemoveStaff { name } => match board.remove_staff(&name) {
                Ok(output) => {
                    extra.push(StoreOp::DeleteStaff(name.clone()));
                    (output, Some(Outcome::StaffRemoved { name }))
                }
                Err(e) => {
                    let settled = self.writer.settled();
                    drop(board);
                    self.answer_seen(
                        settled,
                        reply,
                        Outcome::Rejected {
                            status: 404,
                            message: e.to_string(),
                        },
                    );
                    return Taken::Yes;
                }
            },
        };
        let mut records: Vec<StoreOp> = output.records.into_iter().map(record_op).collect();
        records.extend(extra);
        let messages: Vec<(Dest, Bytes)> = output
            .messages
            .into_iter()
            .map(|(target, text)| (to_dest(target), crate::ws::text_frame(&text)))
            .collect();
        let delivery =
            (activate.is_some() || reply_to.is_some() || !messages.is_empty()).then(|| {
                Arc::new(Delivery {
                    activate,
                    messages,
                    reply_to,
                    halt: false,
                    revoked: None,
                })
            });
        let reply = reply.zip(outcome);
        if records.is_empty() && delivery.is_none() && reply.is_none() {
            return Taken::Yes;
        }
        // Sent while the lock is held: the writer commits in application order.
        if self
            .writer
            .send(WriterMsg::Applied(AppliedJob {
                records,
                delivery,
                reply,
                ..AppliedJob::default()
            }))
            .is_err()
        {
            tracing::warn!("a ticket change arrived after shutdown; dropped");
            return Taken::ShuttingDown;
        }
        Taken::Yes
    }

    /// The body of `GET /api/tickets/staff`: names only, never tokens
    /// ([`Read`]).
    pub fn staff_list_json(&self) -> Read<Vec<u8>> {
        let (names, settled) = {
            let board = self.board.lock();
            (board.staff_names(), self.writer.settled())
        };
        Read {
            value: serde_json::to_vec(&serde_json::json!({
                "staff": names.iter().map(|n| serde_json::json!({"name": n})).collect::<Vec<_>>()
            }))
            .unwrap_or_default(),
            settled,
        }
    }

    /// The body of `GET /api/tickets/serving`: every ticket in service
    /// (claimed, open) with its number and the visitor's name — what a
    /// display shows, for one that connects after the claim. No emails.
    /// Public, so it costs the tickets in service, not the history.
    /// ([`Read`]).
    pub fn serving_json(&self) -> Read<Vec<u8>> {
        let board = self.board.lock();
        let serving: Vec<serde_json::Value> = board
            .serving()
            .into_iter()
            .map(|t| serde_json::json!({"id": t.id, "name": t.name}))
            .collect();
        let settled = self.writer.settled();
        drop(board);
        Read {
            value: serde_json::to_vec(&serde_json::json!({ "serving": serving }))
                .unwrap_or_default(),
            settled,
        }
    }

    /// Answers `reply` with `outcome` once every change sent to the writer
    /// before this call is on disk: the answer to a read that was not
    /// [`Read::settled`]. A commit that fails first turns it into a 503, as
    /// it does every change after it. Gives `reply` back when the engine is
    /// shutting down.
    // The reply comes back whole, for the caller to answer.
    #[allow(clippy::result_large_err)]
    pub fn answer_after_commit(&self, reply: Reply, outcome: Outcome) -> Result<(), Reply> {
        self.writer
            .send(WriterMsg::Applied(AppliedJob {
                reply: Some((reply, outcome)),
                read: true,
                ..AppliedJob::default()
            }))
            .map_err(|msg| match msg {
                WriterMsg::Applied(AppliedJob {
                    reply: Some((reply, _)),
                    ..
                }) => reply,
                _ => unreachable!("the message sent comes back"),
            })
    }

    /// Answers a change refused for what the live state holds (a name
    /// taken, an order not found): at once when `settled` (read under the
    /// state's lock), else after the commit the refusal may rest on, so a
    /// client is never told of an order whose commit then fails.
    pub(crate) fn answer_seen(&self, settled: bool, reply: Option<Reply>, outcome: Outcome) {
        match reply {
            Some(reply) if !settled => {
                if let Err(reply) = self.answer_after_commit(reply, outcome) {
                    answer_now(
                        Some(reply),
                        Outcome::Unavailable("the engine is shutting down".into()),
                    );
                }
            }
            reply => answer_now(reply, outcome),
        }
    }

    /// A [`Read`]'s value once it may be shown: at once when settled, else
    /// after the commit it waits for ([`Engine::answer_after_commit`], at
    /// most 30 s), for callers that block (the C ABI).
    ///
    /// # Errors
    ///
    /// [`EngineError::Halted`] when that commit failed (or took longer),
    /// [`EngineError::Closed`] when the engine is shut down.
    pub fn settle_blocking(&self, read: Read<Vec<u8>>) -> Result<Vec<u8>, EngineError> {
        if read.settled {
            return Ok(read.value);
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        let outcome = Outcome::Respond {
            status: 200,
            body: read.value,
        };
        self.answer_after_commit(Reply::Channel(tx), outcome)
            .map_err(|_| EngineError::Closed)?;
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(Outcome::Respond { body, .. }) => Ok(body),
            Ok(Outcome::Unavailable(reason) | Outcome::Failed(reason)) => {
                Err(EngineError::Halted(reason))
            }
            Ok(_) => Err(EngineError::Halted("refused".into())),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(EngineError::Halted(
                "no answer from the store within 30 seconds".into(),
            )),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(EngineError::Closed),
        }
    }

    /// Lets the writer release ticket deliveries to these reactors (the
    /// server calls this when it starts them, and with an empty list when it
    /// stops them).
    pub fn set_reactors(&self, mailboxes: Vec<Arc<Mailbox>>) {
        *self.reactors.write() = mailboxes;
    }

    /// In-process ticket sessions and change subscribers.
    pub fn local(&self) -> &Local {
        &self.local
    }

    /// Opens an in-process ticket session (a POS driving the board directly,
    /// like a `/ws/{role}` connection): its initial messages are skipped.
    pub fn open_session(&self, role: WsRole) -> LocalSession {
        let (conn, rx) = self.local.open_session();
        self.ticket_change(TicketChange::Opened { conn, role });
        LocalSession {
            conn,
            role,
            rx,
            command: Mutex::new(0),
        }
    }

    /// Sends one command on a session and waits for its reply (`success …`
    /// or `error …`), which comes after the change is on disk. Commands on
    /// one session from several threads run one after the other, each
    /// getting its own reply.
    ///
    /// # Errors
    ///
    /// [`EngineError::Closed`] at once when the engine is shutting down (or
    /// when no reply comes within 30 s, which a working store never takes);
    /// [`EngineError::Halted`] at once when a commit has failed, this
    /// command's or an earlier one (see [`Halt`]).
    pub fn session_command(
        &self,
        session: &LocalSession,
        text: &str,
    ) -> Result<String, EngineError> {
        self.session_command_within(session, text, SESSION_REPLY_TIMEOUT)
    }

    /// [`Engine::session_command`] giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Engine::session_command`].
    pub fn session_command_within(
        &self,
        session: &LocalSession,
        text: &str,
        timeout: Duration,
    ) -> Result<String, EngineError> {
        // One command in flight per session: the replies share one channel,
        // and `owed` counts those still to come for commands that gave up
        // (every command taken gets exactly one reply, unless the store
        // halts, which drops the channel): they are skipped, never taken
        // for a later command's.
        let mut owed = session.command.lock();
        let taken = self.ticket_change(TicketChange::Text {
            conn: session.conn,
            role: session.role,
            text: text.to_owned(),
        });
        match taken {
            Taken::Yes => {}
            Taken::ShuttingDown => return Err(EngineError::Closed),
            Taken::Halted => return Err(self.refusal()),
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            // A commit that fails drops every session's channel (see
            // `Writer::halt`): the wait ends at once.
            let message = match session.rx.recv_timeout(left) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => {
                    *owed += 1;
                    return Err(self.refusal());
                }
                Err(RecvTimeoutError::Disconnected) => return Err(self.refusal()),
            };
            // Only replies reach a session's channel (`Local::deliver`).
            if *owed > 0 {
                *owed -= 1;
                continue;
            }
            return Ok(String::from_utf8_lossy(&message).into_owned());
        }
    }

    /// The error for a change that was refused or never answered:
    /// [`EngineError::Halted`] once a commit has failed, else
    /// [`EngineError::Closed`].
    fn refusal(&self) -> EngineError {
        match self.halted() {
            Some(reason) => EngineError::Halted(reason.to_owned()),
            None => EngineError::Closed,
        }
    }

    /// Closes a session (a staff session's table is unpicked).
    pub fn close_session(&self, session: LocalSession) {
        self.ticket_change(TicketChange::Closed {
            conn: session.conn,
            role: session.role,
        });
        self.local.close_session(session.conn);
    }

    /// Submits a change and waits until it is committed (or failed).
    ///
    /// # Errors
    ///
    /// [`EngineError::Closed`] when the engine is shut down.
    pub fn write_blocking(&self, request: WriteRequest) -> Result<Outcome, EngineError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.submit(Job {
            request,
            reply: Reply::Channel(tx),
        })
        .map_err(|_| EngineError::Closed)?;
        rx.recv().map_err(|_| EngineError::Closed)
    }

    /// Commits what is queued, stops the writer and waits for it. Later
    /// submissions fail. Calling it again does nothing.
    pub fn shutdown(&self) {
        self.webhooks.stop();
        {
            let _board = self.board.lock();
            self.writer.stop();
        }
        if let Some(handle) = self.writer_thread.lock().take() {
            let _ = handle.join();
        }
        self.local.shutdown();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Answers a caller at once (a refusal decided before anything is written).
pub(crate) fn answer_now(reply: Option<Reply>, outcome: Outcome) {
    if let Some(mailbox) = reply.and_then(|r| post_outcome(r, outcome)) {
        mailbox.wake();
    }
}

/// Sends `outcome` to `reply`; for a reactor, returns the mailbox that still
/// needs a wake-up (the writer wakes each mailbox once per batch).
fn post_outcome(reply: Reply, outcome: Outcome) -> Option<Arc<Mailbox>> {
    match reply {
        Reply::Channel(tx) => {
            let _ = tx.send(outcome);
            None
        }
        // Only store-writer jobs are counted, and the writer lowers the
        // count itself, once per batch.
        Reply::Counted => None,
        Reply::Reactor {
            mailbox,
            token,
            conn_id,
        } => {
            mailbox.post(ReactorMsg::Completed {
                token,
                conn_id,
                outcome,
            });
            Some(mailbox)
        }
    }
}

/// An in-process ticket session (see [`Engine::open_session`]).
pub struct LocalSession {
    conn: ConnId,
    role: WsRole,
    rx: Receiver<Bytes>,
    /// Held while a command waits for its reply: the number of replies
    /// still owed to commands that gave up waiting.
    command: Mutex<usize>,
}

/// What the writer did since its last report: how well group commit groups.
#[derive(Default)]
struct CommitStats {
    commits: u64,
    changes: u64,
    total: Duration,
    longest: Duration,
}

impl CommitStats {
    fn record(&mut self, changes: usize, took: Duration) {
        self.commits += 1;
        self.changes += changes as u64;
        self.total += took;
        self.longest = self.longest.max(took);
    }

    fn log_and_reset(&mut self) {
        if self.commits > 0 {
            tracing::debug!(
                commits = self.commits,
                changes = self.changes,
                mean_batch = self.changes as f64 / self.commits as f64,
                mean_commit_us = (self.total.as_micros() / u128::from(self.commits)) as u64,
                longest_commit_us = self.longest.as_micros() as u64,
                "store writer"
            );
        }
        *self = CommitStats::default();
    }
}

/// A change waiting in the writer's batch.
enum Pending {
    Job(Job),
    Applied(AppliedJob),
}

/// The store writer thread: group commit.
struct Writer {
    /// Set when a commit fails; from then on batches are refused untried.
    halt: Arc<Halt>,
    /// Set while a commit is under way (for `/healthz`).
    commit_clock: Arc<CommitClock>,
    /// Commit counters, logged at debug level once a second.
    stats: CommitStats,
    /// Local sessions and subscribers (the C ABI's).
    local: Arc<Local>,
    /// Where committed ticket deliveries go.
    reactors: Arc<RwLock<Vec<Arc<Mailbox>>>>,
    /// Events below this sequence number are gone from the store (the
    /// persisted `qr_expired_before`).
    expired_before: u64,
    /// Every sequence number handed out is below this: the persisted
    /// `qr_next_seq` ([`SEQ_RESERVE`]).
    seq_reserved: u64,
    /// Where QR events are written. Declared before `store`, so dropped
    /// first: its drop waits for a segment being prepared, and the store
    /// holds the directory lock, which must outlast that preparation (a
    /// process opening the directory next must not meet its rename).
    log: EventLog,
    store: Store,
    publisher: Publisher,
    tables: Arc<Tables>,
    rx: Receiver<WriterMsg>,
    /// Token uses to persist now and then (SPEC §3.2).
    access: Arc<Mutex<TokenRegistry>>,
    /// The orders, for the history purge.
    gateway: Arc<Mutex<GatewayState>>,
    /// The ticket board, for forgetting long-closed tickets.
    board: Arc<Mutex<TicketBoard>>,
    /// `--history-days`.
    history_days: u32,
    /// Told the highest committed order `seq`, so deliveries may go.
    webhooks: Arc<Webhooks>,
    /// [`Engine::submit_event`]'s count of events waiting for the store.
    submitted: Arc<AtomicUsize>,
    /// [`WriterTx::settled`]'s count, lowered after each successful commit.
    unsettled: Arc<AtomicUsize>,
}

impl Writer {
    fn run(mut self) {
        let mut batch: Vec<Pending> = Vec::new();
        let mut next_expiry = std::time::Instant::now() + EXPIRY_TICK;
        // The first housekeeping (and history purge) runs at once: a
        // server started after a long stop purges what expired meanwhile.
        let mut next_housekeeping = std::time::Instant::now();
        // The history purge runs at start, then every PURGE_TICK (sooner
        // while whole batches keep coming).
        let mut next_purge = std::time::Instant::now();
        let mut stopping = false;
        while !stopping {
            let wait = next_expiry
                .min(next_housekeeping)
                .saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(WriterMsg::Job(job)) => batch.push(Pending::Job(job)),
                Ok(WriterMsg::Applied(job)) => batch.push(Pending::Applied(job)),
                Ok(WriterMsg::Stop) | Err(RecvTimeoutError::Disconnected) => stopping = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Take whatever else is already queued: that is the group.
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(WriterMsg::Job(job)) => batch.push(Pending::Job(job)),
                    Ok(WriterMsg::Applied(job)) => batch.push(Pending::Applied(job)),
                    Ok(WriterMsg::Stop) => stopping = true,
                    Err(_) => break,
                }
            }
            let mut expire_before = None;
            let mut extra = Vec::new();
            // Purges applied in memory by the housekeeping below, counted
            // like changes (WriterTx::settled) until their commit.
            let mut extra_counted = 0;
            let due = Instant::now() >= next_expiry.min(next_housekeeping) || stopping;
            if due {
                let now = std::time::Instant::now();
                self.stats.log_and_reset();
                // Once halted, nothing changes in memory that cannot be
                // written: the housekeeping waits for the restart.
                let halted = self.halt.reason().is_some();
                if (now >= next_housekeeping || stopping) && !halted {
                    let purge = now >= next_purge && !stopping;
                    let wall_ms = now_ms();
                    let (ops, purged) = gateway::housekeeping(
                        &self.access,
                        &self.gateway,
                        self.history_days,
                        wall_ms,
                        purge,
                        &self.unsettled,
                    );
                    extra = ops;
                    extra_counted += purged;
                    if purge {
                        // Closed tickets go after the order history's time.
                        let cutoff = wall_ms / 1000 - i64::from(self.history_days) * 86_400;
                        let out = {
                            let mut board = self.board.lock();
                            let out = board.forget_closed(cutoff, gateway::PURGE_BATCH);
                            if !out.records.is_empty() {
                                // Under the board's lock, as changes are.
                                self.unsettled.fetch_add(1, Ordering::Relaxed);
                                extra_counted += 1;
                            }
                            out
                        };
                        for record in out.records {
                            match &record {
                                TicketRecord::TicketsForgotten { ids, .. } => {
                                    tracing::info!(tickets = ids.len(), "forgot closed tickets");
                                }
                                TicketRecord::VisitorsForgotten { emails } => {
                                    tracing::info!(
                                        visitors = emails.len(),
                                        "forgot visitors with no ticket left"
                                    );
                                }
                                _ => {}
                            }
                            extra.push(record_op(record));
                        }
                    }
                    let full = extra.iter().any(|op| match op {
                        StoreOp::DeleteOrders(v) => v.len() >= gateway::PURGE_BATCH,
                        StoreOp::ForgetTickets { ids, .. } => ids.len() >= gateway::PURGE_BATCH,
                        _ => false,
                    });
                    next_housekeeping = now + if full { EXPIRY_TICK } else { HOUSEKEEPING_TICK };
                    if purge {
                        next_purge = now + if full { EXPIRY_TICK } else { PURGE_TICK };
                    }
                } else if halted {
                    next_housekeeping = now + HOUSEKEEPING_TICK;
                }
                next_expiry = std::time::Instant::now() + EXPIRY_TICK;
            }
            // Expired and evicted events leave the store with the
            // once-a-second tick, or as soon as that frees a segment of the
            // event log (a flood evicts ~50k events a second from the full
            // ring): the new tail is committed, then segments below it are
            // retired.
            if due || !batch.is_empty() {
                let tail = self.publisher.expire(now_ms());
                // Only a tail that moved is worth a transaction (an idle
                // server does not fsync every second).
                if tail > self.expired_before && (due || self.log.retirable(tail)) {
                    expire_before = Some(tail);
                }
            }
            if !batch.is_empty() || expire_before.is_some() || !extra.is_empty() {
                self.commit(&mut batch, expire_before, extra, extra_counted);
            }
        }
        tracing::debug!("store writer stopped");
    }

    /// Persists `batch` (and the expiry) in one transaction, then publishes,
    /// releases and reports, in the order the changes arrived.
    fn commit(
        &mut self,
        batch: &mut Vec<Pending>,
        expire_before: Option<u64>,
        extra: Vec<StoreOp>,
        extra_counted: usize,
    ) {
        let now = now_ms();
        // The changes of this batch that WriterTx::send counted, and those
        // the writer applied itself (`extra`).
        let settling = extra_counted
            + batch
                .iter()
                .filter(|p| matches!(p, Pending::Applied(job) if job.counts()))
                .count();
        let mut ops = Vec::with_capacity(4);
        let mut seq = self.publisher.next_seq();
        let mut visible = Vec::new();
        for pending in batch.iter_mut() {
            match pending {
                Pending::Job(job) => match &mut job.request {
                    WriteRequest::PublishEvent(prepared) => {
                        let hash = self.publisher.hash_of(seq);
                        let time_ms = self.publisher.stamp(now);
                        let json = std::mem::replace(prepared, PreparedEvent::empty()).finish(hash);
                        visible.push(QueuedEvent {
                            seq,
                            hash,
                            time_ms,
                            json,
                        });
                        seq += 1;
                    }
                    WriteRequest::PutTable(t) => ops.push(StoreOp::PutTable(t.clone())),
                    // Applied by Engine::submit, never queued as a Job.
                    WriteRequest::Ticket(_) | WriteRequest::Gateway(_) => {}
                },
                Pending::Applied(job) => ops.append(&mut job.records),
            }
        }
        // Numbers past the reservation are reserved in the same commit
        // that makes their events durable, before any hash is answered.
        let reserve = (seq > self.seq_reserved).then(|| seq + SEQ_RESERVE);
        if let Some(reserve) = reserve {
            ops.push(StoreOp::PutMeta(META_NEXT_SEQ.into(), reserve.to_string()));
        }
        if let Some(tail) = expire_before {
            ops.push(StoreOp::PutMeta(
                META_EXPIRED_BEFORE.into(),
                tail.to_string(),
            ));
            // `qr_events` rows of a version before the event log.
            ops.push(StoreOp::ExpireEventsBefore(tail));
        }
        ops.extend(extra);
        // What each change of a batch that was not committed is told.
        let result: Result<(), Outcome> = if let Some(reason) = self.halt.reason() {
            Err(Outcome::Unavailable(reason.to_owned()))
        } else if ops.is_empty() && visible.is_empty() {
            Ok(())
        } else {
            let started = std::time::Instant::now();
            self.commit_clock.begin(started);
            let r = self.persist(&visible, &ops);
            self.commit_clock.end();
            self.stats.record(batch.len(), started.elapsed());
            r.map_err(|e| {
                // Events and tables are not visible yet and are refused. A
                // ticket or order change is already applied in memory: its
                // messages are withheld (no `success` was sent), and from
                // now on the engine takes no change (see `Halt`).
                tracing::error!(
                    error = %e,
                    changes = batch.len(),
                    "store commit failed: the batch is refused, and so is every later change until floorbell is restarted"
                );
                self.halt(&e);
                Outcome::Failed(format!("the store failed: {e}"))
            })
        };
        if let (Ok(()), Some(reserve)) = (&result, reserve) {
            self.seq_reserved = reserve;
        }
        if let (Ok(()), Some(tail)) = (&result, expire_before) {
            self.expired_before = tail;
            if let Err(e) = self.log.retire(tail) {
                // The segment stays on disk; a restart skips its events
                // (all below the tail) and deletes it.
                tracing::warn!(error = %e, "cannot delete an event log segment");
            }
        }
        // Visible only after the commit (DESIGN.md, write path step 5).
        let mut hashes = Vec::with_capacity(visible.len());
        // Subscribers hear the batch's changes in the order they arrived:
        // each event at its job's place among the ticket and order changes.
        let mut changes = Vec::new();
        let mut event_changes = Vec::new();
        if result.is_ok() {
            // On disk: reads of the state they changed may answer at once.
            self.unsettled.fetch_sub(settling, Ordering::Release);
            let subscribed = self.local.has_subscribers();
            for e in visible {
                hashes.push(e.hash);
                if subscribed {
                    event_changes.push(Change::Event(e.json.clone()));
                }
                self.publisher.push(e);
            }
            let puts = batch.iter().filter_map(|p| match p {
                Pending::Job(Job {
                    request: WriteRequest::PutTable(t),
                    ..
                }) => Some(t.clone()),
                _ => None,
            });
            self.tables.put_all(puts);
        }
        let mut hashes = hashes.into_iter();
        let mut event_changes = event_changes.into_iter();
        let mut woken: Vec<Arc<Mailbox>> = Vec::new();
        // Submitted events committed in this batch: the count is lowered
        // once per batch (submitting threads touch it on every submit).
        let mut counted = 0usize;
        let reactors = self.reactors.read().clone();
        let mut wake_all = false;
        let mut committed_order_seq: Option<u64> = None;
        for pending in batch.drain(..) {
            let (reply, outcome) = match pending {
                Pending::Job(job) => {
                    let outcome = match (&result, job.request) {
                        (Err(refused), _) => refused.clone(),
                        (Ok(()), WriteRequest::PublishEvent(_)) => {
                            changes.extend(event_changes.next());
                            Outcome::Published {
                                hash: hashes.next().unwrap_or(0),
                            }
                        }
                        (Ok(()), WriteRequest::PutTable(t)) => Outcome::TablePut(t),
                        (Ok(()), WriteRequest::Ticket(_) | WriteRequest::Gateway(_)) => {
                            Outcome::Failed("misrouted ticket change".into())
                        }
                    };
                    (Some(job.reply), outcome)
                }
                Pending::Applied(job) => {
                    if result.is_ok() {
                        if let Some(seq) = job.order_seq {
                            committed_order_seq = committed_order_seq.max(Some(seq));
                        }
                        if let Some(delivery) = job.delivery {
                            self.local.deliver(&delivery, &mut changes);
                            for m in &reactors {
                                m.post(ReactorMsg::Deliver(Arc::clone(&delivery)));
                            }
                            wake_all = true;
                        }
                    }
                    match job.reply {
                        Some((reply, outcome)) => {
                            // Applied in memory already (and visible to reads
                            // of the board and the orders until the restart),
                            // so never "refused untried": a failure.
                            let outcome = match &result {
                                Ok(()) => outcome,
                                // A read changed nothing, but it saw the
                                // changes that were not committed.
                                Err(Outcome::Unavailable(reason) | Outcome::Failed(reason))
                                    if job.read =>
                                {
                                    Outcome::Unavailable(reason.clone())
                                }
                                Err(Outcome::Unavailable(reason)) => {
                                    Outcome::Failed(reason.clone())
                                }
                                Err(refused) => refused.clone(),
                            };
                            (Some(reply), outcome)
                        }
                        None => (None, Outcome::Failed(String::new())),
                    }
                }
            };
            match reply {
                Some(Reply::Counted) => counted += 1,
                reply => {
                    if let Some(mailbox) = reply.and_then(|r| post_outcome(r, outcome)) {
                        if !woken.iter().any(|m| Arc::ptr_eq(m, &mailbox)) {
                            woken.push(mailbox);
                        }
                    }
                }
            }
        }
        if counted > 0 {
            self.submitted.fetch_sub(counted, Ordering::Release);
        }
        self.local.notify(changes);
        if let Some(seq) = committed_order_seq {
            self.webhooks.committed(seq);
        }
        // One wake-up per mailbox per batch.
        if wake_all {
            for m in &reactors {
                if !woken.iter().any(|w| Arc::ptr_eq(w, m)) {
                    woken.push(Arc::clone(m));
                }
            }
        }
        for m in woken {
            m.wake();
        }
    }

    /// Makes `events` and `ops` durable: the events in the log, the rest in
    /// one SQLite transaction. Events go first: a failure of either stops
    /// the engine, and events of a batch whose SQLite part failed may come
    /// back after the restart (never acknowledged, like a commit whose
    /// fsync failed).
    fn persist(&mut self, events: &[QueuedEvent], ops: &[StoreOp]) -> Result<(), StoreError> {
        if !events.is_empty() {
            let records: Vec<LogRecord<'_>> = events
                .iter()
                .map(|e| LogRecord {
                    seq: e.seq,
                    hash: e.hash,
                    time_ms: e.time_ms,
                    json: &e.json,
                })
                .collect();
            self.log.append(&records).map_err(StoreError::EventLog)?;
        }
        if !ops.is_empty() {
            self.store.commit(ops)?;
        }
        Ok(())
    }

    /// Stops every write after the commit that failed with `error` (see
    /// [`Halt`]): WebSocket clients of the board and the orders are closed
    /// (a command of theirs may never be answered), and in-process sessions
    /// waiting for a reply are let go.
    fn halt(&self, error: &StoreError) {
        let reason =
            format!("the store failed ({error}); floorbell refuses changes until it is restarted");
        if !self.halt.set(reason) {
            return;
        }
        // Behind the deliveries of the changes committed before, which their
        // clients must still get.
        let halt = Arc::new(Delivery {
            halt: true,
            ..Delivery::default()
        });
        for m in self.reactors.read().iter() {
            m.post(ReactorMsg::Deliver(Arc::clone(&halt)));
            m.wake();
        }
        self.local.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_exactly() {
        let secret = SecretDigest::of("s3cret-token");
        assert!(secret.matches(b"s3cret-token"));
        for other in [&b""[..], b"s3cret", b"s3cret-token ", b"S3cret-token"] {
            assert!(!secret.matches(other), "{other:?}");
        }
        assert!(!SecretDigest::of("").matches(b"x"));
    }

    /// A command that gave up before its reply came: that late reply is
    /// never taken for the next command's.
    #[test]
    fn a_late_reply_is_not_taken_for_the_next_command_s() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_toml_text("no-mdns = true", &dir.path().join("data")).unwrap();
        let (engine, _) = Engine::open(config).unwrap();
        let kiosk = engine.open_session(WsRole::Kiosk);
        // No reply within no time at all: replies are held back until the
        // command has given up (a commit once beat a zero timeout on a
        // loaded machine).
        let held = engine.local().hold_replies();
        assert!(engine
            .session_command_within(&kiosk, "new a@example.com Al", Duration::ZERO)
            .is_err());
        drop(held);
        assert_eq!(
            engine
                .session_command(&kiosk, "query a@example.com")
                .unwrap(),
            "success query Al"
        );
        assert!(engine
            .session_command(&kiosk, "new b@example.com Bo")
            .unwrap()
            .starts_with("success new {\"id\":1,"));
        engine.close_session(kiosk);
        engine.shutdown();
    }

    /// One batch of [ticket A, event E, ticket B] reaches subscribers as
    /// A, E, B: the order they were committed in (events used to go first).
    #[test]
    fn subscribers_hear_a_batch_in_the_order_it_arrived() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_toml_text("no-mdns = true", &dir.path().join("data")).unwrap();
        let (engine, _) = Engine::open(config).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        engine
            .local()
            .subscribe(Box::new(move |c| sink.lock().push(c.clone())))
            .unwrap();
        let event = |table: u32| {
            let body = format!(r#"{{"code":"waiter_call","table":{table}}}"#);
            floorbell_core::qr::prepare_event(
                body.as_bytes(),
                &floorbell_core::qr::TableSet::default(),
            )
            .unwrap()
        };
        let kiosk = crate::fanout::conn_id(0, 1, 1);
        let role = WsRole::Kiosk;
        assert!(matches!(
            engine.ticket_change(TicketChange::Opened { conn: kiosk, role }),
            Taken::Yes
        ));
        let new_ticket = |who: &str| TicketChange::Text {
            conn: kiosk,
            role,
            text: format!("new {who}@example.com {who}"),
        };
        {
            // The writer commits event 1 and waits to hand it over; A, E
            // and B queue up behind it meanwhile and make the next batch.
            let _held = engine.local().hold_dispatch();
            engine.submit_event(event(1)).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            assert!(matches!(engine.ticket_change(new_ticket("Al")), Taken::Yes));
            engine.submit_event(event(2)).unwrap();
            assert!(matches!(engine.ticket_change(new_ticket("Bo")), Taken::Yes));
        }
        engine.shutdown();
        let text = |c: &Change| match c {
            Change::Event(json) if json.windows(9).any(|w| w == b"\"table\":2") => "E".to_owned(),
            Change::Event(_) => "E1".to_owned(),
            Change::Ticket(t) | Change::Order(t) => {
                let t = String::from_utf8_lossy(t);
                ["Al", "Bo"]
                    .into_iter()
                    .find(|who| t.contains(&format!("\"name\":\"{who}\"")))
                    .map_or_else(|| t.into_owned(), str::to_owned)
            }
            Change::Lagged(n) => format!("lagged {n}"),
        };
        let order: Vec<String> = seen.lock().iter().map(text).collect();
        let at = |x: &str| {
            order
                .iter()
                .position(|o| o == x)
                .unwrap_or_else(|| panic!("{x}: {order:?}"))
        };
        assert!(
            at("E1") < at("Al") && at("Al") < at("E") && at("E") < at("Bo"),
            "{order:?}"
        );
    }

    /// `/healthz`'s view of a stuck disk: how long the commit under way
    /// has run, and nothing between commits.
    #[test]
    fn the_commit_clock_says_how_long_the_commit_under_way_has_run() {
        let clock = CommitClock::default();
        let t0 = Instant::now();
        assert_eq!(clock.running_for(t0), None);
        clock.begin(t0);
        assert_eq!(clock.running_for(t0), Some(Duration::ZERO));
        assert_eq!(
            clock.running_for(t0 + Duration::from_secs(12)),
            Some(Duration::from_secs(12))
        );
        clock.end();
        assert_eq!(clock.running_for(t0 + Duration::from_secs(12)), None);
    }

    /// Reads are settled only while every change with records that was
    /// sent (or refused: applied in memory, never to be on disk) has been
    /// committed; webhook rows and reads themselves do not count.
    #[test]
    fn the_writer_channel_counts_the_changes_reads_must_wait_for() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let unsettled = Arc::new(AtomicUsize::new(0));
        let writer = WriterTx::new(tx, Arc::clone(&unsettled));
        let change = || AppliedJob {
            records: vec![StoreOp::PutMeta("k".into(), "v".into())],
            ..AppliedJob::default()
        };
        assert!(writer.settled());
        for job in [
            AppliedJob::default(),
            AppliedJob {
                read: true,
                ..AppliedJob::default()
            },
            AppliedJob {
                unseen: true,
                ..change()
            },
        ] {
            writer.send(WriterMsg::Applied(job)).ok().unwrap();
            assert!(writer.settled());
        }
        writer.send(WriterMsg::Applied(change())).ok().unwrap();
        assert!(!writer.settled(), "a change on its way");
        // The writer's commit takes it off.
        unsettled.fetch_sub(1, Ordering::Release);
        assert!(writer.settled());
        drop(rx);
        assert!(writer.send(WriterMsg::Applied(change())).is_err());
        assert!(!writer.settled(), "a refused change is never on disk");
    }

    /// Once the writer is told to stop, a send is refused even while the
    /// writer still holds its receiver (nobody would read it).
    #[test]
    fn the_writer_channel_refuses_sends_after_its_stop() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let writer = WriterTx::new(tx, Arc::default());
        assert!(writer
            .send(WriterMsg::Applied(AppliedJob::default()))
            .is_ok());
        writer.stop();
        writer.stop();
        assert!(writer
            .send(WriterMsg::Applied(AppliedJob::default()))
            .is_err());
        // The job before the stop, then the stop (once), then nothing.
        assert!(matches!(rx.try_recv(), Ok(WriterMsg::Applied(_))));
        assert!(matches!(rx.try_recv(), Ok(WriterMsg::Stop)));
        assert!(rx.try_recv().is_err());
    }

    /// Events submitted while the engine shuts down: every submit that
    /// returned Ok is in the store after a restart.
    #[test]
    fn every_event_whose_submit_returned_ok_survives_a_shutdown_racing_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = || Config::from_toml_text("no-mdns = true", &dir.path().join("data")).unwrap();
        let mut accepted = 0;
        for round in 0..5 {
            let (engine, _) = Engine::open(config()).unwrap();
            let engine = Arc::new(engine);
            let submitter = {
                let engine = Arc::clone(&engine);
                std::thread::spawn(move || {
                    let mut ok = 0;
                    // At most 5 × 40,000 in all: under the queue's 2^18.
                    for i in 0..40_000 {
                        let json = format!(r#"{{"code":"waiter_call","table":{i}}}"#);
                        let prepared = engine
                            .tables()
                            .with(|t| floorbell_core::qr::prepare_event_str(&json, t))
                            .unwrap();
                        match engine.submit_event(prepared) {
                            Ok(()) => ok += 1,
                            Err(_) => break,
                        }
                    }
                    ok
                })
            };
            std::thread::sleep(Duration::from_millis(20 + 10 * round));
            engine.shutdown();
            accepted += submitter.join().unwrap();
            drop(engine);
            let (engine, _) = Engine::open(config()).unwrap();
            let stored = engine
                .queue()
                .read(floorbell_core::ring::Cursor::All, now_ms(), |_| {});
            assert_eq!(stored, accepted, "round {round}");
            engine.shutdown();
        }
    }

    /// Restored events numbered past the stored reservation (`qr_next_seq`
    /// lagging the log, as a version before the reservation left it) are
    /// reserved at open, before any commit: if the log is lost afterwards,
    /// their hashes are not given out again.
    #[test]
    fn restored_events_past_the_reservation_are_reserved_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config = || Config::from_toml_text("no-mdns = true", &data).unwrap();
        let publish = |engine: &Engine, i: usize| {
            let json = format!(r#"{{"code":"waiter_call","table":{i}}}"#);
            let prepared = engine
                .tables()
                .with(|t| floorbell_core::qr::prepare_event_str(&json, t))
                .unwrap();
            match engine.write_blocking(WriteRequest::PublishEvent(prepared)) {
                Ok(Outcome::Published { hash }) => hash,
                other => panic!("publish: {other:?}"),
            }
        };
        let (engine, _) = Engine::open(config()).unwrap();
        let first: Vec<u32> = (0..3).map(|i| publish(&engine, i)).collect();
        engine.shutdown();
        drop(engine);
        Store::open(&data)
            .unwrap()
            .commit(&[StoreOp::PutMeta(META_NEXT_SEQ.into(), "0".into())])
            .unwrap();
        // Restores the three events; nothing is published.
        let (engine, _) = Engine::open(config()).unwrap();
        engine.shutdown();
        drop(engine);
        for entry in std::fs::read_dir(data.join(EVENT_LOG_DIR)).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        let (engine, _) = Engine::open(config()).unwrap();
        let fresh = publish(&engine, 9);
        assert!(!first.contains(&fresh), "hash {fresh:#x} given out again");
        engine.shutdown();
    }
}
