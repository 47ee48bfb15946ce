//! When an event-loop thread gives its CPU away of its own accord.
//!
//! Under load the event loop always has a ready connection, so its threads
//! never block: they run until the kernel takes the CPU back at the end of
//! their time slice (up to the next 4 ms tick on a `HZ=250` kernel). On a
//! machine the server shares with its clients (the POS program, a kiosk's
//! browser, a load generator), a client woken by its answer waits that long
//! for a CPU to read it, and that wait is part of every latency the client
//! sees. So a thread pauses after every [`MIN_EVERY`] connections it has
//! served: it asks to sleep for [`PAUSE`] (the kernel's timer slack, 50 µs
//! for an ordinary thread, lets the timer fire up to that much later), a
//! client woken meanwhile runs, and the thread is back once the timer has
//! fired and a CPU is free.
//!
//! A pause sleeps rather than calling `sched_yield` (sessions 10–20). Side
//! by side on a 6.18 kernel (session 21), yielding gave poll p99s of
//! 0.8 ms in some runs and 3–4 ms in others; sleeping, 1.0–1.3 ms in every
//! run. The likely reason: under EEVDF (Linux 6.6 and later) a yield hands
//! the CPU only to a task the scheduler counts as *eligible*, and a client
//! that ran more than its share lately is not, so the yield came straight
//! back and the client waited for the tick; a sleeping thread leaves the
//! run queue, so the client runs whatever its standing.
//!
//! A pause can also hand the CPU to a task with work of its own (a build, a
//! report): then the thread is away for a whole slice and its queue waits.
//! A pause that was away at least [`LONG_AWAY`] doubles the interval (up to
//! [`MAX_EVERY`]); a short one halves it again. So beside CPU-bound
//! neighbours the threads pause rarely and keep their share, and beside
//! clients they pause often.
//!
//! A pause is taken only when some task is waiting for a CPU: when the
//! kernel's count of runnable tasks (`/proc/loadavg`, fourth field, the
//! reading thread included) exceeds the CPUs this process may use. On
//! cores that serve nothing else nobody waits, and a pause would only idle
//! the thread (~50 µs per [`MIN_EVERY`] connections, up to ~13 % of its time
//! at full load). Where the count cannot be read, every pause is taken.
//!
//! [`Courtesy`] holds that policy and nothing else: it is told what happened
//! and answers when to pause; [`running_tasks`] reads the count from the
//! file's text, [`RunQueue`] reads the file; the event loop does the
//! pausing.

use std::time::Duration;

/// Connections served between two pauses while pauses come back quickly.
/// Session 21: 64 served more requests a second than 32, 128 let the tail
/// grow again. Session 22, once a repeated poll cost 10 % less: 64 left
/// the poll p99 at 2.3–4.3 ms in eight of nine runs, 48 at 0.8–1.7 ms in
/// seven of eight, with the same CPU per request and requests a second
/// as 64 (32: p99 1.0–1.3 ms, but 5 % more CPU and 5 % fewer requests).
/// A pause every 300 or 500 µs of running instead of a count did no
/// better (four runs each).
pub const MIN_EVERY: u32 = 48;
/// How long a pause asks to sleep (the timer slack decides the rest).
pub const PAUSE: Duration = Duration::from_micros(1);
/// The longest interval, reached beside CPU-bound neighbours.
pub const MAX_EVERY: u32 = 1024;
/// A pause away this long gave the CPU to a task with work of its own
/// (a client reading its answers gives it back well within this).
pub const LONG_AWAY: Duration = Duration::from_millis(1);

/// One thread's count of work since it last paused, and its interval.
#[derive(Debug)]
pub struct Courtesy {
    every: u32,
    served: u32,
}

impl Default for Courtesy {
    fn default() -> Self {
        Courtesy {
            every: MIN_EVERY,
            served: 0,
        }
    }
}

impl Courtesy {
    /// One connection (or mailbox, or shard) was served; true when the
    /// thread should pause now.
    pub fn served(&mut self) -> bool {
        self.served += 1;
        if self.served < self.every {
            return false;
        }
        self.served = 0;
        true
    }

