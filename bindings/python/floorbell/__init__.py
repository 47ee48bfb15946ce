"""floorbell for Python: a pure-ctypes binding of the C ABI (include/floorbell.h).

The shared library is found through the FLOORBELL_LIB environment variable,
else in the workspace's target/release or target/debug folder, else by the
system loader (libfloorbell.so on its search path).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

__all__ = ["version", "load_library"]

_ROOT = Path(__file__).resolve().parents[3]


def _candidates() -> list[str]:
    env = os.environ.get("FLOORBELL_LIB")
    if env:
        return [env]
    found = [str(_ROOT / "target" / kind / "libfloorbell.so") for kind in ("debug", "release")]
    return [p for p in found if Path(p).exists()] + ["libfloorbell.so"]


def load_library() -> ctypes.CDLL:
    """Loads libfloorbell and declares the signatures of its functions."""
    errors = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            break
        except OSError as e:
            errors.append(f"{path}: {e}")
    else:
        raise OSError("cannot load libfloorbell: " + "; ".join(errors))
    lib.floorbell_version.argtypes = []
    lib.floorbell_version.restype = ctypes.c_char_p
    return lib


_lib: ctypes.CDLL | None = None


def _library() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        _lib = load_library()
    return _lib


def version() -> str:
    """The library's version, ``MAJOR.MINOR.PATCH``."""
    return _library().floorbell_version().decode("utf-8")
