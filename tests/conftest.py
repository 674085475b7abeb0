"""Shared fixtures. torch is imported by the fixtures and tests that use it, not here: pytest-xdist's
controller loads this file too, and every worker waits for it to start (1.5 s for torch)."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # More workers than cores (see below): each one's torch, and the commands it starts, on one
    # thread, so OpenMP's spinning threads do not fight over the cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
# librosa's numba kernels (the mel oracle, Coqui's Griffin-Lim) compile on first use in a fresh checkout:
# at LLVM -O0, 18.0 s of CPU instead of 24.5 s (same results: no fast-math), into a cache of the tests'
# own, so the venv's cache never holds the unoptimised code.
os.environ.setdefault("NUMBA_OPT", "0")
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(ROOT, ".pytest_cache", "numba"))

import numpy as np
import pytest

EXAMPLE_AVATAR = os.path.join(ROOT, "examples", "astronaut.png")
EXAMPLE_TEXT = os.path.join(ROOT, "examples", "hello.txt")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LIPSTREAM_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def speech_22k() -> np.ndarray:
    """Real synthetic speech from the embedded voice (22.05 kHz float32)."""
    from stream.tts.espeak import EspeakTTS

    chunks = []
    EspeakTTS().speak("The quick brown fox jumps over the lazy dog. Sphinx of black quartz, judge my vow!", chunks.append)
    return np.concatenate(chunks)


@pytest.fixture(scope="session")
def speech_16k(speech_22k):
    import torch
    import torchaudio

    return torchaudio.functional.resample(torch.from_numpy(speech_22k), 22050, 16000)


def shared_file(tmp_path_factory, name: str, make) -> str:
    """A file every pytest-xdist worker of this run uses, made once by the first that needs it
    (`make(path)`) while the others wait: a random Wav2Lip is 1.5 s of CPU, a responsive one 2.6 s."""
    import fcntl

    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root  # the run's folder, shared
    path = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            make(str(path.with_suffix(".tmp")))
            path.with_suffix(".tmp").rename(path)
    return str(path)


@pytest.fixture(scope="session")
def wav2lip_checkpoint(tmp_path_factory) -> str:
    from stream.lipsync.wav2lip.checkpoint import save_random_wav2lip

    return shared_file(tmp_path_factory, "wav2lip_random.pth", save_random_wav2lip)


@pytest.fixture(scope="session")
def musetalk_tiny(tmp_path_factory) -> str:
    """A random MuseTalk 1.5 folder in the public layout, with small networks of the same classes."""
    from stream.lipsync.musetalk.random import save_random_musetalk

    return shared_file(tmp_path_factory, "musetalk_tiny", save_random_musetalk)


@pytest.fixture(scope="session")
def musetalk_real(tmp_path_factory) -> str:
    """A random MuseTalk 1.5 folder at the public shapes (the loaders' and the features' test)."""
    from stream.lipsync.musetalk.random import save_random_musetalk

    return shared_file(tmp_path_factory, "musetalk_real", lambda p: save_random_musetalk(p, tiny=False))


class _Collect:
    name = "collect"
    device = "cpu"
    busy = 0.0

    def __init__(self):
        self.frames, self.audio = [], []

    def warmup(self):
        pass

    def close(self):
        pass

    def process(self, item, emit):
        self.frames.extend(item.frames)
        self.audio.append(item.audio)

    def finish(self, emit):
        pass


def render_frames(pcm, rate, box=(67, 170, 177, 270), **settings):
    """What `render` composes for this audio, before the encoder: its own stages, on the shared worker.
    Returns the frames, the audio, the avatar and the model's face (its preparation of the avatar)."""
    import torch

    from stream.audio.schedule import FrameScheduler, Progress
    from stream.config import make_config
    from stream.graphs import runtime
    from stream.graphs.pipeline import Pipeline
    from stream.lipsync.stage import LipSyncStage
    from stream.sources.speech import audio_source
    from stream.video.compose import ComposeStage

    cfg = make_config(box=box, **settings)
    device = torch.device("cpu")
    avatar, worker = runtime.shared_avatar(cfg, device), runtime.acquire_worker(cfg, device)
    try:
        face = runtime.shared_face(avatar, worker)
        sink = _Collect()
        Pipeline([FrameScheduler(cfg.fps, avatar, device, cfg.batch_size, Progress(), worker.model.features),
                  LipSyncStage(worker, face), ComposeStage(avatar, face, worker.dtype), sink]).run(audio_source(pcm, rate))
    finally:
        runtime.release_worker(worker)
    return sink.frames, np.concatenate(sink.audio), avatar, face


@pytest.fixture(scope="session")
def responsive_checkpoint(tmp_path_factory) -> str:
    """Random weights whose mouth follows the mel window (BatchNorm statistics measured, not random)."""
    from stream.lipsync.wav2lip.checkpoint import save_random_wav2lip

    return shared_file(tmp_path_factory, "wav2lip_responsive.pth", lambda p: save_random_wav2lip(p, responsive=True))


@pytest.hookimpl(optionalhook=True)  # a GPU image without pytest-xdist still runs the suite (bench/gpu.sh)
def pytest_xdist_auto_num_workers(config):
    """`-n auto`: a worker per core and half as many again, since a third of the suite's time is
    spent waiting on real time (WebRTC, RTMP, sound devices), not computing. On the 2-core machine
    three workers took the suite from 128 s to 112 s."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores + max(1, cores // 2)


# Test files by the wall time their tests take (longest first, measured on the 2-core machine).
# pytest-xdist hands tests out in this order, so the long real-time ones start early and none is
# left running alone at the end (at the end of the order they made the suite 8-10 s longer).
_LONGEST_FIRST = ("test_render_many", "test_push", "test_mic", "test_tts_coqui", "test_musetalk", "test_session", "test_render",
                  "test_preview", "test_serve", "test_page", "test_cli", "test_inference", "test_stdin",
                  "test_checkpoint", "test_pipecat", "test_file_sink", "test_kernels_compose")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


def pytest_configure(config):
    """`xdist_group` silently does nothing with pytest >= 9.2 and pytest-xdist <= 3.8 (pytest-xdist#1386)."""
    from importlib.metadata import version

    def at_least(name, *v):
        return tuple(int(p) for p in version(name).split(".")[:len(v)] if p.isdigit()) >= v

    grouping = config.getoption("dist", "no") == "loadgroup"
    if grouping and at_least("pytest", 9, 2) and not at_least("pytest-xdist", 3, 9):
        raise pytest.UsageError("pytest-xdist's xdist_group has no effect with pytest >= 9.2 (pytest-xdist#1386): "
                                "install the test extra's pins (pip install -e '.[test]')")
