//! The durable store (SPEC §0: everything acknowledged survives `kill -9` and
//! power loss): one SQLite database in the data directory, in WAL mode with
//! `synchronous=FULL`, so a committed transaction is on disk when
//! [`Store::commit`] returns.
//!
//! This module owns files, never sockets or threads: the shell runs the one
//! writer thread that batches many concurrent changes into a single
//! [`Store::commit`] (group commit: one transaction, one fsync).
//!
//! The data directory is held by one process at a time through an exclusive
//! lock on `floorbell.lock`; a second server on the same directory gets
//! [`StoreError::Locked`] and touches nothing. Read-only tools (`floorbell
//! tokens`) open the database without the lock: SQLite's WAL lets them read
//! beside a running server.
//!
//! Schema versions live in SQLite's `user_version`; [`MIGRATIONS`] brings an
//! older store up to date, and a store written by a newer floorbell is refused.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::access::AccessToken;
use crate::orders::{Order, OrderState, OrderType};
use crate::qr::TableRepr;
use crate::tickets::{StaffAccount, Ticket, TicketState};
use crate::webhooks::{PendingDelivery, Registration, WebhookRecord};

pub mod eventlog;

/// The `meta` key holding the ticket board's next id once tickets have been
/// forgotten (without it, a restart would number on from the highest id
/// still stored).
pub const META_TICKETS_NEXT_ID: &str = "tickets_next_id";

/// The directory of the QR events' [`eventlog`] inside the data directory.
pub const EVENT_LOG_DIR: &str = "events";

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "floorbell.db";
/// File name of the lock inside the data directory.
pub const LOCK_FILE: &str = "floorbell.lock";

