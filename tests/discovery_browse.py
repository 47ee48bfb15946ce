"""Browses `_tracker-http._tcp.local.` (SPEC §3.7) with python-zeroconf on
127.0.0.1 (IPv4 only) for one instance, for tests/discovery.rs.

    python3 tests/discovery_browse.py INSTANCE FIND_SECS GONE_SECS

Prints one line per event, flushed:

    READY                     the browser is running
    FOUND {"port":…,"addresses":[…],"server":…,"txt":{…}}
    REMOVED                   the instance went away (its goodbye)
    NOTFOUND                  nothing within FIND_SECS; then, after a
                              self-test that announces a service of its own
                              on 127.0.0.1 and browses for it:
    SELFTEST ok | SELFTEST failed: WHY
    NOTREMOVED                still there GONE_SECS after FOUND
    NOZEROCONF WHY            the `zeroconf` package cannot be imported

Exit status 0 after REMOVED, 1 otherwise. Never runs longer than about
FIND_SECS + GONE_SECS + 10 s.
"""

import json
import os
import socket
import sys
import threading

try:
    from zeroconf import (
        IPVersion,
        ServiceBrowser,
        ServiceInfo,
        ServiceStateChange,
        Zeroconf,
    )
except Exception as e:  # noqa: BLE001 - any import failure is reported
    print(f"NOZEROCONF {e!r}", flush=True)
    sys.exit(1)

SERVICE_TYPE = "_tracker-http._tcp.local."


def out(line):
    print(line, flush=True)


def self_test():
    """Whether multicast DNS works on 127.0.0.1 at all: one Zeroconf
    announces a service, another browses for it."""
    probe_type = "_floorbell-probe._tcp.local."
    probe_name = f"probe-{os.getpid()}.{probe_type}"
    seen = threading.Event()
    announcer = browser_zc = None
    try:
        announcer = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        browser_zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        info = ServiceInfo(
            probe_type,
            probe_name,
            addresses=[socket.inet_aton("127.0.0.1")],
            port=9,
            server=f"probe-{os.getpid()}.local.",
        )

        # python-zeroconf calls handlers with these keyword arguments.
        def on_change(zeroconf, service_type, name, state_change):
            if name.lower() == probe_name.lower() and state_change is ServiceStateChange.Added:
                seen.set()

        ServiceBrowser(browser_zc, probe_type, handlers=[on_change])
        announcer.register_service(info, cooperating_responders=True)
        if seen.wait(8):
            return "SELFTEST ok"
        return "SELFTEST failed: a service announced on 127.0.0.1 was not seen by a browser there"
    except Exception as e:  # noqa: BLE001 - reported to the test
        return f"SELFTEST failed: {e!r}"
    finally:
        for zc in (announcer, browser_zc):
            if zc is not None:
                try:
                    zc.close()
                except Exception:  # noqa: BLE001
                    pass


def main():
    want = f"{sys.argv[1]}.{SERVICE_TYPE}".lower()
    find_secs = float(sys.argv[2])
    gone_secs = float(sys.argv[3])
    found = threading.Event()
    removed = threading.Event()

    def on_change(zeroconf, service_type, name, state_change):
        if name.lower() != want:
            return
        if state_change is ServiceStateChange.Added:
            info = zeroconf.get_service_info(service_type, name, timeout=3000)
            if info is None:
                out("NOINFO")
                return
            out(
                "FOUND "
                + json.dumps(
                    {
                        "name": name,
                        "port": info.port,
                        "addresses": info.parsed_addresses(),
                        "server": info.server,
                        "txt": {
                            k.decode(): (v or b"").decode()
                            for k, v in info.properties.items()
                        },
                    }
                )
            )
            found.set()
        elif state_change is ServiceStateChange.Removed:
            out("REMOVED")
            removed.set()

    try:
        zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    except Exception as e:  # noqa: BLE001 - reported to the test
        out(f"NOTFOUND cannot open an mDNS socket on 127.0.0.1: {e!r}")
        out(self_test())
        return 1
    try:
        ServiceBrowser(zc, SERVICE_TYPE, handlers=[on_change])
        out("READY")
        if not found.wait(find_secs):
            out("NOTFOUND")
            zc.close()
            zc = None
            out(self_test())
            return 1
        if not removed.wait(gone_secs):
            out("NOTREMOVED")
            return 1
        return 0
    finally:
        if zc is not None:
            zc.close()


if __name__ == "__main__":
    sys.exit(main())
