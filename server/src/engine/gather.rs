//! When the store writer stops gathering a batch and commits it.
//!
//! Plain group commit ("take what is queued, commit it") splits a steady set
//! of publishers into two groups that alternate: the changes answered by one
//! commit come back while the next commit is already under way, so each
//! waits for a whole commit before its own starts, and every fsync serves
//! only half of the publishers (measured: 64 connections settled at batches
//! of ~33). The cure is the one databases use (PostgreSQL's `commit_delay`):
//! after a commit that answered `n` changes, expect their senders back and
//! keep gathering until `n` changes are queued or a short deadline passes.
//!
//! The deadline is at most half of the last commit's duration (never more
//! than [`MAX_GATHER`]), so on a fast disk the wait shrinks with the commit,
//! and a wait that is not repaid costs at most half a commit once. A lone
//! publisher is never delayed: it answered one change, and its next change
//! completes the expected count the moment it arrives.
//!
//! Sans-I/O: the writer tells it what happened and asks what to do.

use std::time::{Duration, Instant};

/// The longest a batch waits for the senders of the last one.
pub const MAX_GATHER: Duration = Duration::from_millis(2);

/// The writer's memory of its last commit.
#[derive(Debug, Clone, Copy)]
pub struct Gather {
    /// Changes answered by the last commit: senders expected back.
    expected: usize,
    /// Until when it is worth waiting for them.
    until: Instant,
}

impl Gather {
    /// Nothing committed yet: nothing to wait for.
    pub fn new(now: Instant) -> Gather {
        Gather {
            expected: 0,
            until: now,
        }
    }

    /// A commit of `changes` changes that took `took` has just been
    /// answered, at `now`.
    pub fn committed(&mut self, changes: usize, took: Duration, now: Instant) {
        self.expected = changes;
        self.until = now + (took / 2).min(MAX_GATHER);
    }

    /// With `gathered` changes in hand at `now`: `None` to commit now, or the
    /// instant until which to keep receiving (committing as soon as
    /// [`Gather::enough`] says so).
    pub fn wait_until(&self, gathered: usize, now: Instant) -> Option<Instant> {
        (gathered > 0 && !self.enough(gathered) && now < self.until).then_some(self.until)
    }

    /// Whether `gathered` changes are as many as the last commit answered.
    pub fn enough(&self, gathered: usize) -> bool {
        gathered >= self.expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn nothing_committed_yet_commits_at_once() {
        let t = Instant::now();
        let g = Gather::new(t);
        assert_eq!(g.wait_until(1, t), None);
    }

    #[test]
    fn waits_for_the_senders_of_the_last_batch() {
        let t = Instant::now();
        let mut g = Gather::new(t);
        g.committed(64, 2 * MS, t);
        // Half of them are queued: wait for the rest, up to half a commit.
        assert_eq!(g.wait_until(32, t), Some(t + MS));
        assert_eq!(g.wait_until(63, t + MS / 2), Some(t + MS));
        // All back: commit.
        assert_eq!(g.wait_until(64, t + MS / 2), None);
        assert_eq!(g.wait_until(100, t), None);
        // Deadline passed: commit what is there.
        assert_eq!(g.wait_until(32, t + MS), None);
    }

    #[test]
    fn a_lone_publisher_is_not_delayed() {
        let t = Instant::now();
        let mut g = Gather::new(t);
        g.committed(1, 4 * MS, t);
        assert_eq!(g.wait_until(1, t + MS / 10), None);
    }

    #[test]
    fn an_empty_batch_is_not_a_reason_to_wait() {
        let t = Instant::now();
        let mut g = Gather::new(t);
        g.committed(10, 4 * MS, t);
        assert_eq!(g.wait_until(0, t), None);
    }

    #[test]
    fn the_wait_is_bounded_on_a_slow_disk() {
        let t = Instant::now();
        let mut g = Gather::new(t);
        g.committed(64, 100 * MS, t);
        assert_eq!(g.wait_until(1, t), Some(t + MAX_GATHER));
    }
}
