//! Zero-configuration discovery (SPEC §3.7): the server announces itself by
//! multicast DNS-SD as `_tracker-http._tcp` on its HTTP port, instance name
//! `floorbell-HOSTNAME`, unless `--no-mdns`.
//!
//! [`Announcement`] wraps an `mdns-sd` daemon, which runs on a thread of its
//! own and answers queries by itself; the reactor never sees it. It is
//! started once the listener is bound (it needs the real port) and withdrawn
//! on shutdown: [`Announcement::shutdown`] (or dropping it) sends the
//! goodbye packets (RFC 6762 §10.1, TTL 0) so browsers forget the server at
//! once instead of after the records' TTL.
//!
//! Where it is announced follows the listen address:
//!
//! * a loopback address (`127.0.0.0/8`, `::1`): only on the loopback
//!   interface, with that address — a server nobody else can reach is not
//!   advertised to the LAN;
//! * `0.0.0.0`: on every IPv4 interface, each answering with its own
//!   addresses. SPEC gap: IPv6 interfaces are left out, since a socket bound
//!   to `0.0.0.0` takes no IPv6 connection and an AAAA record would send
//!   clients to a closed port;
//! * `::`: on every interface, IPv4 and IPv6 (a dual-stack socket);
//! * any other address: only on the interface that holds it, with that
//!   address.
//!
//! What was seen on Linux (captured with tcpdump in a private network
//! namespace holding `lo` and a veth pair):
//!
//! * IPv4 on `lo` works as is: the loopback device needs no `multicast on`
//!   flag, and a browser bound to 127.0.0.1 (Python `zeroconf`) finds the
//!   service and sees it removed by the goodbye.
//! * IPv6 on `lo` cannot work: Linux turns any route via the loopback device
//!   into a reject route, so sending to `ff02::fb` there fails with
//!   `ENETUNREACH` (flag or not). Listening on `::1` announces nothing.
//! * `mdns-sd` 0.21 joins the mDNS group on every interface when its daemon
//!   starts and only then applies the interface selection (its first
//!   commands), so even a loopback-only announcement makes the kernel send
//!   one IGMP join and leave on the other interfaces. No mDNS packet of ours
//!   goes there.
//! * A browser on the same machine may also hear answers sent on other
//!   interfaces (Linux's `IP_MULTICAST_ALL` delivers looped-back multicast to
//!   every socket of the group), so a same-host browser is no proof of which
//!   interfaces were used; a packet capture is.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo, UnregisterStatus};

/// The DNS-SD service type (SPEC §3.7), fully qualified as mDNS wants it.
pub const SERVICE_TYPE: &str = "_tracker-http._tcp.local.";
/// The instance name is this followed by the sanitized host name.
pub const INSTANCE_PREFIX: &str = "floorbell-";
/// The TXT key carrying the server's version (`version=X.Y.Z`).
pub const TXT_VERSION_KEY: &str = "version";

/// Longest DNS label (RFC 1035 §2.3.4); the instance name is kept within
/// it so that it is also a valid host label (`floorbell-HOST.local.`).
const MAX_LABEL_LEN: usize = 63;
/// How long to wait for the daemon to confirm the unregistration (it sends
/// the first goodbye packet before confirming).
const UNREGISTER_WAIT: Duration = Duration::from_secs(1);
/// `mdns-sd` repeats the goodbye 120 ms after the first; wait for that
/// before stopping the daemon, so a browser that missed one gets the other.
const GOODBYE_REPEAT_WAIT: Duration = Duration::from_millis(200);
/// How long to wait for the daemon thread to stop.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// A running DNS-SD announcement; withdrawn by [`Announcement::shutdown`] or
/// when dropped.
pub struct Announcement {
    /// The daemon (its own thread); `None` once withdrawn.
    daemon: Option<ServiceDaemon>,
    /// `floorbell-HOST._tracker-http._tcp.local.`: the name to unregister.
    fullname: String,
    /// `floorbell-HOST`, for the log line.
    instance: String,
}

