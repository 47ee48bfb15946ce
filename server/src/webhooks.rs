//! Webhook delivery (SPEC §3.6): the I/O shell around core's sans-I/O
//! [`Outbox`].
//!
//! Threads, and why:
//!
//! * **The dispatcher** (`floorbell-webhooks`) owns the timing: it asks the
//!   outbox what is due, persists what the outbox says through the store
//!   writer, logs dropped deliveries, and hands each attempt to its
//!   receiver's sender thread.
//! * **One sender thread per receiver** (`floorbell-hook-N`) makes that
//!   receiver's POSTs with a blocking client (`ureq`: connect timeout 2 s,
//!   whole request 10 s). The outbox allows one attempt in flight per
//!   receiver, so a receiver that is down or slow occupies only its own
//!   thread: nobody else waits for it, and the reactors never block on a
//!   webhook. Receivers are at most 64 (core's limit), and so are threads.
//! * **A registration check** (`floorbell-hook-check`) makes the `HEAD`
//!   request of §3.6 (2 s) off the reactor, then answers through the writer
//!   like any other change.
//!
//! Ordering with the store: an order change's deliveries are enqueued under
//! the orders lock and persisted in the same group commit as the change. The
//! outbox may offer an attempt before that commit is done, so the dispatcher
//! holds back attempts whose `seq` is above the highest committed one (the
//! writer raises it and wakes the dispatcher after each commit): no receiver
//! hears of a change that a crash could undo.
//!
//! Delivery is at least once: an attempt interrupted by a crash, or whose
//! success was not yet persisted, is made again with the same
//! `X-Floorbell-Delivery` id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use floorbell_core::store::StoreOp;
use floorbell_core::webhooks::{
    Attempt, Outbox, Output, Registration, DELIVERY_HEADER, SIGNATURE_HEADER,
};
use parking_lot::Mutex;

use crate::engine::{answer_now, now_ms, AppliedJob, Outcome, Reply, WriterMsg, WriterTx};

/// How long the registration check waits for any answer (SPEC §3.6).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Connect timeout of a delivery.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Whole-request timeout of a delivery: past it the attempt failed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of a receiver's answer read (and dropped) so that its
/// connection can be reused; a longer answer closes the connection.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;
/// Registration checks running at once; more are answered 503 (each holds a
/// thread for up to 2 s).
pub const MAX_CHECKS: usize = 16;
/// The dispatcher's longest sleep when nothing is due (it is woken for
/// everything else).
const IDLE_WAIT: Duration = Duration::from_secs(60);

/// What the dispatcher is told.
enum DispatchMsg {
    /// Something changed: poll the outbox.
    Wake,
    /// An attempt finished.
    Done {
        delivery_id: u64,
        result: Result<(), String>,
    },
    /// Stop (engine shutdown).
    Stop,
}

/// The engine's webhook side.
pub struct Webhooks {
    /// The outbox. A lock is honest: it is touched once per order change,
    /// per registration and per attempt, each for microseconds.
    outbox: Mutex<Outbox>,
    /// The highest order `seq` known to be committed.
    committed_seq: AtomicU64,
    /// To the dispatcher.
    tx: Sender<DispatchMsg>,
    /// The dispatcher's end, taken when it starts.
    rx: Mutex<Option<Receiver<DispatchMsg>>>,
    /// The dispatcher thread.
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Registration checks running now.
    checks: AtomicUsize,
}

fn records(out: Output) -> Vec<StoreOp> {
    out.records.into_iter().map(StoreOp::Webhook).collect()
}

impl Webhooks {
    /// The webhook side around a restored outbox; `committed_seq` is the
    /// highest order `seq` on disk.
    pub fn new(outbox: Outbox, committed_seq: u64) -> Arc<Webhooks> {
        let (tx, rx) = crossbeam_channel::unbounded();
        Arc::new(Webhooks {
            outbox: Mutex::new(outbox),
            committed_seq: AtomicU64::new(committed_seq),
            tx,
            rx: Mutex::new(Some(rx)),
            thread: Mutex::new(None),
            checks: AtomicUsize::new(0),
        })
    }

    /// Starts the dispatcher; `writer` persists its records.
    ///
    /// # Errors
    ///
    /// When the thread cannot start.
    pub(crate) fn start(self: &Arc<Self>, writer: WriterTx) -> std::io::Result<()> {
        let Some(rx) = self.rx.lock().take() else {
            return Ok(());
        };
        let me = Arc::clone(self);
        let handle = std::thread::Builder::new()
            .name("floorbell-webhooks".into())
            .spawn(move || me.dispatch(rx, writer))?;
        *self.thread.lock() = Some(handle);
        Ok(())
    }

