import re
from pathlib import Path

import floorbell


def workspace_version() -> str:
    cargo = (Path(__file__).resolve().parents[3] / "Cargo.toml").read_text()
    return re.search(r'^version = "([^"]+)"', cargo, re.M).group(1)


def test_version_matches_the_workspace():
    assert floorbell.version() == workspace_version()
