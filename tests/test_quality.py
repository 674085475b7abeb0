"""The quality measures (stream/quality) on constructed cases that must move them, SyncNet's loader
on files in the public format, and `lipstream bench quality` end to end on real renders."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import EXAMPLE_AVATAR, ROOT

from kernels.compose import compose_ref
from stream.errors import LipstreamError
from stream.lipsync.face96 import feather_mask
from stream.quality import metrics
from stream.quality.mfcc import filterbank, mfcc
from stream.quality.sync import crop_regions, face_crop, sync_scores
from stream.quality.syncnet import SyncNet, load_syncnet, save_random_syncnet, save_syncnet

BOX = (67, 170, 177, 270)  # the bundled avatar's padded face box
TINY = ((8,) * 6, (16, 8, 8, 8, 8, 8), 8, 8)  # SyncNet widths of the test models
LEGACY_MAGIC = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")  # pickle protocol 2 and torch's legacy magic number


# --- MFCC --------------------------------------------------------------------------------------

def test_mfcc_matches_python_speech_features():
    """Against python_speech_features 0.6's mfcc(x, 16000) (what SyncNet's scripts call), computed
    once with that package for this signal: 10 frames, the first and the last."""
    t = np.arange(1700) / 16000
    x = (8000 * np.sin(2 * np.pi * 300 * t) * (1 + 0.5 * np.sin(2 * np.pi * 7 * t))
         + 2000 * np.sin(2 * np.pi * 2200 * t ** 1.2)).astype(np.int16)
    first = [19.157462, 27.142189, -5.061866, -22.702368, -8.249122, 10.734231, -0.103175, -32.874986,
             -47.672436, -32.376359, -9.954727, -4.225054, -7.790257]
    last = [18.611599, 16.031969, -21.947682, -3.186051, 21.90016, -8.95949, -49.667229, -35.422705,
            -1.251351, -9.583656, -32.44462, -18.308915, 11.214078]
    c = mfcc(x, 16000)
    assert c.shape == (10, 13)
    np.testing.assert_allclose(c[0], first, atol=2e-6)
    np.testing.assert_allclose(c[-1], last, atol=2e-6)


def test_mfcc_framing_filters_and_silence_are_the_reference_ones():
    edges = [np.nonzero(row)[0] for row in filterbank()]
    starts = [0, 2, 4, 7, 10, 13, 16, 20, 24, 29, 34, 40, 46, 53, 60, 68, 77, 87, 97, 109, 122, 136, 152, 169, 188, 209]
    assert [int(e[0]) if e[0] == 0 else int(e[0]) - 1 for e in edges] == starts  # a triangle is 0 at its first bin
    assert edges[-1][-1] == 255  # the last triangle ends before bin 256
    assert len(mfcc(np.ones(640 * 25, np.int16))) == 4 * 25 - 1  # 4 frames of 10 ms per 40 ms, one short
    silent = mfcc(np.zeros(16000, np.int16))
    np.testing.assert_allclose(silent[:, 0], np.log(np.finfo(float).eps))
    assert np.abs(silent[:, 1:]).max() < 1e-9


# --- SyncNet and its file -------------------------------------------------------------------------

def test_syncnet_has_the_public_architecture_and_loads_the_legacy_file(tmp_path):
    model = SyncNet()
    assert sum(p.numel() for p in model.parameters()) == 13_631_616
    state = model.state_dict()
    assert len(state) == 102
    assert tuple(state["netcnnaud.18.weight"].shape) == (512, 256, 5, 4)
    assert tuple(state["netcnnlip.0.weight"].shape) == (96, 3, 5, 7, 7)
    assert tuple(state["netcnnlip.18.weight"].shape) == (512, 256, 1, 6, 6)
    assert tuple(state["netfclip.3.weight"].shape) == (1024, 512)
    path = tmp_path / "syncnet_v2.model"
    saved = save_random_syncnet(str(path))
    assert path.read_bytes()[:14] == LEGACY_MAGIC
    loaded = load_syncnet(str(path))
    lip, aud = torch.rand(2, 3, 5, 224, 224) * 255, torch.randn(2, 1, 13, 20) * 10
    with torch.no_grad():
        assert torch.equal(loaded.forward_lip(lip), saved.forward_lip(lip))
        assert torch.equal(loaded.forward_aud(aud), saved.forward_aud(aud))


def test_the_loader_reads_the_zip_format_and_files_without_step_counters(tmp_path, caplog):
    saved = save_random_syncnet(str(tmp_path / "zip.model"), seed=3, widths=TINY, legacy=False)
    assert (tmp_path / "zip.model").read_bytes()[:4] == b"PK\x03\x04"
    old = {k: v for k, v in saved.state_dict().items() if not k.endswith("num_batches_tracked")}  # torch < 0.4.1
    torch.save(old, tmp_path / "old.model", _use_new_zipfile_serialization=False)
    aud = torch.randn(3, 1, 13, 20) * 10
    for name in ("zip.model", "old.model"):
        with torch.no_grad():
            assert torch.equal(load_syncnet(str(tmp_path / name)).forward_aud(aud), saved.forward_aud(aud))
    assert "is not syncnet_v2.model's size" in caplog.text  # small test models say so


def test_files_that_are_not_syncnet_are_refused_in_one_line(tmp_path, wav2lip_checkpoint):
    def error(path):
        with pytest.raises(LipstreamError) as e:
            load_syncnet(str(path))
        return str(e.value)

    assert error(tmp_path / "none.model") == f"SyncNet weights not found: {tmp_path / 'none.model'}"
    (tmp_path / "junk.model").write_bytes(b"not a torch file at all")
    assert error(tmp_path / "junk.model").startswith(
        f"{tmp_path / 'junk.model'} is not a readable torch file (truncated or another format?): ")
    assert error(wav2lip_checkpoint) == (f"{wav2lip_checkpoint} is not a SyncNet state dict "
                                         "(syncnet_v2.model is a mapping of tensors)")
    state = save_random_syncnet(str(tmp_path / "t.model"), widths=TINY).state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("netcnnlip.18.")}, tmp_path / "cut.model")
    assert error(tmp_path / "cut.model") == f"{tmp_path / 'cut.model'} is not a SyncNet state dict: no 'netcnnlip.18.weight'"
    state["netcnnlip.4.weight"] = torch.zeros(8, 16, 1, 3, 3)
    torch.save(state, tmp_path / "shape.model")
    assert error(tmp_path / "shape.model") == (f"{tmp_path / 'shape.model'} is not a SyncNet state dict: netcnnlip.4.weight "
                                               "has shape (8, 16, 1, 3, 3), expected (8, 16, 1, 5, 5)")


# --- LSE-D / LSE-C ------------------------------------------------------------------------------

AMP = 30000  # bursts of ±AMP (random signs: white, every 10 ms frame of one holds the same energy)


def loudness_syncnet(path: str) -> None:
    """A SyncNet whose two towers measure the same thing, saved in the public format: the audio
    tower whether each 10 ms MFCC frame is loud (its log energy c0 past a threshold), max-pooled
    the reference's way to 4 positions, each covering video frames p and p+1 of the window; the lip
    tower whether frame p or p+1 of its 5 is bright. Both embeddings are those 4 values and a
    constant 10: equal where the bright frames are the loud ones, 10 or more from the zero vectors
    that the reference compares with past the ends."""
    # Loud: at least 35 % of the frame's 400 samples in a burst (pre-emphasis doubles white noise's energy).
    threshold, steep = np.log(0.35 * 400 * (1 + 0.97 ** 2) / 2 * AMP ** 2), 0.1
    m = SyncNet(*TINY)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        for bn in m.modules():
            if isinstance(bn, torch.nn.modules.batchnorm._BatchNorm):
                bn.weight.fill_(1)
                bn.running_var.fill_(1 - bn.eps)
        a, v = m.netcnnaud, m.netcnnlip
        a[0].weight[0, 0, 1, 1], a[0].bias[0] = 1 / steep, -threshold / steep  # row 0 of the input is c0
        a[4].weight[0, 0, 1, 1] = 1
        for i in (8, 11):  # 1 − x twice, through ReLUs: min(1, x)
            a[i].weight[0, 0, 1, 1], a[i].bias[0] = -1, 1
        a[14].weight[0, 0, 1, 1] = 1
        for p in range(4):
            a[18].weight[p, 0, 0, p] = 1
        for s in range(5):
            v[0].weight[s, :, s, 3, 3] = 1 / (3 * 255)  # frame s's brightness, 0…1
        for p in range(4):
            v[0].weight[5 + p, :, p + 1, 3, 3], v[0].weight[5 + p, :, p, 3, 3] = 1 / (3 * 255), -1 / (3 * 255)
            v[4].weight[p, p, 0, 2, 2] = v[4].weight[p, 5 + p, 0, 2, 2] = 1  # B[p] + relu(B[p+1] − B[p])
            for i in (8, 11, 14):
                v[i].weight[p, p, 0, 1, 1] = 1
            v[18].weight[p, p, 0, 0, 0] = 1
        for head in (m.netfcaud, m.netfclip):
            for p in range(4):
                head[0].weight[p, p] = head[3].weight[p, p] = 1
            head[3].bias[4] = 10.0
    save_syncnet(m, path)


def _bursts(frames: int, seed: int = 0):
    """Random loud frames (bursts at 16 kHz) and face crops that are bright exactly on those frames."""
    rng = np.random.default_rng(seed)
    loud = rng.random(frames) < 0.5
    audio = np.zeros(frames * 640)
    for t in np.nonzero(loud)[0]:
        audio[t * 640 : (t + 1) * 640] = AMP * rng.choice([-1.0, 1.0], 640)
    return [np.full((224, 224, 3), 255 if x else 0, np.uint8) for x in loud], audio.astype(np.int16)


def test_a_video_three_frames_off_its_audio_is_found_and_scores_worse(tmp_path):
    """Through the real loader and the reference's windows: in sync, offset 0 and a distance of
    nothing; shifted by 3 frames either way, offset ∓3, and LSE-D worse by the windows that lost
    their partner (compared with zero vectors, as the reference does)."""
    loudness_syncnet(str(tmp_path / "loud.model"))
    net = load_syncnet(str(tmp_path / "loud.model"))
    crops, audio = _bursts(50)
    synced = sync_scores(net, crops, audio)
    video_early = sync_scores(net, crops[3:], audio)  # frame i shows what the audio says at i + 3
    audio_early = sync_scores(net, crops[:-3], audio[3 * 640 :])
    assert (synced.offset, video_early.offset, audio_early.offset) == (0, -3, 3)
    assert synced.windows == 45 and synced.lse_d < 1e-4
    assert video_early.lse_d > synced.lse_d + 0.5 and audio_early.lse_d > synced.lse_d + 0.5
    assert synced.lse_c > 1.0  # the other shifts are far off


def test_face_crops_follow_the_reference_recipe():
    """run_pipeline.py's square: 1.4× the box's longer side, from the box's top, padded with 110."""
    (r0, r1, c0, c1), = crop_regions(np.array([BOX]))
    s = max(BOX[1] - BOX[0], BOX[3] - BOX[2]) / 2
    assert (r0, r1, c0, c1) == (int(118.5 - s), int(118.5 + 1.8 * s), int(223.5 - 1.4 * s), int(223.5 + 1.4 * s))
    frame = np.zeros((160, 300, 3), np.uint8)  # the crop reaches past the bottom
    crop = face_crop(frame, (r0, r1, c0, c1))
    assert crop.shape == (224, 224, 3) and crop[0, 112, 0] == 0 and crop[-1, 112, 0] == 110


