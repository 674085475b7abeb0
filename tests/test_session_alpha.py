"""Live sessions of a transparent avatar: each Frame carries the avatar's own matte (idle and speaking,
whatever the model painted), a background makes them flat, and the stacked-alpha picture holds both."""
import cv2
import numpy as np
import pytest
import torch
from conftest import EXAMPLE_AVATAR
from test_session import BOX, drain, ends, speaking

from stream.live.session import Frame, Session
from stream.serve.media import SessionMedia


def _matte(h=512, w=512):
    yy, xx = np.mgrid[:h, :w]
    return np.clip((230 - np.hypot(yy - h / 2, xx - w / 2)) * 255 / 12, 0, 255).astype(np.uint8)


@pytest.fixture
def rgba(tmp_path):
    path = tmp_path / "rgba.png"
    cv2.imwrite(str(path), np.dstack([cv2.imread(EXAMPLE_AVATAR), _matte()]))
    return str(path)


def test_frames_carry_the_avatars_matte_idle_and_speaking(rgba, speech_22k):
    want = torch.from_numpy(_matte())
    with Session(avatar=rgba, box=BOX, cache=False) as s:
        idle = s.get()
        s.push_audio(speech_22k[:22050], 22050)
        s.end_segment()
        spoken = speaking(drain(s, ends(1)))
    assert isinstance(idle, Frame) and torch.equal(idle.matte, want)
    assert spoken and all(torch.equal(f.matte, want) for f in spoken)
    # The mouth moved (the model painted), the matte did not.
    assert any(not torch.equal(f.image, idle.image) for f in spoken)
    rgba_host = spoken[0].rgba()
    assert rgba_host.shape == (512, 512, 4) and np.array_equal(rgba_host[..., 3], _matte())
    assert np.array_equal(rgba_host[..., :3], spoken[0].rgb())


def test_an_opaque_avatars_frames_have_no_matte():
    with Session(box=BOX, cache=False) as s:
        f = s.get()
    assert f.matte is None and (f.rgba()[..., 3] == 255).all()


def test_a_session_background_makes_flat_frames_exact_where_the_matte_is_zero(rgba, speech_22k):
    clear = torch.from_numpy(_matte() == 0)
    with Session(avatar=rgba, box=BOX, background="#3366cc", cache=False) as s:
        idle = s.get()
        s.push_audio(speech_22k[:11025], 22050)
        s.end_segment()
        spoken = speaking(drain(s, ends(1)))
    for f in [idle, *spoken]:
        assert f.matte is None and (f.image[clear] == torch.tensor([0xcc, 0x66, 0x33], dtype=torch.uint8)).all()


def test_stacked_alpha_picture_is_colour_above_matte(rgba):
    with Session(avatar=rgba, box=BOX, cache=False) as s:
        f = s.get()
        stacked = SessionMedia(s, alpha="stacked")
        flat = SessionMedia(s)
        assert (stacked.format.height, flat.format.height) == (1024, 512)
        picture = stacked.picture(f)
        assert np.array_equal(picture[:512], f.bgr()) and all(np.array_equal(picture[512:, :, c], _matte())
                                                              for c in range(3))
        assert np.array_equal(flat.picture(f), f.bgr())
        with pytest.raises(ValueError, match="alpha must be one of"):
            SessionMedia(s, alpha="premultiplied")
