//! The hashed event queue of SPEC §1: a fixed-capacity ring of published
//! events that any number of reader threads walk without locks while one
//! publisher appends to it.
//!
//! # Shape
//!
//! * Every event has a sequence number `seq` (u64, counting up, never reused)
//!   and lives in slot `seq & mask` as an `Arc<QueuedEvent>` inside an
//!   [`ArcSwapOption`]. The event's JSON was serialized once, when it was
//!   published, and is shared as [`Bytes`].
//! * `head` is the next sequence number to be published; `tail` is the oldest
//!   one still retained. Both only grow.
//! * The hash of an event is a keyed permutation of its `seq` (see [`hash`]):
//!   "everything after hash H" decodes H to a `seq` in O(1) and then reads
//!   `seq + 1 .. head`, so a poll costs O(k) for the k events it returns.
//! * There is exactly one publisher, enforced by the type system: [`Publisher`]
//!   is neither `Clone` nor `Sync`-shared by the queue. In floorbell it lives on
//!   the store writer thread, which publishes an event only after it is on disk.
//!
//! # Memory ordering
//!
//! 1. The publisher fills slot `s` (`ArcSwapOption::store`, which is at least
//!    a release store of the new pointer), then stores `head = s + 1` with
//!    `Release`. A reader loads `head` with `Acquire`; that load pairs with the
//!    publisher's release store, so every slot the publisher filled before it
//!    is visible to the reader, complete.
//! 2. A reader never sees half an event: a slot holds a pointer to an immutable
//!    `QueuedEvent`, swapped as a whole; arc-swap keeps the pointee alive while
//!    the reader's guard exists, even if the publisher overwrites the slot.
//! 3. A slot may be overwritten (the ring wrapped) or cleared (retention) while a
//!    reader walks. The reader therefore checks the `seq` stored in the event it
//!    loaded against the `seq` it expected, and skips a mismatch: that event is
//!    gone from the queue, which is exactly what a reader arriving a moment
//!    later would have seen.
//! 4. `tail` is advisory (`Release` by the publisher, `Acquire` by readers): a
//!    stale `tail` only makes a reader look at slots that fail the check in (3)
//!    or the retention check, never return something it should not.
//! 5. Retention is checked on read against the caller's `now`, so an event
//!    older than the window is never returned even before the publisher's next
//!    [`Publisher::expire`] clears it.
//! 6. [`Publisher::skip_to`] records the numbers it skips (`gap_start`,
//!    `gap_end`, `Relaxed`) before its `Release` store of `head`; a reader
//!    that sees that `head` (Acquire) sees the gap too. A reader holding an
//!    older `head` may see a later skip's bounds, even one new and one old
//!    (two stores), so it uses the gap only if it ends at or below its
//!    `head`: a later skip's gap starts at or above any `head` loaded before
//!    it, and a mix of the two skips' bounds ends above it too, or is
//!    empty. No event ever has a number in a gap, so jumping over one skips
//!    only empty slots.
//! 7. A read depends on the queue only through `head`, `tail`, the slots
//!    in between and the clock. Only the publisher changes slots: a push
//!    or a skip then stores a new `head`, an expiry a new `tail`; the
//!    values only grow. So a later read of the same cursor that loads the
//!    same `head` and `tail` ([`EventQueue::repeats`]) finds the same
//!    events in the slots, and the same ones pass the retention check
//!    while no event the first read depended on has aged out of the window
//!    (and the clock has not gone back). The one difference is a push or
//!    expiry in progress, whose slot stores come before its `head`/`tail`
//!    store: the later read may see some of them, the repeat does not,
//!    which is what the later read would have returned had it run a
//!    moment earlier, before that publisher step began: the same ordering
//!    freedom (3) already gives every read.
//!
//! There is no `unsafe` here: arc-swap carries the lock-free pointer handling.

pub mod hash;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use crossbeam_utils::CachePadded;

pub use hash::{format_hash, parse_hash, HashKey};

/// Default number of slots: 2^18 events. Slots are one pointer each (2 MiB in
/// all); only retained events hold payload memory. At the design target of
/// 50,000 durable publishes/s this keeps the last ~5 s at full load, and the
/// whole 300 s window for up to ~870 events/s — far beyond a venue's floor.
pub const DEFAULT_CAPACITY: usize = 1 << 18;