# --- sharpness, seam, jitter, jump -------------------------------------------------------------------

@pytest.fixture(scope="module")
def face():
    return cv2.imread(EXAMPLE_AVATAR)


def _crop(frame, box=BOX):
    t, b, l, r = box
    return cv2.resize(frame[t:b, l:r], (96, 96), interpolation=cv2.INTER_LINEAR)


def _paste(frame, crops, boxes, mask=None):
    """Crops (96×96 BGR uint8) pasted into copies of `frame` by lipstream's compose, one per box."""
    mouths = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
    frames = torch.from_numpy(frame).expand(len(crops), *frame.shape).contiguous()
    m = torch.from_numpy(feather_mask() if mask is None else mask)
    return compose_ref(frames, mouths, torch.tensor(boxes), m).numpy()


def _measure(fn, out, src, box=BOX, mask=None):
    g = metrics.paste_geometry(box, feather_mask() if mask is None else mask, src.shape)
    return fn(metrics.grey(out, g.region), metrics.grey(src, g.region), g)


def test_a_blurred_mouth_is_less_sharp(face):
    crop = _crop(face)
    plain, = _paste(face, [crop], [BOX])
    blurred, = _paste(face, [cv2.GaussianBlur(crop, (0, 0), 1.5)], [BOX])
    sharp = _measure(lambda o, s, g: metrics.sharpness(o, s, g.core), plain, face)
    blur = _measure(lambda o, s, g: metrics.sharpness(o, s, g.core), blurred, face)
    assert 0.2 < sharp < 1.2 and blur < sharp / 3
    assert _measure(lambda o, s, g: metrics.sharpness(o, s, g.core), face, face) == pytest.approx(1.0)


