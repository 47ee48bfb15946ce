//! Starting and stopping the event loop: one listening socket, one
//! [`Hub`] (the shared poll and connection table) and `--reactors` threads
//! serving it. Used by `floorbell serve`
//! and, through the C ABI, by a host program that serves from inside itself.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use socket2::{Domain, Protocol, Socket, Type};

use crate::discovery::Announcement;
use crate::engine::Engine;
use crate::reactor::{ConnectionCap, Hub, Mailbox, ReactorMsg};

/// Pending connections the kernel queues per listening socket before
/// accept: enough for a burst of thousands of displays reconnecting at once.
const LISTEN_BACKLOG: i32 = 4096;

/// A running event loop.
pub struct Server {
    addr: SocketAddr,
    /// The event loop's mailbox (one; a `Vec` for [`Engine::set_reactors`]).
    mailboxes: Vec<Arc<Mailbox>>,
    threads: Vec<JoinHandle<()>>,
    /// Set once started, to detach the reactors on stop.
    engine: Option<Arc<Engine>>,
    /// The DNS-SD announcement (SPEC §3.7), withdrawn on stop.
    announcement: Option<Announcement>,
}

fn listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // `[::]` takes IPv4 too, whatever the system's default
        // (`net.ipv6.bindv6only`, Windows): discovery announces this
        // host's IPv4 addresses for it.
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

impl Server {
    /// Binds `addr` (port 0 picks one) and starts `reactors` threads
    /// serving the event loop.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound or a thread cannot start.
    pub fn start(engine: Arc<Engine>, addr: SocketAddr, reactors: usize) -> io::Result<Server> {
        let socket = listener(addr)?;
        let addr = socket.local_addr()?;
        let wanted = engine.config().max_connections;
        let open_file_limit = crate::fdlimit::current();
        let max = crate::fdlimit::cap(wanted, open_file_limit);
        if max < wanted {
            tracing::warn!(
                max_connections = wanted,
                open_file_limit,
                serving_at_most = max,
                "the open-file limit allows fewer connections than --max-connections \
                 (raise it with `ulimit -n` or LimitNOFILE=)"
            );
        }
        let cap = Arc::new(ConnectionCap::new(max));
        let threads = reactors.max(1);
        let (hub, mailbox) = Hub::new(socket, Arc::clone(&engine), cap, threads)?;
        let mut server = Server {
            addr,
            mailboxes: vec![mailbox],
            threads: Vec::new(),
            engine: None,
            announcement: None,
        };
        // The CPUs this process may run on (its affinity mask), when pinned.
        let cpus = if engine.config().pin_reactors {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        for i in 0..threads {
            let cpu = (!cpus.is_empty()).then(|| cpus[i % cpus.len()]);
            let worker_hub = Arc::clone(&hub);
            let thread = std::thread::Builder::new()
                .name(format!("floorbell-reactor-{i}"))
                .spawn(move || {
                    crate::sockio::block_sigpipe_here();
                    if let Some(cpu) = cpu {
                        // A refusal (a restricted container) only costs the
                        // pinning: the loop runs unpinned.
                        if !core_affinity::set_for_current(cpu) {
                            tracing::warn!(
                                reactor = i,
                                cpu = cpu.id,
                                "could not pin the event loop"
                            );
                        }
                    }
                    worker_hub.run()
                });
            match thread {
                Ok(t) => server.threads.push(t),
                Err(e) => {
                    // The threads that run must know they are all there is:
                    // the last of them closes the connections.
                    hub.never_started(threads - i);
                    server.stop();
                    return Err(e);
                }
            }
        }
        engine.set_reactors(server.mailboxes.clone());
        if engine.config().mdns {
            // Discovery is a convenience: a network without multicast must
            // not keep the server from serving, so a failure is logged.
            match Announcement::start(addr, env!("CARGO_PKG_VERSION")) {
                Ok(a) => {
                    tracing::info!(
                        instance = a.instance(),
                        "announced by DNS-SD as _tracker-http._tcp"
                    );
                    server.announcement = Some(a);
                }
                Err(e) => tracing::warn!(error = %e, "cannot announce by DNS-SD (mDNS)"),
            }
        }
        server.engine = Some(engine);
        Ok(server)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets the event loop finish the answers it owes (up to
    /// a grace period), and waits for the threads.
    pub fn stop(&mut self) {
        if let Some(a) = self.announcement.take() {
            a.shutdown();
        }
        for m in &self.mailboxes {
            m.post(ReactorMsg::Shutdown);
            m.wake();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.mailboxes.clear();
        if let Some(engine) = self.engine.take() {
            engine.set_reactors(Vec::new());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[::]` is dual-stack even where sockets default to IPv6 only.
    #[test]
    fn the_ipv6_wildcard_takes_ipv4_clients() {
        let Ok(l) = listener("[::]:0".parse().unwrap()) else {
            eprintln!("no IPv6 here; skipped");
            return;
        };
        let socket = socket2::SockRef::from(&l);
        assert!(!socket.only_v6().unwrap());
        let port = l.local_addr().unwrap().port();
        std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    }
}
