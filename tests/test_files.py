"""Files appear whole or not at all, even when the disk refuses the write half-way."""
import subprocess
import sys

from conftest import ROOT


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    target.write_bytes(b"old contents")
    code = f"""
import resource, signal, sys
from stream.errors import LipstreamError
from stream.files import write_atomically
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails (EFBIG) instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
try:
    write_atomically({str(target)!r}, b"x" * 100_000)
except LipstreamError as e:
    print("refused:", e)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("refused: cannot write") and "File too large" in proc.stdout
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_a_written_file_gets_the_mode_a_plain_create_would(tmp_path):
    import os

    from stream.files import write_atomically

    mask = os.umask(0o027)
    os.umask(mask)
    path = tmp_path / "f.bin"
    write_atomically(str(path), b"data")
    assert path.read_bytes() == b"data" and (path.stat().st_mode & 0o777) == 0o666 & ~mask
