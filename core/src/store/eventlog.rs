//! The QR events' durable log: append-only segment files beside the SQLite
//! database, because a QR event is written once, read back only after a
//! restart, and gone minutes later. A batch of events costs one `pwrite` and
//! one `fdatasync`, against SQLite's B-tree work, ~10 `pwrite`s and 6 lock
//! calls per transaction (README, "Durable publish").
//!
//! Segments are files of [`SEGMENT_BYTES`], filled with zeros when created,
//! so a write overwrites allocated blocks and `fdatasync` flushes data
//! without a journal commit. A record is
//!
//! ```text
//! len: u32 LE | crc: u32 LE (CRC-32 of the payload) | payload (len bytes):
//!     seq: u64 LE | hash: u32 LE | time_ms: i64 LE | the event's JSON
//! ```
//!
//! Recovery reads each segment from its start and keeps the run of records
//! that (a) have a non-zero length that fits, (b) pass their CRC, and (c)
//! number on by one from the first. (a) stops at the zeros of a fresh
//! segment, (b) at a torn write, and (c) at the records left from the
//! segment's earlier use: a segment is recycled once every event in it is
//! below the *tail* (the oldest sequence number still retained, persisted
//! by the caller before the segment is reused), so its leftovers are all
//! older than the new records written over its start. Records below the
//! tail are dropped, which also makes a recycled segment that was never
//! rewritten hold nothing.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::StoredEvent;

/// Size of one segment file.
pub const SEGMENT_BYTES: u64 = 16 << 20;
/// Recycled segments kept for reuse; more are deleted.
const MAX_SPARE: usize = 2;
/// `len` and `crc`.
const HEAD: usize = 8;
/// `seq`, `hash`, `time_ms`.
const FIXED: usize = 8 + 4 + 8;
/// Name prefix and suffix of segment files.
const PREFIX: &str = "events-";
const SUFFIX: &str = ".log";

/// One segment file.
#[derive(Debug)]
struct Segment {
    file: File,
    path: PathBuf,
    /// The first and last sequence numbers it holds (live segments).
    first: Option<u64>,
    last: Option<u64>,
    /// Bytes of records written: the next record goes here.
    len: u64,
}

/// The log (see the module doc). Not thread-safe by design: the store
/// writer thread owns it.
#[derive(Debug)]
pub struct EventLog {
    dir: PathBuf,
    /// [`SEGMENT_BYTES`] (smaller in tests).
    segment_bytes: u64,
    /// Segments holding retained events, oldest first; the last one is
    /// written to.
    live: VecDeque<Segment>,
    /// Segments whose events are all below the tail, for reuse.
    spare: Vec<Segment>,
    /// The number in the next new segment's file name.
    next_name: u64,
    /// Encoding buffer, reused.
    buf: Vec<u8>,
}

/// One event to append: sequence number, hash, time, JSON.
#[derive(Debug, Clone, Copy)]
pub struct LogRecord<'a> {
    /// Sequence number: one more than the previous record's.
    pub seq: u64,
    /// Its hash.
    pub hash: u32,
    /// Publication time, ms since the epoch.
    pub time_ms: i64,
    /// The event's JSON.
    pub json: &'a [u8],
}

impl EventLog {
    /// Opens the log in `dir` (creating its first segment if there is
    /// none) and returns the retained events, in sequence order: every
    /// record of the segments' valid runs at or above `tail`.
    ///
    /// # Errors
    ///
    /// When a segment cannot be read, created or synced.
    pub fn open(dir: &Path, tail: u64) -> io::Result<(EventLog, Vec<StoredEvent>)> {
        Self::open_sized(dir, tail, SEGMENT_BYTES)
    }

