//! The engine's in-process clients, for a host program that links floorbell
//! (the C ABI): ticket-board sessions that behave like a WebSocket
//! connection without a socket, and subscribers that hear about every
//! committed change.
//!
//! Both are fed by the store writer after each commit, in commit order.
//! Subscribers run on one thread of their own (`floorbell-callbacks`), never
//! on the writer: a callback may take its time or call back into the engine
//! (even a write, which waits for the writer) without stalling anyone.
//!
//! **A slow host is let fall behind, not grow memory.** The changes waiting
//! for the callback thread are bounded by `callback-queue-bytes` (their
//! text plus [`CHANGE_OVERHEAD`] each), as a WebSocket client's queue is by
//! `ws-max-queue`. A commit whose changes do not fit is dropped whole, and
//! so is every later one until the callbacks reach the point where the
//! dropping began: there they get one [`Change::Lagged`] with the number of
//! changes they missed, then the changes committed after it. So the notice
//! sits exactly at the gap, and the host resynchronises from it (events
//! since its last hash, the active orders, a new ticket session).
//!
//! A session's channel carries only replies (`success …`, `error …`): the
//! other direct messages (`taken`, a staff session's initial `new` lines)
//! are dropped on the writer's side, so a session left idle collects
//! nothing.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, ThreadId};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Mutex, RwLock};

use crate::fanout::{conn_id, split_conn_id, ConnId, Delivery, Dest};

/// The reactor index reserved for local sessions in a [`ConnId`]: reactors
/// are numbered from 0 and never reach it.
pub const LOCAL_REACTOR: usize = 0xFF;

/// Why [`Local::subscribe`] added no subscriber.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// [`Local::shutdown`] has begun.
    #[error("the engine is closing")]
    Closed,
    /// The callback thread could not be started.
    #[error("cannot start the callback thread: {0}")]
    Thread(std::io::Error),
}

/// What changed, as a subscriber sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A QR event was published (its JSON, SPEC §1.1).
    Event(Bytes),
    /// A ticket-board broadcast (one §2.2 / §2.4 line, e.g. `claimed 3 7`).
    Ticket(Bytes),
    /// An order change, as `/api/v2/websocket` sends it (SPEC §3.4).
    Order(Bytes),
    /// The callbacks fell behind by more than the queue holds, and this
    /// many changes, committed after those before this notice, were dropped
    /// (see the module doc).
    Lagged(u64),
}

/// The default bound of the changes waiting for the callback thread, in
/// bytes (see the module doc).
pub const DEFAULT_CALLBACK_QUEUE_BYTES: usize = 64 << 20;
/// What a queued change costs beyond its text (its place in the queue).
pub const CHANGE_OVERHEAD: usize = 64;

impl Change {
    /// What it counts against the callback queue's bound.
    fn cost(&self) -> usize {
        CHANGE_OVERHEAD
            + match self {
                Change::Event(b) | Change::Ticket(b) | Change::Order(b) => b.len(),
                Change::Lagged(_) => 0,
            }
    }
}

/// A subscriber's callback.
pub type Callback = Box<dyn Fn(&Change) + Send + Sync>;

/// One subscriber: its callback behind a gate that unsubscribing closes.
struct Subscriber {
    id: u64,
    callback: Callback,
    /// The first dispatch it hears ([`Queued`]'s serial): nothing
    /// committed before it subscribed.
    since: u64,
    /// True while subscribed; checked before every call.
    active: AtomicBool,
    /// Held by the callback thread during each call, so that
    /// [`Local::unsubscribe`] can wait for a call in progress: once it
    /// returns, the callback is never called again.
    gate: Mutex<()>,
}

/// What the callback thread is sent.
/// Each carries its dispatch serial (see [`Subscriber::since`]).
enum Queued {
    Changes(Vec<Change>, usize, u64),
    /// Where dropping began: the number dropped is read when it is reached.
    Lagged(u64),
}

/// The callback queue's account (see the module doc).
#[derive(Default)]
struct Backlog {
    /// Cost of the changes queued and not yet handed to every callback.
    bytes: usize,
    /// The serial of the `Lagged` marker while dropping.
    lagged_at: u64,
    /// Changes dropped since the queued [`Queued::Lagged`].
    dropped: u64,
    /// Whether a [`Queued::Lagged`] is queued: everything is dropped until
    /// the callback thread reaches it.
    lagging: bool,
}

