//! The QR events' durable log: append-only segment files beside the SQLite
//! database, because a QR event is written once, read back only after a
//! restart, and gone minutes later. A batch of events costs one `pwrite` and
//! one `fdatasync`, against SQLite's B-tree work, ~10 `pwrite`s and 6 lock
//! calls per transaction (README, "Durable publish").
//!
//! A record is
//!
//! ```text
//! len: u32 LE | crc: u32 LE (CRC-32 of the payload) | payload (len bytes):
//!     epoch: u64 LE | seq: u64 LE | hash: u32 LE | time_ms: i64 LE | JSON
//! ```
//!
//! **Segments.** Events go to segment files of up to [`SEGMENT_BYTES`]. A
//! *prepared* segment is written full of zeros (by a background thread) and
//! synced before it is used, so an append overwrites allocated blocks and
//! its `fdatasync` flushes data only, without a journal commit. A *growing*
//! segment is an empty file that appends extend (each `fdatasync` then also
//! flushes the new size): cheap to create, so a new store, a restart, or a
//! rotation that finds nothing prepared never waits for 16 MiB of zeros;
//! the log moves on to a prepared segment as soon as one is ready.
//!
//! **Recovery** reads each segment from its start and keeps the run of
//! records that (a) have a length that fits, (b) pass their CRC, (c) carry
//! the *epoch* of the segment's first record and (d) number on by one. (a)
//! stops at the zeros of a prepared segment, (b) at a torn write, and (c) at
//! what is left from a segment's earlier use: each time a segment is started
//! (new or reused) it gets a new random epoch, so a reused segment's old
//! records after the new ones never join the run. Records below the *tail*
//! (the oldest sequence number still retained, which the caller persists
//! before it retires segments) are dropped. A segment found at open is never
//! appended to again (whatever a crash left after its run stays unread), so
//! the log's writes always start in a segment of its own epoch. Every append
//! writes a zero header after its records (the next one writes over it), so
//! a run that ends anywhere else was cut short by a crash or damaged: that
//! is logged at warn level.
//!
//! **What it assumes**, as SQLite's WAL does by default (powersafe
//! overwrite): a crash while an append rewrites the disk block it shares
//! with earlier records leaves each sector of that block old or new, never
//! torn, so acknowledged bytes stay intact. A record damaged later (a media
//! error) ends its segment's run like a torn one: the records after it in
//! that segment are lost, as SQLite drops the WAL frames after a bad
//! checksum. Their numbers (and hashes) are not given again: the engine
//! numbers on past a reservation it keeps in the database (session 21;
//! until then, if they were the newest, they were).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::StoredEvent;

/// Mode of a new segment: the owner's alone (events may carry guests'
/// orders and invoices), whatever the directory's mode.
const PRIVATE: u32 = 0o600;
/// The largest segment: a prepared one has exactly this size.
pub const SEGMENT_BYTES: u64 = 16 << 20;
/// Recycled (prepared) segments kept for reuse; more are deleted.
const MAX_SPARE: usize = 2;
/// `len` and `crc`.
const HEAD: usize = 8;
/// `epoch`, `seq`, `hash`, `time_ms`.
const FIXED: usize = 8 + 8 + 4 + 8;
/// Name prefix and suffix of segment files.
const PREFIX: &str = "events-";
const SUFFIX: &str = ".log";
/// Suffix of a segment being prepared (removed at open: a crash left it).
const PART: &str = ".part";
/// Segment numbers are below this (ten digits); a file with a larger one
/// is not the log's and is left alone.
const MAX_NAME: u64 = 10_000_000_000;
/// After a preparation failed, none is tried for this long.
const PREPARE_BACKOFF: Duration = Duration::from_secs(60);
/// No segment is prepared while the file system has less free space than
/// this many segments: the growing segment keeps what is left.
const PREPARE_MIN_FREE_SEGMENTS: u64 = 4;
/// How long dropping the log waits for a segment being prepared.
const DROP_WAIT: Duration = Duration::from_secs(10);

/// One segment file.
#[derive(Debug)]
struct Segment {
    file: File,
    path: PathBuf,
    /// Of the records written since it was started (see the module doc).
    epoch: u64,
    /// The first and last sequence numbers it holds (live segments).
    first: Option<u64>,
    last: Option<u64>,
    /// Bytes of records written: the next record goes here.
    len: u64,
    /// Whether it was written full of zeros (else it grows).
    prepared: bool,
}

