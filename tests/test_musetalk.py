"""MuseTalk 1.5 through the whole pipeline, with random weights of small networks in the public
layout: its face pasted through its mask, its avatar preparation cached and re-made when what it
depends on changes, live sessions that do not depend on how audio was pushed, a MuseTalk session
beside a Wav2Lip one in one process, and open/speak/close cycles that leave nothing behind."""
import gc
import os
import shutil
import threading

import av
import numpy as np
import torch
from conftest import EXAMPLE_AVATAR

import stream
from stream.graphs import runtime
from stream.lipsync.musetalk import model as musetalk_model
from stream.lipsync.musetalk.random import save_random_musetalk

BOX = (67, 170, 177, 270)
FAST = dict(box=BOX, precision="float32", max_sessions=8)


def _decoded(path: str) -> np.ndarray:
    with av.open(path) as c:
        return np.stack([f.to_ndarray(format="bgr24") for f in c.decode(video=0)])


def test_a_render_paints_the_lower_face_only(musetalk_tiny, speech_22k, tmp_path):
    from conftest import render_frames

    out = str(tmp_path / "m.mp4")
    r = stream.render(out, text="Hi.", musetalk_models=musetalk_tiny, **FAST)
    assert "lipsync musetalk float32 unet+vae (cpu)" in r.stages and len(_decoded(out)) == r.frames > 5
    frames, _, avatar, face = render_frames(speech_22k[:20000], 22050, musetalk_models=musetalk_tiny, precision="float32")
    frames, still = torch.stack(frames).int(), avatar.frames[0].int()
    assert len(frames) == -(-20000 * 25 // 22050) and face.masks.shape == (1, 256, 256)
    diff = (frames - still).abs().amax(dim=-1)  # per pixel, the largest channel change
    t, b, l, r_ = BOX
    outside = torch.ones(still.shape[:2], dtype=torch.bool)
    outside[t:b, l:r_] = False
    assert diff[:, outside].max() == 0  # nothing outside the face box
    centre = (t + b) // 2
    assert diff[:, t : centre - 8].max() == 0  # nor in its upper half (the mask's upper half is 0)
    lower = frames[:, centre + 15 : b - 5, l + 20 : r_ - 20].float()
    assert (lower - still[centre + 15 : b - 5, l + 20 : r_ - 20]).abs().mean() > 5  # the lower face is the model's
    assert (lower[1:] - lower[:-1]).abs().mean() > 1  # and it changes with the audio


def test_the_prepared_avatar_is_cached_and_made_again_when_its_inputs_change(musetalk_tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("LIPSTREAM_CACHE", str(tmp_path / "cache"))
    model = musetalk_model.MuseTalkModel(musetalk_tiny, torch.device("cpu"), "float32")
    from stream.video.avatar import load_avatar

    avatar = load_avatar(EXAMPLE_AVATAR, torch.device("cpu"), box=BOX)
    first = model.prepare(avatar)
    made = []
    real = musetalk_model.MuseTalkModel._latents
    monkeypatch.setattr(musetalk_model.MuseTalkModel, "_latents", lambda self, *a: made.append(1) or real(self, *a))
    again = model.prepare(avatar)
    assert not made and torch.equal(again.inputs, first.inputs) and torch.equal(again.masks, first.masks)
    model.prepare(load_avatar(EXAMPLE_AVATAR, torch.device("cpu"), box=(60, 180, 170, 280)))
    assert len(made) == 1  # another box: prepared again
    fresh = save_random_musetalk(str(tmp_path / "fresh"), seed=5)
    for part in ("sd-vae", "face-parse-bisent"):  # another VAE, then another face parser: prepared again each time
        other = shutil.copytree(musetalk_tiny, tmp_path / f"other-{part}")
        shutil.rmtree(other / part)
        shutil.copytree(os.path.join(fresh, part), other / part)
        musetalk_model.MuseTalkModel(str(other), torch.device("cpu"), "float32").prepare(avatar)
    assert len(made) == 3
    assert len(os.listdir(tmp_path / "cache" / "musetalk")) == 4


def _pushed(session, pcm: np.ndarray, seed: int | None) -> list:
    """Push `pcm` (16 kHz) in random pieces (or whole), then take every item of the utterance."""
    rng = np.random.default_rng(seed)
    i = 0
    while i < len(pcm):
        n = len(pcm) if seed is None else int(rng.integers(160, 4000))
        session.push_audio(pcm[i : i + n], 16000)
        i += n
    session.end_segment()
    items = []
    for item in session:
        if isinstance(item, stream.SegmentEnd):
            return items
        if item.speaking:
            items.append((item.bgr()[BOX[0] : BOX[1], BOX[2] : BOX[3]].copy(), item.pcm16()))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """The same frame: the features are bit for bit the same, but a batch of another size may round a
    level differently (the convolutions choose their algorithm by shape)."""
    return np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_a_live_session_does_not_depend_on_how_its_audio_arrives(musetalk_tiny, speech_16k):
    pcm = speech_16k[:13000].numpy()
    with stream.Session(musetalk_models=musetalk_tiny, **FAST) as s:
        whole = _pushed(s, pcm, None)
        pieces = _pushed(s, pcm, 7)
    assert len(whole) == len(pieces) == -(-13000 * 25 // 16000)
    for (a, pa), (b, pb) in zip(whole, pieces):
        assert _same(a, b) and pa == pb


def test_an_interrupted_musetalk_utterance_ends_at_once_and_the_avatar_idles(musetalk_tiny, speech_16k):
    with stream.Session(musetalk_models=musetalk_tiny, **FAST) as s:
        s.push_audio(speech_16k[:16000].numpy(), 16000)
        s.end_segment()
        seen = 0
        for item in s:
            if isinstance(item, stream.SegmentEnd):
                break
            if item.speaking:
                seen += 1
                if seen == 3:
                    s.interrupt()
        assert item.interrupted and seen <= 4
        idle = s.get()
        assert not idle.speaking and torch.equal(idle.image, s.avatar.frames[0])


def test_a_musetalk_and_a_wav2lip_session_in_one_process_each_give_what_they_give_alone(
        musetalk_tiny, wav2lip_checkpoint, speech_16k):
    pcm = speech_16k[:9000].numpy()
    alone = {}
    for name, settings in (("musetalk", {"musetalk_models": musetalk_tiny}), ("wav2lip", {"checkpoint": wav2lip_checkpoint})):
        with stream.Session(**settings, **FAST) as s:
            alone[name] = _pushed(s, pcm, None)
    together = {}
    sessions = {"musetalk": stream.Session(musetalk_models=musetalk_tiny, **FAST),
                "wav2lip": stream.Session(checkpoint=wav2lip_checkpoint, **FAST)}
    try:
        threads = [threading.Thread(target=lambda n=n, s=s: together.__setitem__(n, _pushed(s, pcm, 3)))
                   for n, s in sessions.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        for s in sessions.values():
            s.close()
    for name in alone:
        assert len(together[name]) == len(alone[name]) > 0
        assert all(_same(a, b) and pa == pb for (a, pa), (b, pb) in zip(alone[name], together[name])), name


def test_open_speak_close_cycles_leave_nothing_behind(musetalk_tiny, speech_16k):
    pcm = speech_16k[:5000].numpy()

    def cycle():
        with stream.Session(musetalk_models=musetalk_tiny, **FAST) as s:
            s.push_audio(pcm, 16000)
            for item in s:
                if item.speaking:
                    break  # closed mid-utterance

    cycle()  # the model loads and its capacity is measured once
    gc.collect()
    threads, sessions = threading.active_count(), runtime.open_sessions()
    for _ in range(50):
        cycle()
    gc.collect()
    assert runtime.open_sessions() == sessions == 0
    assert threading.active_count() <= threads
    worker = next(w for w in runtime.workers() if w.name == "musetalk")
    assert worker.backlog() == 0