/// Local sessions and subscribers.
pub struct Local {
    /// Session id → where its replies go.
    sessions: Mutex<HashMap<ConnId, Sender<Bytes>>>,
    next_session: AtomicU64,
    subscribers: Arc<RwLock<Vec<Arc<Subscriber>>>>,
    next_subscription: AtomicU64,
    /// The serial of the next dispatch; changed only under `dispatcher`.
    serial: AtomicU64,
    /// Fast check for the writer: no subscriber, no work.
    has_subscribers: Arc<AtomicBool>,
    /// The callback thread and its queue, started with the first subscriber.
    dispatcher: Mutex<Option<Dispatcher>>,
    /// The callback thread's id, kept after [`Local::shutdown`] took the
    /// dispatcher: a callback that unsubscribes while shutdown waits for its
    /// thread must still be recognised (it holds its own gate).
    callback_thread: Mutex<Option<ThreadId>>,
    /// Set by [`Local::shutdown`]: no new subscriber, no new thread.
    closed: AtomicBool,
    /// The callback queue's bound, in bytes.
    budget: usize,
    backlog: Arc<Mutex<Backlog>>,
}

impl Default for Local {
    fn default() -> Self {
        Local::new(DEFAULT_CALLBACK_QUEUE_BYTES)
    }
}

/// The callback thread's queue and handle.
type Dispatcher = (Sender<Queued>, JoinHandle<()>);

impl Local {
    /// No session, no subscriber; at most `budget` bytes of changes wait for
    /// the callbacks.
    pub fn new(budget: usize) -> Local {
        Local {
            sessions: Mutex::default(),
            next_session: AtomicU64::new(0),
            subscribers: Arc::default(),
            next_subscription: AtomicU64::new(0),
            serial: AtomicU64::new(0),
            has_subscribers: Arc::new(AtomicBool::new(false)),
            dispatcher: Mutex::new(None),
            callback_thread: Mutex::new(None),
            closed: AtomicBool::new(false),
            budget,
            backlog: Arc::default(),
        }
    }

    /// A new session id and the receiver of its replies (the only direct
    /// messages kept, see [`Local::deliver`]).
    pub fn open_session(&self) -> (ConnId, Receiver<Bytes>) {
        let serial = self.next_session.fetch_add(1, Ordering::Relaxed);
        let id = conn_id(LOCAL_REACTOR, (serial >> 32) as usize, serial);
        let (tx, rx) = crossbeam_channel::unbounded();
        self.sessions.lock().insert(id, tx);
        (id, rx)
    }

    /// Forgets a session.
    pub fn close_session(&self, id: ConnId) {
        self.sessions.lock().remove(&id);
    }

    /// Lets go of every session's channel (a commit failed, see
    /// [`crate::engine::Halt`]): a command waiting for its reply returns at
    /// once instead of after its timeout.
    pub fn halt(&self) {
        self.sessions.lock().clear();
    }

    /// Whether `id` names a local session.
    pub fn is_local(id: ConnId) -> bool {
        split_conn_id(id).0 == LOCAL_REACTOR
    }

