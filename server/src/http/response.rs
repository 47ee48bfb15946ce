//! Writing an HTTP/1.1 response into a connection's output buffer, and the two
//! JSON error shapes of the spec.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use floorbell_core::ring::{Cursor, EventQueue, ReadMark};

/// The reason phrase of every status floorbell sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// The `Date` header's value, formatted once per second per thread
/// (RFC 9110 §6.6.1 asks an origin server with a clock to send it).
pub struct DateCache {
    second: u64,
    text: [u8; 29],
}

impl Default for DateCache {
    fn default() -> Self {
        let mut d = DateCache {
            second: u64::MAX,
            text: [b' '; 29],
        };
        d.refresh(SystemTime::now());
        d
    }
}

impl DateCache {
    /// Re-formats when the second has changed.
    pub fn refresh(&mut self, now: SystemTime) {
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if second != self.second {
            self.second = second;
            let s = httpdate::fmt_http_date(now);
            if s.len() == self.text.len() {
                self.text.copy_from_slice(s.as_bytes());
            }
        }
    }

    /// The current value.
    pub fn get(&self) -> &[u8] {
        &self.text
    }
}

/// Appends a status line and headers for a JSON body of `body_len` bytes.
pub fn write_head(out: &mut Vec<u8>, status: u16, body_len: usize, close: bool, date: &DateCache) {
    write_head_with(out, status, body_len, close, date, b"");
}

/// [`write_head`] with `extra` header lines (each ending in CRLF) after
/// the others.
fn write_head_with(
    out: &mut Vec<u8>,
    status: u16,
    body_len: usize,
    close: bool,
    date: &DateCache,
    extra: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(date.get());
    if close {
        out.extend_from_slice(b"\r\nConnection: close");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(extra);
    out.extend_from_slice(b"\r\n");
}

/// Appends a 405 with the `Allow` header RFC 9110 §15.5.6 requires: the
/// methods the path takes (`allow`, e.g. `GET, HEAD`).
pub fn write_not_allowed(
    out: &mut Vec<u8>,
    allow: &str,
    body: &[u8],
    close: bool,
    head_only: bool,
    date: &DateCache,
) {
    let mut extra = Vec::with_capacity(allow.len() + 9);
    extra.extend_from_slice(b"Allow: ");
    extra.extend_from_slice(allow.as_bytes());
    extra.extend_from_slice(b"\r\n");
    write_head_with(out, 405, body.len(), close, date, &extra);
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// Appends a whole response. With `head_only` (a HEAD request) the body is
/// left out but its length is announced.
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    body: &[u8],
    close: bool,
    head_only: bool,
    date: &DateCache,
) {
    write_head(out, status, body.len(), close, date);
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// Which JSON shape an error takes: SPEC §1's `{"result":false,"error":…}` on
/// `/api/v4/` paths, else `{"status":N,"message":…}` (the shape of §3, used
/// for every path outside §1). SPEC gap: §0 only says "JSON with a
/// human-readable message".
pub fn error_body(path: &[u8], status: u16, message: &str) -> Vec<u8> {
    if path.starts_with(b"/api/v4/") || path == b"/api/v4" {
        floorbell_core::qr::error_json(message)
    } else {
        let mut out = b"{\"status\":".to_vec();
        out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
        out.extend_from_slice(b",\"message\":");
        floorbell_core::qr::json::write_str(&mut out, message);
        out.push(b'}');
        out
    }
}

/// Poll answers with more body than this are streamed ([`StreamedEvents`]).
pub const STREAM_OVER: usize = 256 * 1024;

/// The default bytes of events that streamed answers may hold at once, all
/// connections together ([`StreamBudget`], `stream-budget-bytes`): three
/// answers of a full queue (2^18 events of ~300 bytes).
pub const MAX_STREAMED_BYTES: usize = 256 << 20;

/// How fast a streamed answer must go out, on average, once it has run for
/// [`STREAM_GRACE`]: 64 KiB/s (512 kbit/s), so a full queue's ~80 MB
/// answer may take up to ~21 minutes, and no client holds its share of the
/// [`StreamBudget`] by taking a byte now and then (the 60 s without
/// progress that drops other connections never comes). Like Apache's
/// `mod_reqtimeout` `MinRate`, for answers.
pub const MIN_STREAM_RATE: u64 = 64 * 1024;

/// How long a streamed answer runs before [`MIN_STREAM_RATE`] applies.
pub const STREAM_GRACE: Duration = Duration::from_secs(60);

/// The message of the 503 a poll gets when [`StreamBudget`] is spent.
pub const STREAM_BUSY: &str = "too many long answers are being sent; try again shortly";

/// What the streamed poll answers in progress hold, all connections
/// together.
///
/// A streamed answer keeps a handle on each of its events until the client
/// has read it, and an event evicted from the queue meanwhile stays in
/// memory for it. A client that reads a byte a minute never hits the idle
/// timeout, so without a bound many such clients could each hold a whole
/// queue's worth of events. Each answer reserves its events' bytes (and
/// their handles) here before its head is written, gives an event's bytes
/// back once it is copied into the connection's output, and the rest (the
/// handles, and events not copied) when it is dropped: done, or its
/// connection closed.
#[derive(Debug)]
pub struct StreamBudget {
    held: AtomicUsize,
    max: usize,
}

impl StreamBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(StreamBudget {
            held: AtomicUsize::new(0),
            max,
        })
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Reserves `bytes`, or `None` when they do not fit beside what is
    /// held. One answer larger than the whole budget passes while nothing
    /// else is held, so no poll is refused for ever.
    fn try_hold(self: &Arc<Self>, bytes: usize) -> Option<Held> {
        // Relaxed suffices: the count guards nothing but itself.
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                (held == 0 || held.saturating_add(bytes) <= self.max).then(|| held + bytes)
            })
            .ok()?;
        Some(Held {
            budget: Arc::clone(self),
            bytes,
        })
    }
}

