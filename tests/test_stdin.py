"""Text on standard input, spoken as it arrives: an LLM's tokens piped into `lipstream render --text-file -`."""
import glob
import os
import subprocess
import sys
import threading
import time

import av
from conftest import ROOT

from stream.sources.stdin import read_pieces


def test_pieces_come_as_written_with_waits_between():
    r, w = os.pipe()

    def writer():
        for data in (b"\xef\xbb\xbfHello ", "w\u00f6".encode()[:2], "w\u00f6".encode()[2:] + b"rld.", b""):
            time.sleep(0.25)
            os.write(w, data) if data else os.close(w)

    threading.Thread(target=writer, daemon=True).start()
    got = list(read_pieces(r))
    os.close(r)
    assert "".join(p for p in got if p) == "Hello w\u00f6rld."  # the BOM dropped, a split character whole
    assert None in got  # the waits were reported: a reader can stop while the writer is silent


def _render(tmp_path):
    out = tmp_path / "said.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "-q", "render", "--text-file", "-", "-o", str(out)],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, out


def test_first_frames_are_rendered_before_stdin_closes(tmp_path):
    proc, out = _render(tmp_path)
    try:
        proc.stdin.write("Hello there, this is the first sentence. ")
        proc.stdin.flush()
        deadline = time.monotonic() + 90
        while not glob.glob(str(tmp_path / ".said.mp4.*.part")):  # the sink has frames: the file is being written
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no frame was rendered while stdin stayed open"
            time.sleep(0.05)
        assert not out.exists()
        proc.stdin.write("And this one came later.")
        proc.stdin.close()
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    finally:
        proc.kill()
    with av.open(str(out)) as f:
        assert float(f.duration) / av.time_base > 2.5  # both sentences were spoken
    assert glob.glob(str(tmp_path / ".*.part")) == []


def test_empty_stdin_is_one_line_and_no_file(tmp_path):
    proc, out = _render(tmp_path)
    _, err = proc.communicate(" \n ", timeout=120)
    assert proc.returncode == 2
    assert err.strip() == "lipstream: error: empty text on standard input: nothing to say"
    assert os.listdir(tmp_path) == []
