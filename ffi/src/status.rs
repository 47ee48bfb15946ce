//! Status codes and the thread-local last error (SPEC §4).

use std::cell::RefCell;
use std::ffi::c_char;

/// What a call did. The numbers are part of the ABI: never renumbered,
/// retired codes stay reserved.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloorbellStatus {
    /// Success.
    Ok = 0,
    /// An argument is out of range or malformed (bad JSON, a bad address, …).
    InvalidArgument = 1,
    /// A required pointer was NULL.
    NullPointer = 2,
    /// A string was not UTF-8.
    InvalidUtf8 = 3,
    /// The thing named does not exist (a staff member, a subscription, …).
    NotFound = 4,
    /// It exists already (a staff name in use).
    Conflict = 5,
    /// The data directory is held by another open engine (another process,
    /// or this one).
    InUse = 6,
    /// The store failed: this change's commit, or an earlier one, after
    /// which the engine refuses every change until it is closed and opened
    /// again (reads go on; the last error says why).
    Store = 7,
    /// The engine is shutting down or was closed (or, for a session
    /// command, no reply came within 30 s, which a working store never
    /// takes).
    Closed = 8,
    /// An I/O error (binding an address, …).
    Io = 9,
    /// The engine is already serving (or not serving, for stop), or a
    /// session being closed has a command running.
    WrongState = 10,
    /// Reserved: no call returns it today (`floorbell_last_error_message`
    /// truncates instead; `floorbell_last_error_length` gives the size).
    BufferTooSmall = 11,
    /// Accepted, not yet on disk: what [`crate::floorbell_engine_submit_event`]
    /// returns for an event it handed to the store writer. SPEC §0 keeps 0
    /// for what is durable, so no call that has not waited for its commit
    /// returns 0. Not a failure: the last error is cleared.
    Queued = 12,
    /// A panic inside floorbell was caught at the boundary (a bug: report it).
    Panic = 99,
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records the message of a failed call on this thread.
pub fn set_last_error(message: impl Into<String>) {
    let message = message.into();
    // `try_with`: a call from another thread-local's destructor, after
    // this one is gone, must not panic across the boundary.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = message);
}

/// Clears it (every successful call does).
pub fn clear_last_error() {
    let _ = LAST_ERROR.try_with(|e| e.borrow_mut().clear());
}

/// Bytes of the last error message on this thread, NUL excluded (0 when the
/// last call succeeded).
#[no_mangle]
pub extern "C" fn floorbell_last_error_length() -> usize {
    LAST_ERROR.try_with(|e| e.borrow().len()).unwrap_or(0)
}

/// Copies the last error message of this thread into `buffer` (at most
/// `length` bytes, NUL included, truncated at a UTF-8 boundary) and returns
/// the bytes written without the NUL. Any thread; each thread has its own
/// message, set by every failed call and cleared by every successful one.
///
/// # Safety
///
/// `buffer` is NULL (nothing is written, 0 is returned) or points to at least
/// `length` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn floorbell_last_error_message(buffer: *mut c_char, length: usize) -> usize {
    if buffer.is_null() || length == 0 {
        return 0;
    }
    let copy = |e: &str| {
        let mut n = e.len().min(length - 1);
        while !e.is_char_boundary(n) {
            n -= 1;
        }
        // SAFETY: the caller guarantees `length` writable bytes at `buffer`;
        // n + 1 <= length.
        unsafe {
            std::ptr::copy_nonoverlapping(e.as_ptr(), buffer.cast::<u8>(), n);
            *buffer.add(n) = 0;
        }
        n
    };
    LAST_ERROR
        .try_with(|e| copy(&e.borrow()))
        .unwrap_or_else(|_| copy(""))
}
