"""What a C-ABI call acknowledged survives kill -9 (SPEC §0): a child
process publishes, prints the hash and SIGKILLs itself; the test reopens the
directory and finds the event."""

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import floorbell
from _support import CONFIG, HASH

PACKAGE_DIR = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, sys.argv[1])
    import floorbell
    fb = floorbell.Engine(sys.argv[2], sys.argv[3])
    h = fb.publish_event({"code": "waiter_call", "table": 9})
    print(h, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_published_event_survives_sigkill(tmp_path):
    data = tmp_path / "data"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(PACKAGE_DIR), str(data), CONFIG],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stderr)
    h = child.stdout.strip()
    assert HASH.fullmatch(h), (child.stdout, child.stderr)

    with floorbell.Engine(data, CONFIG) as fb:
        found = [e for e in fb.events_since()["data"]["updates"] if e["hash"] == h]
        assert len(found) == 1, fb.events_since()
        assert found[0]["code"] == "waiter_call" and found[0]["table"] == 9