impl Segment {
    /// A new, empty segment about to be written.
    fn started(file: File, path: PathBuf, prepared: bool) -> Segment {
        let mut s = Segment {
            file,
            path,
            epoch: 0,
            first: None,
            last: None,
            len: 0,
            prepared,
        };
        s.restart();
        s
    }

    /// Empties it for reuse, with a new epoch.
    fn restart(&mut self) {
        self.epoch = rand::random();
        self.first = None;
        self.last = None;
        self.len = 0;
    }
}

/// The log (see the module doc). Owned by the store writer thread.
#[derive(Debug)]
pub struct EventLog {
    dir: PathBuf,
    /// [`SEGMENT_BYTES`] (smaller in tests).
    segment_bytes: u64,
    /// Segments holding retained events, oldest first; the last one is
    /// written to.
    live: VecDeque<Segment>,
    /// Prepared segments whose events are all below the tail, for reuse.
    spare: Vec<Segment>,
    /// The segment being prepared in the background, if one is.
    preparing: Option<Receiver<io::Result<Segment>>>,
    /// No preparation before this (set when one failed).
    prepare_after: Option<Instant>,
    /// The number in the next new segment's file name.
    next_name: u64,
    /// Encoding buffer, reused.
    buf: Vec<u8>,
}

/// One event to append: sequence number, hash, time, JSON.
#[derive(Debug, Clone, Copy)]
pub struct LogRecord<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Its hash.
    pub hash: u32,
    /// Publication time, ms since the epoch.
    pub time_ms: i64,
    /// The event's JSON.
    pub json: &'a [u8],
}

impl EventLog {
    /// Opens the log in `dir` (created if missing) and returns the retained
    /// events, in sequence order: every record of the segments' runs at or
    /// above `tail`.
    ///
    /// # Errors
    ///
    /// When the directory or a segment cannot be read or created.
    pub fn open(dir: &Path, tail: u64) -> io::Result<(EventLog, Vec<StoredEvent>)> {
        Self::open_sized(dir, tail, SEGMENT_BYTES)
    }

    /// [`EventLog::open`] with segments of `segment_bytes`.
    pub(crate) fn open_sized(
        dir: &Path,
        tail: u64,
        segment_bytes: u64,
    ) -> io::Result<(EventLog, Vec<StoredEvent>)> {
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(at(dir))?;
            if let Some(parent) = dir.parent() {
                File::open(parent)?.sync_all()?;
            }
        }
        let mut log = EventLog {
            dir: dir.to_path_buf(),
            segment_bytes,
            live: VecDeque::new(),
            spare: Vec::new(),
            preparing: None,
            prepare_after: None,
            next_name: 0,
            buf: Vec::new(),
        };
        let mut events = Vec::new();
        let mut unused = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(at(dir))? {
            let entry = entry.map_err(at(dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(number) = name
                .strip_prefix(PREFIX)
                .and_then(|n| n.strip_suffix(PART))
                .and_then(|n| n.strip_suffix(SUFFIX))
            {
                // A preparation cut short. Its number is never given out
                // again: a preparing thread of a process that let the
                // directory go late may still be working on that name.
                if let Some(number) = number.parse::<u64>().ok().filter(|n| *n < MAX_NAME) {
                    log.next_name = log.next_name.max(number + 1);
                }
                std::fs::remove_file(entry.path())?;
                continue;
            }
            let Some(number) = name
                .strip_prefix(PREFIX)
                .and_then(|n| n.strip_suffix(SUFFIX))
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| *n < MAX_NAME)
            else {
                continue;
            };
            log.next_name = log.next_name.max(number + 1);
            let path = entry.path();
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(at(&path))?;
            // No record lies past `segment_bytes` (appends rotate there).
            let mut bytes = Vec::new();
            (&mut file)
                .take(segment_bytes)
                .read_to_end(&mut bytes)
                .map_err(at(&path))?;
            let (run, len) = read_run(&bytes);
            if !clean_end(&bytes, len) {
                tracing::warn!(
                    segment = %path.display(),
                    offset = len,
                    "an event log segment ends in a record that does not check: a write cut short by a crash (never acknowledged), or damage"
                );
            }
            let mut run: Vec<StoredEvent> = run.into_iter().filter(|e| e.seq >= tail).collect();
            let segment = Segment {
                file,
                path,
                epoch: 0,
                first: run.first().map(|e| e.seq),
                last: run.last().map(|e| e.seq),
                len,
                prepared: bytes.len() as u64 >= segment_bytes,
            };
            if segment.first.is_some() {
                events.append(&mut run);
                log.live.push_back(segment);
            } else {
                unused.push(segment);
            }
        }
        log.live.make_contiguous().sort_by_key(|s| s.first);
        events.sort_by_key(|e| e.seq);
        for segment in unused {
            log.discard(segment)?;
        }
        // Writes start in a segment of their own (module doc).
        let active = log.fresh()?;
        log.live.push_back(active);
        Ok((log, events))
    }