/// Schema migrations: entry `n` takes `user_version` from `n` to `n + 1`.
/// Later issues append; an entry is never edited once released.
pub const MIGRATIONS: &[&str] = &[
    // 1: QR events (§1), registered tables (§1.3), key/value settings.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
     CREATE TABLE qr_events (
         seq INTEGER PRIMARY KEY,
         hash TEXT NOT NULL,
         created_ms INTEGER NOT NULL,
         json BLOB NOT NULL
     ) STRICT;
     CREATE TABLE qr_tables (
         id INTEGER PRIMARY KEY,
         name TEXT NOT NULL,
         max_guests INTEGER NOT NULL
     ) STRICT;",
    // 2: the ticket board (§2): staff accounts (token hashes only), tickets,
    // visitors.
    "CREATE TABLE staff (name TEXT PRIMARY KEY, token_hash BLOB NOT NULL) STRICT;
     CREATE TABLE tickets (
         id INTEGER PRIMARY KEY,
         email TEXT NOT NULL,
         name TEXT NOT NULL,
         staff TEXT,
         start INTEGER NOT NULL,
         end INTEGER,
         state TEXT NOT NULL CHECK (state IN ('waiting', 'claimed', 'completed', 'cancelled'))
     ) STRICT;
     CREATE TABLE visitors (email TEXT PRIMARY KEY, name TEXT NOT NULL) STRICT;",
    // 3: the gateway (§3): access tokens (hashes only), orders active and
    // cleared (history), indexed by creation time for the history purge.
    "CREATE TABLE gw_tokens (
         name TEXT PRIMARY KEY,
         hash BLOB NOT NULL,
         created_ms INTEGER NOT NULL,
         last_used_ms INTEGER,
         ip TEXT
     ) STRICT;
     CREATE TABLE orders (
         uuid TEXT PRIMARY KEY,
         name TEXT NOT NULL,
         order_type TEXT NOT NULL CHECK (order_type IN ('ON_PREMISE', 'TO_GO')),
         location TEXT NOT NULL,
         state TEXT NOT NULL CHECK (state IN ('started', 'located', 'cleared')),
         created_ms INTEGER NOT NULL,
         state_started_ms INTEGER NOT NULL,
         located_ms INTEGER,
         seq INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX orders_by_created ON orders (created_ms);",
    // 4: webhooks (§3.6): receivers (URL and the HMAC key, a token's hash)
    // and the durable outbox of deliveries not yet made.
    "CREATE TABLE webhook_receivers (
         url TEXT PRIMARY KEY,
         key BLOB NOT NULL,
         registered_ms INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE webhook_outbox (
         id INTEGER PRIMARY KEY,
         url TEXT NOT NULL,
         seq INTEGER NOT NULL,
         body BLOB NOT NULL,
         enqueued_ms INTEGER NOT NULL,
         attempts INTEGER NOT NULL,
         next_attempt_ms INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX webhook_outbox_by_url ON webhook_outbox (url, id);",
    // 5: QR events are written to the event log (`events/`), no longer to
    // `qr_events`. No table changes; the version is what matters: a build
    // from before the log would open the store, serve none of the logged
    // events and number new ones from a stale `qr_next_seq`, giving out
    // hashes that clients still hold. Those builds refuse version 5.
    "INSERT OR REPLACE INTO meta (key, value) VALUES ('qr_events_in', 'events/');",
    // 6: an order's place in "oldest first" is `(created_ms, created_seq)`,
    // the `seq` of its start, fixed for its life (it was its latest
    // change's `seq`, so a change moved it behind the orders started in
    // the same millisecond). Orders stored before keep the place they had:
    // their latest `seq`.
    "ALTER TABLE orders ADD COLUMN created_seq INTEGER NOT NULL DEFAULT 0;
     UPDATE orders SET created_seq = seq;",
];

/// `meta` key of the next webhook delivery id (ids are never reused).
pub const META_NEXT_DELIVERY_ID: &str = "webhook_next_delivery_id";

/// Errors of the store, one per cause.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the data directory.
    #[error(
        "the data directory {0} is in use by another floorbell process (lock file {LOCK_FILE})"
    )]
    Locked(PathBuf),
    /// The directory or its files could not be created or opened.
    #[error("cannot open the data directory {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The store was written by a newer floorbell.
    #[error("the store's schema version {found} is newer than this floorbell's {known}; upgrade floorbell")]
    TooNew {
        /// Version found on disk.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
    /// SQLite refused an operation.
    #[error("store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The QR events' log ([`eventlog`]) could not be read or written.
    #[error("event log error: {0}")]
    EventLog(std::io::Error),
    /// The database is new, but the directory holds QR events: the
    /// database (or its WAL, which holds the newest commits) was lost or
    /// replaced, and with it the key the events' hashes were made with, the
    /// tokens, orders and tickets. Starting afresh here would drop every
    /// event and give clients new tokens without a word.
    #[error(
        "the data directory {0} holds QR events (events/) but its database is new: \
         {DB_FILE} or {DB_FILE}-wal is missing or was replaced. Restore both files \
         together from the same copy; to start afresh, move the whole directory away"
    )]
    DatabaseLost(PathBuf),
    /// The database's full path is longer than SQLite opens (it said only
    /// "unable to open database file").
    #[error(
        "cannot open the database {path}: its path is {len} bytes, and SQLite opens at most \
         {MAX_DB_PATH}; give floorbell a data directory with a shorter path"
    )]
    PathTooLong {
        /// The database's full path (symbolic links resolved, as SQLite
        /// resolves them).
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
}

/// The longest full path of a database SQLite opens: its unix VFS takes
/// paths of up to 512 bytes and names the rollback journal beside the
/// database (`-journal`, 8 bytes more). Measured: 504 opens, 505 does not.
pub const MAX_DB_PATH: usize = 504;

/// `e`, or [`StoreError::PathTooLong`] when SQLite could not open the
/// database at `db` because its full path is too long.
fn open_error(db: &Path, e: rusqlite::Error) -> StoreError {
    let cannot_open = matches!(
        &e,
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::CannotOpen
    );
    let full = db
        .parent()
        .and_then(|dir| std::fs::canonicalize(dir).ok())
        .map(|dir| dir.join(DB_FILE));
    match full {
        Some(path) if cannot_open && path.as_os_str().len() > MAX_DB_PATH => {
            let len = path.as_os_str().len();
            StoreError::PathTooLong { path, len }
        }
        _ => StoreError::Sqlite(e),
    }
}

