import os

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE_AVATAR = os.path.join(ROOT, "examples", "astronaut.png")
EXAMPLE_TEXT = os.path.join(ROOT, "examples", "hello.txt")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LIPSTREAM_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def speech_22k() -> np.ndarray:
    """Real synthetic speech from the embedded voice (22.05 kHz float32)."""
    from stream.tts_espeak import EspeakTTS

    chunks = []
    EspeakTTS().speak("The quick brown fox jumps over the lazy dog. Sphinx of black quartz, judge my vow!", chunks.append)
    return np.concatenate(chunks)


@pytest.fixture(scope="session")
def speech_16k(speech_22k) -> torch.Tensor:
    import torchaudio

    return torchaudio.functional.resample(torch.from_numpy(speech_22k), 22050, 16000)


def save_public_checkpoint(path, prefix: str = "", seed: int = 0) -> None:
    """A random-weight Wav2Lip saved the way the public training script saves it."""
    from stream.wav2lip import Wav2Lip

    torch.manual_seed(seed)
    model = Wav2Lip()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a wrong layout shows in the outputs
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    state = {prefix + k: v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "optimizer": optimizer.state_dict(), "global_step": 1, "global_epoch": 0}, path)


@pytest.fixture(scope="session")
def wav2lip_checkpoint(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ckpt") / "wav2lip_random.pth"
    save_public_checkpoint(path)
    return str(path)
