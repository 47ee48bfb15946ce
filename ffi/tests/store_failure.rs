//! A commit that fails, seen through the C ABI: the caller whose change
//! failed hears it at once, every later change is refused with
//! `FLOORBELL_STATUS_STORE`, reads go on, and reopening the engine loads
//! exactly what was acknowledged.
//!
//! The failure is real: the process's file-size limit (`RLIMIT_FSIZE`, with
//! `SIGXFSZ` ignored, so a write past it fails with `EFBIG`) is lowered to
//! the size of the store's write-ahead log, so the next commit cannot append
//! its frames. The limit is the whole process's, which is why this test is
//! its own test binary with one test.

use std::ffi::{c_char, CStr, CString};
use std::path::Path;
use std::time::{Duration, Instant};

use floorbell::*;

fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn last_error() -> String {
    let mut buf = vec![0 as c_char; 1024];
    // SAFETY: 1024 writable bytes.
    unsafe { floorbell_last_error_message(buf.as_mut_ptr(), buf.len()) };
    // SAFETY: NUL-terminated by the call.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Sets the soft file-size limit (the hard one stays, so it can be raised
/// again), with `SIGXFSZ` ignored; returns the soft limit it replaced.
fn limit_file_size(bytes: libc::rlim_t) -> libc::rlim_t {
    // SAFETY: plain syscalls on this process with valid arguments.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit), 0);
        let before = limit.rlim_cur;
        limit.rlim_cur = bytes.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
        before
    }
}

