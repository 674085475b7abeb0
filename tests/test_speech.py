import numpy as np
import pytest
import torch

from stream import LipstreamError
from stream.lipsync.procedural import ProceduralLipSync
from stream.tts.espeak import EspeakTTS


def test_espeak_streams_chunks_of_speech():
    chunks = []
    tts = EspeakTTS()
    tts.speak("Hello there, general.", chunks.append)
    assert tts.sample_rate == 22050
    assert len(chunks) > 3 and all(c.dtype == np.float32 for c in chunks)
    audio = np.concatenate(chunks)
    assert 0.5 < len(audio) / 22050 < 4 and np.abs(audio).max() > 0.1


def test_unknown_voice_is_a_clear_error():
    with pytest.raises(LipstreamError, match="unknown eSpeak voice"):
        EspeakTTS("xx-nonexistent")


def test_procedural_mouth_opens_with_loudness():
    p = ProceduralLipSync(torch.device("cpu"))
    silent = torch.full((1, 1, 80, 16), -4.0)
    loud = torch.full((1, 1, 80, 16), 0.0)
    faces = torch.rand(1, 6, 96, 96)
    assert p.openness(silent).item() == 0 and p.openness(loud).item() == 1
    assert torch.allclose(p(silent, faces), faces[:, 3:], atol=1e-4)  # closed: the reference face
    assert (p(loud, faces) - faces[:, 3:]).abs()[:, :, 60:90].mean() > 0.02