    /// Adds a subscriber; returns its id for [`Local::unsubscribe`].
    ///
    /// # Errors
    ///
    /// [`SubscribeError::Closed`] once [`Local::shutdown`] has begun;
    /// [`SubscribeError::Thread`] when the callback thread cannot start
    /// (nothing is subscribed then).
    pub fn subscribe(&self, callback: Callback) -> Result<u64, SubscribeError> {
        let mut dispatcher = self.dispatcher.lock();
        // Checked under the dispatcher's lock, which shutdown takes after
        // setting it: no thread is started that shutdown would not join.
        if self.closed.load(Ordering::Acquire) {
            return Err(SubscribeError::Closed);
        }
        if dispatcher.is_none() {
            // Unbounded as a channel, bounded by `backlog` (`notify`).
            let (tx, rx) = crossbeam_channel::unbounded::<Queued>();
            let subscribers = Arc::clone(&self.subscribers);
            let has_subscribers = Arc::clone(&self.has_subscribers);
            let backlog = Arc::clone(&self.backlog);
            let thread = std::thread::Builder::new()
                .name("floorbell-callbacks".into())
                .spawn(move || {
                    for queued in rx {
                        let (changes, cost, serial) = match queued {
                            Queued::Changes(changes, cost, serial) => (changes, cost, serial),
                            Queued::Lagged(serial) => {
                                let mut b = backlog.lock();
                                b.lagging = false;
                                let dropped = std::mem::take(&mut b.dropped);
                                drop(b);
                                tracing::warn!(
                                    dropped,
                                    "the subscriber callbacks missed changes (FLOORBELL_CHANGE_LAGGED)"
                                );
                                (vec![Change::Lagged(dropped)], 0, serial)
                            }
                        };
                        // A snapshot: callbacks run without any lock held, so
                        // they may subscribe, unsubscribe or call the engine.
                        let current: Vec<Arc<Subscriber>> = subscribers.read().clone();
                        for change in &changes {
                            for sub in current.iter().filter(|s| s.since <= serial) {
                                let _in_call = sub.gate.lock();
                                // Pairs with the Release store in unsubscribe.
                                if sub.active.load(Ordering::Acquire) {
                                    let call = AssertUnwindSafe(|| (sub.callback)(change));
                                    if let Err(payload) = std::panic::catch_unwind(call) {
                                        // One embedder's bug must not end the
                                        // thread every subscriber shares: this
                                        // one is unsubscribed. Its payload is
                                        // leaked (a payload whose drop panics
                                        // would end the thread after all).
                                        std::mem::forget(payload);
                                        remove_subscriber(&subscribers, &has_subscribers, sub.id);
                                        tracing::error!(
                                            subscription = sub.id,
                                            "a subscriber callback panicked; it is unsubscribed"
                                        );
                                    }
                                }
                            }
                        }
                        drop(changes);
                        let mut b = backlog.lock();
                        b.bytes = b.bytes.saturating_sub(cost);
                    }
                });
            let handle = thread.map_err(SubscribeError::Thread)?;
            *self.callback_thread.lock() = Some(handle.thread().id());
            *dispatcher = Some((tx, handle));
        }
        let id = self.next_subscription.fetch_add(1, Ordering::Relaxed) + 1;
        // Under the dispatcher's lock, which `notify` holds while it numbers
        // and sends: the new subscriber hears exactly what is sent from now
        // on, and, while changes are being dropped, the marker that says so
        // (it may then count a few from before it subscribed).
        let since = {
            let backlog = self.backlog.lock();
            if backlog.lagging {
                backlog.lagged_at
            } else {
                self.serial.load(Ordering::Relaxed)
            }
        };
        self.subscribers.write().push(Arc::new(Subscriber {
            id,
            callback,
            since,
            active: AtomicBool::new(true),
            gate: Mutex::new(()),
        }));
        self.has_subscribers.store(true, Ordering::Release);
        Ok(id)
    }

    /// Removes a subscriber; false when the id is unknown. When it returns,
    /// the callback is not running (unless called from that very callback)
    /// and will not be called again.
    pub fn unsubscribe(&self, id: u64) -> bool {
        let Some(sub) = remove_subscriber(&self.subscribers, &self.has_subscribers, id) else {
            return false;
        };
        // Wait for a call in progress, unless this is the callback thread
        // itself (a callback unsubscribing): it holds the gate, and no later
        // call can start once `active` is false.
        if !self.on_callback_thread() {
            drop(sub.gate.lock());
        }
        true
    }

    /// Whether the caller runs on this engine's callback thread (inside a
    /// subscriber callback).
    pub fn on_callback_thread(&self) -> bool {
        *self.callback_thread.lock() == Some(std::thread::current().id())
    }

    /// Whether anyone listens (checked by the writer before building changes).
    pub fn has_subscribers(&self) -> bool {
        self.has_subscribers.load(Ordering::Acquire)
    }

    /// Hands committed changes to the callback thread, or drops them when
    /// the callbacks are too far behind (see the module doc).
    pub fn notify(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        let dispatcher = self.dispatcher.lock();
        let Some((tx, _)) = dispatcher.as_ref() else {
            return;
        };
        let cost: usize = changes.iter().map(Change::cost).sum();
        let mut backlog = self.backlog.lock();
        if backlog.lagging {
            backlog.dropped += changes.len() as u64;
            return;
        }
        // A commit larger than the whole bound still goes to callbacks that
        // have caught up: the bound is on what piles up, not on one commit.
        if backlog.bytes > 0 && backlog.bytes + cost > self.budget {
            backlog.lagging = true;
            backlog.dropped = changes.len() as u64;
            tracing::warn!(
                queued_bytes = backlog.bytes,
                "the subscriber callbacks fell behind; changes are dropped until they catch up"
            );
            let serial = self.serial.fetch_add(1, Ordering::Relaxed);
            backlog.lagged_at = serial;
            let _ = tx.send(Queued::Lagged(serial));
            return;
        }
        backlog.bytes += cost;
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let _ = tx.send(Queued::Changes(changes, cost, serial));
    }