/// One change to persist. A batch of them is committed atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// A published QR event (§1.2) as a `qr_events` row: how events were
    /// stored before the [`eventlog`], which holds them now. The engine no
    /// longer writes it; rows already stored are read until they expire
    /// (and the tests of that upgrade write them).
    InsertEvent {
        /// Sequence number.
        seq: u64,
        /// Its hash.
        hash: u32,
        /// Publication time, ms since the epoch.
        time_ms: i64,
        /// The event's final JSON.
        json: Bytes,
    },
    /// Drop every event with a sequence number below this one (retention).
    ExpireEventsBefore(u64),
    /// Register or replace a table (§1.3).
    PutTable(TableRepr),
    /// Set a key in `meta`.
    PutMeta(String, String),
    /// Add a staff account (§2).
    PutStaff(StaffAccount),
    /// Remove a staff account.
    DeleteStaff(String),
    /// Insert or replace a ticket.
    PutTicket(Ticket),
    /// Delete these (closed) tickets and keep `next_id` as
    /// [`META_TICKETS_NEXT_ID`], so their ids are never handed out again.
    ForgetTickets {
        /// Ticket ids.
        ids: Vec<u64>,
        /// The ticket board's next id.
        next_id: u64,
    },
    /// Insert or replace an access token (§3.2).
    PutAccessToken(AccessToken),
    /// Revoke the access token of this name.
    DeleteAccessToken(String),
    /// Insert or replace an order (§3.3), active or cleared.
    PutOrder(Order),
    /// Purge these orders from the history (by uuid).
    DeleteOrders(Vec<String>),
    /// A change of the webhook receivers or outbox (§3.6).
    Webhook(WebhookRecord),
    /// Remember a visitor's name.
    PutVisitor {
        /// The key.
        email: String,
        /// The name.
        name: String,
    },
    /// Forget these visitors (by email).
    ForgetVisitors(Vec<String>),
}

fn state_name(state: TicketState) -> &'static str {
    match state {
        TicketState::Waiting => "waiting",
        TicketState::Claimed => "claimed",
        TicketState::Completed => "completed",
        TicketState::Cancelled => "cancelled",
    }
}

fn state_from(name: &str) -> TicketState {
    match name {
        "claimed" => TicketState::Claimed,
        "completed" => TicketState::Completed,
        "cancelled" => TicketState::Cancelled,
        _ => TicketState::Waiting,
    }
}

/// A stored QR event: a record of the [`eventlog`] or a row of `qr_events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Sequence number.
    pub seq: u64,
    /// Hash (as stored; the loader checks it against the permutation).
    pub hash: u32,
    /// Publication time, ms since the epoch.
    pub time_ms: i64,
    /// The event's JSON.
    pub json: Bytes,
}

/// The exclusive hold on a data directory; released when dropped (or when
/// the process dies, since it is an OS file lock).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Creates `dir` if needed and locks it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] when another process holds it, [`StoreError::Io`]
    /// when it cannot be created.
    pub fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        let io = |source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        if !dir.is_dir() {
            // A new data directory must outlive a power loss with what is
            // written into it: its entry is made durable in each directory
            // created (SQLite syncs only the directory of its own files).
            let missing: Vec<&Path> = dir
                .ancestors()
                .filter(|d| !d.as_os_str().is_empty())
                .take_while(|d| !d.is_dir())
                .collect();
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            // Its owner's only: the store holds the QR and admin tokens.
            std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
                .create(dir)
                .map_err(io)?;
            for created in missing {
                let parent = match created.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                File::open(parent).and_then(|f| f.sync_all()).map_err(io)?;
            }
        }
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(dir.to_path_buf())),
            Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Io { path, source }),
        }
    }
}