def test_a_hard_edged_paste_shows_a_seam(face):
    """A patch 40 levels brighter than the face, through the feathered mask and through that mask
    cut at 0.5: the cut one's edge holds far more gradient energy than the feathered one's."""
    bright = np.clip(_crop(face).astype(int) + 40, 0, 255).astype(np.uint8)
    soft, = _paste(face, [bright], [BOX])
    hard, = _paste(face, [bright], [BOX], mask=(feather_mask() >= 0.5).astype(np.float32))
    on_contour = lambda o, s, g: metrics.seam(o, g.contour)  # noqa: E731
    source = _measure(on_contour, face, face)
    assert _measure(on_contour, hard, face) > 3 * _measure(on_contour, soft, face)
    assert _measure(on_contour, soft, face) < 2 * source
    # A whole-box paste (no mask at all) shows at the box's edge instead.
    boxed, = _paste(face, [bright], [BOX], mask=np.ones((96, 96), np.float32))
    on_edge = lambda o, s, g: metrics.seam(o, g.edge)  # noqa: E731
    assert _measure(on_edge, boxed, face) > 3 * _measure(on_edge, soft, face)


def test_a_box_two_pixels_off_every_other_frame_is_jitter(face):
    crops = [_crop(face)] * 8
    steady = _paste(face, crops, [BOX] * 8)
    t, b, l, r = BOX
    shaky = _paste(face, crops, [BOX if i % 2 == 0 else (t, b, l + 2, r + 2) for i in range(8)])
    none = np.zeros((8, 2))
    still = metrics.summarise_jitter([_measure(metrics.displacement, f, face) for f in steady], none)
    jitter = metrics.summarise_jitter([_measure(metrics.displacement, f, face) for f in shaky], none)
    assert still["px_per_frame"] < 0.1 and jitter["px_per_frame"] > 1.0
    flat = metrics.summarise_jitter([_measure(metrics.displacement, f, face) for f in _paste(
        face, [np.full((96, 96, 3), 128, np.uint8)] * 4, [BOX] * 4)], none[:4])
    assert flat["px_per_frame"] is None and flat["registered"] == 0  # nothing there to register