    /// Stops the dispatcher (sender threads end when their channel closes;
    /// an attempt under way is abandoned and will be made again).
    pub fn stop(&self) {
        let _ = self.tx.send(DispatchMsg::Stop);
        if let Some(handle) = self.thread.lock().take() {
            let _ = handle.join();
        }
    }

    /// Enqueues an order change for every receiver (call under the orders
    /// lock, so enqueue order is `seq` order); returns the records to commit
    /// with the change.
    ///
    /// Call it through [`Webhooks::outbox`] and hand the records to the
    /// writer before the guard goes: an unregistration taking the lock in
    /// between would commit its deletion first, and these rows after it
    /// would outlive it (delivered after a restart to a URL registered
    /// again meanwhile).
    pub(crate) fn enqueue(
        outbox: &mut Outbox,
        body: bytes::Bytes,
        seq: u64,
        now: i64,
    ) -> Vec<StoreOp> {
        let out = outbox.enqueue(body, seq, now);
        for d in &out.dropped {
            tracing::warn!("{d}");
        }
        records(out)
    }

    /// The outbox, locked (see [`Webhooks::enqueue`]).
    pub(crate) fn outbox(&self) -> parking_lot::MutexGuard<'_, Outbox> {
        self.outbox.lock()
    }

    /// The writer committed order changes up to `seq`: their deliveries may go.
    pub fn committed(&self, seq: u64) {
        self.committed_seq.fetch_max(seq, Ordering::AcqRel);
        let _ = self.tx.send(DispatchMsg::Wake);
    }

    /// Wakes the dispatcher (a registration changed).
    pub fn wake(&self) {
        let _ = self.tx.send(DispatchMsg::Wake);
    }

    /// `POST /api/v2/register`: checks `url` with a `HEAD` request off the
    /// reactor, then registers it with `key` and answers `reply` after the
    /// commit; a URL that does not answer gets the 404 of §3.6 and nothing
    /// is registered.
    pub(crate) fn register(
        self: &Arc<Self>,
        url: String,
        key: [u8; 32],
        reply: Reply,
        writer: WriterTx,
    ) {
        if self.checks.fetch_add(1, Ordering::AcqRel) >= MAX_CHECKS {
            self.checks.fetch_sub(1, Ordering::AcqRel);
            answer_now(
                Some(reply),
                Outcome::Rejected {
                    status: 503,
                    message: "too many webhook registrations are being checked; try again".into(),
                },
            );
            return;
        }
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("floorbell-hook-check".into())
            .spawn(move || {
                crate::sockio::block_sigpipe_here();
                let answered = head_check(&url);
                me.checks.fetch_sub(1, Ordering::AcqRel);
                if !answered {
                    answer_now(
                        Some(reply),
                        Outcome::Rejected {
                            status: 404,
                            message: format!("Client not responding at {url}"),
                        },
                    );
                    return;
                }
                let registration = Registration {
                    url: url.clone(),
                    key,
                    registered_ms: now_ms(),
                };
                let mut outbox = me.outbox.lock();
                match outbox.register(registration) {
                    Ok(out) => {
                        let body = serde_json::to_vec(&serde_json::json!({
                            "status": 200,
                            "message": format!("Registered client at: {url}"),
                        }))
                        .unwrap_or_default();
                        // Sent under the outbox lock: commit order is
                        // application order.
                        let _ = writer.send(WriterMsg::Applied(AppliedJob {
                            records: records(out),
                            reply: Some((reply, Outcome::Respond { status: 200, body })),
                            unseen: true,
                            ..AppliedJob::default()
                        }));
                    }
                    Err(e) => {
                        drop(outbox);
                        answer_now(
                            Some(reply),
                            Outcome::Rejected {
                                status: 409,
                                message: e.to_string(),
                            },
                        );
                    }
                }
            });
        if spawned.is_err() {
            self.checks.fetch_sub(1, Ordering::AcqRel);
            tracing::error!("cannot start a webhook registration check thread");
        }
    }

    /// `DELETE /api/v2/register?http_client=URL`.
    pub(crate) fn unregister(&self, url: &str, reply: Reply, writer: &WriterTx) {
        let mut outbox = self.outbox.lock();
        match outbox.unregister(url) {
            Ok(out) => {
                let body = serde_json::to_vec(&serde_json::json!({
                    "status": 200,
                    "message": format!("Unregistered client at: {url}"),
                }))
                .unwrap_or_default();
                let _ = writer.send(WriterMsg::Applied(AppliedJob {
                    records: records(out),
                    reply: Some((reply, Outcome::Respond { status: 200, body })),
                    unseen: true,
                    ..AppliedJob::default()
                }));
                drop(outbox);
                self.wake();
            }
            Err(_) => {
                drop(outbox);
                answer_now(
                    Some(reply),
                    Outcome::Rejected {
                        status: 404,
                        message: format!("Client not registered at {url}"),
                    },
                );
            }
        }
    }

    /// The dispatcher loop (see the module doc).
    fn dispatch(self: Arc<Self>, rx: Receiver<DispatchMsg>, writer: WriterTx) {
        let done_tx = self.tx.clone();
        let mut senders: HashMap<String, Sender<Attempt>> = HashMap::new();
        let mut held: Vec<Attempt> = Vec::new();
        let mut results: Vec<(u64, Result<(), String>)> = Vec::new();
        let mut next_thread = 0usize;
        loop {
            let wait = self
                .outbox
                .lock()
                .next_deadline()
                .map_or(IDLE_WAIT, |at| {
                    Duration::from_millis(at.saturating_sub(now_ms()).max(0) as u64)
                })
                .min(IDLE_WAIT);
            let mut stop = false;
            match rx.recv_timeout(wait) {
                Ok(DispatchMsg::Stop) | Err(RecvTimeoutError::Disconnected) => stop = true,
                Ok(DispatchMsg::Done {
                    delivery_id,
                    result,
                }) => results.push((delivery_id, result)),
                Ok(DispatchMsg::Wake) | Err(RecvTimeoutError::Timeout) => {}
            }
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    DispatchMsg::Stop => stop = true,
                    DispatchMsg::Done {
                        delivery_id,
                        result,
                    } => results.push((delivery_id, result)),
                    DispatchMsg::Wake => {}
                }
            }
            if stop {
                break;
            }
            let now = now_ms();
            let mut ops = Vec::new();
            let attempts;
            {
                let mut outbox = self.outbox.lock();
                for (id, result) in results.drain(..) {
                    if let Err(e) = &result {
                        tracing::debug!(delivery = id, error = %e, "webhook delivery failed; will retry");
                    }
                    let out = outbox.on_result(id, result, now);
                    for d in &out.dropped {
                        tracing::warn!("{d}");
                    }
                    ops.extend(records(out));
                }
                let out = outbox.poll_attempts(now);
                for d in &out.dropped {
                    tracing::warn!("{d}");
                }
                attempts = out.attempts.clone();
                ops.extend(records(Output {
                    records: out.records,
                    ..Output::default()
                }));
                // Receivers no longer registered lose their sender thread,
                // and attempts still held for them are forgotten.
                senders.retain(|url, _| outbox.registration(url).is_some());
                held.retain(|a| outbox.registration(&a.url).is_some());
                // Sent under the outbox lock, like every outbox change:
                // commit order is application order.
                if !ops.is_empty() {
                    let _ = writer.send(WriterMsg::Applied(AppliedJob {
                        records: std::mem::take(&mut ops),
                        unseen: true,
                        ..AppliedJob::default()
                    }));
                }
            }
            held.extend(attempts);
            let committed = self.committed_seq.load(Ordering::Acquire);
            let mut later = Vec::new();
            for attempt in held.drain(..) {
                if attempt.seq > committed {
                    later.push(attempt);
                    continue;
                }
                let url = attempt.url.clone();
                let sender = senders.entry(url.clone()).or_insert_with(|| {
                    next_thread += 1;
                    spawn_sender(next_thread, done_tx.clone(), Arc::clone(&self))
                });
                if let Err(e) = sender.send(attempt) {
                    // Its thread is gone (it could not start): report the
                    // attempt as failed so it is retried with a new thread.
                    senders.remove(&url);
                    let attempt = e.into_inner();
                    results.push((attempt.delivery_id, Err("sender thread gone".into())));
                    let _ = self.tx.send(DispatchMsg::Wake);
                }
            }
            held = later;
        }
        tracing::debug!("webhook dispatcher stopped");
    }
}