impl Announcement {
    /// Starts announcing `floorbell-HOSTNAME` as [`SERVICE_TYPE`] on
    /// `listen`'s port, with TXT `version=VERSION`, on the interfaces that
    /// `listen`'s address implies (see the module docs).
    ///
    /// `listen` must be the *bound* address (after `--listen …:0` is
    /// resolved to a real port). Returns once the daemon has the
    /// registration; the announcement packets follow on its thread.
    ///
    /// # Errors
    ///
    /// A message for the log when the port is 0, the host name or version
    /// cannot form a DNS-SD record, or the daemon cannot start. Failures to
    /// open the multicast sockets happen later on the daemon's thread and
    /// are not reported here (the server works on without discovery).
    pub fn start(listen: SocketAddr, version: &str) -> Result<Announcement, String> {
        if listen.port() == 0 {
            return Err("mDNS: cannot announce port 0; pass the bound address".into());
        }
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let instance = instance_name(&host);

        let daemon = ServiceDaemon::new().map_err(|e| format!("mDNS: cannot start: {e}"))?;
        match register(&daemon, listen, &instance, version) {
            Ok(fullname) => Ok(Announcement {
                daemon: Some(daemon),
                fullname,
                instance,
            }),
            Err(e) => {
                // Stops the daemon thread (nothing is registered).
                drop(Announcement {
                    daemon: Some(daemon),
                    fullname: String::new(),
                    instance,
                });
                Err(e)
            }
        }
    }

    /// The instance name announced, `floorbell-HOST`.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The full service name, `floorbell-HOST._tracker-http._tcp.local.`.
    pub fn fullname(&self) -> &str {
        &self.fullname
    }

    /// Withdraws the announcement (goodbye packets, about 0.2 s) and stops
    /// the daemon. Dropping does the same.
    pub fn shutdown(mut self) {
        self.withdraw();
    }

    fn withdraw(&mut self) {
        let Some(daemon) = self.daemon.take() else {
            return;
        };
        if !self.fullname.is_empty() {
            if let Ok(status) = daemon.unregister(&self.fullname) {
                if let Ok(UnregisterStatus::OK) = status.recv_timeout(UNREGISTER_WAIT) {
                    std::thread::sleep(GOODBYE_REPEAT_WAIT);
                }
            }
        }
        if let Ok(status) = daemon.shutdown() {
            let _ = status.recv_timeout(SHUTDOWN_WAIT);
        }
    }
}

impl std::fmt::Debug for Announcement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcement")
            .field("fullname", &self.fullname)
            .field("running", &self.daemon.is_some())
            .finish()
    }
}

impl Drop for Announcement {
    fn drop(&mut self) {
        self.withdraw();
    }
}

/// Selects the interfaces `listen` implies, then registers the service;
/// returns its full name.
fn register(
    daemon: &ServiceDaemon,
    listen: SocketAddr,
    instance: &str,
    version: &str,
) -> Result<String, String> {
    let select = |kind: IfKind, enable: bool| {
        let done = if enable {
            daemon.enable_interface(kind)
        } else {
            daemon.disable_interface(kind)
        };
        done.map_err(|e| format!("mDNS: cannot select interfaces: {e}"))
    };
    // The A/AAAA records' name: our own, so that we never answer for the
    // machine's name (a system responder may own it).
    let host_name = format!("{instance}.local.");
    let props: &[(&str, &str)] = &[(TXT_VERSION_KEY, version)];
    let ip = listen.ip();
    let info = if ip.is_unspecified() {
        if ip.is_ipv4() {
            select(IfKind::IPv6, false)?;
        }
        ServiceInfo::new(SERVICE_TYPE, instance, &host_name, (), listen.port(), props)
            .map(ServiceInfo::enable_addr_auto)
    } else {
        let only = match ip {
            IpAddr::V4(v4) if v4.is_loopback() => IfKind::LoopbackV4,
            IpAddr::V6(v6) if v6.is_loopback() => IfKind::LoopbackV6,
            _ => IfKind::Addr(ip),
        };
        select(IfKind::All, false)?;
        select(only, true)?;
        ServiceInfo::new(SERVICE_TYPE, instance, &host_name, ip, listen.port(), props)
    }
    .map_err(|e| format!("mDNS: bad service record: {e}"))?;

    let fullname = info.get_fullname().to_owned();
    daemon
        .register(info)
        .map_err(|e| format!("mDNS: cannot register {fullname}: {e}"))?;
    Ok(fullname)
}

