import cv2
import numpy as np
import pytest
from conftest import EXAMPLE_AVATAR

from stream import LipstreamError
from stream.video.face import detect, face_boxes, pad_box, smooth_boxes


def test_haar_finds_the_example_face():
    top, bottom, left, right = detect(cv2.imread(EXAMPLE_AVATAR))
    assert abs(left - 177) <= 4 and abs(top - 66) <= 4 and abs((right - left) - 95) <= 6


def test_padding_adds_chin_room_and_clips():
    assert pad_box((10, 50, 5, 40), 100, 100) == (10, 60, 5, 40)
    assert pad_box((10, 95, 5, 40), 100, 100) == (10, 100, 5, 40)


def test_smoothing_uses_a_five_frame_window():
    boxes = np.array([[0, 10, 0, 10]] * 4 + [[5, 15, 5, 15]] * 4)
    smooth = smooth_boxes(boxes)
    assert smooth[0].tolist() == [1, 11, 1, 11]  # frames 0..4
    assert smooth[-1].tolist() == smooth[3].tolist()  # the last ones share the final window
    assert len(smooth) == len(boxes)


def test_user_box_must_fit():
    frame = np.zeros((100, 80, 3), np.uint8)
    assert face_boxes([frame], (10, 60, 5, 70)).tolist() == [[10, 60, 5, 70]]
    with pytest.raises(LipstreamError, match=r"^--box 10 160 5 70 reaches outside the avatar, which is 80×100$"):
        face_boxes([frame], (10, 160, 5, 70))


def test_detected_boxes_are_smoothed_over_five_frames():
    """A face that jumps 12 px back and forth each frame: detection follows it, the boxes used do not."""
    import cv2
    from conftest import EXAMPLE_AVATAR

    from stream.video.face import detect

    image = cv2.imread(EXAMPLE_AVATAR)
    frames = [np.ascontiguousarray(np.roll(image, 12 * (i % 2), axis=1)) for i in range(10)]
    raw = [detect(f)[2] for f in frames]  # left edge, each frame on its own
    assert min(abs(a - b) for a, b in zip(raw, raw[1:])) >= 8
    lefts = face_boxes(frames)[:, 2]
    assert max(abs(a - b) for a, b in zip(lefts, lefts[1:])) <= 4


def test_an_opencv_without_haar_is_one_line_naming_the_fix(monkeypatch):
    """The GPU image's OpenCV had no CascadeClassifier: a traceback deep in detection before."""
    from stream.video import face

    face._cascade.cache_clear()
    monkeypatch.delattr(cv2, "CascadeClassifier")
    try:
        with pytest.raises(LipstreamError, match=r"has no Haar face detector: install opencv-python-headless<5, "
                                                 r"or give the face box \(--box\)$"):
            detect(np.zeros((64, 64, 3), np.uint8))
    finally:
        face._cascade.cache_clear()
