"""The microphone through a real PortAudio: ALSA in a temporary HOME whose `.asoundrc` makes a capture
device of a raw file (`type file`, `infile`, slave `null`) and a playback device writing to a file.
PortAudio, sounddevice and the session run in a subprocess with HOME set, so its ALSA reads that file.
Skips (one line) where libportaudio2 is absent."""
from __future__ import annotations

import ctypes.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
RATE = 48000


def _portaudio() -> bool:
    return ctypes.util.find_library("portaudio") is not None


needs_portaudio = pytest.mark.skipif(not _portaudio(), reason="libportaudio2 is not installed (apt-get install libportaudio2)")


def _pulse_plugin() -> bool:
    return any(Path(d).joinpath("alsa-lib/libasound_module_pcm_pulse.so").exists()
               for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"))


def _skip_reason() -> str | None:
    if ctypes.util.find_library("portaudio") is None:
        return "libportaudio2 is not installed (apt-get install libportaudio2)"
    if not shutil.which("pulseaudio") or not shutil.which("parec"):
        return "no PulseAudio to make a real-time virtual sound card (apt-get install pulseaudio pulseaudio-utils)"
    if not _pulse_plugin():
        return "no ALSA PulseAudio plugin (apt-get install libasound2-plugins)"
    return None


@pytest.fixture
def pulse(tmp_path):
    """A PulseAudio daemon of this test's own: a real-time sound card without hardware. Its default sink
    `out` (null, 48 kHz mono) is recorded by `parec` (its monitor) to the yielded path; its default
    source is the monitor of a sink `mic`, into which `pacat` plays what the microphone is to hear."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    home, run = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    run.mkdir(mode=0o700)
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(run))
    daemon = subprocess.Popen(["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
                               "-L", "module-null-sink sink_name=out rate=48000 channels=1",
                               "-L", "module-null-sink sink_name=mic rate=48000 channels=1",
                               "-L", "module-native-protocol-unix auth-anonymous=1"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    socket = run / "pulse" / "native"
    deadline = time.monotonic() + 15
    while not socket.exists() and daemon.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not socket.exists():
        daemon.kill()
        err = (daemon.communicate(timeout=5)[1] or "").strip().splitlines()
        pytest.skip(f"PulseAudio did not start here ({err[-1] if err else 'no socket'})")
    subprocess.run(["pactl", "set-default-sink", "out"], env=env, timeout=10, capture_output=True)
    subprocess.run(["pactl", "set-default-source", "mic.monitor"], env=env, timeout=10, capture_output=True)
    recording = tmp_path / "played.raw"
    with open(recording, "wb") as out:
        rec = subprocess.Popen(["parec", "-d", "out.monitor", "--raw", "--format=s16le", "--rate=48000",
                                "--channels=1", "--latency-msec=20"], env=env, stdout=out, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    try:
        yield {"HOME": str(home), "XDG_RUNTIME_DIR": str(run), "PULSE_SERVER": f"unix:{socket}"}, recording
    finally:
        for p in (rec, daemon):
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


def play_into_mic(env: dict, signal: np.ndarray, path: Path) -> subprocess.Popen:
    """`pacat` plays `signal` (int16, 48 kHz) into the sink whose monitor is the default source, in real time."""
    signal.tofile(path)
    return subprocess.Popen(["pacat", "-p", "-d", "mic", "--raw", "--format=s16le", "--rate=48000", "--channels=1",
                             "--latency-msec=20", str(path)], env={**os.environ, **env}, stderr=subprocess.DEVNULL)


def tone_bursts(seconds: float = 4.0) -> np.ndarray:
    """A known signal: 0.2 s bursts of a rising tone every 0.5 s, silence between (int16)."""
    t = np.arange(int(RATE * seconds)) / RATE
    x = np.zeros_like(t)
    for k in range(int(seconds * 2)):
        s, n = int((0.25 + 0.5 * k) * RATE), int(0.2 * RATE)
        x[s : s + n] = 0.5 * np.sin(2 * np.pi * (300 + 100 * k) * t[:n])
    return (x * 32767).astype("<i2")


def make_alsa_home(tmp: Path, signal: np.ndarray | None = None) -> Path:
    """A HOME with an .asoundrc: default capture reads tmp/in.raw, default playback writes tmp/out.raw."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    infile = tmp / "in.raw"
    (signal if signal is not None else tone_bursts()).tofile(infile)
    (home / ".asoundrc").write_text(textwrap.dedent(f"""\
        pcm.!default {{ type asym; capture.pcm "mic"; playback.pcm "spk" }}
        pcm.mic {{ type plug; slave {{ pcm "micfile"; format S16_LE; rate {RATE}; channels 1 }} }}
        pcm.micfile {{ type file; slave.pcm "null"; file "/dev/null"; infile "{infile}"; format "raw" }}
        pcm.spk {{ type plug; slave {{ pcm "spkfile"; format S16_LE; rate {RATE}; channels 1 }} }}
        pcm.spkfile {{ type file; slave.pcm "null"; file "{tmp / 'out.raw'}"; format "raw" }}
        """))
    return home


NO_PULSE = {"PULSE_SERVER": "unix:/nonexistent"}  # a PulseAudio running here must not take over ALSA's default


def run_py(code: str, home: Path, tmp: Path, timeout: float = 120, env_extra: dict | None = None):
    env = dict(os.environ, HOME=str(home), LIPSTREAM_CACHE=str(tmp / "cache"), PYTHONPATH=str(ROOT), **NO_PULSE)
    env.pop("DISPLAY", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp, env=env, capture_output=True,
                          text=True, timeout=timeout)


CLI = "import sys; from stream.cli import console; sys.exit(console())"


def run_cli(args: list[str], home: Path, tmp: Path, timeout: float = 120, env_extra: dict | None = None):
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env.update(HOME=str(home), LIPSTREAM_CACHE=str(tmp / "cache"), PYTHONPATH=str(ROOT), **(env_extra or NO_PULSE))
    return subprocess.run([sys.executable, "-c", CLI, *args], cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=timeout)


def best_lag(recorded: np.ndarray, reference: np.ndarray, max_lag: int = RATE // 2) -> tuple[int, float]:
    """(lag, normalised correlation) of `recorded` against `reference` (recorded[i] ≈ reference[i + lag])."""
    a = recorded.astype(np.float64)
    best = (0, -1.0)
    for lag in range(0, max_lag, 48):  # coarse, then fine
        b = reference[lag : lag + len(a)].astype(np.float64)
        n = min(len(a), len(b))
        c = float(np.dot(a[:n], b[:n]) / (np.linalg.norm(a[:n]) * np.linalg.norm(b[:n]) + 1e-9))
        if c > best[1]:
            best = (lag, c)
    lo = max(0, best[0] - 48)
    for lag in range(lo, best[0] + 48):
        b = reference[lag : lag + len(a)].astype(np.float64)
        n = min(len(a), len(b))
        c = float(np.dot(a[:n], b[:n]) / (np.linalg.norm(a[:n]) * np.linalg.norm(b[:n]) + 1e-9))
        if c > best[1]:
            best = (lag, c)
    return best


def decode_audio(path: Path) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        rate = stream.rate
        parts = [f.to_ndarray().reshape(-1) if f.format.is_packed else f.to_ndarray()[0] for f in c.decode(stream)]
    return np.concatenate(parts).astype(np.float32), rate


def video_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(c.streams.video[0]))


@needs_portaudio
def test_render_mic_records_seconds_and_matches_the_input(tmp_path):
    home = make_alsa_home(tmp_path)
    out = tmp_path / "mic.mp4"
    r = run_cli(["-q", "render", "--mic", "--seconds", "2", "--no-cache", "-o", str(out)], home, tmp_path)
    assert r.returncode == 0, r.stderr
    assert out.exists() and "50 frames, 2.00 s of speech" in r.stdout, r.stdout
    assert video_frames(out) == 50
    audio, rate = decode_audio(out)
    assert rate == RATE
    assert abs(len(audio) / rate - 2.0) < 0.1  # AAC adds priming / padding of a frame or two
    ref = tone_bursts()[: 3 * RATE].astype(np.float32) / 32768.0
    # AAC shifts the start by its priming samples (if the muxer does not remove them): allow a small lag
    lag, corr = best_lag(audio[: int(1.9 * RATE)], ref, max_lag=4096)
    assert corr > 0.9, (lag, corr)
    assert lag < 2048, lag


@needs_portaudio
def test_mic_into_a_live_session_gives_speaking_frames(tmp_path):
    home = make_alsa_home(tmp_path)
    r = run_py("""
        import json, time
        import numpy as np
        import stream
        from stream.sources.mic import Microphone, feed_session

        with stream.Session(cache=False) as s:
            for _ in range(3):
                s.get()  # the consumer has pulled: the session knows its pace
            mic = Microphone(seconds=1.0)
            t0 = time.perf_counter()
            feed = feed_session(s, mic)
            first, frames, audio, end, deadline = None, 0, [], None, time.monotonic() + 30
            while time.monotonic() < deadline:
                item = s.get()
                if isinstance(item, stream.SegmentEnd):
                    end = item
                    break
                if item.speaking:
                    first = first if first is not None else time.perf_counter() - t0
                    frames += 1
                    audio.append(item.audio)
                time.sleep(0.01)
            feed.wait(5)
            audio = np.concatenate(audio) if audio else np.zeros(0)
            print(json.dumps({"first": first, "frames": frames, "pushed": feed.pushed, "rate": mic.sample_rate,
                              "end": end and [end.segment, end.playback_position, end.interrupted],
                              "audio": (audio * 32768).round().astype(int).tolist()}))
        """, home, tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["rate"] == RATE and got["pushed"] == RATE  # exactly 1 s, counted in samples
    assert got["frames"] == 25, got["frames"]
    assert got["end"] == [1, 1.0, False]
    audio = np.asarray(got["audio"], np.float32)
    lag, corr = best_lag(audio, tone_bursts().astype(np.float32), max_lag=960)
    assert lag == 0 and corr > 0.999, (lag, corr)  # the session's audio is the microphone's, sample for sample
    assert got["first"] < 1.0  # measured latency is printed by the report, not asserted tightly


def test_portaudio_missing_is_one_line_and_exit_2(tmp_path):
    """sounddevice raises OSError at import without libportaudio2: simulate it with a sitecustomize."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent("""\
        import ctypes.util
        _find = ctypes.util.find_library
        ctypes.util.find_library = lambda name: None if "portaudio" in name else _find(name)
        import sys
        sys.modules.pop("_sounddevice_data", None)
        import atexit  # the check comes before the 1.5 s of loading torch
        atexit.register(lambda: "torch" in sys.modules and sys.stderr.write("torch was loaded\\n"))
        """))
    env = {"PYTHONPATH": f"{site}{os.pathsep}{ROOT}"}
    for cmd in (["render", "--mic", "-o", str(tmp_path / "x.mp4")], ["preview", "--mic"]):
        r = subprocess.run([sys.executable, "-c", CLI, *cmd],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60,
                           env={**os.environ, **env, "HOME": str(tmp_path)})
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert r.stderr == ("lipstream: error: PortAudio is not installed (sounddevice needs it for the microphone "
                            "and the speaker): apt-get install libportaudio2\n"), r.stderr
    assert not (tmp_path / "x.mp4").exists()


@needs_portaudio
def test_no_input_device_is_one_line_and_exit_2(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    # no .asoundrc: this machine has no sound card, so ALSA has no capture device
    r = run_cli(["render", "--mic", "--seconds", "1", "-o", str(tmp_path / "x.mp4")], home, tmp_path)
    if r.returncode == 0:
        pytest.skip("this machine has a capture device")
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1].startswith("lipstream: error: ") and len(r.stderr.splitlines()) == 1, r.stderr
    assert "device" in r.stderr


def test_seconds_needs_mic(tmp_path):
    r = subprocess.run([sys.executable, "-c", CLI, "render", "--text", "Hi.", "--seconds", "2", "-o", str(tmp_path / "x.mp4")],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2 and r.stderr == "lipstream: error: --seconds goes with --mic\n", r.stderr


def _start_cli(args: list[str], env: dict, tmp: Path) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    full.update(env, LIPSTREAM_CACHE=str(tmp / "cache"), PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", CLI, *args], cwd=tmp, env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_line(p: subprocess.Popen, needle: str, seconds: float = 60) -> list[str]:
    lines, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    p.kill()
    raise AssertionError(f"no {needle!r} line: {lines}")


def test_render_mic_until_ctrl_c_finishes_the_file_and_sigterm_leaves_none(pulse, tmp_path):
    """A real-time microphone (PulseAudio): Ctrl-C ends the recording, the file is complete, exit 0."""
    import signal

    env, _ = pulse
    signal_in = tone_bursts(12.0)
    player = play_into_mic(env, signal_in, tmp_path / "in.raw")
    try:
        out = tmp_path / "mic.mp4"
        p = _start_cli(["render", "--mic", "--no-cache", "-o", str(out)], env, tmp_path)
        _wait_for_line(p, "recording from")
        time.sleep(2.0)
        p.send_signal(signal.SIGINT)
        _, stderr = p.communicate(timeout=60)
        assert p.returncode == 0, stderr
        assert "stopping the recording" in stderr and out.exists(), stderr
        audio, rate = decode_audio(out)
        assert 1.5 < len(audio) / rate < 3.5, len(audio) / rate
        frames = video_frames(out)
        assert abs(frames - len(audio) / rate * 25) <= 3
        loud = np.abs(audio) > 0.05
        assert loud.mean() > 0.2, "the recording holds the tone bursts"
        ref = signal_in.astype(np.float32) / 32768.0
        lag, corr = best_lag(audio[rate // 2 : rate // 2 + rate], ref, max_lag=8 * rate)
        assert corr > 0.9, (lag, corr)

        out2 = tmp_path / "term.mp4"
        p = _start_cli(["render", "--mic", "--no-cache", "-o", str(out2)], env, tmp_path)
        _wait_for_line(p, "recording from")
        time.sleep(0.5)
        p.send_signal(signal.SIGTERM)
        _, stderr = p.communicate(timeout=60)
        assert p.returncode == 143, stderr
        assert stderr.splitlines()[-1] == "lipstream: terminated"
        assert not out2.exists() and not list(tmp_path.glob("term*"))
    finally:
        player.terminate()
        player.wait(timeout=5)


def test_mic_into_a_live_session_in_real_time(pulse, tmp_path):
    """A real-time microphone pushed into a session from the callback thread, the consumer pulling at
    25 fps: the first loud frame comes soon after the first loud block was heard."""
    env, _ = pulse
    player = play_into_mic(env, tone_bursts(6.0), tmp_path / "in.raw")
    try:
        full = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
        full.update(env, LIPSTREAM_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
        code = """
            import json, time
            import numpy as np
            import stream
            from stream.sources.mic import Microphone, SessionFeed

            heard = []
            class Feed(SessionFeed):
                def _push(self, block):
                    if not heard and np.abs(block).max() > 3000:
                        heard.append(time.perf_counter())
                    super()._push(block)

            with stream.Session(cache=False) as s:
                mic = Microphone(seconds=2.0)
                feed = Feed(s, mic).start()
                start, k, first, speaking, end = time.perf_counter(), 0, None, 0, None
                while time.perf_counter() - start < 20:
                    time.sleep(max(0.0, start + k / s.fps - time.perf_counter()))
                    item = s.get()
                    if isinstance(item, stream.SegmentEnd):
                        end = item
                        break
                    k += 1
                    speaking += item.speaking
                    if first is None and heard and item.speaking and np.abs(item.audio).max() > 0.1:
                        first = time.perf_counter() - heard[0]
                feed.wait(5)
                print(json.dumps({"latency": first, "speaking": speaking, "pushed": feed.pushed,
                                  "end": [end.playback_position, end.interrupted] if end else None}))
            """
        r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=full,
                           capture_output=True, text=True, timeout=90)
    finally:
        player.terminate()
        player.wait(timeout=5)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    print("mic → first loud frame:", got)
    assert got["pushed"] == 2 * RATE and got["end"] == [2.0, False]
    assert got["speaking"] == 50
    assert got["latency"] is not None and got["latency"] < 0.5, got
