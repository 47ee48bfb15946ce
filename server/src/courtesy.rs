//! When an event-loop thread gives its CPU away of its own accord.
//!
//! Under load the event loop always has a ready connection, so its threads
//! never block: they run until the kernel takes the CPU back at the end of
//! their time slice (1.4 ms on two cores, rounded up to the next 4 ms tick
//! on a `HZ=250`, `PREEMPT_NONE` kernel). On a machine the server shares
//! with its clients (the POS program, a kiosk's browser, a load generator),
//! a client woken by its answer waits that long for a CPU to read it, and
//! that wait is part of every latency the client sees. So a thread yields
//! (`sched_yield`) after every [`MIN_EVERY`] connections it has served: a
//! client that was woken meanwhile runs now, and the thread is back as soon
//! as the client blocks again (a yield with nobody waiting returns at once).
//!
//! A yield hands the CPU to whoever the scheduler owes it, and that can be
//! a task with work of its own (a build, a report): then the thread is away
//! for a whole slice and its queue waits. A yield that was away at least
//! [`LONG_AWAY`] doubles the interval (up to [`MAX_EVERY`]); a short one
//! halves it again. So beside CPU-bound neighbours the threads yield rarely
//! and keep their share, and beside clients they yield often.
//!
//! [`Courtesy`] holds that policy and nothing else: it is told what happened
//! and answers when to yield; the event loop does the yielding.

use std::time::Duration;

/// Connections served between two yields while yields come back quickly.
pub const MIN_EVERY: u32 = 32;
/// The longest interval, reached beside CPU-bound neighbours.
pub const MAX_EVERY: u32 = 1024;
/// A yield away this long gave the CPU to a task with work of its own
/// (a client reading its answers gives it back well within this).
pub const LONG_AWAY: Duration = Duration::from_millis(1);

/// One thread's count of work since it last yielded, and its interval.
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
    /// thread should yield now.
    pub fn served(&mut self) -> bool {
        self.served += 1;
        if self.served < self.every {
            return false;
        }
        self.served = 0;
        true
    }

    /// A yield came back after `away`.
    pub fn yielded(&mut self, away: Duration) {
        self.every = if away >= LONG_AWAY {
            (self.every * 2).min(MAX_EVERY)
        } else {
            (self.every / 2).max(MIN_EVERY)
        };
    }

    /// Connections served between two yields, now.
    pub fn every(&self) -> u32 {
        self.every
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served_until_yield(c: &mut Courtesy) -> u32 {
        (1..=MAX_EVERY + 1).find(|_| c.served()).expect("yields")
    }

    #[test]
    fn a_thread_yields_after_every_min_every_connections() {
        let mut c = Courtesy::default();
        for _ in 0..3 {
            assert_eq!(served_until_yield(&mut c), MIN_EVERY);
            c.yielded(Duration::from_micros(50));
        }
    }

    #[test]
    fn long_yields_back_off_to_the_maximum_and_short_ones_come_back() {
        let mut c = Courtesy::default();
        let mut seen = vec![];
        for _ in 0..8 {
            seen.push(served_until_yield(&mut c));
            c.yielded(LONG_AWAY);
        }
        assert_eq!(seen, [32, 64, 128, 256, 512, 1024, 1024, 1024]);
        c.yielded(Duration::from_micros(100));
        assert_eq!(c.every(), 512);
        for _ in 0..10 {
            c.yielded(Duration::ZERO);
        }
        assert_eq!(served_until_yield(&mut c), MIN_EVERY);
    }

    #[test]
    fn the_count_starts_again_after_each_yield() {
        let mut c = Courtesy::default();
        for _ in 0..MIN_EVERY - 1 {
            assert!(!c.served());
        }
        assert!(c.served());
        c.yielded(LONG_AWAY);
        assert_eq!(served_until_yield(&mut c), 2 * MIN_EVERY);
    }
}
