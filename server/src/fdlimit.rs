//! The open-file limit, and how many connections fit in it.
//!
//! Every connection is a file descriptor, and so are the store's files, the
//! event log's segments, webhook sockets and the poll. A connection cap
//! above the process's `RLIMIT_NOFILE` (often a soft 1,024 against the
//! default `--max-connections` of 50,000) would let `accept` fail with
//! `EMFILE` before the cap answers 503, and the store could then fail to
//! open its next log segment. So the server raises its soft limit to the
//! hard one at start (as Go's runtime and nginx's `worker_rlimit_nofile`
//! do), and the connection cap never exceeds what the limit leaves after a
//! reserve for those other files.

/// Descriptors kept for everything that is not a connection (at most; a
/// quarter of a small limit).
pub const RESERVED: u64 = 128;

/// The connections that fit in an open-file limit of `limit`, besides the
/// reserve.
pub fn connections_within(limit: u64) -> usize {
    let reserve = RESERVED.min(limit / 4);
    usize::try_from(limit.saturating_sub(reserve)).unwrap_or(usize::MAX)
}

/// The soft open-file limit now in force (`None`: unlimited).
pub fn current() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Raises the soft open-file limit to the hard one; the soft limit then in
/// force. For the `floorbell` binary: a library leaves its host's limits
/// alone.
pub fn raise() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            // The connection cap follows the lower limit (`cap`); say why.
            tracing::warn!(
                error = %e,
                soft = ?limit.current,
                hard = ?limit.maximum,
                "cannot raise the open-file limit to its hard limit"
            );
        }
    }
    current()
}

/// `max_connections` lowered to what an open-file limit of `limit` allows.
pub fn cap(max_connections: usize, limit: Option<u64>) -> usize {
    limit.map_or(max_connections, |l| {
        max_connections.min(connections_within(l))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_is_kept_for_the_other_files() {
        assert_eq!(connections_within(1024), 896);
        assert_eq!(connections_within(1 << 20), (1 << 20) - 128);
        assert_eq!(connections_within(200), 150);
        assert_eq!(connections_within(0), 0);
    }

    #[test]
    fn the_cap_is_the_lower_of_the_flag_and_the_limit() {
        assert_eq!(cap(50_000, Some(1024)), 896);
        assert_eq!(cap(100, Some(1024)), 100);
        assert_eq!(cap(50_000, None), 50_000);
    }
}