/// `floorbell-` and the host name's first label made a DNS label: ASCII
/// letters (their case kept, as the host name shows it; DNS compares
/// without case) and digits; any run of other characters becomes one `-`;
/// no `-` at either end; cut to fit 63 bytes; `host` if nothing is left.
pub fn instance_name(hostname: &str) -> String {
    let first = hostname.split('.').next().unwrap_or("");
    let mut label = String::new();
    for c in first.chars() {
        if c.is_ascii_alphanumeric() {
            label.push(c);
        } else if !label.is_empty() && !label.ends_with('-') {
            label.push('-');
        }
    }
    label.truncate(MAX_LABEL_LEN - INSTANCE_PREFIX.len());
    let label = label.trim_end_matches('-');
    let label = if label.is_empty() { "host" } else { label };
    format!("{INSTANCE_PREFIX}{label}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_dns_labels() {
        assert_eq!(instance_name("vm"), "floorbell-vm");
        assert_eq!(instance_name("POS-01.lan"), "floorbell-POS-01");
        assert_eq!(instance_name("Kitchen PC (2)"), "floorbell-Kitchen-PC-2");
        assert_eq!(instance_name("--x__y--"), "floorbell-x-y");
        assert_eq!(instance_name("café"), "floorbell-caf");
        assert_eq!(instance_name(""), "floorbell-host");
        assert_eq!(instance_name("...."), "floorbell-host");
        assert_eq!(instance_name("ünï"), "floorbell-n");
        let long = instance_name(&format!("{}-{}", "a".repeat(52), "b".repeat(20)));
        assert_eq!(long, format!("floorbell-{}", "a".repeat(52)));
        assert!(long.len() <= 63);
    }

    #[test]
    fn port_zero_is_refused() {
        let err = Announcement::start("127.0.0.1:0".parse().unwrap(), "0.1.0").unwrap_err();
        assert!(err.contains("port 0"), "{err}");
    }

    /// Announces on 127.0.0.1 and browses for it with Python's `zeroconf`
    /// (`pip install zeroconf`), bound to 127.0.0.1 only; then withdraws and
    /// waits for the browser to see the service go. Ignored by default: it
    /// needs Python with `zeroconf` and port 5353. Run it as root in a
    /// network namespace of its own, so that not even the daemon's IGMP join
    /// leaves the machine (`lo` needs no `multicast on`):
    ///
    /// ```text
    /// unshare -n sh -c 'ip link set lo up &&
    ///   cargo test --offline -p floorbell-server discovery -- --ignored'
    /// ```
    #[test]
    #[ignore = "needs python3 + zeroconf and multicast on lo"]
    fn browsed_by_python_zeroconf_on_loopback() {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        use std::sync::mpsc;

        const BROWSER: &str = r#"
import json, sys, threading
from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf
want = sys.argv[1].lower()
done = threading.Event()
def on_change(zeroconf, service_type, name, state_change):
    if name.lower() != want:
        return
    if state_change is ServiceStateChange.Added:
        info = zeroconf.get_service_info(service_type, name, timeout=3000)
        if info is None:
            print("NOINFO", flush=True)
            return
        print("FOUND " + json.dumps({
            "port": info.port,
            "addresses": info.parsed_addresses(),
            "server": info.server,
            "txt": {k.decode(): (v or b"").decode() for k, v in info.properties.items()},
        }), flush=True)
    elif state_change is ServiceStateChange.Removed:
        print("REMOVED", flush=True)
        done.set()
zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
ServiceBrowser(zc, "_tracker-http._tcp.local.", handlers=[on_change])
done.wait(20)
zc.close()
"#;

        let announcement = Announcement::start("127.0.0.1:18123".parse().unwrap(), "9.8.7")
            .expect("announcement starts");
        let fullname = announcement.fullname().to_owned();
        assert!(fullname.starts_with(INSTANCE_PREFIX));
        assert!(fullname.ends_with(&format!(".{SERVICE_TYPE}")));

        let mut child = Command::new("python3")
            .args(["-c", BROWSER, &fullname])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(15));
        let Ok(line) = line else {
            let _ = child.kill();
            let _ = child.wait();
            match line {
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the browser did not find {fullname} within 15 s")
                }
                _ => panic!("the browser exited without finding {fullname} (see its stderr)"),
            }
        };
        let found = line.strip_prefix("FOUND ").unwrap_or_else(|| {
            let _ = child.kill();
            panic!("unexpected browser output: {line}")
        });
        assert!(found.contains(r#""port": 18123"#), "{found}");
        assert!(found.contains(r#""addresses": ["127.0.0.1"]"#), "{found}");
        assert!(found.contains(r#""version": "9.8.7""#), "{found}");
        assert!(
            found.contains(&format!(
                r#""server": "{}.local.""#,
                announcement.instance()
            )),
            "{found}"
        );

        announcement.shutdown();
        let gone = rx.recv_timeout(Duration::from_secs(10));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            gone.as_deref(),
            Ok("REMOVED"),
            "the goodbye reached the browser"
        );
    }
}