/// Starts a receiver's sender thread; its attempts arrive on the returned
/// channel, one at a time (the outbox never has two in flight per receiver).
fn spawn_sender(n: usize, done: Sender<DispatchMsg>, hooks: Arc<Webhooks>) -> Sender<Attempt> {
    let (tx, rx) = crossbeam_channel::unbounded::<Attempt>();
    let spawned = std::thread::Builder::new()
        .name(format!("floorbell-hook-{n}"))
        .spawn(move || {
            crate::sockio::block_sigpipe_here();
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(CONNECT_TIMEOUT))
                .timeout_global(Some(DELIVERY_TIMEOUT))
                .max_redirects(0)
                // Receivers are on the venue's network: never through a
                // proxy taken from the environment.
                .proxy(None)
                .build()
                .into();
            while let Ok(mut attempt) = rx.recv() {
                // Signed with the key in force now (SPEC §3.6), not the one
                // of when the attempt was offered: a registration again in
                // between replaced it.
                let key = hooks
                    .outbox
                    .lock()
                    .registration(&attempt.url)
                    .map(|r| r.key);
                let result = match key {
                    Some(key) => {
                        attempt.key = key;
                        post(&agent, &attempt)
                    }
                    None => Err("no longer registered".to_owned()),
                };
                if done
                    .send(DispatchMsg::Done {
                        delivery_id: attempt.delivery_id,
                        result,
                    })
                    .is_err()
                {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start a webhook sender thread");
    }
    tx
}

/// One POST (SPEC §3.6): signed when sent, with the delivery id.
fn post(agent: &ureq::Agent, attempt: &Attempt) -> Result<(), String> {
    let unix_secs = now_ms().div_euclid(1000);
    let mut response = agent
        .post(&attempt.url)
        .header("Content-Type", "application/json")
        .header(SIGNATURE_HEADER, &attempt.signature(unix_secs))
        .header(DELIVERY_HEADER, &attempt.delivery_id.to_string())
        .send(&attempt.body[..])
        // Kept for the log: ureq's message may quote the whole URL.
        .map_err(|e| floorbell_core::webhooks::scrub_url(&e.to_string(), &attempt.url))?;
    let status = response.status();
    // The answer's body is read to its end (and dropped), or ureq closes
    // the connection instead of pooling it: every delivery would open a new
    // one. Bounded (the whole request's timeout still applies); the status
    // alone decides the outcome.
    let _ = std::io::copy(
        &mut response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .reader(),
        &mut std::io::sink(),
    );
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

/// The registration check: any HTTP answer to `HEAD url` within 2 s.
fn head_check(url: &str) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(CHECK_TIMEOUT))
        .max_redirects(0)
        .proxy(None)
        .build()
        .into();
    agent.head(url).call().is_ok()
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};

    use floorbell_core::webhooks::{OutboxConfig, Registration};

    use super::*;

    /// SPEC §3.6: "every delivery is signed when it is sent, with the key
    /// in force then": an attempt offered before a registration replaced
    /// the key goes out signed with the new one.
    #[test]
    fn an_attempt_is_signed_with_the_key_in_force_when_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let mut outbox = Outbox::new(OutboxConfig::default(), 1);
        let key_now = [7u8; 32];
        outbox
            .register(Registration {
                url: url.clone(),
                key: key_now,
                registered_ms: 0,
            })
            .unwrap();
        let hooks = Webhooks::new(outbox, 0);
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let sender = spawn_sender(1, done_tx, Arc::clone(&hooks));
        let offered = Attempt {
            url,
            delivery_id: 5,
            seq: 1,
            body: bytes::Bytes::from_static(b"{\"seq\":1}"),
            attempt: 1,
            key: [1u8; 32],
        };
        sender.send(offered.clone()).unwrap();

        let (conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(conn);
        let mut signature = None;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case(SIGNATURE_HEADER) {
                    signature = Some(value.trim().to_owned());
                }
            }
        }
        let mut conn = reader.into_inner();
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        let signature = signature.expect("a signature header");
        let t: i64 = signature
            .strip_prefix("t=")
            .and_then(|s| s.split(',').next())
            .and_then(|s| s.parse().ok())
            .expect("t=UNIXTIME");
        let now = Attempt {
            key: key_now,
            ..offered.clone()
        };
        assert_eq!(signature, now.signature(t));
        assert_ne!(signature, offered.signature(t));
        match done_rx.recv_timeout(Duration::from_secs(10)).unwrap() {
            DispatchMsg::Done {
                delivery_id,
                result,
            } => assert_eq!((delivery_id, result), (5, Ok(()))),
            _ => panic!("not a Done"),
        }
    }
}