/// The open store.
pub struct Store {
    conn: Connection,
    /// Held for as long as the store is open (writable stores only).
    _lock: Option<DirLock>,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, exclusively.
    ///
    /// # Errors
    ///
    /// See [`StoreError`].
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let lock = DirLock::acquire(dir)?;
        let db = dir.join(DB_FILE);
        // The database holds the QR and admin tokens: a new one is readable
        // by the owner alone, whatever the directory's mode (a systemd
        // StateDirectory is 0755). SQLite gives its WAL and shared-memory
        // files the database's mode.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&db)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(StoreError::Io { path: db, source }),
        }
        let conn = Connection::open(&db)
            .and_then(|conn| {
                conn.pragma_update(None, "journal_mode", "WAL")?;
                // FULL: the WAL is fsynced at every commit, so a commit
                // survives power loss, not only a process crash (SPEC §0).
                conn.pragma_update(None, "synchronous", "FULL")?;
                conn.busy_timeout(std::time::Duration::from_secs(5))?;
                Ok(conn)
            })
            .map_err(|e| open_error(&db, e))?;
        let mut store = Store {
            conn,
            _lock: Some(lock),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Opens an existing store read-only, without taking the directory lock
    /// (for tools that run beside a server).
    ///
    /// # Errors
    ///
    /// See [`StoreError`].
    pub fn open_read_only(dir: &Path) -> Result<Store, StoreError> {
        let db = dir.join(DB_FILE);
        let (conn, version) = Connection::open_with_flags(
            &db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|conn| {
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
            Ok((conn, version))
        })
        .map_err(|e| open_error(&db, e))?;
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew {
                found: version,
                known: MIGRATIONS.len() as i64,
            });
        }
        Ok(Store { conn, _lock: None })
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                found: version,
                known,
            });
        }
        for (n, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", n as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// The schema version on disk.
    ///
    /// # Errors
    ///
    /// When SQLite cannot answer.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// A value from `meta`.
    ///
    /// # Errors
    ///
    /// When SQLite cannot answer.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// Every stored event published after `after_ms`, by sequence number.
    ///
    /// # Errors
    ///
    /// When SQLite cannot answer.
    pub fn load_events(&self, after_ms: i64) -> Result<Vec<StoredEvent>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, hash, created_ms, json FROM qr_events WHERE created_ms > ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([after_ms], |r| {
            let hash: String = r.get(1)?;
            let json: Vec<u8> = r.get(3)?;
            Ok((r.get::<_, i64>(0)?, hash, r.get::<_, i64>(2)?, json))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, hash, time_ms, json) = row?;
            let hash = crate::ring::parse_hash(hash.as_bytes()).unwrap_or(0);
            out.push(StoredEvent {
                seq: seq as u64,
                hash,
                time_ms,
                json: json.into(),
            });
        }
        Ok(out)
    }

    /// The highest event sequence number ever stored, if any.
    ///
    /// # Errors
    ///
    /// When SQLite cannot answer.
    pub fn max_event_seq(&self) -> Result<Option<u64>, StoreError> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT max(seq) FROM qr_events", [], |r| r.get(0))?;
        Ok(v.map(|v| v as u64))
    }

    /// Every registered table.
    ///
    /// # Errors
    ///
    /// When SQLite cannot answer.
    pub fn load_tables(&self) -> Result<Vec<TableRepr>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, max_guests FROM qr_tables ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok(TableRepr {
                id: r.get(0)?,
                name: r.get(1)?,
                max_guests: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every staff account.
    ///
    /// # Errors
    ///
    /// When SQLite cannot answer.
    pub fn load_staff(&self) -> Result<Vec<StaffAccount>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, token_hash FROM staff ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            let hash: Vec<u8> = r.get(1)?;
            let mut token_hash = [0u8; 32];
            if hash.len() == 32 {
                token_hash.copy_from_slice(&hash);
            }
            Ok(StaffAccount {
                name: r.get(0)?,
                token_hash,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every ticket, by id.
    ///
    /// # Errors
    ///
    /// When SQLite cannot answer.
    pub fn load_tickets(&self) -> Result<Vec<Ticket>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, email, name, staff, start, end, state FROM tickets ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            let state: String = r.get(6)?;
            Ok(Ticket {
                id: r.get::<_, i64>(0)? as u64,
                email: r.get(1)?,
                name: r.get(2)?,
                staff: r.get(3)?,
                start: r.get(4)?,
                end: r.get(5)?,
                state: state_from(&state),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every remembered visitor (email, name).
    ///
    /// # Errors
    ///
    /// When SQLite cannot answer.
    pub fn load_visitors(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT email, name FROM visitors ORDER BY email")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every access token.
    ///
    /// # Errors
    ///
    /// When SQLite cannot answer.
    pub fn load_access_tokens(&self) -> Result<Vec<AccessToken>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT name, hash, created_ms, last_used_ms, ip FROM gw_tokens ORDER BY created_ms, name",
        )?;
        let rows = stmt.query_map([], |r| {
            let hash: Vec<u8> = r.get(1)?;
            let mut h = [0u8; 32];
            if hash.len() == 32 {
                h.copy_from_slice(&hash);
            }
            Ok(AccessToken {
                name: r.get(0)?,
                hash: h,
                created_ms: r.get(2)?,
                last_used_ms: r.get(3)?,
                ip: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every order, active and cleared, by creation time.
    ///
    /// # Errors
    ///
    /// When SQLite cannot answer.
    pub fn load_orders(&self) -> Result<Vec<Order>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT uuid, name, order_type, location, state, created_ms, state_started_ms, located_ms, seq, created_seq
             FROM orders ORDER BY created_ms, created_seq",
        )?;
        let rows = stmt.query_map([], |r| {
            let order_type: String = r.get(2)?;
            let state: String = r.get(4)?;
            Ok(Order {
                uuid: r.get(0)?,
                name: r.get(1)?,
                order_type: OrderType::parse(&order_type).unwrap_or(OrderType::OnPremise),
                location: r.get(3)?,
                state: OrderState::parse(&state).unwrap_or(OrderState::Cleared),
                created_ms: r.get(5)?,
                state_started_ms: r.get(6)?,
                located_ms: r.get(7)?,
                seq: r.get::<_, i64>(8)? as u64,
                created_seq: r.get::<_, i64>(9)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every webhook receiver.
    ///
    /// # Errors
    ///
    /// When SQLite cannot answer.
    pub fn load_webhook_receivers(&self) -> Result<Vec<Registration>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT url, key, registered_ms FROM webhook_receivers ORDER BY url")?;
        let rows = stmt.query_map([], |r| {
            let key: Vec<u8> = r.get(1)?;
            let mut k = [0u8; 32];
            if key.len() == 32 {
                k.copy_from_slice(&key);
            }
            Ok(Registration {
                url: r.get(0)?,
                key: k,
                registered_ms: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every webhook delivery not yet made, by id.
    ///
    /// # Errors
    ///
    /// When SQLite cannot answer.
    pub fn load_webhook_outbox(&self) -> Result<Vec<PendingDelivery>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, url, seq, body, enqueued_ms, attempts, next_attempt_ms
             FROM webhook_outbox ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(PendingDelivery {
                id: r.get::<_, i64>(0)? as u64,
                url: r.get(1)?,
                seq: r.get::<_, i64>(2)? as u64,
                body: r.get(3)?,
                enqueued_ms: r.get(4)?,
                attempts: r.get::<_, i64>(5)? as u32,
                next_attempt_ms: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The highest order sequence number stored, if any.
    ///
    /// # Errors
    ///
    /// When SQLite cannot answer.
    pub fn max_order_seq(&self) -> Result<Option<u64>, StoreError> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT max(seq) FROM orders", [], |r| r.get(0))?;
        Ok(v.map(|v| v as u64))
    }

    /// Writes `ops` in one transaction and makes it durable (one fsync of the
    /// WAL). Either all of them are on disk when this returns `Ok`, or none.
    ///
    /// # Errors
    ///
    /// When SQLite fails; the transaction is rolled back.
    pub fn commit(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for op in ops {
            match op {
                StoreOp::InsertEvent {
                    seq,
                    hash,
                    time_ms,
                    json,
                } => {
                    let hash = crate::ring::format_hash(*hash);
                    tx.prepare_cached(
                        "INSERT INTO qr_events (seq, hash, created_ms, json) VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![
                        *seq as i64,
                        std::str::from_utf8(&hash).unwrap_or_default(),
                        time_ms,
                        &json[..]
                    ])?;
                }
                StoreOp::ExpireEventsBefore(seq) => {
                    tx.prepare_cached("DELETE FROM qr_events WHERE seq < ?1")?
                        .execute([*seq as i64])?;
                }
                StoreOp::PutTable(t) => {
                    tx.prepare_cached(
                        "INSERT INTO qr_tables (id, name, max_guests) VALUES (?1, ?2, ?3)
                         ON CONFLICT(id) DO UPDATE SET name = excluded.name, max_guests = excluded.max_guests",
                    )?
                    .execute(params![t.id, t.name, t.max_guests])?;
                }
                StoreOp::PutStaff(a) => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO staff (name, token_hash) VALUES (?1, ?2)",
                    )?
                    .execute(params![a.name, &a.token_hash[..]])?;
                }
                StoreOp::DeleteStaff(name) => {
                    tx.prepare_cached("DELETE FROM staff WHERE name = ?1")?
                        .execute([name])?;
                }
                StoreOp::PutTicket(t) => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO tickets (id, email, name, staff, start, end, state)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        t.id as i64,
                        t.email,
                        t.name,
                        t.staff,
                        t.start,
                        t.end,
                        state_name(t.state)
                    ])?;
                }
                StoreOp::ForgetTickets { ids, next_id } => {
                    let mut stmt = tx.prepare_cached("DELETE FROM tickets WHERE id = ?1")?;
                    for id in ids {
                        stmt.execute([*id as i64])?;
                    }
                    tx.prepare_cached(
                        "INSERT INTO meta (key, value) VALUES (?1, ?2)
                         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    )?
                    .execute([META_TICKETS_NEXT_ID, &next_id.to_string()])?;
                }
                StoreOp::PutVisitor { email, name } => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO visitors (email, name) VALUES (?1, ?2)",
                    )?
                    .execute([email, name])?;
                }
                StoreOp::ForgetVisitors(emails) => {
                    let mut stmt = tx.prepare_cached("DELETE FROM visitors WHERE email = ?1")?;
                    for email in emails {
                        stmt.execute([email])?;
                    }
                }
                StoreOp::PutAccessToken(t) => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO gw_tokens (name, hash, created_ms, last_used_ms, ip)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![t.name, &t.hash[..], t.created_ms, t.last_used_ms, t.ip])?;
                }
                StoreOp::DeleteAccessToken(name) => {
                    tx.prepare_cached("DELETE FROM gw_tokens WHERE name = ?1")?
                        .execute([name])?;
                }
                StoreOp::PutOrder(o) => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO orders
                         (uuid, name, order_type, location, state, created_ms, state_started_ms, located_ms, seq, created_seq)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    )?
                    .execute(params![
                        o.uuid,
                        o.name,
                        o.order_type.as_str(),
                        o.location,
                        o.state.as_str(),
                        o.created_ms,
                        o.state_started_ms,
                        o.located_ms,
                        o.seq as i64,
                        o.created_seq as i64
                    ])?;
                }
                StoreOp::DeleteOrders(uuids) => {
                    let mut stmt = tx.prepare_cached("DELETE FROM orders WHERE uuid = ?1")?;
                    for uuid in uuids {
                        stmt.execute([uuid])?;
                    }
                }
                StoreOp::Webhook(record) => commit_webhook(&tx, record)?,
                StoreOp::PutMeta(k, v) => {
                    tx.prepare_cached(
                        "INSERT INTO meta (key, value) VALUES (?1, ?2)
                         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    )?
                    .execute([k, v])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// Writes one webhook record (SPEC §3.6) inside `tx`.
fn commit_webhook(
    tx: &rusqlite::Transaction<'_>,
    record: &WebhookRecord,
) -> Result<(), StoreError> {
    match record {
        WebhookRecord::RegistrationPut(r) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO webhook_receivers (url, key, registered_ms) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![r.url, &r.key[..], r.registered_ms])?;
        }
        WebhookRecord::RegistrationDeleted { url } => {
            tx.prepare_cached("DELETE FROM webhook_receivers WHERE url = ?1")?
                .execute([url])?;
            tx.prepare_cached("DELETE FROM webhook_outbox WHERE url = ?1")?
                .execute([url])?;
        }
        WebhookRecord::DeliveryPut(d) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO webhook_outbox
                 (id, url, seq, body, enqueued_ms, attempts, next_attempt_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                d.id as i64,
                d.url,
                d.seq as i64,
                &d.body[..],
                d.enqueued_ms,
                d.attempts,
                d.next_attempt_ms
            ])?;
        }
        WebhookRecord::DeliveryRescheduled {
            id,
            attempts,
            next_attempt_ms,
        } => {
            tx.prepare_cached(
                "UPDATE webhook_outbox SET attempts = ?2, next_attempt_ms = ?3 WHERE id = ?1",
            )?
            .execute(params![*id as i64, attempts, next_attempt_ms])?;
        }
        WebhookRecord::DeliveryDeleted { id } => {
            tx.prepare_cached("DELETE FROM webhook_outbox WHERE id = ?1")?
                .execute([*id as i64])?;
        }
        WebhookRecord::NextDeliveryId(next) => {
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute([META_NEXT_DELIVERY_ID, &next.to_string()])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
