//! The one wrapper every export goes through: panics become
//! [`FloorbellStatus::Panic`], errors set the thread's last error, success
//! clears it. Also the checked readers of C arguments.

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::status::{clear_last_error, set_last_error, FloorbellStatus};

/// A failed call: its status and its message.
pub struct Failure(pub FloorbellStatus, pub String);

impl Failure {
    /// A failure with a status and a message.
    pub fn new(status: FloorbellStatus, message: impl Into<String>) -> Self {
        Failure(status, message.into())
    }
}

/// Runs `body` under `catch_unwind` and turns its result into a status.
pub fn guard(body: impl FnOnce() -> Result<(), Failure>) -> FloorbellStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            clear_last_error();
            FloorbellStatus::Ok
        }
        Ok(Err(Failure(status, message))) => {
            set_last_error(message);
            status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(format!("internal error (please report): {what}"));
            FloorbellStatus::Panic
        }
    }
}

/// Reads a NUL-terminated UTF-8 argument.
///
/// # Safety
///
/// `ptr` is NULL or points to a NUL-terminated string valid for the call.
pub unsafe fn c_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::new(
            FloorbellStatus::NullPointer,
            format!("{what} is NULL"),
        ));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    simdutf8::basic::from_utf8(bytes)
        .map_err(|_| Failure::new(FloorbellStatus::InvalidUtf8, format!("{what} is not UTF-8")))
}

/// Fails with [`FloorbellStatus::NullPointer`] when an output pointer is NULL.
pub fn non_null<T>(ptr: *mut T, what: &str) -> Result<(), Failure> {
    if ptr.is_null() {
        Err(Failure::new(
            FloorbellStatus::NullPointer,
            format!("{what} is NULL"),
        ))
    } else {
        Ok(())
    }
}