    /// Whether `dir` holds a segment with at least one record written (a
    /// record's length is never zero; a prepared or reused segment's is at
    /// first). Reads only the first bytes of each segment.
    ///
    /// # Errors
    ///
    /// When the directory or a segment cannot be read (a missing directory
    /// holds nothing).
    pub fn holds_records(dir: &Path) -> io::Result<bool> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(at(dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(at(dir))?;
            let name = entry.file_name();
            let is_segment = name
                .to_str()
                .and_then(|n| n.strip_prefix(PREFIX))
                .and_then(|n| n.strip_suffix(SUFFIX))
                .is_some_and(|n| n.parse::<u64>().is_ok());
            if !is_segment {
                continue;
            }
            let path = entry.path();
            let mut len = Vec::with_capacity(4);
            File::open(&path)
                .and_then(|f| f.take(4).read_to_end(&mut len))
                .map_err(at(&path))?;
            if len.iter().any(|&b| b != 0) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The highest sequence number in the log.
    pub fn last_seq(&self) -> Option<u64> {
        self.live.iter().filter_map(|s| s.last).max()
    }

    /// Appends `records` (in sequence order) and makes them durable: on
    /// disk when this returns `Ok`.
    ///
    /// # Errors
    ///
    /// When a write, a new segment or an `fdatasync` fails: what was written
    /// of this call may or may not be on disk (never acknowledged), and the
    /// log must not be appended to again.
    pub fn append(&mut self, records: &[LogRecord<'_>]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.collect_prepared();
        if !self.active().prepared && !self.spare.is_empty() {
            self.rotate()?;
        }
        // Each segment this batch writes to, by its index in `live`.
        let mut touched: Vec<usize> = Vec::new();
        self.buf.clear();
        let mut start = self.active().len;
        for r in records {
            let size = (HEAD + FIXED + r.json.len()) as u64;
            if size > self.segment_bytes {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "an event larger than a log segment",
                ));
            }
            let active = self.active();
            let gap = active
                .last
                .is_some_and(|last| last.checked_add(1) != Some(r.seq));
            if gap || active.len + self.buf.len() as u64 + size > self.segment_bytes {
                self.flush_part(start, &mut touched)?;
                self.rotate()?;
                start = 0;
            }
            let active = self.live.back_mut().expect("a live segment");
            encode(&mut self.buf, active.epoch, r);
            active.first.get_or_insert(r.seq);
            active.last = Some(r.seq);
        }
        self.flush_part(start, &mut touched)?;
        for i in touched {
            self.live[i].file.sync_data()?;
        }
        self.prepare_if_due();
        Ok(())
    }

    /// Marks every event below `tail` as gone: segments holding only such
    /// events (never the one being written) become spares, or are deleted.
    /// Call only once `tail` is durable where [`EventLog::open`] will be
    /// given it.
    ///
    /// # Errors
    ///
    /// When a segment cannot be deleted.
    pub fn retire(&mut self, tail: u64) -> io::Result<()> {
        let mut result = Ok(());
        while self.retirable(tail) {
            let s = self.live.pop_front().expect("checked");
            // A segment that cannot be deleted stays on disk until a
            // restart drops it (its events are below the tail).
            if let Err(e) = self.discard(s) {
                result = result.and(Err(e));
            }
        }
        result
    }

    /// Whether [`EventLog::retire`] with `tail` would free a segment.
    pub fn retirable(&self, tail: u64) -> bool {
        self.live.len() > 1 && self.live[0].last.is_none_or(|last| last < tail)
    }

    fn active(&self) -> &Segment {
        self.live.back().expect("a live segment")
    }

    /// Keeps `s` as a spare if it is prepared and there is room (it is
    /// restarted when taken), else deletes it.
    fn discard(&mut self, s: Segment) -> io::Result<()> {
        if s.prepared && self.spare.len() < MAX_SPARE {
            self.spare.push(s);
            Ok(())
        } else {
            std::fs::remove_file(&s.path)
        }
    }

    /// Writes the buffered records at `start` of the active segment.
    fn flush_part(&mut self, start: u64, touched: &mut Vec<usize>) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let i = self.live.len() - 1;
        let active = &mut self.live[i];
        let end = start + self.buf.len() as u64;
        // A zero header after the records (the next append writes over
        // it): a run that ends anywhere else was cut short or damaged.
        let terminator = (HEAD as u64).min(self.segment_bytes.saturating_sub(end)) as usize;
        self.buf.resize(self.buf.len() + terminator, 0);
        active.file.write_all_at(&self.buf, start)?;
        active.len = end;
        touched.push(i);
        self.buf.clear();
        Ok(())
    }