/// One published event, immutable once in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEvent {
    /// Position in the stream; never reused, continues across restarts.
    pub seq: u64,
    /// The SPEC §1.1 hash (a permutation of `seq`).
    pub hash: u32,
    /// Publication time, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The complete event object as JSON, `hash` included.
    pub json: Bytes,
}

/// The shared, read side of the queue. Cheap to call from any thread.
pub struct EventQueue {
    /// Tells this queue from any other in the process, for [`ReadMark`]s.
    id: u64,
    key: HashKey,
    mask: u64,
    slots: Box<[ArcSwapOption<QueuedEvent>]>,
    /// Next sequence number to publish. Written only by the [`Publisher`].
    /// `head` and `tail` sit on cache lines of their own: readers load both on
    /// every poll while the publisher writes them.
    head: CachePadded<AtomicU64>,
    /// Oldest retained sequence number (advisory, see the module doc).
    tail: CachePadded<AtomicU64>,
    /// The numbers the last [`Publisher::skip_to`] skipped, `start..end`:
    /// no event has them, so reads and the expiry jump over them instead
    /// of loading each empty slot (a restart skips up to the engine's
    /// reservation of numbers: thousands of slots). Module doc, 6.
    gap_start: AtomicU64,
    gap_end: AtomicU64,
    retention_ms: i64,
}

/// The one writer of an [`EventQueue`].
pub struct Publisher {
    queue: Arc<EventQueue>,
    /// Publish times never go backwards, so that expired events are always a
    /// prefix of the ring even if the wall clock steps back.
    last_time_ms: i64,
}

/// What one complete read depended on (see [`EventQueue::read_marked`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadMark {
    /// The queue read ([`EventQueue`]'s `id`).
    queue: u64,
    cursor: Cursor,
    head: u64,
    tail: u64,
    /// The read's `now_ms`: an earlier clock could show events it hid.
    read_ms: i64,
    /// From this `now_ms` on, one of the events the read depended on is
    /// older than the window.
    stale_ms: i64,
}

/// Where a read starts (SPEC §1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cursor {
    /// `hash=none`: every retained event.
    All,
    /// `hash=H`: every event after H, or every retained event when H is
    /// unknown or expired.
    After(u32),
}

impl EventQueue {
    /// A queue with `capacity` slots (rounded up to a power of two, at least 2),
    /// events retained for `retention_ms`, and the hash permutation `key`.
    /// `next_seq` is where numbering continues (0 for a new store).
    pub fn new(
        capacity: usize,
        retention_ms: i64,
        key: HashKey,
        next_seq: u64,
    ) -> (Arc<EventQueue>, Publisher) {
        let capacity = capacity.max(2).next_power_of_two();
        let slots = (0..capacity)
            .map(|_| ArcSwapOption::empty())
            .collect::<Vec<_>>()
            .into_boxed_slice();
        static IDS: AtomicU64 = AtomicU64::new(0);
        let queue = Arc::new(EventQueue {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            key,
            mask: capacity as u64 - 1,
            slots,
            head: CachePadded::new(AtomicU64::new(next_seq)),
            tail: CachePadded::new(AtomicU64::new(next_seq)),
            gap_start: AtomicU64::new(0),
            gap_end: AtomicU64::new(0),
            retention_ms,
        });
        let publisher = Publisher {
            queue: Arc::clone(&queue),
            last_time_ms: i64::MIN,
        };
        (queue, publisher)
    }

    /// The hash permutation of this queue.
    pub fn key(&self) -> HashKey {
        self.key
    }