    /// Holds the callbacks' dispatch while the guard lives: the writer
    /// stops in [`Local::notify`] after its next commit, and what is sent
    /// meanwhile queues up for one batch.
    #[cfg(test)]
    pub(crate) fn hold_dispatch(&self) -> impl Sized + '_ {
        self.dispatcher.lock()
    }

    /// For tests: while the guard lives, no reply reaches a session (its
    /// delivery waits for the sessions' lock).
    #[cfg(test)]
    pub(crate) fn hold_replies(&self) -> impl Sized + '_ {
        self.sessions.lock()
    }

    /// Routes a committed delivery's frames to local sessions, and its
    /// broadcasts to `changes` when anyone subscribes.
    pub fn deliver(&self, delivery: &Delivery, changes: &mut Vec<Change>) {
        let subscribed = self.has_subscribers();
        let mut sessions = None;
        for (dest, frame) in &delivery.messages {
            match *dest {
                Dest::Conn(id) if Self::is_local(id) => {
                    // Only replies: nobody reads the rest (module doc).
                    let text = frame_text(frame);
                    if !is_reply(&text) {
                        continue;
                    }
                    let sessions = sessions.get_or_insert_with(|| self.sessions.lock());
                    if let Some(tx) = sessions.get(&id) {
                        let _ = tx.send(text);
                    }
                }
                Dest::Conn(_) => {}
                Dest::AllOrders if subscribed => changes.push(Change::Order(frame_text(frame))),
                _ if subscribed => changes.push(Change::Ticket(frame_text(frame))),
                _ => {}
            }
        }
    }

    /// Stops the callback thread after it has run what is queued. The
    /// callbacks it still runs may call [`Local::subscribe`] (refused) or
    /// [`Local::unsubscribe`]: no lock is held while waiting for them.
    pub fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let dispatcher = self.dispatcher.lock().take();
        if let Some((tx, handle)) = dispatcher {
            drop(tx);
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

/// Takes subscriber `id` off the list (keeping `has_subscribers` true to
/// it) and marks it inactive: no call of it starts after this.
fn remove_subscriber(
    subscribers: &RwLock<Vec<Arc<Subscriber>>>,
    has_subscribers: &AtomicBool,
    id: u64,
) -> Option<Arc<Subscriber>> {
    let sub = {
        let mut subs = subscribers.write();
        let position = subs.iter().position(|s| s.id == id);
        let removed = position.map(|i| subs.remove(i));
        has_subscribers.store(!subs.is_empty(), Ordering::Release);
        removed
    }?;
    sub.active.store(false, Ordering::Release);
    Some(sub)
}

/// Whether a direct message answers a command (SPEC §2.1, §2.3).
pub fn is_reply(text: &[u8]) -> bool {
    text.starts_with(b"success ") || text.starts_with(b"error ")
}

/// The text of a server text frame (its payload, without the 2- or 4-byte
/// header: floorbell's frames are under 64 KiB).
fn frame_text(frame: &Bytes) -> Bytes {
    let header = match frame.get(1).map(|b| b & 0x7F) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    };
    frame.slice(header.min(frame.len())..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_text_strips_the_header() {
        assert_eq!(
            frame_text(&crate::ws::text_frame(b"taken 1 2")),
            Bytes::from_static(b"taken 1 2")
        );
        let long = vec![b'a'; 300];
        assert_eq!(frame_text(&crate::ws::text_frame(&long)), Bytes::from(long));
    }

    #[test]
    fn sessions_get_their_direct_messages() {
        let local = Local::default();
        let (id, rx) = local.open_session();
        assert!(Local::is_local(id));
        let delivery = Delivery {
            reply_to: Some(id),
            messages: vec![
                (Dest::Conn(id), crate::ws::text_frame(b"success pick 1")),
                (Dest::AllDisplays, crate::ws::text_frame(b"pick 1")),
            ],
            ..Delivery::default()
        };
        let mut changes = Vec::new();
        local.deliver(&delivery, &mut changes);
        assert_eq!(
            rx.try_recv().unwrap(),
            Bytes::from_static(b"success pick 1")
        );
        assert!(changes.is_empty(), "no subscriber, no changes");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let sub = local
            .subscribe(Box::new(move |c| sink.lock().push(c.clone())))
            .expect("open");
        local.deliver(&delivery, &mut changes);
        assert_eq!(changes, [Change::Ticket(Bytes::from_static(b"pick 1"))]);
        local.notify(changes);
        local.shutdown(); // runs what is queued
        assert!(local.unsubscribe(sub));
        assert_eq!(
            seen.lock().as_slice(),
            [Change::Ticket(Bytes::from_static(b"pick 1"))]
        );
    }

    #[test]
    fn a_panicking_callback_is_dropped_and_the_others_go_on() {
        let local = Local::default();
        let panics = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&panics);
        let bad = local
            .subscribe(Box::new(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
                panic!("an embedder's bug");
            }))
            .expect("open");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let good = local
            .subscribe(Box::new(move |c| sink.lock().push(c.clone())))
            .expect("open");
        let change = Change::Event(Bytes::from_static(b"{}"));
        local.notify(vec![change.clone(), change.clone()]);
        local.notify(vec![change.clone()]);
        local.shutdown(); // runs what is queued
        assert_eq!(panics.load(Ordering::SeqCst), 1, "called no more");
        assert_eq!(seen.lock().len(), 3, "the thread outlived the panic");
        assert!(!local.unsubscribe(bad), "unsubscribed already");
        assert!(local.unsubscribe(good));
    }

    /// A subscriber added while the callbacks are behind hears only what
    /// was committed after it subscribed.
    #[test]
    fn a_new_subscriber_hears_nothing_from_before_it_subscribed() {
        let local = Local::default();
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        let (started_tx, started_rx) = crossbeam_channel::bounded(1);
        let first = local
            .subscribe(Box::new(move |_| {
                let _ = started_tx.try_send(());
                let _ = release_rx.recv_timeout(std::time::Duration::from_secs(5));
            }))
            .expect("open");
        let event = |n: u8| Change::Event(Bytes::from(vec![b'0' + n]));
        local.notify(vec![event(1)]);
        started_rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        local.notify(vec![event(2)]); // queued behind the held call
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let late = local
            .subscribe(Box::new(move |c| sink.lock().push(c.clone())))
            .expect("open");
        local.notify(vec![event(3)]);
        for _ in 0..3 {
            let _ = release_tx.send_timeout((), std::time::Duration::from_secs(5));
        }
        local.shutdown();
        assert_eq!(seen.lock().as_slice(), [event(3)]);
        assert!(local.unsubscribe(first) && local.unsubscribe(late));
    }

    #[test]
    fn a_lone_subscriber_that_panics_leaves_no_one_listening() {
        let local = Local::default();
        local
            .subscribe(Box::new(|_| panic!("an embedder's bug")))
            .expect("open");
        assert!(local.has_subscribers());
        local.notify(vec![Change::Event(Bytes::from_static(b"{}"))]);
        local.shutdown();
        assert!(
            !local.has_subscribers(),
            "the writer builds no more changes"
        );
    }

    #[test]
    fn unsubscribe_waits_for_a_call_in_progress_and_stops_later_ones() {
        let local = Local::default();
        let calls = Arc::new(AtomicU64::new(0));
        let (started_tx, started_rx) = crossbeam_channel::bounded(8);
        let counter = Arc::clone(&calls);
        let sub = local
            .subscribe(Box::new(move |_| {
                let _ = started_tx.send(());
                std::thread::sleep(std::time::Duration::from_millis(200));
                counter.fetch_add(1, Ordering::SeqCst);
            }))
            .expect("open");
        let change = Change::Event(Bytes::from_static(b"{}"));
        local.notify(vec![change.clone(), change.clone(), change]);
        started_rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        assert!(local.unsubscribe(sub));
        // The call in progress finished before unsubscribe returned …
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        local.shutdown();
        // … and the two queued changes never reached the callback.
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(!local.unsubscribe(sub), "unknown the second time");
    }

    /// A callback held up while changes pile past the bound: what does not
    /// fit is dropped from the first change that did not fit until the
    /// callbacks catch up, and they are told how many at exactly that place.
    #[test]
    fn a_callback_that_falls_behind_is_told_how_many_changes_it_missed() {
        let local = Local::new(1024);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
        let (entered_tx, entered_rx) = crossbeam_channel::bounded::<()>(1);
        let sink = Arc::clone(&seen);
        local
            .subscribe(Box::new(move |c| {
                if sink.lock().is_empty() {
                    let _ = entered_tx.send(());
                    let _ = release_rx.recv();
                }
                sink.lock().push(c.clone());
            }))
            .expect("open");
        let change = |i: usize| Change::Ticket(Bytes::from(format!("{i:03} {}", "x".repeat(96))));
        // 100 bytes of text + 64: six fit in 1024 bytes besides the first.
        assert_eq!(change(0).cost(), 164);
        local.notify(vec![change(0)]);
        entered_rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        for i in 1..=5 {
            local.notify(vec![change(i)]);
        }
        // 6 × 164 = 984 queued; the next does not fit, and nothing after it
        // is queued while the callback has not caught up (even what would fit).
        local.notify(vec![change(6), change(7)]);
        local.notify(vec![change(8)]);
        local.notify(vec![Change::Event(Bytes::from_static(b"{}"))]);
        release_tx.send(()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !seen.lock().iter().any(|c| matches!(c, Change::Lagged(_))) {
            assert!(std::time::Instant::now() < deadline, "no Lagged");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Caught up: changes flow again, all of them.
        local.notify(vec![change(9), change(10)]);
        local.shutdown();
        let mut want: Vec<Change> = (0..=5).map(change).collect();
        want.push(Change::Lagged(4));
        want.extend([change(9), change(10)]);
        assert_eq!(*seen.lock(), want);
        assert_eq!(local.backlog.lock().bytes, 0, "everything accounted for");
    }

    /// A commit larger than the whole bound still reaches callbacks that
    /// have caught up.
    #[test]
    fn one_large_commit_passes_when_nothing_waits() {
        let local = Local::new(1024);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        local
            .subscribe(Box::new(move |c| sink.lock().push(c.clone())))
            .expect("open");
        let big: Vec<Change> = (0..20)
            .map(|i| Change::Event(Bytes::from(format!("{{\"i\":{i}}}"))))
            .collect();
        local.notify(big.clone());
        local.shutdown();
        assert_eq!(*seen.lock(), big);
    }

    #[test]
    fn sessions_get_only_replies() {
        let local = Local::default();
        let (id, rx) = local.open_session();
        let delivery = Delivery {
            reply_to: Some(id),
            messages: vec![
                (Dest::Conn(id), crate::ws::text_frame(b"taken 1 2")),
                (Dest::Conn(id), crate::ws::text_frame(b"new {\"id\":1}")),
                (
                    Dest::Conn(id),
                    crate::ws::text_frame(b"error pick the chosen table is not available"),
                ),
            ],
            ..Delivery::default()
        };
        local.deliver(&delivery, &mut Vec::new());
        assert_eq!(
            rx.try_iter().collect::<Vec<_>>(),
            [Bytes::from_static(
                b"error pick the chosen table is not available"
            )]
        );
    }

    /// A callback that unsubscribes itself, or subscribes, while shutdown
    /// waits for the callback thread: shutdown returns, the unsubscribe
    /// returns at once, the subscribe is refused.
    #[test]
    fn callbacks_may_unsubscribe_and_subscribe_during_shutdown() {
        let local = Arc::new(Local::default());
        let (done_tx, done_rx) = crossbeam_channel::bounded(4);
        let me = Arc::clone(&local);
        let own_id = Arc::new(AtomicU64::new(0));
        let own = Arc::clone(&own_id);
        let sub = local
            .subscribe(Box::new(move |_| {
                // Late enough that shutdown is already waiting.
                std::thread::sleep(std::time::Duration::from_millis(200));
                let unsubscribed = me.unsubscribe(own.load(Ordering::SeqCst));
                let refused = matches!(me.subscribe(Box::new(|_| {})), Err(SubscribeError::Closed));
                let _ = done_tx.send((unsubscribed, refused));
            }))
            .expect("open");
        own_id.store(sub, Ordering::SeqCst);
        local.notify(vec![Change::Event(Bytes::from_static(b"{}"))]);
        let closer = Arc::clone(&local);
        let (closed_tx, closed_rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            closer.shutdown();
            let _ = closed_tx.send(());
        });
        closed_rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("shutdown returns");
        assert_eq!(done_rx.try_recv(), Ok((true, true)));
        assert!(matches!(
            local.subscribe(Box::new(|_| {})),
            Err(SubscribeError::Closed)
        ));
    }
}