    /// Moves writing to a fresh segment.
    fn rotate(&mut self) -> io::Result<()> {
        self.collect_prepared();
        let s = self.fresh()?;
        self.live.push_back(s);
        self.prepare_if_due();
        Ok(())
    }

    /// A spare, or a new growing segment: never a wait for zeros.
    fn fresh(&mut self) -> io::Result<Segment> {
        if let Some(mut s) = self.spare.pop() {
            s.restart();
            return Ok(s);
        }
        let path = self.next_path("");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(PRIVATE)
            .open(&path)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(Segment::started(file, path, false))
    }

    fn next_path(&mut self, suffix: &str) -> PathBuf {
        let path = self
            .dir
            .join(format!("{PREFIX}{:010}{SUFFIX}{suffix}", self.next_name));
        self.next_name += 1;
        path
    }

    /// Starts preparing a segment when none is spare or on its way and the
    /// active one is growing or half full.
    fn prepare_if_due(&mut self) {
        let active = self.active();
        if !self.spare.is_empty()
            || self.preparing.is_some()
            || (active.prepared && active.len < self.segment_bytes / 2)
            || self.prepare_after.is_some_and(|t| Instant::now() < t)
        {
            return;
        }
        // A growing segment that stays small (a quiet venue, the tests)
        // is not worth 16 MiB of zeros.
        if !active.prepared && active.len < self.segment_bytes / 16 {
            return;
        }
        // Zeros must not take the last free space from the appends.
        let free = rustix::fs::statvfs(&self.dir)
            .map(|v| v.f_bavail.saturating_mul(v.f_frsize))
            .unwrap_or(u64::MAX);
        if free < PREPARE_MIN_FREE_SEGMENTS * self.segment_bytes {
            self.prepare_after = Some(Instant::now() + PREPARE_BACKOFF);
            tracing::warn!(
                free_bytes = free,
                "little free space: the event log keeps appending to a growing segment"
            );
            return;
        }
        let part = self.next_path(PART);
        let size = self.segment_bytes;
        let dir = self.dir.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("floorbell-log-prep".into())
            .spawn(move || {
                let made = prepare(&dir, &part, size);
                if made.is_err() {
                    // Never the segment's own name: whatever holds it now
                    // is not this thread's to delete.
                    let _ = std::fs::remove_file(&part);
                }
                let _ = tx.send(made);
            });
        match spawned {
            Ok(_) => self.preparing = Some(rx),
            Err(e) => tracing::warn!(error = %e, "cannot start preparing an event log segment"),
        }
    }