def test_a_mouth_that_appears_at_once_is_a_jump(face):
    """Speech on frames 10–29: the mouth darkens by 2 levels more or less each frame while speaking;
    it starts at 20 levels at once, or eases in over 8 frames."""
    speaking = np.zeros(40, bool)
    speaking[10:30] = True

    def clip(ease):
        level = np.zeros(40)
        level[10:30] = 20 + 2 * (np.arange(20) % 2)
        if ease:
            level[2:10] = np.linspace(2, 18, 8)
            level[30:38] = np.linspace(18, 2, 8)
        crop = _crop(face).astype(float)
        frames = _paste(face, [np.clip(crop - d, 0, 255).astype(np.uint8) for d in level], [BOX] * 40)
        t, b, l, r = BOX
        grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float32)[t:b, l:r] for f in frames]
        change = np.array([0.0] + [np.abs(b - a).mean() for a, b in zip(grey[:-1], grey[1:])])
        return metrics.summarise_jump(change, speaking)

    abrupt, eased = clip(False), clip(True)
    assert abrupt["transitions"] == 2 and abrupt["ratio"] > 4
    assert eased["ratio"] < 2


def test_speech_is_found_in_the_audio_with_short_pauses_inside_it():
    rate, fps = 48000, 25
    rng = np.random.default_rng(0)
    on = np.zeros(60, bool)
    on[10:50] = True
    on[20:22] = False  # a 2-frame gap: still speech
    on[35:40] = False  # a 5-frame pause: an end and a start
    audio = np.concatenate([0.3 * rng.standard_normal(1920) if x else np.zeros(1920) for x in on]).astype(np.float32)
    found = metrics.speaking(audio, rate, fps, 60)
    expected = on.copy()
    expected[20:22] = True
    assert found.tolist() == expected.tolist()


