"""MuseTalk 1.5's blend mask: the jaw mode's classes and growth, the crop around the face, the lower
half only, blurred, inside the face box."""
import numpy as np
import torch

from stream.lipsync.musetalk import blend
from stream.lipsync.musetalk.bisenet import LOWER_LIP, MOUTH, NOSE, SKIN, UPPER_LIP
from stream.lipsync.musetalk.random import random_parser


def test_the_crop_is_a_square_one_and_a_half_times_the_face():
    assert blend.crop_box((100, 200, 50, 130)) == (90 - 75, 150 - 75, 90 + 75, 150 + 75)  # side int(100 // 2 · 1.5) · 2
    assert blend.crop_box((0, 81, 0, 60)) == (-30, -20, 90, 100)  # reaching outside the frame is allowed


def test_the_cone_kernel_grows_the_skin_down_over_the_jaw():
    k = blend.cone_kernel()
    assert k.shape == (33, 33) and k[:10].sum() == 0
    assert [int(k[r].sum()) for r in (10, 11, 20, 21, 32)] == [1, 3, 21, 21, 21]
    assert (np.flatnonzero(k[20]) == np.arange(6, 27)).all()
    skin = np.zeros((512, 512), np.int64)
    skin[100:300, 150:362] = SKIN  # a face of skin; its chin at row 299
    mask = blend.jaw_mask(skin)
    assert mask[299, 256] == 255 and mask[304, 256] == 255 and mask[310, 256] == 0  # grown a few rows below the chin
    assert mask[200, 140] == 0 and mask[200, 256] == 255


def test_the_nose_is_left_out_and_the_lips_are_in():
    parsing = np.full((512, 512), SKIN, np.int64)
    parsing[200:240, 240:272] = NOSE
    parsing[300:310, 230:280] = UPPER_LIP
    parsing[310:320, 230:280] = MOUTH
    parsing[320:330, 230:280] = LOWER_LIP
    parsing[:, 480:] = 0  # background at the right edge stays out too
    mask = blend.jaw_mask(parsing)
    assert (mask[200:240, 240:272] == 0).all()
    assert (mask[300:330, 230:280] == 255).all()
    assert mask[100, 256] == 255 and (mask[:, 500:] == 0).all()


def test_the_mask_is_the_lower_half_of_the_crop_blurred_inside_the_face_box():
    frame = np.full((1, 300, 300, 3), 128, np.uint8)
    box = np.array([[60, 200, 90, 210]])  # top, bottom, left, right: 140 × 120
    masks = blend.blend_masks(frame, box, random_parser(), torch.device("cpu"))
    assert masks.shape == (1, 256, 256) and masks.dtype == np.uint8
    m = masks[0].astype(int)
    # The crop is 210 px square around the box's centre (row 130): its upper half ends at the box's row 70.
    centre = round((130 - 60) / 140 * 256)
    assert (m[: centre - 30] == 0).all()  # nothing above the crop's half, beyond the blur
    assert m[200, 128] == 255  # the lower face: painted
    assert np.abs(np.diff(m[:, 128])).max() < 40  # a ramp, not a hard edge (the Gaussian blur)
