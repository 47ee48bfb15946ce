//! How long a change made over HTTP takes to reach the host program's
//! callback (issue 7: "a callback for a change made over HTTP reaches the
//! host program within 1 ms (p99) on an idle machine").
//!
//!     cargo bench -p floorbell-benches --bench callback_latency
//!     SAMPLES=5000 cargo bench -p floorbell-benches --bench callback_latency
//!
//! An engine opened through the C ABI (`floorbell-ffi`, linked as an rlib)
//! serves in-process on 127.0.0.1 and has one subscriber, a C-ABI callback
//! that stamps the time it is called. A real HTTP client (ureq, one
//! keep-alive connection, the admin token as `Authorization: Bearer`) makes
//! one change at a time, and each sample is the time from just before the
//! client sends the request to the callback's call, for two kinds of change:
//!
//! * `qr event`: `POST /api/v4/events` with a ≈300-byte event
//!   (`FLOORBELL_CHANGE_EVENT`);
//! * `order page`: `POST /api/v2/activeorders/1/page` (every page is a
//!   change, `FLOORBELL_CHANGE_ORDER`).
//!
//! Both include the request's parse, its group commit (a transaction and an
//! fsync: the callback comes only after the change is on disk) and the hop
//! to the callback thread. The same requests' HTTP answers (sent after the
//! same commit) are timed too, for comparison. Samples are taken one after
//! the other on an otherwise idle engine: the next request is sent after
//! both the answer and the callback arrived.

use std::ffi::{c_char, c_void, CString};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use floorbell::{
    floorbell_engine_close, floorbell_engine_open, floorbell_engine_order_start,
    floorbell_engine_serve, floorbell_engine_subscribe, floorbell_engine_unsubscribe,
    FloorbellChange, FloorbellStatus,
};
use floorbell_benches::payment_event;

const ADMIN: &str = "benchadmin";

/// What the callback reports: the kind and when it was called.
type Stamp = (FloorbellChange, Instant);

/// The callback's user data.
struct Sink(std::sync::Mutex<mpsc::Sender<Stamp>>);

unsafe extern "C" fn stamp(
    user: *mut c_void,
    kind: FloorbellChange,
    _data: *const c_char,
    _length: usize,
) {
    let at = Instant::now();
    // SAFETY: `user` is the Sink in main, alive until unsubscribe returns.
    let sink = unsafe { &*(user as *const Sink) };
    let _ = sink.0.lock().unwrap().send((kind, at));
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{name:<12} {what:<22} n={:<6} p50 {:>7.0} µs   p90 {:>7.0} µs   p99 {:>7.0} µs   max {:>7.0} µs   mean {:>7.0} µs",
        samples.len(),
        us(percentile(&samples, 0.50)),
        us(percentile(&samples, 0.90)),
        us(percentile(&samples, 0.99)),
        us(*samples.last().unwrap()),
        us(mean),
    );
}

fn main() {
    // `cargo bench` passes `--bench` (and any filter); nothing to parse.
    let samples: usize = std::env::var("SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let warmup = 200;
    let dir = tempfile::tempdir().unwrap();
    let path = CString::new(dir.path().to_str().unwrap()).unwrap();
    let config = CString::new(format!("admin-token = \"{ADMIN}\"\nno-mdns = true\n")).unwrap();
    let (tx, rx) = mpsc::channel::<Stamp>();
    let sink = Sink(std::sync::Mutex::new(tx));
    let mut engine = std::ptr::null_mut();
    let mut port = 0u16;
    let mut sub = 0u64;
    // SAFETY: valid arguments; `sink` outlives the subscription.
    unsafe {
        assert_eq!(
            floorbell_engine_open(path.as_ptr(), config.as_ptr(), &mut engine),
            FloorbellStatus::Ok
        );
        let listen = CString::new("127.0.0.1:0").unwrap();
        assert_eq!(
            floorbell_engine_serve(engine, listen.as_ptr(), &mut port),
            FloorbellStatus::Ok
        );
        let order =
            CString::new(r#"{"name":"1","orderType":"ON_PREMISE","locationName":"5"}"#).unwrap();
        assert_eq!(
            floorbell_engine_order_start(engine, order.as_ptr(), std::ptr::null_mut()),
            FloorbellStatus::Ok
        );
        assert_eq!(
            floorbell_engine_subscribe(
                engine,
                Some(stamp),
                &sink as *const Sink as *mut c_void,
                &mut sub
            ),
            FloorbellStatus::Ok
        );
    }

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let auth = format!("Bearer {ADMIN}");
    let events: Vec<String> = (0..64).map(payment_event).collect();
    let base = format!("http://127.0.0.1:{port}");
    println!(
        "callback latency: {samples} samples per kind after {warmup} warm-up, one change at a time, \
         engine serving on {base}"
    );

    type Kind = (&'static str, FloorbellChange, String);
    let kinds: [Kind; 2] = [
        (
            "qr event",
            FloorbellChange::Event,
            format!("{base}/api/v4/events"),
        ),
        (
            "order page",
            FloorbellChange::Order,
            format!("{base}/api/v2/activeorders/1/page"),
        ),
    ];
    for (name, want, url) in kinds {
        let mut to_callback = Vec::with_capacity(samples);
        let mut to_answer = Vec::with_capacity(samples);
        for i in 0..warmup + samples {
            let body: &[u8] = match want {
                FloorbellChange::Event => events[i % events.len()].as_bytes(),
                _ => b"",
            };
            let sent = Instant::now();
            let mut answer = agent
                .post(&url)
                .header("Authorization", &auth)
                .content_type("application/json")
                .send(body)
                .expect("request failed");
            // Read to the end, so the connection is kept for the next one.
            let _ = answer.body_mut().read_to_vec().expect("answer body");
            let answered = Instant::now();
            let status = answer.status().as_u16();
            assert!(status == 200 || status == 201, "{name}: HTTP {status}");
            let (kind, at) = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("no callback within 10 s");
            assert_eq!(kind, want);
            if i >= warmup {
                to_callback.push(at.saturating_duration_since(sent));
                to_answer.push(answered.saturating_duration_since(sent));
            }
        }
        report(name, "request → callback", to_callback);
        report(name, "request → HTTP answer", to_answer);
    }

    // SAFETY: the engine is live; nothing else calls it now.
    unsafe {
        assert_eq!(
            floorbell_engine_unsubscribe(engine, sub),
            FloorbellStatus::Ok
        );
        assert_eq!(floorbell_engine_close(engine), FloorbellStatus::Ok);
    }
}