    /// The retention window in milliseconds.
    pub fn retention_ms(&self) -> i64 {
        self.retention_ms
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Calls `each` for every retained event after `cursor`, oldest first, as
    /// of `now_ms`; returns how many it visited. Never blocks and never waits
    /// for the publisher.
    pub fn read(&self, cursor: Cursor, now_ms: i64, mut each: impl FnMut(&QueuedEvent)) -> usize {
        self.read_while(cursor, now_ms, |e| {
            each(e);
            true
        })
    }

    /// [`EventQueue::read`] until `each` returns false; returns how many
    /// events it was called with.
    pub fn read_while(
        &self,
        cursor: Cursor,
        now_ms: i64,
        each: impl FnMut(&QueuedEvent) -> bool,
    ) -> usize {
        self.read_marked(cursor, now_ms, each).0
    }

    /// [`EventQueue::read_while`], also returning what the read depended
    /// on when it ran to the end (`None` when `each` stopped it): while
    /// [`EventQueue::repeats`] says so, the same read would return the
    /// same events, so a caller may reuse what it made of them.
    pub fn read_marked(
        &self,
        cursor: Cursor,
        now_ms: i64,
        mut each: impl FnMut(&QueuedEvent) -> bool,
    ) -> (usize, Option<ReadMark>) {
        // Pairs with the publisher's Release store of `head` (module doc, 1).
        let head = self.head.load(Ordering::Acquire);
        // Pairs with the publisher's Release store of `tail` (module doc, 4).
        let tail = self.tail.load(Ordering::Acquire);
        let cutoff = now_ms.saturating_sub(self.retention_ms);
        // The oldest time the answer depends on: its events', and the
        // cursor's event's (once it expires the answer is everything).
        let mut oldest = i64::MAX;
        let start = match cursor {
            Cursor::All => tail,
            Cursor::After(hash) => match self.locate(hash, head, tail, cutoff) {
                Some((seq, time_ms)) => {
                    oldest = time_ms;
                    seq + 1
                }
                None => tail,
            },
        };
        // After `head`, and only a gap below it (module doc, 6).
        let gap_end = self.gap_end.load(Ordering::Relaxed);
        let gap = if gap_end <= head {
            self.gap_start.load(Ordering::Relaxed)..gap_end
        } else {
            0..0
        };
        let mut seen = 0;
        let mut next = start;
        while next < head {
            if gap.contains(&next) {
                next = gap.end;
                continue;
            }
            let seq = next;
            next += 1;
            let guard = self.slots[(seq & self.mask) as usize].load();
            let Some(event) = guard.as_deref() else {
                continue;
            };
            // Overwritten or cleared meanwhile, or older than the window
            // (module doc, 3 and 5).
            if event.seq != seq || event.time_ms <= cutoff {
                continue;
            }
            seen += 1;
            oldest = oldest.min(event.time_ms);
            if !each(event) {
                return (seen, None);
            }
        }
        let mark = ReadMark {
            queue: self.id,
            cursor,
            head,
            tail,
            read_ms: now_ms,
            // `time_ms > now - retention` holds while `now < time_ms + retention`.
            stale_ms: oldest.saturating_add(self.retention_ms),
        };
        (seen, Some(mark))
    }

    /// Whether reading `cursor` at `now_ms` would return exactly the events
    /// of the read that gave `mark` (module doc, 7). Two atomic loads.
    pub fn repeats(&self, mark: &ReadMark, cursor: Cursor, now_ms: i64) -> bool {
        mark.queue == self.id
            && mark.cursor == cursor
            && now_ms >= mark.read_ms
            && now_ms < mark.stale_ms
            // Acquire, as a read loads them (module doc, 1 and 4).
            && self.head.load(Ordering::Acquire) == mark.head
            && self.tail.load(Ordering::Acquire) == mark.tail
    }

    /// Collects [`EventQueue::read`] into a `Vec` (tests and cold paths).
    pub fn read_vec(&self, cursor: Cursor, now_ms: i64) -> Vec<QueuedEvent> {
        let mut out = Vec::new();
        self.read(cursor, now_ms, |e| out.push(e.clone()));
        out
    }

    /// The sequence number and time of the retained event with this hash,
    /// if any.
    fn locate(&self, hash: u32, head: u64, tail: u64, cutoff: i64) -> Option<(u64, i64)> {
        let top = head.checked_sub(1)?;
        let low = self.key.decode(hash);
        // The one sequence number <= top whose low 32 bits are `low`.
        let back = (top as u32).wrapping_sub(low) as u64;
        let seq = top.checked_sub(back)?;
        if seq < tail {
            return None;
        }
        let guard = self.slots[(seq & self.mask) as usize].load();
        let event = guard.as_deref()?;
        (event.seq == seq && event.hash == hash && event.time_ms > cutoff)
            .then_some((seq, event.time_ms))
    }
}

impl Publisher {
    /// The shared read side.
    pub fn queue(&self) -> &Arc<EventQueue> {
        &self.queue
    }

    /// The sequence number the next [`Publisher::push`] must carry.
    pub fn next_seq(&self) -> u64 {
        // Only this thread writes `head`.
        self.queue.head.load(Ordering::Relaxed)
    }

