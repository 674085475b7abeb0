"""The MP4 sink: its header matches the stream it holds, and the file appears whole and readable."""
import os
import stat

import av
import numpy as np
import pytest
import torch

from stream.audio.aac import AacStage
from stream.audio.schedule import Progress
from stream.frames import FrameBatch
from stream.sinks.file import FileSink
from stream.video.encode import EncodeStage, VideoFormat, X264Encoder


def _write(path, fmt: VideoFormat, n=30):
    encode, aac, sink = EncodeStage(X264Encoder(fmt), torch.device("cpu")), AacStage(), FileSink(str(path), fmt, Progress())
    batches, encoded = [], []
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (n, fmt.height, fmt.width, 3), dtype=np.uint8))
    encode.process(FrameBatch(0, n, np.zeros(n * 48000 // fmt.fps, np.float32), frames=frames), batches.append)
    encode.finish(batches.append)
    for b in batches:
        aac.process(b, encoded.append)
    aac.finish(encoded.append)
    for b in encoded:
        sink.process(b, lambda _: None)
    sink.finish(lambda _: None)


def _parameter_sets(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        ex = bytes(s.codec_context.extradata)
        first = bytes(next(p for p in c.demux(s) if p.size))
    header, off = {7: [], 8: []}, 6
    for kind, count in ((7, ex[5] & 0x1F), (8, None)):
        if count is None:
            count, off = ex[off], off + 1
        for _ in range(count):
            n = int.from_bytes(ex[off : off + 2], "big")
            header[kind].append(ex[off + 2 : off + 2 + n])
            off += 2 + n
    inband, i = {7: [], 8: []}, 0
    while i < len(first):
        n = int.from_bytes(first[i : i + 4], "big")
        nal = first[i + 4 : i + 4 + n]
        if nal[0] & 0x1F in inband:
            inband[nal[0] & 0x1F].append(nal)
        i += 4 + n
    return header, inband


@pytest.mark.parametrize("preset,crf", [("veryfast", 20), ("ultrafast", 30), ("medium", 0)])
def test_avcc_header_describes_the_packets(tmp_path, preset, crf):
    out = tmp_path / "v.mp4"
    _write(out, VideoFormat(128, 96, 25, preset, crf))
    header, inband = _parameter_sets(out)
    assert header[7] and header[7] == inband[7], "SPS in avcC differs from the stream's"
    assert header[8] == inband[8], "PPS in avcC differs from the stream's"
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.colorspace == 5  # tagged BT.601 (bt470bg)
        assert len(list(c.decode(video=0))) == 30


def test_file_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "m.mp4"
        _write(out, VideoFormat(64, 64, 25), n=3)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["m.mp4"]


def test_the_file_is_written_as_the_render_goes_then_renamed_whole(tmp_path):
    """Memory stays flat however long the render: the MP4 grows on disk under a temporary name."""
    from conftest import ROOT

    from stream import render

    out, sizes = tmp_path / "long.mp4", []

    def look():
        parts = list(tmp_path.glob(".long.mp4.*.part"))
        if parts:
            sizes.append(parts[0].stat().st_size)

    render(str(out), text_file=os.path.join(ROOT, "examples", "bench.txt"), box=(67, 170, 177, 270), on_tick=look)
    # PyAV writes through a 256 KiB buffer: media reached the disk while the render was still going.
    assert sizes and 200_000 < max(sizes) < out.stat().st_size, (sizes, out.stat().st_size)
    assert not out.with_name(out.name + ".part").exists() and not list(tmp_path.glob(".*part"))
    with av.open(str(out)) as c:  # faststart: the index comes before the media
        assert c.streams.video[0].frames > 400
    head = out.read_bytes()[:64 * 1024]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))


def test_a_render_that_fails_midway_leaves_nothing(tmp_path, monkeypatch):
    from stream import render
    from stream.video.compose import ComposeStage

    calls, original = [], ComposeStage.process

    def third_fails(self, item, emit):
        calls.append(item.count)
        if len(calls) == 3:
            raise RuntimeError("compose broke in the third batch")
        original(self, item, emit)

    monkeypatch.setattr(ComposeStage, "process", third_fails)
    with pytest.raises(RuntimeError, match="third batch"):
        render(str(tmp_path / "x.mp4"), text="One sentence. Another sentence. A third one, to be sure.",
               box=(67, 170, 177, 270))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name,streams", [("v.mkv", ["video", "audio"]), ("v.mov", ["video", "audio"]),
                                          ("v.h264", ["video"])])
def test_other_containers_hold_the_same_packets(tmp_path, name, streams):
    _write(tmp_path / "v.mp4", VideoFormat(128, 96, 25))
    _write(tmp_path / name, VideoFormat(128, 96, 25))

    def packets(path):
        with av.open(str(path)) as c:
            return [s.type for s in c.streams], [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]

    kinds, got = packets(tmp_path / name)
    _, want = packets(tmp_path / "v.mp4")
    assert kinds == streams and len(got) == len(want) == 30
    if name != "v.h264":  # the raw stream has no packet boundaries to compare, only frames
        assert [p[-200:] for p in got] == [p[-200:] for p in want]  # the same coded slices
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["v.mp4", name])


