"""MuseTalk 1.5's audio features: a file's equal an independent computation of the documented
algorithm; a render's stream equals the file's; a live stream serves its first frame after 200 ms of
audio and does not depend on how the audio was pushed."""
import math

import numpy as np
import pytest
import torch

import stream
from stream.lipsync.musetalk.features import GROUP, WhisperFeatures
from stream.lipsync.musetalk.files import resolve
from stream.lipsync.musetalk.load import load_whisper


def _wave(seconds: float, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    voiced = 0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)  # syllables of a hum
    return torch.from_numpy((voiced + 0.02 * rng.standard_normal(len(t))).astype(np.float32))


def _reference(wave: torch.Tensor, folder: str, fps: int) -> torch.Tensor:
    """MuseTalk 1.5's get_audio_feature + get_whisper_chunk, written from its description."""
    from transformers import WhisperFeatureExtractor, WhisperModel

    extractor = WhisperFeatureExtractor.from_pretrained(f"{folder}/whisper")
    encoder = WhisperModel.from_pretrained(f"{folder}/whisper").encoder.eval()
    pieces = []
    for s in range(0, len(wave), 480000):  # 30-s segments, each padded to 30 s by the extractor
        feats = extractor(wave[s : s + 480000].numpy(), sampling_rate=16000, return_tensors="pt").input_features
        with torch.no_grad():
            pieces.append(torch.stack(encoder(feats, output_hidden_states=True).hidden_states, dim=2))
    states = torch.cat(pieces, dim=1)[0][: math.floor(len(wave) / 16000 * 50)]
    mult = 50 / fps
    p = math.ceil(mult)
    padded = torch.cat([torch.zeros(2 * p, 5, 384), states, torch.zeros(3 * 2 * p, 5, 384)])
    frames = math.floor(len(wave) / 16000 * fps)
    return torch.stack([padded[math.floor(i * mult) : math.floor(i * mult) + 10].reshape(50, 384) for i in range(frames)])


@pytest.mark.parametrize("seconds, fps", [(31.3, 25), (2.2, 30)])  # two 30-s segments; another fps
def test_file_features_equal_the_documented_computation(musetalk_tiny, seconds, fps):
    wave = _wave(seconds)
    got = stream.musetalk_features(wave, musetalk_tiny, fps=fps)
    want = _reference(wave, musetalk_tiny, fps)
    assert got.shape == want.shape == (math.floor(seconds * fps), 50, 384)
    assert torch.allclose(got, want, atol=1e-5)
    assert got[0, :20].abs().max() == 0 and got[0, 20:].abs().max() > 0  # frame 0: 4 steps of padding first


def _streamed(whisper, wave, lookahead, seed):
    """Push `wave` in random pieces, taking each frame as soon as it is ready; (features, ready after each push)."""
    rng = np.random.default_rng(seed)
    f = WhisperFeatures(whisper, 25, torch.device("cpu"), lookahead)
    out, at, i = [], [], 0
    while i < len(wave):
        n = int(rng.integers(80, 4000))
        f.push(wave[i : i + n])
        i += n
        at.append((i, f.ready()))
        if f.ready():
            out.append(f.take(f.ready()))
    f.finish()
    total = -(-len(wave) * 25 // 16000)  # the clock's frames
    out.append(f.take(total - sum(len(o) for o in out)))
    return torch.cat(out), at, f


def test_a_renders_stream_is_the_file_and_a_live_one_does_not_depend_on_the_pushes(musetalk_tiny):
    whisper = load_whisper(resolve(musetalk_tiny), torch.device("cpu"))
    wave = _wave(1.3)
    file = stream.musetalk_features(wave, musetalk_tiny)
    render, _, _ = _streamed(whisper, wave, None, seed=1)
    assert torch.equal(render[: len(file)], file)
    live, at, f = _streamed(whisper, wave, 0.0, seed=2)
    again, _, _ = _streamed(whisper, wave, 0.0, seed=3)
    assert torch.equal(live, again)  # the same audio, pushed differently: the same features
    assert f.computations == math.ceil(len(file) / GROUP) or f.computations == math.ceil(len(file) / GROUP) + 1
    first = next(n for n, ready in at if ready)
    assert first <= 3200 + 4000  # frame 0 is served once 200 ms are heard (within the push that crossed it)
    assert all(ready == 0 for n, ready in at if n < 3200)
    deviation = (live[: len(file)] - file).abs().max().item()
    assert 0 < deviation  # live frames hear less future audio than the file's: that is the deviation


def test_real_shapes_load_and_give_the_documented_shapes(musetalk_real):
    from stream.lipsync.musetalk.model import MuseTalkModel

    model = MuseTalkModel(musetalk_real, torch.device("cpu"), "float32")
    assert sum(p.numel() for p in model.unet.parameters()) == 849_947_844  # MuseTalk's UNet at the public shapes
    assert list(model.vae.config.block_out_channels) == [128, 256, 512, 512] and model.scale == pytest.approx(0.18215)
    assert model.whisper[0].config.d_model == 384 and len(model.whisper[0].layers) == 4
    wave = _wave(0.7)
    assert stream.musetalk_features(wave, musetalk_real).shape == (17, 50, 384)