    /// Takes a prepared segment that is ready.
    fn collect_prepared(&mut self) {
        let Some(rx) = &self.preparing else { return };
        match rx.try_recv() {
            Ok(Ok(s)) => {
                self.preparing = None;
                self.spare.push(s);
            }
            Ok(Err(e)) => {
                self.preparing = None;
                self.prepare_after = Some(Instant::now() + PREPARE_BACKOFF);
                tracing::warn!(error = %e, "cannot prepare an event log segment; appending to a growing one");
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => self.preparing = None,
        }
    }
}

impl Drop for EventLog {
    /// Waits for a segment being prepared: a log opened next on the same
    /// directory must not race its rename.
    fn drop(&mut self) {
        if let Some(rx) = self.preparing.take() {
            let _ = rx.recv_timeout(DROP_WAIT);
        }
    }
}

#[cfg(test)]
impl EventLog {
    /// Waits for the segment being prepared, if one is, and keeps it.
    fn wait_prepared(&mut self) {
        if let Some(rx) = self.preparing.take() {
            if let Ok(made) = rx.recv() {
                self.spare.push(made.expect("a prepared segment"));
            }
        }
    }

    /// Whether the segment being written was prepared.
    fn active_prepared(&self) -> bool {
        self.active().prepared
    }
}

/// Puts `path` in front of an I/O error's message, so that an operator
/// reads which file ("event log error: …/events-0000000003.log: Is a
/// directory", not "Is a directory").
fn at(path: &Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Writes `size` zeros to `part`, syncs it, and renames it to its segment
/// name (durably, with the directory).
fn prepare(dir: &Path, part: &Path, size: u64) -> io::Result<Segment> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(PRIVATE)
        .open(part)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        // A megabyte at a time: one flush of the whole segment holds up the
        // writer's fdatasync behind it for tens of milliseconds.
        file.sync_data()?;
        left -= n as u64;
    }
    file.sync_all()?;
    let path = part.with_extension("");
    rename_no_replace(part, &path)?;
    File::open(dir)?.sync_all()?;
    Ok(Segment::started(file, path, true))
}

/// Renames `from` to `to` unless `to` exists (`RENAME_NOREPLACE`): a
/// segment under that name, however it got there, is never replaced by
/// zeros. File systems without the flag get a check and a plain rename.
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            if to.exists() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            std::fs::rename(from, to)
        }
        Err(e) => Err(e.into()),
    }
}

fn encode(buf: &mut Vec<u8>, epoch: u64, r: &LogRecord<'_>) {
    let len = (FIXED + r.json.len()) as u32;
    let at = buf.len();
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&epoch.to_le_bytes());
    buf.extend_from_slice(&r.seq.to_le_bytes());
    buf.extend_from_slice(&r.hash.to_le_bytes());
    buf.extend_from_slice(&r.time_ms.to_le_bytes());
    buf.extend_from_slice(r.json);
    let crc = crc32fast::hash(&buf[at + HEAD..]);
    buf[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Whether a run ending at `len` ends cleanly: at the end of the file or at
/// the zero header every append writes after its records.
fn clean_end(bytes: &[u8], len: u64) -> bool {
    let rest = bytes.get(len as usize..).unwrap_or_default();
    rest.len() < HEAD || rest[..HEAD].iter().all(|&b| b == 0)
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().unwrap_or_default())
}

/// The run at the start of a segment's bytes (see the module doc), and
/// where it ends.
fn read_run(bytes: &[u8]) -> (Vec<StoredEvent>, u64) {
    let mut events: Vec<StoredEvent> = Vec::new();
    let mut epoch = None;
    let mut at = 0usize;
    while let Some(head) = bytes.get(at..at + HEAD) {
        let len = u32::from_le_bytes(head[0..4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(head[4..8].try_into().unwrap_or_default());
        if len < FIXED {
            break;
        }
        let Some(payload) = at
            .checked_add(HEAD + len)
            .and_then(|end| bytes.get(at + HEAD..end))
        else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let this_epoch = le_u64(&payload[0..8]);
        let seq = le_u64(&payload[8..16]);
        if *epoch.get_or_insert(this_epoch) != this_epoch
            || events
                .last()
                .is_some_and(|e| e.seq.checked_add(1) != Some(seq))
        {
            break;
        }
        events.push(StoredEvent {
            seq,
            hash: u32::from_le_bytes(payload[16..20].try_into().unwrap_or_default()),
            time_ms: le_u64(&payload[20..28]) as i64,
            json: Bytes::copy_from_slice(&payload[FIXED..]),
        });
        at += HEAD + len;
    }
    (events, at as u64)
}

#[cfg(test)]
mod tests;
