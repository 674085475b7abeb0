"""The weight-free mouth on the bundled avatar: the jaw and lower lip move down, the upper teeth keep
their colour, darkness only in the gap that opens below the mouth line, rounded sounds narrow it,
and closed is the source exactly (alpha 0)."""
import cv2
import numpy as np
import pytest
import torch

from kernels.compose import compose_ref
from stream.lipsync.face96 import crops
from stream.lipsync.procedural import DROP, MOUTH, SIZE, ProceduralLipSync, mouth_line
from stream.video.avatar import load_avatar

BOX = (67, 170, 177, 270)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup():
    avatar = load_avatar("stream/assets/astronaut.png", CPU, BOX, False)
    model = ProceduralLipSync(CPU)
    face = model.prepare(avatar)
    return avatar, model, face, model.gather(face, torch.tensor([0]))


def mel(level: float, low: float = 0.0, mid: float = 0.0) -> torch.Tensor:
    m = torch.full((1, 1, 80, 16), level)
    m[:, :, 5:26] += low
    m[:, :, 37:57] += mid
    return m


def luma(x: torch.Tensor) -> torch.Tensor:
    return 0.114 * x[:, 0] + 0.587 * x[:, 1] + 0.299 * x[:, 2]


def test_the_mouth_line_lies_under_the_upper_teeth():
    """On the astronaut's smile the line runs along the bottom of her upper teeth (rows 101–105 of the
    128 grid in the middle, found by hand), curving up towards the corners."""
    src = cv2.imread("stream/assets/astronaut.png")
    line = mouth_line(crops(src[None], np.array([BOX]), SIZE)[0])
    mid = SIZE * (MOUTH[0] + MOUTH[1]) / 2
    assert 101 <= line[int(mid)] <= 105
    assert line[int(SIZE * MOUTH[0]) + 4] < line[int(mid)] - 3  # a smile: the corners are higher


def test_closed_is_the_source_exactly(setup):
    avatar, model, face, inputs = setup
    out = model(mel(-4.0), inputs)
    assert out.shape == (1, 4, SIZE, SIZE) and out[:, 3].abs().max() == 0
    frame = compose_ref(avatar.frames[:1], out, face.boxes[:1], face.mask(torch.tensor([0])))
    assert torch.equal(frame, avatar.frames[:1])  # idle, and speech's first and last frames, are the avatar


def test_open_moves_the_jaw_keeps_the_teeth_and_darkens_only_the_gap(setup):
    _, model, _, inputs = setup
    src, line = inputs[:, :3], inputs[0, 3, 0]
    out = model(mel(0.0), inputs)
    c = int(SIZE * (MOUTH[0] + MOUTH[1]) / 2)
    top = int(line[c])
    # The upper teeth: the rows just above the line keep their brightness (no grey stain over them).
    teeth = slice(top - 5, top - 1)
    assert luma(out)[0, teeth, c - 8 : c + 8].mean() == pytest.approx(luma(src)[0, teeth, c - 8 : c + 8].mean(), rel=0.06)
    # Dark only below the line: every pixel that got much darker than the source lies under it.
    darker = (luma(out) < 0.5 * luma(src))[0]
    rows = torch.nonzero(darker)[:, 0].float()
    assert len(rows) > 50 and bool((rows >= line[torch.nonzero(darker)[:, 1]] - 1).all())
    # The chin moved down: the source's rows under the gap reappear `drop` rows lower.
    drop = int(DROP * SIZE * model._across[c])
    below = slice(top + 6, top + 12)
    shifted = slice(top + 6 + drop, top + 12 + drop)
    moved = (out[0, :3, shifted, c - 4 : c + 4] - src[0, :, below, c - 4 : c + 4]).abs().mean()
    stayed = (out[0, :3, below, c - 4 : c + 4] - src[0, :, below, c - 4 : c + 4]).abs().mean()
    assert moved < 0.5 * stayed


def test_a_rounded_sound_opens_narrower(setup):
    _, model, _, inputs = setup
    assert model.roundness(mel(-0.8, low=0.6, mid=-0.6)).item() > 0.5 > model.roundness(mel(-0.8, low=-0.6, mid=0.6)).item()
    open_ = lambda m: (luma(model(m, inputs)) < 0.5 * luma(inputs[:, :3]))[0].any(dim=0).sum().item()
    assert open_(mel(-0.8, low=0.6, mid=-0.6)) < open_(mel(-0.8, low=-0.6, mid=0.6))


def test_the_opening_follows_loudness_smoothly(setup):
    _, model, _, inputs = setup
    gap = [(luma(model(mel(v), inputs)) < 0.5 * luma(inputs[:, :3])).sum().item() for v in np.linspace(-3.0, -0.4, 8)]
    assert gap[0] == 0 and gap[-1] > 200 and all(a <= b for a, b in zip(gap, gap[1:]))