/// Bytes of a [`StreamBudget`] held by one answer, given back as its
/// events go out and the rest on drop.
#[derive(Debug)]
struct Held {
    budget: Arc<StreamBudget>,
    bytes: usize,
}

impl Held {
    /// Gives back `bytes` of the hold (events copied out and let go of).
    fn release(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        self.budget.held.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// The events of one poll answer, as read from the queue.
///
/// A short answer (the usual one: a poller a few events behind) is copied
/// out of the queue while it is read, its events' JSON joined by commas,
/// so reading takes no handle on any event. Handles (`Bytes` clones) are
/// reference counts shared by every thread that reads the event, and their
/// increments and decrements were ~5 % of the server's CPU per poll in a
/// profile (session 21). A long answer, one whose events pass
/// [`STREAM_OVER`], is read again as handles and streamed
/// ([`write_events`]), so it never holds a copy of the queue.
///
/// The last short answer stays, with the [`ReadMark`] of its read: the
/// next poll for the same cursor is answered from it while the queue
/// [`repeats`](EventQueue::repeats) that read: nothing was published or
/// expired and none of its events aged out. That is the common case of
/// a busy floor: every screen and phone that saw the last event asks for
/// what came after it with the same hash, and all but the first of them
/// served by this event loop get the copy without touching the ring.
#[derive(Debug, Default)]
pub struct PollEvents {
    /// A short answer's events, joined by commas.
    pub joined: Vec<u8>,
    /// What the read that filled `joined` depended on; `None` when
    /// `joined` answers nothing (a long answer, or before the first).
    pub mark: Option<ReadMark>,
    /// A long answer's events, shared with the queue (empty for a short
    /// one).
    pub shared: Vec<Bytes>,
}

impl PollEvents {
    /// Reads the retained events after `cursor` as of `now_ms`, replacing
    /// what was read before, unless the last short answer is still what
    /// this read would return.
    pub fn read(&mut self, queue: &EventQueue, cursor: Cursor, now_ms: i64) {
        let PollEvents {
            joined,
            mark,
            shared,
        } = self;
        shared.clear();
        if mark.is_some_and(|m| queue.repeats(&m, cursor, now_ms)) {
            return;
        }
        joined.clear();
        let mut long = false;
        let (_, read) = queue.read_marked(cursor, now_ms, |e| {
            if joined.len() + 1 + e.json.len() > STREAM_OVER {
                long = true;
                return false;
            }
            // An event's JSON is never empty: an empty `joined` means first.
            if !joined.is_empty() {
                joined.push(b',');
            }
            joined.extend_from_slice(&e.json);
            true
        });
        *mark = read;
        if long {
            joined.clear();
            queue.read(cursor, now_ms, |e| shared.push(e.json.clone()));
        }
    }

    /// A short answer as the three parts to send in order: the head and
    /// the opening bytes (written into `head`), the events, the closing
    /// bytes; `None` for a long answer (use [`PollEvents::write`]). The
    /// reactor sends them straight from here when nothing is queued before
    /// them, so the answer is not copied into the connection's buffer
    /// first; then [`PollEvents::clear`].
    pub fn short_parts<'a>(
        &'a self,
        head: &'a mut Vec<u8>,
        close: bool,
        head_only: bool,
        date: &DateCache,
    ) -> Option<[&'a [u8]; 3]> {
        if !self.shared.is_empty() {
            return None;
        }
        head.clear();
        self.write_short_head(head, close, head_only, date);
        if head_only {
            return Some([head, &[], &[]]);
        }
        Some([head, &self.joined, floorbell_core::qr::UPDATES_SUFFIX])
    }

    /// Appends a short answer's head and, unless `head_only`, the body's
    /// opening bytes to `out`.
    fn write_short_head(&self, out: &mut Vec<u8>, close: bool, head_only: bool, date: &DateCache) {
        use floorbell_core::qr::{UPDATES_PREFIX, UPDATES_SUFFIX};
        let body_len = UPDATES_PREFIX.len() + self.joined.len() + UPDATES_SUFFIX.len();
        write_head(out, 200, body_len, close, date);
        if !head_only {
            out.extend_from_slice(UPDATES_PREFIX);
        }
    }

    /// Lets go of a long answer's events once it is written. A short
    /// answer's copy stays for the next read ([`PollEvents::read`]).
    pub fn clear(&mut self) {
        self.shared.clear();
    }

    /// Writes the answer into `out` as [`write_events`] does, letting go
    /// of a long answer's events.
    pub fn write(
        &mut self,
        out: &mut Vec<u8>,
        close: bool,
        head_only: bool,
        date: &DateCache,
        budget: &Arc<StreamBudget>,
    ) -> Option<StreamedEvents> {
        if !self.shared.is_empty() {
            return write_events(out, &mut self.shared, close, head_only, date, budget);
        }
        out.reserve(if head_only {
            160
        } else {
            self.joined.len() + 200
        });
        self.write_short_head(out, close, head_only, date);
        if !head_only {
            out.extend_from_slice(&self.joined);
            out.extend_from_slice(floorbell_core::qr::UPDATES_SUFFIX);
        }
        None
    }
}

/// Writes the answer to `GET /api/v4/events` (SPEC §1.1) into `out`: the
/// head, then `{"result":true,"data":{"updates":[…]}}` with the events'
/// JSON as stored, separated by commas, and empties `events`.
///
/// A body over [`STREAM_OVER`] (`hash=none` on a full queue is up to 2^18
/// events, ~80 MB) is not copied whole: `out` gets the head and the opening
/// bytes, and the rest comes back as a [`StreamedEvents`] that the
/// connection copies a chunk at a time as the socket takes it. Its events
/// stay shared with the queue, so such an answer holds a 32-byte handle per
/// event instead of a copy of every event. When `budget` has no room for
/// them, the answer is a 503 ([`STREAM_BUSY`]) instead.
pub fn write_events(
    out: &mut Vec<u8>,
    events: &mut Vec<Bytes>,
    close: bool,
    head_only: bool,
    date: &DateCache,
    budget: &Arc<StreamBudget>,
) -> Option<StreamedEvents> {
    use floorbell_core::qr::{UPDATES_PREFIX, UPDATES_SUFFIX};
    let event_bytes = events.iter().map(|e| e.len()).sum::<usize>();
    let body_len =
        UPDATES_PREFIX.len() + UPDATES_SUFFIX.len() + event_bytes + events.len().saturating_sub(1);
    let streamed = body_len > STREAM_OVER && !head_only;
    let held = if streamed {
        let bytes = event_bytes + events.len() * std::mem::size_of::<Bytes>();
        match budget.try_hold(bytes) {
            Some(held) => Some(held),
            None => {
                events.clear();
                let body = error_body(b"/api/v4/events", 503, STREAM_BUSY);
                write_response(out, 503, &body, close, false, date);
                return None;
            }
        }
    } else {
        None
    };
    // A HEAD answer is only the head, however long its body would be.
    out.reserve(if streamed || head_only {
        160
    } else {
        body_len + 160
    });
    write_head(out, 200, body_len, close, date);
    if head_only {
        events.clear();
        return None;
    }
    out.extend_from_slice(UPDATES_PREFIX);
    let mut rest = StreamedEvents {
        events: std::mem::take(events),
        next: 0,
        left: body_len - UPDATES_PREFIX.len(),
        body: body_len - UPDATES_PREFIX.len(),
        started: Instant::now(),
        held,
    };
    if streamed {
        return Some(rest);
    }
    rest.refill(out, usize::MAX);
    // Hand the (cleared) vector back: its capacity is reused.
    *events = std::mem::take(&mut rest.events);
    events.clear();
    None
}

/// The part of a poll answer not yet copied into the connection's output
/// (see [`write_events`]).
#[derive(Debug)]
pub struct StreamedEvents {
    events: Vec<Bytes>,
    /// The next event to copy.
    next: usize,
    /// Body bytes not copied yet (separators and the closing bytes too).
    left: usize,
    /// Body bytes in all (after the opening bytes written with the head).
    body: usize,
    /// When the answer began.
    started: Instant,
    /// Its share of the [`StreamBudget`] (none when not streamed), less
    /// what has been copied out.
    held: Option<Held>,
}

impl StreamedEvents {
    /// Body bytes not copied into the output yet.
    pub fn left(&self) -> usize {
        self.left
    }