    /// A pause came back after `away`.
    pub fn paused(&mut self, away: Duration) {
        self.every = if away >= LONG_AWAY {
            (self.every * 2).min(MAX_EVERY)
        } else {
            (self.every / 2).max(MIN_EVERY)
        };
    }

    /// Connections served between two pauses, now.
    pub fn every(&self) -> u32 {
        self.every
    }
}

/// The number of runnable tasks in the text of `/proc/loadavg`
/// (`0.61 0.48 0.40 3/142 9876`: the `3`).
pub fn running_tasks(loadavg: &[u8]) -> Option<u32> {
    let field = loadavg.split(|b| b.is_ascii_whitespace()).nth(3)?;
    let running = field.split(|&b| b == b'/').next()?;
    std::str::from_utf8(running).ok()?.parse().ok()
}

/// Whether some task waits for a CPU now (see the module doc): `/proc/loadavg`
/// kept open and read again at offset 0 each time.
#[derive(Debug)]
pub struct RunQueue {
    file: Option<std::fs::File>,
    cpus: u32,
}

impl Default for RunQueue {
    fn default() -> Self {
        RunQueue {
            file: std::fs::File::open("/proc/loadavg").ok(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        }
    }
}

impl RunQueue {
    /// True when more tasks are runnable than there are CPUs, or when that
    /// cannot be told.
    pub fn someone_waits(&mut self) -> bool {
        use std::os::unix::fs::FileExt;
        let Some(file) = &self.file else {
            return true;
        };
        let mut buf = [0u8; 128];
        match file.read_at(&mut buf, 0) {
            Ok(n) => running_tasks(&buf[..n]).is_none_or(|running| running > self.cpus),
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_count_is_read_from_loadavg_s_fourth_field() {
        assert_eq!(running_tasks(b"0.61 0.48 0.40 3/142 9876\n"), Some(3));
        assert_eq!(running_tasks(b"12.00 8.50 4.00 17/2048 1\n"), Some(17));
        for bad in [
            &b""[..],
            b"0.61 0.48 0.40",
            b"0.61 0.48 0.40 x/142 9",
            b"a b c /1 2",
        ] {
            assert_eq!(running_tasks(bad), None, "{bad:?}");
        }
        // This machine's file reads, and counts at least the reader.
        let mut queue = RunQueue::default();
        let text = std::fs::read("/proc/loadavg").unwrap();
        assert!(running_tasks(&text).unwrap() >= 1);
        let _ = queue.someone_waits();
    }

    fn served_until_pause(c: &mut Courtesy) -> u32 {
        (1..=MAX_EVERY + 1).find(|_| c.served()).expect("pauses")
    }

    #[test]
    fn a_thread_pauses_after_every_min_every_connections() {
        let mut c = Courtesy::default();
        for _ in 0..3 {
            assert_eq!(served_until_pause(&mut c), MIN_EVERY);
            c.paused(Duration::from_micros(50));
        }
    }

    #[test]
    fn long_pauses_back_off_to_the_maximum_and_short_ones_come_back() {
        let mut c = Courtesy::default();
        let mut seen = vec![];
        for _ in 0..8 {
            seen.push(served_until_pause(&mut c));
            c.paused(LONG_AWAY);
        }
        assert_eq!(seen, [48, 96, 192, 384, 768, 1024, 1024, 1024]);
        c.paused(Duration::from_micros(100));
        assert_eq!(c.every(), 512);
        for _ in 0..10 {
            c.paused(Duration::ZERO);
        }
        assert_eq!(served_until_pause(&mut c), MIN_EVERY);
    }

    #[test]
    fn the_count_starts_again_after_each_pause() {
        let mut c = Courtesy::default();
        for _ in 0..MIN_EVERY - 1 {
            assert!(!c.served());
        }
        assert!(c.served());
        c.paused(LONG_AWAY);
        assert_eq!(served_until_pause(&mut c), 2 * MIN_EVERY);
    }
}
