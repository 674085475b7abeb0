"""Files appear whole or not at all."""
from __future__ import annotations

import io
import logging
import os
import tempfile

from .errors import LipstreamError

log = logging.getLogger("lipstream")


def cache_root() -> str:
    """lipstream's cache: $LIPSTREAM_CACHE, else $XDG_CACHE_HOME/lipstream or ~/.cache/lipstream."""
    return os.environ.get("LIPSTREAM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lipstream")


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


def temporary_beside(path: str) -> str:
    """A new empty file next to `path` (same folder, so the final rename is atomic), with the mode
    a plain create would give; `commit` renames it over `path`, `discard` removes it."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".part")
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make the file private to its owner
        os.close(fd)
    except OSError as e:
        raise LipstreamError(f"cannot write {path}: {e.strerror}") from None
    return tmp


def commit(tmp: str, path: str) -> None:
    try:
        os.replace(tmp, path)
    except OSError as e:
        discard(tmp)
        raise LipstreamError(f"cannot write {path}: {e.strerror}") from None


def discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def write_atomically(path: str, data: bytes) -> None:
    """Write to a temporary name beside `path`, then rename: readers never see half a file."""
    tmp = temporary_beside(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
    except BaseException as e:
        discard(tmp)
        if isinstance(e, OSError):
            raise LipstreamError(f"cannot write {path}: {e.strerror}") from None
        raise
    commit(tmp, path)


OUTPUT_KINDS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".h264", "-")  # the containers of sinks/file.py; - is stdout


def save_cache(path: str, what: str, **arrays) -> None:
    """`arrays` as an .npz at `path`, atomically; a read-only or full cache only costs time (one warning)."""
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomically(path, buf.getvalue())
    except (OSError, LipstreamError) as e:
        log.warning("%s cache not written (%s)", what, e)


def output_kind(path: str) -> str:
    """The output's extension (lower case), or - for standard output; one the sinks cannot write is an error."""
    kind = "-" if path == "-" else os.path.splitext(path)[1].lower()
    if kind not in OUTPUT_KINDS:
        raise LipstreamError(f"output {path} must end in .mp4, .m4v, .mov, .mkv, .webm or .h264 (or be - for standard output)")
    return kind


def check_writable(path: str) -> None:
    """Fail before any work if `path` cannot be created."""
    if output_kind(path) == "-":
        return
    if os.path.isdir(path):
        raise LipstreamError(f"output {path} is a directory")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise LipstreamError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise LipstreamError(f"cannot write {path}: permission denied")