def test_standard_output_gets_fragmented_mp4_and_the_summary_goes_to_stderr(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    proc = subprocess.run([sys.executable, "-m", "stream.cli", "render", "--text", "Fragments, one a second, for a pipe.",
                           "--box", "67", "170", "177", "270", "-o", "-"], cwd=ROOT, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    data = proc.stdout
    assert data[4:8] == b"ftyp" and data.count(b"moof") >= 2  # playable from the first fragment on
    assert b"frames" in proc.stderr and b"frames" not in data[-300:]
    out = tmp_path / "piped.mp4"
    out.write_bytes(data)
    with av.open(str(out)) as c:
        video = list(c.decode(video=0))
        keys = [round(f.time * 25) for f in video if f.key_frame]
        assert len(video) > 50 and keys[:2] == [0, 25]  # a key frame (and a fragment) every second
        c.seek(0)
        audio = next(c.decode(audio=0))
        assert video[0].time == audio.time == 0  # they start together: no B-frame delay without an edit list


def test_a_stream_that_does_not_start_with_its_parameter_sets_is_refused(tmp_path):
    """The track's header is made from the first packet's SPS/PPS (any encoder's): without them the
    file would not play, so the render fails and leaves nothing."""
    from stream import LipstreamError

    fmt = VideoFormat(128, 96, 25)
    batches = []
    encode = EncodeStage(X264Encoder(fmt), torch.device("cpu"))
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (12, 96, 128, 3), dtype=np.uint8))
    encode.process(FrameBatch(0, 12, np.zeros(12 * 1920, np.float32), frames=frames), batches.append)
    encode.finish(batches.append)
    packets = [p for b in batches for p in b.packets][1:]  # the IDR (and its SPS/PPS) lost
    sink = FileSink(str(tmp_path / "x.mp4"), fmt, Progress())
    with pytest.raises(LipstreamError, match="^the video stream does not start with a key frame and its parameter sets$"):
        sink.process(FrameBatch(0, 12, np.zeros(0, np.float32), packets=packets), lambda _: None)
    sink.close()
    assert list(tmp_path.iterdir()) == []


TEXT = "The disk fills while this is written. It goes on for a few sentences, so the file grows past the limit."


def _render_under(tmp_path, preexec_fn=None, wrap=()):
    import subprocess
    import sys
    import time

    from conftest import ROOT

    start = time.monotonic()
    proc = subprocess.run([*wrap, sys.executable, "-m", "stream.cli", "render", "--text", TEXT, "--box", "67", "170",
                           "177", "270", "-o", str(tmp_path / "out.mp4")],
                          cwd=ROOT, capture_output=True, text=True, timeout=180, preexec_fn=preexec_fn)
    return proc, time.monotonic() - start


def test_a_file_size_limit_reached_during_a_render_is_one_error_line_exit_2_and_no_file(tmp_path):
    """RLIMIT_FSIZE (any user may lower it): the write fails with EFBIG as a full disk fails with ENOSPC."""
    import resource
    import signal

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails instead of the process being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    proc, seconds = _render_under(tmp_path, preexec_fn=limit)
    out = tmp_path / "out.mp4"
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"lipstream: error: cannot write {out}: File too large"
    assert "Traceback" not in proc.stderr and list(tmp_path.iterdir()) == []
    print(f"recovery: file size limit → exit 2 after {seconds:.1f} s, nothing left")


def _tmpfs_reason() -> str | None:
    import shutil
    import subprocess

    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare or mount (util-linux) missing: no small tmpfs of our own"
    probe = subprocess.run(["unshare", "-m", "--", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return "cannot mount a small tmpfs here (needs root): " + probe.stderr.strip()[:80]
    return None


@pytest.mark.skipif(_tmpfs_reason() is not None, reason=_tmpfs_reason() or "")
def test_a_disk_that_fills_during_a_render_is_one_error_line_exit_2_and_no_file(tmp_path):
    """A 96 KiB tmpfs over the output folder, in a mount namespace of the render's own: ENOSPC."""
    folder = tmp_path / "small"
    folder.mkdir()
    left = tmp_path / "left.txt"  # what the tmpfs holds after the render, listed before it goes with its namespace
    script = f'mount -t tmpfs -o size=96k tmpfs {folder} && "$0" "$@"; rc=$?; ls -A {folder} > {left}; exit $rc'
    proc, seconds = _render_under(folder, wrap=("unshare", "-m", "--", "sh", "-c", script))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"lipstream: error: cannot write {folder}/out.mp4: No space left on device"
    assert "Traceback" not in proc.stderr
    assert left.read_text() == ""  # nothing half-written
    print(f"recovery: disk full → exit 2 after {seconds:.1f} s")
