"""The mel features against an independent float64 NumPy implementation of the same recipe."""
import numpy as np
import pytest
import torch

from stream.audio.mel import MelStream, wav2lip_mel


def _hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_hz / f_sp + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def _slaney_filters(sr=16000, n_fft=800, n_mels=80, fmin=55.0, fmax=7600.0):
    freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    weights = np.zeros((n_mels, len(freqs)))
    for i in range(n_mels):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        rising = (freqs - lo) / (mid - lo)
        falling = (hi - freqs) / (hi - mid)
        weights[i] = np.maximum(0, np.minimum(rising, falling)) * 2.0 / (hi - lo)  # area normalisation
    return weights


def numpy_mel(wave: np.ndarray) -> np.ndarray:
    x = wave.astype(np.float64)
    y = np.concatenate([x[:1], x[1:] - 0.97 * x[:-1]])
    y = np.pad(y, 400, mode="reflect")
    n = 1 + (len(y) - 800) // 200
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(800) / 800)  # periodic Hann
    frames = np.stack([y[i * 200 : i * 200 + 800] * window for i in range(n)])
    mag = np.abs(np.fft.rfft(frames, axis=1)).T
    s = 20 * np.log10(np.maximum(1e-5, _slaney_filters() @ mag)) - 20
    return np.clip(8 * (s + 100) / 100 - 4, -4, 4)


def test_mel_matches_float64_reference_on_speech(speech_16k):
    ours = wav2lip_mel(speech_16k).numpy()
    ref = numpy_mel(speech_16k.numpy())
    assert ours.shape == ref.shape == (80, 1 + len(speech_16k) // 200)
    assert np.abs(ours - ref).max() < 2e-3
    assert ref.min() < -3.9 and ref.max() > 0  # real speech spans silence to loud


def test_streamed_mel_equals_whole(speech_16k):
    whole = wav2lip_mel(speech_16k)
    stream = MelStream(torch.device("cpu"))
    rng = np.random.default_rng(0)
    parts, i = [], 0
    while i < len(speech_16k):
        k = int(rng.integers(1, 3000))
        parts.append(stream.push(speech_16k[i : i + k]))
        i += k
    parts.append(stream.finish())
    streamed = torch.cat(parts, dim=1)
    assert streamed.shape == whole.shape
    assert (streamed - whole).abs().max() < 1e-4


def test_very_short_audio_gives_columns():
    short = torch.randn(120) * 0.1
    assert wav2lip_mel(short).shape == (80, 3)
    s = MelStream(torch.device("cpu"))
    assert torch.cat([s.push(short), s.finish()], 1).shape == (80, 3)


def test_filterbank_matches_torchaudio_slaney():
    import torchaudio

    from stream.audio.mel import mel_filterbank

    ta = torchaudio.functional.melscale_fbanks(401, 55.0, 7600.0, 80, 16000, norm="slaney", mel_scale="slaney")
    assert np.abs(mel_filterbank() - ta.T.double().numpy()).max() < 1e-6
    assert np.abs(mel_filterbank() - _slaney_filters()).max() < 1e-12


def test_streamed_mel_does_not_depend_on_chunking_to_the_bit(speech_16k):
    def run(sizes):
        stream, parts, i = MelStream(torch.device("cpu")), [], 0
        for k in sizes:
            parts.append(stream.push(speech_16k[i : i + k]))
            i += k
        parts += [stream.push(speech_16k[i:]), stream.finish()]
        return torch.cat(parts, dim=1)

    whole = run([])
    assert torch.equal(run([1] * 700 + [5000] * 3), whole)
    assert torch.equal(run([160] * 100), whole)


@pytest.mark.xdist_group("librosa")  # on the worker that has compiled librosa's numba kernels (tests/test_tts_coqui.py)
def test_mel_matches_the_public_recipe_computed_by_librosa(speech_16k):
    """Wav2Lip's own audio.py, step by step, on the library it used (librosa, installed with
    coqui-tts): pre-emphasis by lfilter, librosa.stft (reflect padding, as its librosa 0.7 did),
    librosa's Slaney mel basis, amp_to_db − 20, symmetric normalisation to ±4."""
    librosa = pytest.importorskip("librosa")
    from scipy import signal as sps

    wav = speech_16k.numpy().astype(np.float64)
    emphasised = sps.lfilter([1, -0.97], [1], wav)
    stft = librosa.stft(y=emphasised, n_fft=800, hop_length=200, win_length=800, pad_mode="reflect")
    basis = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    db = 20 * np.log10(np.maximum(1e-5, basis @ np.abs(stft))) - 20
    ref = np.clip(8 * (db + 100) / 100 - 4, -4, 4)
    ours = wav2lip_mel(speech_16k).numpy()
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 2e-3