# --- lipstream bench quality ---------------------------------------------------------------------------

def _bench(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "stream.cli", "-q", "bench", "quality", "--device", "cpu", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_bench_quality_renders_and_measures_the_procedural_mouth(tmp_path):
    """No --video: it speaks the text between two silences and renders it, then measures. The still
    avatar's paste does not move (0 expected); the sync row says what it needs."""
    (tmp_path / "t.txt").write_text("Hello there. A short clip for the quality bench.")
    proc = _bench("--text-file", str(tmp_path / "t.txt"), "--box", *map(str, BOX), "--json", str(tmp_path / "q.json"))
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "q.json").read_text())
    assert r["sync"] == {"needs": "--syncnet FILE (syncnet_v2.model of the SyncNet release)"}
    assert "needs --syncnet FILE" in proc.stdout and "sharpness" in proc.stdout
    assert 50 < r["speaking_frames"] < r["frames"] - 40  # a second of silence at each end
    assert r["jump"]["transitions"] >= 2 and r["jump"]["ratio"] > 0
    assert r["jitter"]["px_per_frame"] < 0.2 and r["jitter"]["track_px_per_frame"] == 0
    assert 0 < r["sharpness"]["ratio"] and 0.5 < r["sharpness"]["unpasted"] <= 1.1
    assert r["seam"]["seam"] < 2 * r["seam"]["seam_source"]


def test_bench_quality_on_a_video_avatar_against_its_own_face_track(tmp_path):
    """A video avatar that pans 2 px a frame and loops forward then backward: the face track moves,
    the paste moves with it (jitter near 0: each output frame is measured against the avatar frame
    it shows, found by its look; a wrong one is 2 px or more off); with a SyncNet file, LSE-D and
    LSE-C are numbers."""
    import av

    from stream import render

    image = cv2.resize(cv2.imread(EXAMPLE_AVATAR), (416, 416))
    src = tmp_path / "avatar.mp4"
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt, s.options = 256, 256, "yuv420p", {"crf": "0"}
        for i in range(8):
            frame = np.ascontiguousarray(image[16:272, 2 * i : 2 * i + 256])
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    out = tmp_path / "out.mp4"
    render(str(out), text="One, two, three, four, five, six.", avatar=str(src))
    save_random_syncnet(str(tmp_path / "s.model"), widths=TINY)
    proc = _bench("--video", str(out), "--avatar", str(src), "--syncnet", str(tmp_path / "s.model"),
                  "--json", str(tmp_path / "q.json"))
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "q.json").read_text())
    assert r["avatar_frames"] == 8 and r["frames"] > 40
    assert r["jitter"]["track_px_per_frame"] > 0.5 and r["jitter"]["px_per_frame"] < 0.2
    assert r["jitter"]["registered"] == r["frames"]
    sync = r["sync"]
    assert np.isfinite(sync["lse_d"]) and sync["lse_c"] >= 0 and -15 <= sync["offset"] <= 15
    assert sync["windows"] == r["frames"] - 5 and len(sync["distances"]) == 31


def test_bench_quality_refuses_a_bad_syncnet_file_in_one_line(tmp_path):
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"\x80\x02garbage")
    proc = _bench("--syncnet", str(bad), timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"lipstream: error: {bad} is not a readable torch file (truncated or another format?): "), proc.stderr
    missing = _bench("--video", str(tmp_path / "none.mp4"), timeout=120)
    assert missing.returncode == 2 and missing.stderr.strip() == f"lipstream: error: video not found: {tmp_path / 'none.mp4'}"
    assert not os.path.exists(tmp_path / "q.json")
