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