    /// Whether the answer, [`STREAM_GRACE`] or more after it began, has
    /// gone out slower than [`MIN_STREAM_RATE`] on average.
    pub fn too_slow(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.started);
        let copied = (self.body - self.left) as u128;
        elapsed >= STREAM_GRACE && copied * 1000 < u128::from(MIN_STREAM_RATE) * elapsed.as_millis()
    }

    /// Appends the next events to `out`, until more than `max` bytes were
    /// appended or none is left, then the closing bytes after the last.
    /// Returns whether the answer is complete.
    pub fn refill(&mut self, out: &mut Vec<u8>, max: usize) -> bool {
        let start = out.len();
        let mut released = 0;
        while self.next < self.events.len() && out.len() - start <= max {
            if self.next > 0 {
                out.push(b',');
            }
            // Let go of each event once copied: one evicted from the queue
            // meanwhile is freed now, not when the whole answer is out. Its
            // 32-byte handle stays in `events` until the answer is dropped,
            // and so does its share of the budget.
            let event = std::mem::take(&mut self.events[self.next]);
            out.extend_from_slice(&event);
            released += event.len();
            self.next += 1;
        }
        if let Some(held) = self.held.as_mut() {
            held.release(released);
        }
        let done = self.next == self.events.len();
        if done {
            out.extend_from_slice(floorbell_core::qr::UPDATES_SUFFIX);
        }
        self.left -= out.len() - start;
        debug_assert_eq!(done, self.left == 0);
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The events of a poll answer, `n` of them, of varied lengths.
    fn some_events(n: usize) -> Vec<Bytes> {
        (0..n)
            .map(|i| Bytes::from(format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 700))))
            .collect()
    }

    #[test]
    fn a_long_answer_streams_the_same_bytes_in_chunks() {
        let date = DateCache::default();
        for n in [0, 1, 2, 1500, 3000] {
            let mut events = some_events(n);
            let mut whole = Vec::new();
            let mut expected = floorbell_core::qr::UPDATES_PREFIX.to_vec();
            expected.extend_from_slice(&events.join(&b","[..]));
            expected.extend_from_slice(floorbell_core::qr::UPDATES_SUFFIX);
            for chunk in [1, 4096, 64 * 1024] {
                whole.clear();
                let budget = StreamBudget::new(MAX_STREAMED_BYTES);
                let streamed = write_events(&mut whole, &mut events, false, false, &date, &budget);
                assert!(events.is_empty());
                let head_end = whole.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let length: usize = String::from_utf8_lossy(&whole[..head_end])
                    .split("Content-Length: ")
                    .nth(1)
                    .and_then(|v| v.split("\r\n").next())
                    .unwrap()
                    .parse()
                    .unwrap();
                let mut body = whole[head_end..].to_vec();
                match streamed {
                    None => assert!(length <= STREAM_OVER, "n={n}"),
                    Some(mut rest) => {
                        assert!(length > STREAM_OVER, "n={n}");
                        assert_eq!(rest.left() + body.len(), length);
                        loop {
                            let mut out = Vec::new();
                            let done = rest.refill(&mut out, chunk);
                            // A chunk is at most one event past `chunk`.
                            assert!(out.len() <= chunk + 1 + 700 + 32, "{}", out.len());
                            body.extend_from_slice(&out);
                            assert_eq!(rest.left() + body.len(), length);
                            if done {
                                break;
                            }
                        }
                    }
                }
                assert_eq!(body.len(), length, "n={n}");
                assert_eq!(body, expected, "n={n} chunk={chunk}");
                let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(parsed["data"]["updates"].as_array().unwrap().len(), n);
                events = some_events(n);
            }
        }
    }

    /// A queue holding `events`, published 1 ms apart from `t0`.
    fn queue_of(events: &[Bytes], t0: i64) -> Arc<EventQueue> {
        use floorbell_core::ring::{HashKey, QueuedEvent};
        let (queue, mut publisher) = EventQueue::new(4096, 60_000, HashKey::from_secret(7), 0);
        for (seq, json) in events.iter().enumerate() {
            let seq = seq as u64;
            publisher.push(QueuedEvent {
                seq,
                hash: publisher.hash_of(seq),
                time_ms: t0 + seq as i64,
                json: json.clone(),
            });
        }
        queue
    }

    /// A short answer, copied while read, is byte for byte the answer
    /// written from the events' handles, for GET and HEAD.
    #[test]
    fn a_short_answer_is_copied_and_matches_the_shared_one() {
        let date = DateCache::default();
        let budget = StreamBudget::new(MAX_STREAMED_BYTES);
        let mut poll = PollEvents::default();
        for n in [0, 1, 2, 10, 300] {
            let events = some_events(n);
            let queue = queue_of(&events, 1_000);
            for head_only in [false, true] {
                poll.read(&queue, Cursor::All, 2_000);
                assert!(poll.shared.is_empty(), "n={n}");
                let (mut copied, mut shared) = (Vec::new(), Vec::new());
                assert!(poll
                    .write(&mut copied, false, head_only, &date, &budget)
                    .is_none());
                let mut handles = events.clone();
                assert!(
                    write_events(&mut shared, &mut handles, false, head_only, &date, &budget)
                        .is_none()
                );
                assert_eq!(copied, shared, "n={n} head_only={head_only}");
            }
            // After `n`th-from-last: the events after it only.
            if n > 2 {
                let hash = queue.key().encode(n as u64 - 3);
                poll.read(&queue, Cursor::After(hash), 2_000);
                assert_eq!(poll.joined, events[n - 2..].join(&b","[..]));
            }
        }
    }

    /// The parts of a short answer, in order, are the bytes `write` puts
    /// into a buffer; a long answer has none.
    #[test]
    fn a_short_answer_s_parts_are_its_bytes() {
        let date = DateCache::default();
        let budget = StreamBudget::new(MAX_STREAMED_BYTES);
        let mut poll = PollEvents::default();
        let mut head = Vec::new();
        for (n, head_only) in [(0, false), (10, false), (10, true)] {
            let queue = queue_of(&some_events(n), 1_000);
            poll.read(&queue, Cursor::All, 2_000);
            let parts = poll
                .short_parts(&mut head, true, head_only, &date)
                .expect("short");
            let sent = parts.concat();
            let mut written = Vec::new();
            assert!(poll
                .write(&mut written, true, head_only, &date, &budget)
                .is_none());
            assert_eq!(sent, written, "n={n} head_only={head_only}");
        }
        let queue = queue_of(&some_events(1500), 1_000);
        poll.read(&queue, Cursor::All, 2_000);
        assert!(poll.short_parts(&mut head, false, false, &date).is_none());
        poll.clear();
        assert!(poll.shared.is_empty() && poll.joined.is_empty());
    }

    /// The next poll of the same cursor is answered from the last copy
    /// while nothing changed, and read again once something did.
    #[test]
    fn a_repeated_poll_reuses_the_last_answer_until_the_queue_changes() {
        use floorbell_core::ring::{HashKey, QueuedEvent};
        let (queue, mut publisher) = EventQueue::new(64, 60_000, HashKey::from_secret(7), 0);
        let mut publish = |json: &'static str, time_ms: i64| {
            let seq = publisher.next_seq();
            publisher.push(QueuedEvent {
                seq,
                hash: publisher.hash_of(seq),
                time_ms,
                json: Bytes::from_static(json.as_bytes()),
            });
        };
        publish(r#"{"n":0}"#, 1_000);
        publish(r#"{"n":1}"#, 1_001);
        let after0 = Cursor::After(queue.key().encode(0));
        let mut poll = PollEvents::default();
        poll.read(&queue, after0, 2_000);
        assert_eq!(poll.joined, br#"{"n":1}"#);
        // Marked, so that a repeat is visible: this copy is what answers.
        poll.joined.extend_from_slice(b"<kept>");
        poll.read(&queue, after0, 2_500);
        assert_eq!(
            poll.joined, br#"{"n":1}<kept>"#,
            "unchanged queue: the copy"
        );
        poll.read(&queue, Cursor::All, 2_500);
        assert_eq!(poll.joined, br#"{"n":0},{"n":1}"#, "another cursor");
        poll.read(&queue, after0, 2_500);
        poll.joined.extend_from_slice(b"<kept>");
        publish(r#"{"n":2}"#, 3_000);
        poll.read(&queue, after0, 3_000);
        assert_eq!(poll.joined, br#"{"n":1},{"n":2}"#, "a publish");
        poll.joined.extend_from_slice(b"<kept>");
        // The cursor's event (1,000) leaves the 60 s window: everything.
        poll.read(&queue, after0, 61_000);
        assert_eq!(poll.joined, br#"{"n":1},{"n":2}"#);
        // A long answer leaves no copy to reuse.
        for _ in 0..60 {
            publish(r#"{"n":"a long one"}"#, 61_000);
        }
        let huge = Bytes::from(vec![b'x'; STREAM_OVER]);
        let seq = publisher.next_seq();
        publisher.push(QueuedEvent {
            seq,
            hash: publisher.hash_of(seq),
            time_ms: 61_000,
            json: huge,
        });
        poll.read(&queue, Cursor::All, 61_000);
        assert!(poll.joined.is_empty() && poll.mark.is_none());
        assert_eq!(poll.shared.len(), 63, "1, 2, 60 and the long one");
    }

    /// An answer whose events pass `STREAM_OVER` is read as handles and
    /// streamed, with the same bytes a copy would have had.
    #[test]
    fn a_long_answer_is_read_as_handles_and_streamed() {
        let date = DateCache::default();
        let budget = StreamBudget::new(MAX_STREAMED_BYTES);
        let events = some_events(1500);
        let queue = queue_of(&events, 1_000);
        let mut poll = PollEvents::default();
        poll.read(&queue, Cursor::All, 2_000);
        assert!(poll.joined.is_empty());
        assert_eq!(poll.shared, events);
        let mut out = Vec::new();
        let mut rest = poll
            .write(&mut out, false, false, &date, &budget)
            .expect("streamed");
        assert!(poll.shared.is_empty());
        while !rest.refill(&mut out, 64 * 1024) {}
        let (status, body) = status_and_body(&out);
        assert_eq!(status, "HTTP/1.1 200 OK");
        let mut expected = floorbell_core::qr::UPDATES_PREFIX.to_vec();
        expected.extend_from_slice(&events.join(&b","[..]));
        expected.extend_from_slice(floorbell_core::qr::UPDATES_SUFFIX);
        assert_eq!(body, expected);
    }

    /// The status line and body of an answer `write_events` wrote.
    fn status_and_body(out: &[u8]) -> (String, Vec<u8>) {
        let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let status = String::from_utf8_lossy(&out[..head_end])
            .lines()
            .next()
            .unwrap()
            .to_owned();
        (status, out[head_end..].to_vec())
    }

    #[test]
    fn streamed_answers_share_a_budget_and_give_it_back() {
        let date = DateCache::default();
        let n = 1500;
        let one: usize = some_events(n).iter().map(|e| e.len() + 32).sum();
        assert!(one > STREAM_OVER);
        // Room for two such answers, not three.
        let budget = StreamBudget::new(2 * one + one / 2);
        let mut held = Vec::new();
        for _ in 0..2 {
            let (mut out, mut events) = (Vec::new(), some_events(n));
            held.push(write_events(&mut out, &mut events, false, false, &date, &budget).unwrap());
            assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
        }
        assert_eq!(budget.held(), 2 * one);
        // The third gets a 503 in §1's error shape, and keeps no events.
        let (mut out, mut events) = (Vec::new(), some_events(n));
        assert!(write_events(&mut out, &mut events, false, false, &date, &budget).is_none());
        assert!(events.is_empty());
        let (status, body) = status_and_body(&out);
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
        assert_eq!(
            body,
            format!(r#"{{"result":false,"error":"{STREAM_BUSY}"}}"#).into_bytes()
        );
        assert!(!out.windows(17).any(|w| w == b"Connection: close"));
        // Short answers are copied, not held, so the spent budget does not
        // touch them.
        let (mut out, mut events) = (Vec::new(), some_events(3));
        assert!(write_events(&mut out, &mut events, false, false, &date, &budget).is_none());
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
        // An answer gives its share back as its events go out.
        let mut rest = held.pop().unwrap();
        assert!(!rest.refill(&mut Vec::new(), 64 * 1024));
        let part = budget.held();
        assert!(one < part && part < 2 * one, "{part}");
        while !rest.refill(&mut Vec::new(), 64 * 1024) {}
        // Its events' handles are held until the answer goes.
        assert_eq!(budget.held(), one + n * std::mem::size_of::<Bytes>());
        drop(rest);
        assert_eq!(budget.held(), one);
        let (mut out, mut events) = (Vec::new(), some_events(n));
        held.push(write_events(&mut out, &mut events, false, false, &date, &budget).unwrap());
        // A closed connection drops its answer unread: the same.
        held.clear();
        assert_eq!(budget.held(), 0);
    }

    /// A streamed answer that trickles out is given up after the grace
    /// period; one that keeps the minimum rate is not.
    #[test]
    fn a_streamed_answer_must_keep_a_minimum_rate() {
        let date = DateCache::default();
        let budget = StreamBudget::new(MAX_STREAMED_BYTES);
        let (mut out, mut events) = (Vec::new(), some_events(15_000));
        let mut rest = write_events(&mut out, &mut events, false, false, &date, &budget).unwrap();
        let start = rest.started;
        assert!(
            !rest.too_slow(start + STREAM_GRACE - Duration::from_millis(1)),
            "grace"
        );
        assert!(
            rest.too_slow(start + STREAM_GRACE),
            "nothing went out in 60 s"
        );
        // 4 MB out: 64 KiB/s for a minute (3.9 MB), and for no longer.
        assert!(!rest.refill(&mut Vec::new(), 4_000_000));
        let copied = (rest.body - rest.left) as u64;
        assert!(!rest.too_slow(start + STREAM_GRACE));
        let until = Duration::from_millis(copied * 1000 / MIN_STREAM_RATE);
        assert!(!rest.too_slow(start + until - Duration::from_millis(1)));
        assert!(rest.too_slow(start + until + Duration::from_millis(1)));
    }

    #[test]
    fn one_answer_larger_than_the_budget_passes_alone() {
        let date = DateCache::default();
        let budget = StreamBudget::new(1024);
        let (mut out, mut events) = (Vec::new(), some_events(1500));
        let first = write_events(&mut out, &mut events, false, false, &date, &budget).unwrap();
        let (mut out, mut events) = (Vec::new(), some_events(1500));
        assert!(write_events(&mut out, &mut events, false, false, &date, &budget).is_none());
        assert!(out.starts_with(b"HTTP/1.1 503 "));
        drop(first);
        let (mut out, mut events) = (Vec::new(), some_events(1500));
        assert!(write_events(&mut out, &mut events, false, false, &date, &budget).is_some());
    }

    #[test]
    fn response_bytes() {
        let mut date = DateCache::default();
        date.refresh(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(784111777));
        let mut out = Vec::new();
        write_response(&mut out, 201, b"{}", false, false, &date);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n{}"
        );
        let mut out = Vec::new();
        write_response(&mut out, 404, b"{}", true, true, &date);
        assert!(out.ends_with(b"Connection: close\r\n\r\n"));
    }

    #[test]
    fn error_shapes() {
        assert_eq!(
            error_body(b"/api/v4/x", 404, "not found"),
            br#"{"result":false,"error":"not found"}"#
        );
        assert_eq!(
            error_body(b"/nope", 404, "not found"),
            br#"{"status":404,"message":"not found"}"#
        );
    }
}
