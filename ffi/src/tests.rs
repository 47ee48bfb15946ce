//! The C ABI called from Rust as C would call it.

use super::*;
use std::ffi::CStr;

fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn last_error() -> String {
    let mut buf = vec![0 as c_char; 512];
    // SAFETY: 512 writable bytes.
    let n = unsafe { floorbell_last_error_message(buf.as_mut_ptr(), buf.len()) };
    // SAFETY: NUL-terminated by the call.
    let s = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.len(), n);
    s
}

/// Opens an engine on `dir` with the default configuration.
fn open_engine(dir: &tempfile::TempDir) -> *mut FloorbellEngine {
    let path = cs(dir.path().to_str().unwrap());
    let mut engine = std::ptr::null_mut();
    // SAFETY: a NUL-terminated path, a writable out pointer.
    let status = unsafe { floorbell_engine_open(path.as_ptr(), std::ptr::null(), &mut engine) };
    assert_eq!(status, FloorbellStatus::Ok, "{}", last_error());
    engine
}

#[test]
fn version_is_the_crate_s() {
    // SAFETY: static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(floorbell_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn publish_read_tickets_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = cs(dir.path().to_str().unwrap());
    let mut engine = std::ptr::null_mut();
    // SAFETY: valid arguments throughout this test.
    unsafe {
        assert_eq!(
            floorbell_engine_open(path.as_ptr(), std::ptr::null(), &mut engine),
            FloorbellStatus::Ok
        );
        let mut hash = [0 as c_char; 11];
        let ev = cs(r#"{"code":"waiter_call","table":5}"#);
        assert_eq!(
            floorbell_engine_publish_event(engine, ev.as_ptr(), hash.as_mut_ptr()),
            FloorbellStatus::Ok
        );
        let hash = CStr::from_ptr(hash.as_ptr()).to_str().unwrap().to_owned();
        assert!(hash.starts_with("0x") && hash.len() == 10);

        let mut out = std::ptr::null_mut();
        let mut len = 0;
        assert_eq!(
            floorbell_engine_events_since(engine, cs("none").as_ptr(), &mut out, &mut len),
            FloorbellStatus::Ok
        );
        let text = CStr::from_ptr(out).to_str().unwrap().to_owned();
        floorbell_string_free(out);
        assert_eq!(text.len(), len);
        assert!(
            text.contains(&hash)
                && text.starts_with(r#"{"result":true,"data":{"updates":[{"hash""#),
            "{text}"
        );

        // Bad input: a status and a message, nothing queued.
        let bad = cs(r#"{"code":"Bad"}"#);
        assert_eq!(
            floorbell_engine_publish_event(engine, bad.as_ptr(), std::ptr::null_mut()),
            FloorbellStatus::InvalidArgument
        );
        assert!(last_error().contains("code"), "{}", last_error());
        assert_eq!(
            floorbell_engine_publish_event(std::ptr::null(), bad.as_ptr(), std::ptr::null_mut()),
            FloorbellStatus::NullPointer
        );
        let not_utf8 = [0xffu8, 0xfe, 0];
        assert_eq!(
            floorbell_engine_publish_event(engine, not_utf8.as_ptr().cast(), std::ptr::null_mut()),
            FloorbellStatus::InvalidUtf8
        );

        // Tickets through a kiosk and a staff session.
        let mut token = std::ptr::null_mut();
        assert_eq!(
            floorbell_engine_staff_add(engine, cs("Kim").as_ptr(), &mut token),
            FloorbellStatus::Ok
        );
        let token_s = CStr::from_ptr(token).to_str().unwrap().to_owned();
        floorbell_string_free(token);
        let mut again = std::ptr::null_mut();
        assert_eq!(
            floorbell_engine_staff_add(engine, cs("Kim").as_ptr(), &mut again),
            FloorbellStatus::Conflict
        );
        let (mut kiosk, mut staff) = (0u64, 0u64);
        assert_eq!(
            floorbell_session_open(engine, cs("kiosk").as_ptr(), &mut kiosk),
            FloorbellStatus::Ok
        );
        assert_eq!(
            floorbell_session_open(engine, cs("staff").as_ptr(), &mut staff),
            FloorbellStatus::Ok
        );
        let say = |session: u64, command: &str| {
            let mut reply = std::ptr::null_mut();
            assert_eq!(
                floorbell_session_command(engine, session, cs(command).as_ptr(), &mut reply),
                FloorbellStatus::Ok
            );
            let r = CStr::from_ptr(reply).to_str().unwrap().to_owned();
            floorbell_string_free(reply);
            r
        };
        assert!(say(kiosk, "new a@b.c Анна")
            .starts_with(r#"success new {"id":0,"email":"a@b.c","name":"Анна""#));
        assert_eq!(say(staff, &format!("pick 2 {token_s}")), "success pick 2");
        assert_eq!(say(staff, "accept 0"), "success claimed 0");
        assert_eq!(
            say(staff, "accept 9"),
            "error accept ticket id does not exist"
        );
        assert_eq!(floorbell_session_close(engine, staff), FloorbellStatus::Ok);
        assert_eq!(
            floorbell_session_close(engine, staff),
            FloorbellStatus::NotFound
        );
        assert_eq!(floorbell_engine_close(engine), FloorbellStatus::Ok);
        assert_eq!(
            floorbell_engine_close(std::ptr::null_mut()),
            FloorbellStatus::Ok
        );
    }
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = cs(dir.path().to_str().unwrap());
    let (mut a, mut b) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: valid arguments.
    unsafe {
        assert_eq!(
            floorbell_engine_open(path.as_ptr(), std::ptr::null(), &mut a),
            FloorbellStatus::Ok
        );
        assert_eq!(
            floorbell_engine_open(path.as_ptr(), std::ptr::null(), &mut b),
            FloorbellStatus::InUse
        );
        assert!(b.is_null(), "outputs are written only on success");
        assert!(last_error().contains("in use"), "{}", last_error());
        let bad = cs("bogus = 1");
        assert_eq!(
            floorbell_engine_open(path.as_ptr(), bad.as_ptr(), &mut b),
            FloorbellStatus::InvalidArgument
        );
        assert_eq!(floorbell_engine_close(a), FloorbellStatus::Ok);
    }
}

/// What a test subscriber heard, and a way to wait for it.
#[derive(Default)]
struct Sink {
    changes: parking_lot::Mutex<Vec<(FloorbellChange, String)>>,
    arrived: parking_lot::Condvar,
}

impl Sink {
    /// Waits (10 s at most) until `pred` holds for the changes heard so far.
    fn wait_for(&self, what: &str, pred: impl Fn(&[(FloorbellChange, String)]) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut changes = self.changes.lock();
        while !pred(&changes) {
            if self.arrived.wait_until(&mut changes, deadline).timed_out() {
                panic!("no {what} within 10 s; heard {:?}", *changes);
            }
        }
    }

    fn orders(&self) -> Vec<String> {
        self.changes
            .lock()
            .iter()
            .filter(|(k, _)| *k == FloorbellChange::Order)
            .map(|(_, t)| t.clone())
            .collect()
    }
}

unsafe extern "C" fn record(
    user: *mut c_void,
    kind: FloorbellChange,
    data: *const c_char,
    length: usize,
) {
    // SAFETY: `user` is the test's Sink, alive until unsubscribe returns;
    // `data` holds `length` bytes for the call.
    let (sink, bytes) = unsafe {
        (
            &*(user as *const Sink),
            std::slice::from_raw_parts(data.cast::<u8>(), length),
        )
    };
    sink.changes
        .lock()
        .push((kind, String::from_utf8(bytes.to_vec()).unwrap()));
    sink.arrived.notify_all();
}

/// Takes a string floorbell handed out.
unsafe fn take(ptr: *mut c_char) -> String {
    assert!(!ptr.is_null());
    // SAFETY: a NUL-terminated string from floorbell, freed once here.
    let s = unsafe { CStr::from_ptr(ptr) }.to_str().unwrap().to_owned();
    // SAFETY: as above.
    unsafe { floorbell_string_free(ptr) };
    s
}

/// One HTTP/1.1 request over a plain socket (`Connection: close`): the
/// status and the body.
fn http(port: u16, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

const CONFIG: &str = "admin-token = \"ta\"\nqr-token = \"tq\"\nno-mdns = true\n";

#[test]
fn orders_button_and_order_callbacks() {
    let dir = tempfile::tempdir().unwrap();
    let path = cs(dir.path().to_str().unwrap());
    let config = cs(CONFIG);
    let mut engine = std::ptr::null_mut();
    let sink = Sink::default();
    // SAFETY: valid arguments throughout; `sink` outlives the subscription.
    unsafe {
        assert_eq!(
            floorbell_engine_open(path.as_ptr(), config.as_ptr(), &mut engine),
            FloorbellStatus::Ok
        );
        let mut sub = 0u64;
        assert_eq!(
            floorbell_engine_subscribe(
                engine,
                Some(record),
                &sink as *const Sink as *mut c_void,
                &mut sub
            ),
            FloorbellStatus::Ok
        );
        let active = || {
            let mut out = std::ptr::null_mut();
            assert_eq!(
                floorbell_engine_orders_active(engine, &mut out),
                FloorbellStatus::Ok
            );
            take(out)
        };
        assert_eq!(active(), r#"{"status":200,"count":0,"items":[]}"#);

        // Start: the HTTP answer, byte for byte in shape.
        let mut out = std::ptr::null_mut();
        let start = cs(r#"{"name":"66","orderType":"TO_GO"}"#);
        assert_eq!(
            floorbell_engine_order_start(engine, start.as_ptr(), &mut out),
            FloorbellStatus::Ok
        );
        let started = take(out);
        assert!(
            started.starts_with(r#"{"status":201,"activeorder":{"elapsedTime":"#)
                && started.contains(r#""orderType":"TO_GO","locationName":"","state":"started""#)
                && started.ends_with(r#""name":"66"}}"#),
            "{started}"
        );
        let uuid = started.split(r#""uuid":""#).nth(1).unwrap()[..36].to_owned();

        // Modify by uuid: located.
        let mut out = std::ptr::null_mut();
        let modify = cs(r#"{"locationName":"22"}"#);
        assert_eq!(
            floorbell_engine_order_modify(engine, cs(&uuid).as_ptr(), modify.as_ptr(), &mut out),
            FloorbellStatus::Ok
        );
        let modified = take(out);
        assert!(
            modified.starts_with(r#"{"status":200,"activeorder":"#)
                && modified.contains(r#""locationName":"22","state":"located""#),
            "{modified}"
        );
        // Page by name, tracking off; NULL out: not wanted.
        assert_eq!(
            floorbell_engine_order_page(engine, cs("66").as_ptr(), false, std::ptr::null_mut()),
            FloorbellStatus::Ok
        );
        assert!(active().contains(&uuid));

        // Bad calls: a status, the HTTP message, nothing changed.
        let before = active();
        let mut untouched = std::ptr::null_mut();
        for (json, want, says) in [
            (
                r#"{"name":"66","orderType":"TO_GO"}"#,
                FloorbellStatus::Conflict,
                "66",
            ),
            (r#"{"name":"67""#, FloorbellStatus::InvalidArgument, "JSON"),
            (
                r#"{"name":"abc","orderType":"TO_GO"}"#,
                FloorbellStatus::InvalidArgument,
                "name",
            ),
            (
                r#"{"name":"68"}"#,
                FloorbellStatus::InvalidArgument,
                "orderType",
            ),
        ] {
            assert_eq!(
                floorbell_engine_order_start(engine, cs(json).as_ptr(), &mut untouched),
                want,
                "{json}"
            );
            assert!(last_error().contains(says), "{json}: {}", last_error());
            assert!(untouched.is_null(), "out written on failure");
        }
        let unknown = cs("00000000-0000-4000-8000-000000000000");
        assert_eq!(
            floorbell_engine_order_modify(
                engine,
                unknown.as_ptr(),
                modify.as_ptr(),
                &mut untouched
            ),
            FloorbellStatus::NotFound
        );
        assert!(!last_error().is_empty());
        assert_eq!(
            floorbell_engine_order_page(engine, unknown.as_ptr(), true, &mut untouched),
            FloorbellStatus::NotFound
        );
        assert_eq!(
            floorbell_engine_order_clear(engine, unknown.as_ptr(), &mut untouched),
            FloorbellStatus::NotFound
        );
        assert_eq!(
            floorbell_engine_order_modify(
                engine,
                cs("66").as_ptr(),
                cs("[1]").as_ptr(),
                &mut untouched
            ),
            FloorbellStatus::InvalidArgument
        );
        assert_eq!(
            floorbell_engine_order_modify(
                engine,
                cs("66").as_ptr(),
                cs(r#"{"orderType":"TAKEAWAY"}"#).as_ptr(),
                &mut untouched
            ),
            FloorbellStatus::InvalidArgument
        );
        assert!(last_error().contains("orderType"), "{}", last_error());
        assert_eq!(
            floorbell_engine_order_clear(engine, std::ptr::null(), &mut untouched),
            FloorbellStatus::NullPointer
        );
        assert_eq!(
            floorbell_engine_order_start(std::ptr::null(), start.as_ptr(), &mut untouched),
            FloorbellStatus::NullPointer
        );
        assert!(last_error().contains("engine"), "{}", last_error());
        let not_utf8 = [b'6', 0xff, 0];
        assert_eq!(
            floorbell_engine_order_clear(engine, not_utf8.as_ptr().cast(), &mut untouched),
            FloorbellStatus::InvalidUtf8
        );
        assert_eq!(
            floorbell_engine_orders_active(engine, std::ptr::null_mut()),
            FloorbellStatus::NullPointer
        );
        assert!(untouched.is_null());
        assert_eq!(active(), before, "a bad call changed the orders");

        // Clear by name; then the name is free (404) and the uuid is history (409).
        let mut out = std::ptr::null_mut();
        assert_eq!(
            floorbell_engine_order_clear(engine, cs("66").as_ptr(), &mut out),
            FloorbellStatus::Ok
        );
        assert!(take(out).contains(r#""state":"cleared""#));
        assert_eq!(
            floorbell_engine_order_page(engine, cs("66").as_ptr(), true, std::ptr::null_mut()),
            FloorbellStatus::NotFound
        );
        assert_eq!(
            floorbell_engine_order_modify(
                engine,
                cs(&uuid).as_ptr(),
                modify.as_ptr(),
                std::ptr::null_mut()
            ),
            FloorbellStatus::Conflict
        );

        // Clear-all counts.
        for name in ["1", "2", "3"] {
            let json = cs(&format!(r#"{{"name":"{name}","orderType":"ON_PREMISE"}}"#));
            assert_eq!(
                floorbell_engine_order_start(engine, json.as_ptr(), std::ptr::null_mut()),
                FloorbellStatus::Ok
            );
        }
        let mut count = 99usize;
        assert_eq!(
            floorbell_engine_orders_clear_all(engine, &mut count),
            FloorbellStatus::Ok
        );
        assert_eq!(count, 3);
        assert_eq!(
            floorbell_engine_orders_clear_all(engine, std::ptr::null_mut()),
            FloorbellStatus::Ok
        );
        assert_eq!(active(), r#"{"status":200,"count":0,"items":[]}"#);

        // Every change reached the subscriber, in seq order, as §3.4 spells it.
        sink.wait_for("10 order changes", |c| {
            c.iter()
                .filter(|(k, _)| *k == FloorbellChange::Order)
                .count()
                >= 10
        });
        let kinds: Vec<String> = sink
            .orders()
            .iter()
            .map(|t| {
                let kind = t.split(r#","type":""#).nth(1).unwrap();
                kind.split('"').next().unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "ORDER_CREATED",
                "ORDER_MODIFIED",
                "ORDER_PAGED",
                "ORDER_MODIFIED",
                "ORDER_CREATED",
                "ORDER_CREATED",
                "ORDER_CREATED",
                "ORDER_MODIFIED",
                "ORDER_MODIFIED",
                "ORDER_MODIFIED",
            ]
        );

        let seqs: Vec<u64> = sink
            .orders()
            .iter()
            .map(|t| {
                t.split(r#""seq":"#)
                    .nth(1)
                    .unwrap()
                    .split(',')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");

        // Served: the button opens the token window; an order started over
        // HTTP reaches the callback.
        let mut port = 0u16;
        assert_eq!(
            floorbell_engine_serve(engine, cs("127.0.0.1:0").as_ptr(), &mut port),
            FloorbellStatus::Ok
        );
        assert_eq!(
            http(port, "GET", "/api/v2/accesstoken/generate", None, "").0,
            403
        );
        assert_eq!(floorbell_engine_press_button(engine), FloorbellStatus::Ok);
        let (status, body) = http(port, "GET", "/api/v2/accesstoken/generate", None, "");
        assert_eq!(status, 201, "{body}");
        assert_eq!(
            floorbell_engine_press_button(std::ptr::null()),
            FloorbellStatus::NullPointer
        );
        let (status, body) = http(
            port,
            "POST",
            "/api/v2/activeorders",
            Some("ta"),
            r#"{"name":"501","orderType":"ON_PREMISE","locationName":"9"}"#,
        );
        assert_eq!(status, 201, "{body}");
        sink.wait_for("the HTTP order", |c| {
            c.iter().any(|(k, t)| {
                *k == FloorbellChange::Order
                    && t.ends_with(r#""type":"ORDER_CREATED","name":"501"}"#)
            })
        });
        assert!(active().contains(r#""name":"501""#));

        assert_eq!(
            floorbell_engine_unsubscribe(engine, sub),
            FloorbellStatus::Ok
        );
        assert_eq!(floorbell_engine_close(engine), FloorbellStatus::Ok);
    }
}

#[test]
fn submitted_events_are_committed_in_order_and_reach_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let path = cs(dir.path().to_str().unwrap());
    let mut engine = std::ptr::null_mut();
    let sink = Sink::default();
    // SAFETY: valid arguments; `sink` outlives the subscription.
    unsafe {
        assert_eq!(
            floorbell_engine_open(path.as_ptr(), std::ptr::null(), &mut engine),
            FloorbellStatus::Ok
        );
        assert_eq!(
            floorbell_engine_subscribe(
                engine,
                Some(record),
                &sink as *const Sink as *mut c_void,
                std::ptr::null_mut()
            ),
            FloorbellStatus::Ok
        );
        for table in 0..100 {
            let ev = cs(&format!(r#"{{"code":"waiter_call","table":{table}}}"#));
            assert_eq!(
                floorbell_engine_submit_event(engine, ev.as_ptr()),
                FloorbellStatus::Queued
            );
        }
        assert_eq!(
            floorbell_engine_submit_event(engine, cs(r#"{"code":"Bad"}"#).as_ptr()),
            FloorbellStatus::InvalidArgument
        );
        assert!(last_error().contains("code"), "{}", last_error());
        // Larger than the HTTP body limit: refused here, never handed to the
        // store (whose failure would stop every later write).
        let huge = cs(&format!(
            r#"{{"code":"a","order":{{"note":"{}"}}}}"#,
            "x".repeat(17 << 20)
        ));
        assert_eq!(
            floorbell_engine_submit_event(engine, huge.as_ptr()),
            FloorbellStatus::InvalidArgument
        );
        assert!(last_error().contains("longer than"), "{}", last_error());
        assert_eq!(
            floorbell_engine_publish_event(engine, huge.as_ptr(), std::ptr::null_mut()),
            FloorbellStatus::InvalidArgument
        );
        assert_eq!(
            floorbell_engine_submit_event(engine, std::ptr::null()),
            FloorbellStatus::NullPointer
        );
        assert_eq!(
            floorbell_engine_submit_event(std::ptr::null(), cs("{}").as_ptr()),
            FloorbellStatus::NullPointer
        );
        sink.wait_for("100 events", |c| c.len() >= 100);
        let tables: Vec<String> = sink
            .changes
            .lock()
            .iter()
            .map(|(k, t)| {
                assert_eq!(*k, FloorbellChange::Event);
                t.split(r#""table":"#)
                    .nth(1)
                    .unwrap()
                    .split(',')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let want: Vec<String> = (0..100).map(|t| t.to_string()).collect();
        assert_eq!(tables, want, "submission order");
        // Submitted and not waited for: committed by close all the same.
        for table in 100..110 {
            let ev = cs(&format!(r#"{{"code":"waiter_call","table":{table}}}"#));
            assert_eq!(
                floorbell_engine_submit_event(engine, ev.as_ptr()),
                FloorbellStatus::Queued
            );
        }
        assert_eq!(floorbell_engine_close(engine), FloorbellStatus::Ok);
        assert_eq!(
            floorbell_engine_open(path.as_ptr(), std::ptr::null(), &mut engine),
            FloorbellStatus::Ok
        );
        let mut out = std::ptr::null_mut();
        assert_eq!(
            floorbell_engine_events_since(engine, std::ptr::null(), &mut out, std::ptr::null_mut()),
            FloorbellStatus::Ok
        );
        let all = take(out);
        assert_eq!(all.matches(r#""code":"waiter_call""#).count(), 110);
        assert!(all.contains(r#""table":109,"#) && !all.contains("Bad"));
        assert_eq!(floorbell_engine_close(engine), FloorbellStatus::Ok);
    }
}

/// Two threads sharing one kiosk session: every call gets the reply to its
/// own command (`Every function may be called from any thread`).
#[test]
fn two_threads_on_one_session_get_their_own_replies() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(&dir);
    let mut kiosk = 0u64;
    // SAFETY: valid arguments; the engine outlives the threads (joined).
    unsafe {
        assert_eq!(
            floorbell_session_open(engine, cs("kiosk").as_ptr(), &mut kiosk),
            FloorbellStatus::Ok
        );
    }
    let shared = engine as usize;
    let threads: Vec<_> = (0..2)
        .map(|t| {
            std::thread::spawn(move || {
                let engine = shared as *const FloorbellEngine;
                for i in 0..100 {
                    let email = format!("t{t}n{i}@example.com");
                    let mut reply = std::ptr::null_mut();
                    // SAFETY: a live engine and session, a C string.
                    let status = unsafe {
                        floorbell_session_command(
                            engine,
                            kiosk,
                            cs(&format!("new {email} Guest")).as_ptr(),
                            &mut reply,
                        )
                    };
                    assert_eq!(status, FloorbellStatus::Ok, "thread {t} command {i}");
                    // SAFETY: a string floorbell handed out.
                    let reply = unsafe { take(reply) };
                    assert!(
                        reply.starts_with("success new ")
                            && reply.contains(&format!(r#""email":"{email}""#)),
                        "thread {t} command {i} got {reply}"
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no thread failed");
    }
    // SAFETY: no other call runs now.
    unsafe { assert_eq!(floorbell_engine_close(engine), FloorbellStatus::Ok) };
}

/// The subscription id a self-removing callback reads, and what it saw.
struct OneShot {
    engine: *const FloorbellEngine,
    id: std::sync::atomic::AtomicU64,
    unsubscribed: std::sync::atomic::AtomicI32,
}

unsafe extern "C" fn unsubscribe_self(
    user: *mut c_void,
    _kind: FloorbellChange,
    _data: *const c_char,
    _length: usize,
) {
    // SAFETY: `user` is the test's OneShot, alive until close returns.
    let me = unsafe { &*(user as *const OneShot) };
    // Late enough that close is already waiting for this thread.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let id = me.id.load(std::sync::atomic::Ordering::SeqCst);
    // SAFETY: the engine is alive until close returns.
    let status = unsafe { floorbell_engine_unsubscribe(me.engine, id) };
    me.unsubscribed
        .store(status as i32, std::sync::atomic::Ordering::SeqCst);
}

/// A callback that unsubscribes itself while close commits the last
/// change: close returns (it once waited forever).
#[test]
fn a_callback_may_unsubscribe_itself_while_the_engine_closes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(&dir);
    // SAFETY: valid arguments; `me` outlives the engine.
    unsafe {
        let me = Box::new(OneShot {
            engine,
            id: std::sync::atomic::AtomicU64::new(0),
            unsubscribed: std::sync::atomic::AtomicI32::new(-1),
        });
        let mut id = 0;
        assert_eq!(
            floorbell_engine_subscribe(
                engine,
                Some(unsubscribe_self),
                &*me as *const OneShot as *mut c_void,
                &mut id
            ),
            FloorbellStatus::Ok
        );
        me.id.store(id, std::sync::atomic::Ordering::SeqCst);
        let ev = cs(r#"{"code":"waiter_call","table":5}"#);
        assert_eq!(
            floorbell_engine_publish_event(engine, ev.as_ptr(), std::ptr::null_mut()),
            FloorbellStatus::Ok
        );
        let handle = engine as usize;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let status = floorbell_engine_close(handle as *mut FloorbellEngine);
            let _ = tx.send(status);
        });
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(10)),
            Ok(FloorbellStatus::Ok),
            "close returned"
        );
        assert_eq!(
            me.unsubscribed.load(std::sync::atomic::Ordering::SeqCst),
            FloorbellStatus::Ok as i32
        );
    }
}

/// What a callback that tries to close its own engine was told.
struct CloseFromCallback {
    engine: *mut FloorbellEngine,
    status: std::sync::atomic::AtomicI32,
}

unsafe extern "C" fn close_own_engine(
    user: *mut c_void,
    _kind: FloorbellChange,
    _data: *const c_char,
    _length: usize,
) {
    // SAFETY: `user` is the test's CloseFromCallback, alive until close.
    let me = unsafe { &*(user as *const CloseFromCallback) };
    if me.status.load(std::sync::atomic::Ordering::SeqCst) == -1 {
        // SAFETY: the engine is alive (the refused close frees nothing).
        let status = unsafe { floorbell_engine_close(me.engine) };
        me.status
            .store(status as i32, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `floorbell_engine_close` from the engine's own callback thread could not
/// wait for that thread: it is refused, and the engine keeps working until
/// closed from another thread.
#[test]
fn close_from_the_engine_s_own_callback_is_refused_and_closes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(&dir);
    let me = Box::new(CloseFromCallback {
        engine,
        status: std::sync::atomic::AtomicI32::new(-1),
    });
    // SAFETY: valid arguments; `me` outlives the engine.
    unsafe {
        let mut id = 0;
        assert_eq!(
            floorbell_engine_subscribe(
                engine,
                Some(close_own_engine),
                &*me as *const CloseFromCallback as *mut c_void,
                &mut id
            ),
            FloorbellStatus::Ok
        );
        let ev = cs(r#"{"code":"waiter_call","table":5}"#);
        assert_eq!(
            floorbell_engine_publish_event(engine, ev.as_ptr(), std::ptr::null_mut()),
            FloorbellStatus::Ok
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while me.status.load(std::sync::atomic::Ordering::SeqCst) == -1 {
            assert!(std::time::Instant::now() < deadline, "no callback");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(
            me.status.load(std::sync::atomic::Ordering::SeqCst),
            FloorbellStatus::WrongState as i32
        );
        // Still open and working.
        let mut hash = [0 as c_char; 11];
        assert_eq!(
            floorbell_engine_publish_event(engine, ev.as_ptr(), hash.as_mut_ptr()),
            FloorbellStatus::Ok
        );
        assert_eq!(floorbell_engine_close(engine), FloorbellStatus::Ok);
    }
}

/// A [`Sink`] whose first call waits until the test lets it go.
#[derive(Default)]
struct HeldSink {
    sink: Sink,
    released: parking_lot::Mutex<bool>,
    release: parking_lot::Condvar,
}

unsafe extern "C" fn record_held(
    user: *mut c_void,
    kind: FloorbellChange,
    data: *const c_char,
    length: usize,
) {
    // SAFETY: `user` is the test's HeldSink, alive until the engine closes.
    let held = unsafe { &*(user as *const HeldSink) };
    let mut released = held.released.lock();
    while !*released {
        held.release.wait(&mut released);
    }
    drop(released);
    // SAFETY: as for `record`.
    unsafe { record(&held.sink as *const Sink as *mut c_void, kind, data, length) };
}

/// The JSON value of `"hash"` in an event.
fn hash_of(event: &str) -> String {
    event.split(r#""hash":""#).nth(1).unwrap()[..10].to_owned()
}

#[test]
fn a_callback_that_falls_behind_gets_lagged_and_can_resync() {
    let dir = tempfile::tempdir().unwrap();
    let path = cs(dir.path().to_str().unwrap());
    let mut engine = std::ptr::null_mut();
    let held = HeldSink::default();
    // SAFETY: valid arguments; `held` outlives the engine.
    unsafe {
        assert_eq!(
            floorbell_engine_open(
                path.as_ptr(),
                cs("callback-queue-bytes = 2048").as_ptr(),
                &mut engine
            ),
            FloorbellStatus::Ok,
            "{}",
            last_error()
        );
        assert_eq!(
            floorbell_engine_subscribe(
                engine,
                Some(record_held),
                &held as *const HeldSink as *mut c_void,
                std::ptr::null_mut()
            ),
            FloorbellStatus::Ok
        );
        // Each publish is a commit of its own; the callback is held from
        // the first, so the rest pile up past 2 KiB.
        for table in 0..60 {
            let ev = cs(&format!(r#"{{"code":"waiter_call","table":{table}}}"#));
            assert_eq!(
                floorbell_engine_publish_event(engine, ev.as_ptr(), std::ptr::null_mut()),
                FloorbellStatus::Ok
            );
        }
        *held.released.lock() = true;
        held.release.notify_all();
        held.sink.wait_for("a lag notice", |c| {
            c.iter().any(|(k, _)| *k == FloorbellChange::Lagged)
        });
        let ev = cs(r#"{"code":"waiter_call","table":60}"#);
        assert_eq!(
            floorbell_engine_publish_event(engine, ev.as_ptr(), std::ptr::null_mut()),
            FloorbellStatus::Ok
        );
        held.sink.wait_for("the event after the lag", |c| {
            c.last().is_some_and(|(_, t)| t.contains(r#""table":60,"#))
        });
        let heard = held.sink.changes.lock().clone();
        let lag = heard
            .iter()
            .position(|(k, _)| *k == FloorbellChange::Lagged)
            .unwrap();
        let missed: usize = heard[lag].1.parse().unwrap();
        assert!(lag >= 2 && missed > 0, "{heard:?}");
        // The notice sits where the dropping began: the events before it
        // are the first ones published, those after it go on from the one
        // after the missed ones to table 60. (A publish returns once its event is on
        // disk; its change may reach the callback thread after the notice
        // was handled, and then it is heard: the count covers only the
        // changes dropped.)
        for (i, (kind, text)) in heard.iter().enumerate() {
            let table = if i < lag {
                i
            } else if i > lag {
                lag + missed + (i - lag - 1)
            } else {
                continue;
            };
            assert_eq!(*kind, FloorbellChange::Event, "change {i}");
            assert!(
                text.contains(&format!(r#""table":{table},"#)),
                "change {i}: {text}"
            );
        }
        assert_eq!(heard.len() - 1 + missed, 61, "heard + missed = published");
        // The resync the notice asks for: the events after the last one
        // heard before it are the missed ones and those heard after it.
        let mut out = std::ptr::null_mut();
        let last = cs(&hash_of(&heard[lag - 1].1));
        assert_eq!(
            floorbell_engine_events_since(engine, last.as_ptr(), &mut out, std::ptr::null_mut()),
            FloorbellStatus::Ok
        );
        let since = take(out);
        assert_eq!(since.matches(r#""code":"waiter_call""#).count(), 61 - lag);
        assert!(since.contains(&format!(r#""table":{lag},"#)), "{since}");
        assert_eq!(floorbell_engine_close(engine), FloorbellStatus::Ok);
    }
}

/// A hostile caller's huge strings are refused with a short message (the
/// last error is kept per thread: it once quoted the whole input), and an
/// order body over HTTP's 1 MiB is refused as over HTTP (it was taken).
#[test]
fn huge_arguments_are_refused_with_short_messages() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(&dir);
    let huge = cs(&"x".repeat(10 << 20));
    let mut session = 0u64;
    // SAFETY: valid arguments throughout.
    unsafe {
        assert_eq!(
            floorbell_session_open(engine, huge.as_ptr(), &mut session),
            FloorbellStatus::InvalidArgument
        );
        let message = last_error();
        assert!(
            message.starts_with("role \"xxx") && message.len() < 200,
            "{message}"
        );
        assert_eq!(
            floorbell_engine_serve(engine, huge.as_ptr(), std::ptr::null_mut()),
            FloorbellStatus::InvalidArgument
        );
        let message = last_error();
        assert!(
            message.ends_with("is not HOST:PORT") && message.len() < 200,
            "{message}"
        );
        let body = format!(
            r#"{{"name":"1","orderType":"TO_GO","pad":"{}"}}"#,
            "y".repeat(1 << 20)
        );
        let body = cs(&body);
        assert_eq!(
            floorbell_engine_order_start(engine, body.as_ptr(), std::ptr::null_mut()),
            FloorbellStatus::InvalidArgument
        );
        assert_eq!(
            last_error(),
            "the request body is longer than 1048576 bytes"
        );
        let mut out = std::ptr::null_mut();
        assert_eq!(
            floorbell_engine_orders_active(engine, &mut out),
            FloorbellStatus::Ok
        );
        assert_eq!(take(out), r#"{"status":200,"count":0,"items":[]}"#);
        assert_eq!(floorbell_engine_close(engine), FloorbellStatus::Ok);
    }
}