    /// [`EventLog::open`] with segments of `segment_bytes`.
    pub(crate) fn open_sized(
        dir: &Path,
        tail: u64,
        segment_bytes: u64,
    ) -> io::Result<(EventLog, Vec<StoredEvent>)> {
        let mut log = EventLog {
            dir: dir.to_path_buf(),
            segment_bytes,
            live: VecDeque::new(),
            spare: Vec::new(),
            next_name: 0,
            buf: Vec::new(),
        };
        let mut found: Vec<(Segment, Vec<StoredEvent>)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(number) = name
                .to_str()
                .and_then(|n| n.strip_prefix(PREFIX)?.strip_suffix(SUFFIX))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            log.next_name = log.next_name.max(number + 1);
            let path = entry.path();
            let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            let (events, len) = read_run(&bytes);
            let events: Vec<StoredEvent> = events.into_iter().filter(|e| e.seq >= tail).collect();
            let segment = Segment {
                file,
                path,
                first: events.first().map(|e| e.seq),
                last: events.last().map(|e| e.seq),
                len,
            };
            found.push((segment, events));
        }
        found.sort_by_key(|(s, _)| s.first);
        let mut events = Vec::new();
        for (segment, mut run) in found {
            if segment.first.is_some() {
                events.append(&mut run);
                log.live.push_back(segment);
            } else {
                log.spare.push(segment);
            }
        }
        events.sort_by_key(|e| e.seq);
        // A segment whose run ended early has garbage after it; the next
        // record is written there, and its leftovers stay unreadable (they
        // break the run). With no live segment, start a spare or a new one.
        if log.live.is_empty() {
            let mut segment = match log.spare.pop() {
                Some(s) => s,
                None => log.create()?,
            };
            segment.len = 0;
            log.live.push_back(segment);
        }
        while log.spare.len() > MAX_SPARE {
            if let Some(s) = log.spare.pop() {
                remove(&s)?;
            }
        }
        Ok((log, events))
    }

    /// The highest sequence number in the log.
    pub fn last_seq(&self) -> Option<u64> {
        self.live.iter().rev().find_map(|s| s.last)
    }

    /// Appends `records` (in sequence order) and makes them durable: on
    /// disk when this returns `Ok`.
    ///
    /// # Errors
    ///
    /// When a write, a new segment or an `fdatasync` fails: what was written
    /// of this call may or may not be on disk (never acknowledged).
    pub fn append(&mut self, records: &[LogRecord<'_>]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        // Each segment touched by this batch: its index in `live`, the
        // offset its part starts at.
        let mut touched: Vec<(usize, u64)> = Vec::new();
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
            if self.active().len + self.buf.len() as u64 + size > self.segment_bytes {
                self.flush_part(start, &mut touched)?;
                self.rotate()?;
                start = 0;
            }
            encode(&mut self.buf, r);
            let active = self.live.back_mut().expect("a live segment");
            active.first.get_or_insert(r.seq);
            active.last = Some(r.seq);
        }
        self.flush_part(start, &mut touched)?;
        for (i, _) in touched {
            self.live[i].file.sync_data()?;
        }
        Ok(())
    }

    /// Marks every event below `tail` as gone: segments holding only such
    /// events (never the one being written) become spares, or are deleted
    /// past [`MAX_SPARE`]. Call only once `tail` is durable where
    /// [`EventLog::open`] will be given it: a spare is overwritten next.
    ///
    /// # Errors
    ///
    /// When a segment beyond the spares cannot be deleted.
    pub fn retire(&mut self, tail: u64) -> io::Result<()> {
        while self.live.len() > 1 && self.live[0].last.is_none_or(|last| last < tail) {
            let mut s = self.live.pop_front().expect("checked");
            s.first = None;
            s.last = None;
            s.len = 0;
            if self.spare.len() < MAX_SPARE {
                self.spare.push(s);
            } else {
                remove(&s)?;
            }
        }
        Ok(())
    }

    fn active(&self) -> &Segment {
        self.live.back().expect("a live segment")
    }

    /// Writes the buffered records at `start` of the active segment.
    fn flush_part(&mut self, start: u64, touched: &mut Vec<(usize, u64)>) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let i = self.live.len() - 1;
        let active = &mut self.live[i];
        active.file.write_all_at(&self.buf, start)?;
        active.len = start + self.buf.len() as u64;
        touched.push((i, start));
        self.buf.clear();
        Ok(())
    }

    /// Starts writing a spare (or a new) segment.
    fn rotate(&mut self) -> io::Result<()> {
        let mut s = match self.spare.pop() {
            Some(s) => s,
            None => self.create()?,
        };
        s.first = None;
        s.last = None;
        s.len = 0;
        self.live.push_back(s);
        Ok(())
    }

    /// A new segment of zeros, durable with its directory entry.
    fn create(&mut self) -> io::Result<Segment> {
        let path = self
            .dir
            .join(format!("{PREFIX}{:010}{SUFFIX}", self.next_name));
        self.next_name += 1;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let zeros = vec![0u8; 1 << 20];
        let mut left = self.segment_bytes as usize;
        while left > 0 {
            let n = left.min(zeros.len());
            file.write_all(&zeros[..n])?;
            left -= n;
        }
        file.sync_all()?;
        File::open(&self.dir)?.sync_all()?;
        Ok(Segment {
            file,
            path,
            first: None,
            last: None,
            len: 0,
        })
    }
}

fn remove(s: &Segment) -> io::Result<()> {
    std::fs::remove_file(&s.path)
}

fn encode(buf: &mut Vec<u8>, r: &LogRecord<'_>) {
    let len = (FIXED + r.json.len()) as u32;
    let at = buf.len();
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&r.seq.to_le_bytes());
    buf.extend_from_slice(&r.hash.to_le_bytes());
    buf.extend_from_slice(&r.time_ms.to_le_bytes());
    buf.extend_from_slice(r.json);
    let crc = crc32fast::hash(&buf[at + HEAD..]);
    buf[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The valid run at the start of a segment's bytes (see the module doc),
/// and where it ends.
fn read_run(bytes: &[u8]) -> (Vec<StoredEvent>, u64) {
    let mut events: Vec<StoredEvent> = Vec::new();
    let mut at = 0usize;
    while let Some(head) = bytes.get(at..at + HEAD) {
        let len = u32::from_le_bytes(head[0..4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(head[4..8].try_into().unwrap_or_default());
        if len < FIXED {
            break;
        }
        let Some(payload) = bytes.get(at + HEAD..at + HEAD + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let seq = u64::from_le_bytes(payload[0..8].try_into().unwrap_or_default());
        if events
            .last()
            .is_some_and(|e| e.seq.checked_add(1) != Some(seq))
        {
            break;
        }
        events.push(StoredEvent {
            seq,
            hash: u32::from_le_bytes(payload[8..12].try_into().unwrap_or_default()),
            time_ms: i64::from_le_bytes(payload[12..20].try_into().unwrap_or_default()),
            json: Bytes::copy_from_slice(&payload[FIXED..]),
        });
        at += HEAD + len;
    }
    (events, at as u64)
}

#[cfg(test)]
mod tests;