    /// The hash the event with sequence number `seq` gets.
    pub fn hash_of(&self, seq: u64) -> u32 {
        self.queue.key.encode(seq)
    }

    /// The time to stamp on an event published at `now_ms`: `now_ms`, or the
    /// previous event's time if the clock stepped back.
    pub fn stamp(&mut self, now_ms: i64) -> i64 {
        self.last_time_ms = self.last_time_ms.max(now_ms);
        self.last_time_ms
    }

    /// Makes `event` visible to readers. `event.seq` must be at least
    /// [`Publisher::next_seq`] (a restart may skip numbers whose events
    /// expired); its `hash` must be [`Publisher::hash_of`] its `seq`.
    ///
    /// # Panics
    ///
    /// If `event.seq` goes backwards: sequence numbers are never reused.
    pub fn push(&mut self, event: QueuedEvent) {
        let q = &*self.queue;
        let head = self.next_seq();
        assert!(event.seq >= head, "event sequence numbers never go back");
        debug_assert_eq!(event.hash, q.key.encode(event.seq));
        self.last_time_ms = self.last_time_ms.max(event.time_ms);
        let seq = event.seq;
        // Keep at most `capacity` sequence numbers in the window: the slot we
        // are about to fill belonged to seq - capacity.
        let min_tail = (seq + 1).saturating_sub(q.slots.len() as u64);
        if q.tail.load(Ordering::Relaxed) < min_tail {
            // Pairs with the readers' Acquire load of `tail` (module doc, 4).
            q.tail.store(min_tail, Ordering::Release);
        }
        q.slots[(seq & q.mask) as usize].store(Some(Arc::new(event)));
        // Pairs with the readers' Acquire load of `head` (module doc, 1).
        q.head.store(seq + 1, Ordering::Release);
    }

    /// Continues numbering at `seq` (after a restart: past the numbers the
    /// last run reserved, or past events that all expired): the next push
    /// must carry at least `seq`.
    pub fn skip_to(&mut self, seq: u64) {
        let q = &*self.queue;
        let head = self.next_seq();
        if seq > head {
            // The window keeps at most `capacity` sequence numbers, as a
            // push does: events that far behind leave now. Without this a
            // large gap (a hand-edited `qr_next_seq`) would leave the tail
            // far behind, and every read from the tail and the next expiry
            // would walk the whole gap.
            let min_tail = seq.saturating_sub(q.slots.len() as u64);
            let tail = q.tail.load(Ordering::Relaxed);
            if tail < min_tail {
                for old in tail..head.min(min_tail) {
                    q.slots[(old & q.mask) as usize].store(None);
                }
                // Pairs with the readers' Acquire load of `tail` (module doc, 4).
                q.tail.store(min_tail, Ordering::Release);
            }
            // Nothing lies between the old head and `seq`: readers jump
            // over it (module doc, 6).
            q.gap_start.store(head, Ordering::Relaxed);
            q.gap_end.store(seq, Ordering::Relaxed);
            q.head.store(seq, Ordering::Release);
        }
    }

    /// Drops every event older than the retention window as of `now_ms`,
    /// freeing its memory; returns the new tail (the first retained seq).
    pub fn expire(&mut self, now_ms: i64) -> u64 {
        let q = &*self.queue;
        let cutoff = now_ms.saturating_sub(q.retention_ms);
        let head = self.next_seq();
        let mut tail = q.tail.load(Ordering::Relaxed);
        let gap = q.gap_start.load(Ordering::Relaxed)..q.gap_end.load(Ordering::Relaxed);
        while tail < head {
            if gap.contains(&tail) {
                tail = gap.end; // empty slots (module doc, 6)
                continue;
            }
            let slot = &q.slots[(tail & q.mask) as usize];
            let keep = match slot.load().as_deref() {
                Some(e) if e.seq == tail => e.time_ms > cutoff,
                _ => false, // a gap left by a restart, or already gone
            };
            if keep {
                break;
            }
            slot.store(None);
            tail += 1;
        }
        // Pairs with the readers' Acquire load of `tail` (module doc, 4).
        q.tail.store(tail, Ordering::Release);
        tail
    }

    /// Number of events currently retained (an upper bound while expired ones
    /// await [`Publisher::expire`]).
    pub fn len(&self) -> usize {
        let q = &*self.queue;
        (self.next_seq() - q.tail.load(Ordering::Relaxed)) as usize
    }

    /// Whether no event is retained.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
