# Makes the in-tree package (and the tests' helpers) importable for pytest
# without installing anything, and gives the binding tests their fixtures.
import faulthandler
import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
sys.path.insert(0, str(_HERE / "tests"))

import floorbell  # noqa: E402
from _support import CONFIG  # noqa: E402

# No test may hang: past this, every thread's stack is dumped and the run ends.
TEST_TIMEOUT_SECS = 90


@pytest.fixture(autouse=True)
def _watchdog():
    faulthandler.dump_traceback_later(TEST_TIMEOUT_SECS, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def engine(tmp_path):
    """An engine on a fresh data directory, closed after the test."""
    with floorbell.Engine(tmp_path / "data", CONFIG) as fb:
        yield fb
