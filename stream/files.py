"""Files appear whole or not at all."""
from __future__ import annotations

import os
import tempfile

from .errors import LipstreamError


def _umask() -> int:
    # Read, not set-and-restore: os.umask is process-wide and other threads may be creating files.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path: str, data: bytes) -> None:
    """Write to a temporary name beside `path`, then rename: readers never see half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".part")
    except OSError as e:
        raise LipstreamError(f"cannot write {path}: {e.strerror}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make the file private to its owner
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as e:
        os.unlink(tmp)
        if isinstance(e, OSError):
            raise LipstreamError(f"cannot write {path}: {e.strerror}") from None
        raise
