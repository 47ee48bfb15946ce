//! Reads and writes on client sockets as direct system calls, and the
//! guard that keeps them from raising `SIGPIPE`.
//!
//! A write to a socket whose peer has closed and reset it fails with
//! `EPIPE` (the first one after the reset may get `ECONNRESET` instead)
//! and, unless it is a `send` with `MSG_NOSIGNAL`, `EPIPE` also raises
//! `SIGPIPE` on the writing thread, whose default action ends the process. Rust's runtime ignores
//! the signal in a Rust `main`, but floorbell also serves inside a POS
//! program through the C ABI, and a C program keeps the default: a
//! `writev` killed such a host when a client vanished mid-answer
//! (`bindings/c/test_peer_gone.c`). So the threads floorbell starts that
//! write to sockets block `SIGPIPE` for themselves
//! ([`block_sigpipe_here`]: the host's own threads and its handling of
//! the signal are untouched; a signal raised by a write is directed at the
//! writing thread, so a blocked one stays pending there and is dropped
//! with the thread), and plain writes say `MSG_NOSIGNAL` (as std's
//! `TcpStream::write` did before: `writev` was the one way in). Vectored
//! writes stay `writev`: `sendmsg`, the vectored call that takes the flag,
//! did no better per poll than `writev` in four interleaved runs (5.0–5.4
//! against 5.0–5.2 µs of CPU; session 22).
//!
//! The calls go through `rustix`, which makes the system call itself,
//! without glibc's cancellation-point wrappers (~2 % of a poll's CPU in a
//! profile, though four interleaved runs could not tell the difference).

use std::io::{self, IoSlice};
use std::os::fd::AsFd;

use rustix::net::{RecvFlags, SendFlags};

/// `recv(fd, buf, 0)`.
pub fn read(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::net::recv(fd, buf, RecvFlags::empty())?.0)
}

/// `send(fd, buf, MSG_NOSIGNAL)`.
pub fn write(fd: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    Ok(rustix::net::send(fd, buf, SendFlags::NOSIGNAL)?)
}

/// `writev(fd, bufs)`: call it only on a thread that blocked `SIGPIPE`
/// ([`block_sigpipe_here`]).
pub fn write_vectored(fd: impl AsFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    Ok(rustix::io::writev(fd, bufs)?)
}

/// Blocks `SIGPIPE` for the calling thread only (see the module doc).
/// Failure is logged: the thread then serves as before, and only a host
/// that keeps the signal's default action is at risk.
pub fn block_sigpipe_here() {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGPIPE);
    if let Err(e) = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None) {
        tracing::warn!(error = %e, "cannot block SIGPIPE on this thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// Bytes go both ways, and a write after the peer is gone is an error
    /// (`EPIPE` or `ECONNRESET`).
    #[test]
    fn writes_to_a_vanished_peer_fail_without_a_signal() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        block_sigpipe_here();
        assert_eq!(write(&client, b"ping").unwrap(), 4);
        let mut buf = [0u8; 16];
        assert_eq!(read(&server, &mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"ping");
        let parts = [IoSlice::new(b"po"), IoSlice::new(b"ng")];
        assert_eq!(write_vectored(&server, &parts).unwrap(), 4);
        assert_eq!(read(&client, &mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"pong");
        drop(client);
        // Rust programs ignore SIGPIPE anyway, so the signal itself is
        // checked by the C binding test (`bindings/c/test_peer_gone.c`);
        // here, the error.
        let mut failed = None;
        for _ in 0..100 {
            if let Err(e) = write_vectored(&server, &parts).and_then(|_| write(&server, b"x")) {
                failed = Some(e);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let e = failed.expect("writes to a closed peer kept succeeding");
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{e}"
        );
    }
}
