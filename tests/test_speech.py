import numpy as np
import pytest

from stream import LipstreamError
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
