import os

import numpy as np
import pytest
import torch
from stream.lipsync.checkpoint import save_random_wav2lip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE_AVATAR = os.path.join(ROOT, "examples", "astronaut.png")
EXAMPLE_TEXT = os.path.join(ROOT, "examples", "hello.txt")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LIPSTREAM_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def speech_22k() -> np.ndarray:
    """Real synthetic speech from the embedded voice (22.05 kHz float32)."""
    from stream.sources.tts_espeak import EspeakTTS

    chunks = []
    EspeakTTS().speak("The quick brown fox jumps over the lazy dog. Sphinx of black quartz, judge my vow!", chunks.append)
    return np.concatenate(chunks)


@pytest.fixture(scope="session")
def speech_16k(speech_22k) -> torch.Tensor:
    import torchaudio

    return torchaudio.functional.resample(torch.from_numpy(speech_22k), 22050, 16000)


@pytest.fixture(scope="session")
def wav2lip_checkpoint(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ckpt") / "wav2lip_random.pth"
    save_random_wav2lip(str(path))
    return str(path)
