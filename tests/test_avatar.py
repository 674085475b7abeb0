import av
import numpy as np
import torch
from conftest import EXAMPLE_AVATAR

from stream.lipsync.face96 import feather_mask, prepare_face96
from stream.video.avatar import load_avatar, loop_order


def test_loop_plays_forward_then_backward_without_repeats():
    assert loop_order(1).tolist() == [0]
    assert loop_order(4).tolist() == [0, 1, 2, 3, 2, 1]
    seq = np.concatenate([loop_order(5)] * 2)
    assert np.abs(np.diff(seq)).max() == 1  # no jump, even across the wrap


def test_mask_is_one_on_the_mouth_and_zero_at_the_edges():
    m = feather_mask()
    assert m[70, 48] == 1.0
    assert m[0].max() == m[-1].max() == m[:, 0].max() == m[:, -1].max() == 0.0
    assert m[:40].max() == 0.0  # the eyes stay the model's reference, untouched
    assert np.abs(np.diff(m, axis=0)).max() < 0.2  # feathered, not a hard edge


def test_image_avatar_is_prepared_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LIPSTREAM_CACHE", str(tmp_path))
    a = load_avatar(EXAMPLE_AVATAR, torch.device("cpu"))
    assert a.frames.shape == (1, 512, 512, 3) and prepare_face96(a, a.frames.device).inputs.shape == (1, 96, 96, 3)
    cached = list((tmp_path / "avatars").glob("*.npz"))
    assert len(cached) == 1
    import stream.video.face

    monkeypatch.setattr(stream.video.face, "face_boxes", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-detected")))
    again = load_avatar(EXAMPLE_AVATAR, torch.device("cpu"))
    assert torch.equal(again.boxes, a.boxes) and again.key == a.key


def test_video_avatar_loops_and_smooths(tmp_path):
    src = (tmp_path / "face.mp4")
    import cv2

    image = cv2.imread(EXAMPLE_AVATAR)
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 256, 256, "yuv420p"
        for i in range(6):
            shifted = np.roll(cv2.resize(image, (256, 256)), i, axis=1)
            for p in s.encode(av.VideoFrame.from_ndarray(shifted, format="bgr24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    a = load_avatar(str(src), torch.device("cpu"), use_cache=False)
    assert a.frames.shape[0] == 6 and a.loop.tolist() == [0, 1, 2, 3, 4, 5, 4, 3, 2, 1]
    assert a.frame_index(torch.tensor([0, 9, 10])).tolist() == [0, 1, 0]
    lefts = a.boxes[:, 2].tolist()
    assert max(lefts) - min(lefts) <= 6  # smoothed, following the 1 px/frame drift


def test_damaged_cache_entry_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.setenv("LIPSTREAM_CACHE", str(tmp_path))
    first = load_avatar(EXAMPLE_AVATAR, torch.device("cpu"))
    (entry,) = (tmp_path / "avatars").glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:200])
    again = load_avatar(EXAMPLE_AVATAR, torch.device("cpu"))
    assert torch.equal(again.boxes, first.boxes)


def test_the_cache_key_covers_the_box(tmp_path, monkeypatch):
    """A --box run must not reuse the boxes of a detected run, nor of another box."""
    monkeypatch.setenv("LIPSTREAM_CACHE", str(tmp_path))
    detected = load_avatar(EXAMPLE_AVATAR, torch.device("cpu"))
    given = load_avatar(EXAMPLE_AVATAR, torch.device("cpu"), box=(60, 180, 170, 280))
    other = load_avatar(EXAMPLE_AVATAR, torch.device("cpu"), box=(50, 200, 150, 300))
    assert given.boxes[0].tolist() == [60, 180, 170, 280] and other.boxes[0].tolist() == [50, 200, 150, 300]
    assert detected.boxes[0].tolist() not in ([60, 180, 170, 280], [50, 200, 150, 300])
    assert not torch.equal(prepare_face96(given, given.frames.device).inputs, prepare_face96(detected, given.frames.device).inputs)
    assert len({given.key, other.key, detected.key}) == 3
    assert len(list((tmp_path / "avatars").glob("*.npz"))) == 3
