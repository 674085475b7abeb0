"""The compose stage pastes each mouth through the feather mask: fully on the lips, not at all at the crop's edge."""
import numpy as np
import torch
from conftest import EXAMPLE_AVATAR

from stream.frames import FrameBatch
from stream.lipsync.face96 import prepare_face96
from stream.video.avatar import load_avatar
from stream.video.compose import ComposeStage

BOX = (67, 170, 177, 270)


def test_the_mouth_is_blended_by_the_feather_mask():
    avatar = load_avatar(EXAMPLE_AVATAR, torch.device("cpu"), BOX, use_cache=False)
    white = torch.ones(1, 3, 96, 96)  # a mouth that differs from the face everywhere
    out = []
    ComposeStage(avatar, prepare_face96(avatar, avatar.frames.device)).process(
        FrameBatch(0, 1, np.zeros(1920, np.float32), avatar_idx=torch.tensor([0]), faces=white), out.append)
    frame, source = out[0].frames[0].int(), avatar.frames[0].int()
    t, b, l, r = BOX
    lips = (t + (b - t) * 71 // 96, l + (r - l) // 2)  # crop row 71, column 48: mask 1
    assert frame[lips].tolist() == [255, 255, 255]
    assert torch.equal(frame[t : t + (b - t) * 40 // 96], source[t : t + (b - t) * 40 // 96])  # eyes: mask 0
    assert torch.equal(frame[:, l : l + 3], source[:, l : l + 3]) and torch.equal(frame[:, r - 3 : r], source[:, r - 3 : r])
    outside = torch.ones(frame.shape[:2], dtype=torch.bool)
    outside[t:b, l:r] = False
    assert torch.equal(frame[outside], source[outside])
    ramp = frame[t + (b - t) * 51 // 96, l + (r - l) // 2, 0].item()  # half-way up the mask's ramp
    assert source[t + (b - t) * 51 // 96, l + (r - l) // 2, 0].item() < ramp < 255