fn wal_size(dir: &Path) -> libc::rlim_t {
    std::fs::metadata(dir.join("floorbell.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// `floorbell_session_command`: the status, the reply (or the last error).
///
/// # Safety
///
/// `engine` is a live handle.
unsafe fn command(
    engine: *const FloorbellEngine,
    session: u64,
    text: &str,
) -> (FloorbellStatus, String) {
    let text = cs(text);
    let mut reply = std::ptr::null_mut();
    let status = floorbell_session_command(engine, session, text.as_ptr(), &mut reply);
    if status != FloorbellStatus::Ok {
        return (status, last_error());
    }
    let out = CStr::from_ptr(reply).to_string_lossy().into_owned();
    floorbell_string_free(reply);
    (status, out)
}

/// # Safety
///
/// `engine` is a live handle.
unsafe fn publish(
    engine: *const FloorbellEngine,
    table: u32,
) -> Result<String, (FloorbellStatus, String)> {
    let json = cs(&format!(r#"{{"code":"waiter_call","table":{table}}}"#));
    let mut hash = [0 as c_char; 11];
    match floorbell_engine_publish_event(engine, json.as_ptr(), hash.as_mut_ptr()) {
        FloorbellStatus::Ok => Ok(CStr::from_ptr(hash.as_ptr()).to_str().unwrap().to_owned()),
        status => Err((status, last_error())),
    }
}

/// # Safety
///
/// `engine` is a live handle.
unsafe fn events(engine: *const FloorbellEngine) -> String {
    let mut json = std::ptr::null_mut();
    let status =
        floorbell_engine_events_since(engine, std::ptr::null(), &mut json, std::ptr::null_mut());
    assert_eq!(status, FloorbellStatus::Ok, "{}", last_error());
    let out = CStr::from_ptr(json).to_string_lossy().into_owned();
    floorbell_string_free(json);
    out
}

/// # Safety
///
/// `engine` is a live handle.
unsafe fn session(engine: *const FloorbellEngine, role: &str) -> u64 {
    let role = cs(role);
    let mut id = 0;
    assert_eq!(
        floorbell_session_open(engine, role.as_ptr(), &mut id),
        FloorbellStatus::Ok,
        "{}",
        last_error()
    );
    id
}

/// Opens an engine on the directory `path` with the default configuration.
fn open(path: &CString) -> *mut FloorbellEngine {
    let mut engine = std::ptr::null_mut();
    // SAFETY: a NUL-terminated path, a writable out pointer.
    let status = unsafe { floorbell_engine_open(path.as_ptr(), std::ptr::null(), &mut engine) };
    assert_eq!(status, FloorbellStatus::Ok, "{}", last_error());
    engine
}

#[test]
fn a_failed_commit_stops_every_write_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = cs(dir.path().to_str().unwrap());
    // SAFETY: valid arguments; `engine` is live until its close below.
    unsafe {
        let mut engine = open(&path);
        let kiosk = session(engine, "kiosk");
        let (status, reply) = command(engine, kiosk, "new anna@example.com Anna");
        assert_eq!(status, FloorbellStatus::Ok);
        assert!(reply.starts_with("success new {\"id\":0,"), "{reply}");
        let kept = publish(engine, 5).expect("a publish before the failure");

        // From here no file may grow: the next commit's frames do not fit.
        let unlimited = limit_file_size(wal_size(dir.path()));
        let started = Instant::now();
        let (status, error) = command(engine, kiosk, "new boris@example.com Boris");
        let waited = started.elapsed();
        limit_file_size(unlimited);
        assert_eq!(status, FloorbellStatus::Store, "{error}");
        assert!(error.contains("the store failed"), "{error}");
        // Before fail-stop the caller waited for its 30 s timeout.
        assert!(
            waited < Duration::from_secs(20),
            "answered after {waited:?}"
        );

        // Every change is refused now, with the reason, although the disk
        // would take it again: what was applied in memory is ahead of it.
        let (status, error) = command(engine, kiosk, "new clara@example.com Clara");
        assert_eq!(status, FloorbellStatus::Store);
        assert!(
            error.contains("refuses changes until it is restarted"),
            "{error}"
        );
        let other = session(engine, "kiosk");
        assert_eq!(
            command(engine, other, "new dora@example.com Dora").0,
            FloorbellStatus::Store
        );
        let (status, error) = publish(engine, 6).unwrap_err();
        assert_eq!(status, FloorbellStatus::Store);
        assert!(error.contains("refuses changes"), "{error}");
        let json = cs(r#"{"code":"waiter_call","table":7}"#);
        assert_eq!(
            floorbell_engine_submit_event(engine, json.as_ptr()),
            FloorbellStatus::Store
        );
        let name = cs("Eve");
        let mut token = std::ptr::null_mut();
        assert_eq!(
            floorbell_engine_staff_add(engine, name.as_ptr(), &mut token),
            FloorbellStatus::Store
        );
        // Reads go on, and show only what was committed.
        let seen = events(engine);
        assert!(seen.contains(&kept), "{seen}");
        assert_eq!(seen.matches("\"hash\"").count(), 1, "{seen}");
        assert_eq!(floorbell_engine_close(engine), FloorbellStatus::Ok);

        // Reopened: what was acknowledged is there, nothing else, and
        // changes are taken again.
        engine = open(&path);
        let seen = events(engine);
        assert!(seen.contains(&kept), "{seen}");
        assert_eq!(seen.matches("\"hash\"").count(), 1, "{seen}");
        let kiosk = session(engine, "kiosk");
        assert_eq!(
            command(engine, kiosk, "query anna@example.com"),
            (FloorbellStatus::Ok, "success query Anna".to_owned())
        );
        assert_eq!(
            command(engine, kiosk, "query boris@example.com"),
            (
                FloorbellStatus::Ok,
                "error query visitor email does not exist".to_owned()
            )
        );
        let (status, reply) = command(engine, kiosk, "new boris@example.com Boris");
        assert_eq!(status, FloorbellStatus::Ok);
        assert!(reply.starts_with("success new {\"id\":1,"), "{reply}");
        assert!(publish(engine, 6).is_ok());
        assert_eq!(floorbell_engine_close(engine), FloorbellStatus::Ok);
    }
}
