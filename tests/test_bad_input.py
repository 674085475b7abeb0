"""Each bad input: one clear line on stderr, a non-zero exit, no traceback, no output file."""
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import ROOT

from stream.cli.main import main


def _run(capsys, tmp_path, *args, out_name="out.mp4"):
    out = tmp_path / out_name
    code = main(["render", *args, "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error" in line]
    assert code == 2  # README: bad input exits with status 2
    assert len(errors) == 1, err
    assert "Traceback" not in "\n".join(err)
    assert (not out.exists() or out.is_dir()) and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.mp4")]
    return errors[0]


def test_no_face(capsys, tmp_path):
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((256, 256, 3), 128, np.uint8))
    assert "no face found in frame 0" in _run(capsys, tmp_path, "--text", "hi", "--avatar", str(blank))


def test_empty_text(capsys, tmp_path):
    assert "empty text" in _run(capsys, tmp_path, "--text", "   ")
    assert "no words to say" in _run(capsys, tmp_path, "--text", "... !?")


def test_unreadable_audio(capsys, tmp_path):
    bad = tmp_path / "speech.wav"
    bad.write_bytes(b"RIFF garbage that is not audio" * 10)
    assert "cannot read audio" in _run(capsys, tmp_path, "--audio", str(bad))


def test_missing_audio(capsys, tmp_path):
    assert "audio file not found" in _run(capsys, tmp_path, "--audio", str(tmp_path / "none.wav"))


def test_unreadable_image_and_video(capsys, tmp_path):
    img = tmp_path / "face.png"
    img.write_bytes(b"\x89PNG not really")
    assert "cannot read image" in _run(capsys, tmp_path, "--text", "hi", "--avatar", str(img))
    vid = tmp_path / "face.mp4"
    vid.write_bytes(b"\x00\x00\x00\x18ftypmp42 broken")
    assert "cannot read avatar video" in _run(capsys, tmp_path, "--text", "hi", "--avatar", str(vid))


def test_not_a_checkpoint(capsys, tmp_path):
    ckpt = tmp_path / "model.pth"
    ckpt.write_text("not a model")
    assert "not a readable torch checkpoint" in _run(capsys, tmp_path, "--text", "hi", "--checkpoint", str(ckpt))


def test_unwritable_output_checked_first(capsys, tmp_path):
    code = main(["render", "--text", "hi", "-o", str(tmp_path / "missing" / "out.mp4")])
    assert code != 0 and "does not exist" in capsys.readouterr().err
    (tmp_path / "taken.mp4").mkdir()
    assert "is a directory" in _run(capsys, tmp_path, "--text", "hi", out_name="taken.mp4/")
    assert _run(capsys, tmp_path, "--text", "hi", out_name="out.avi") == (
        f"lipstream: error: output {tmp_path / 'out.avi'} must end in .mp4, .m4v, .mov, .mkv, .webm or .h264 "
        "(or be - for standard output)")


def test_bad_config(capsys, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("fps: 25\nspeed: 3\n")
    assert "unknown setting 'speed'" in _run(capsys, tmp_path, "--text", "hi", "--config", str(cfg))


def test_console_script_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "stream.cli", "render", "--text", "", "-o", str(tmp_path / "x.mp4")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "lipstream: error: empty text: nothing to say"
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("body,message", [
    ("box: 5\n", "box must be four whole numbers"),
    ("fps: true\n", "fps must be a whole number"),
    ("preset: bogus\n", "unknown x264 preset"),
    ("voice: 5\n", "voice must be a str"),
    ("- a list\n", "must be a mapping"),
    ("fps: [\n", "not valid YAML"),
])
def test_config_values_are_checked(capsys, tmp_path, body, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(body)
    assert message in _run(capsys, tmp_path, "--text", "hi", "--config", str(cfg))


def test_tiny_avatar(capsys, tmp_path):
    img = tmp_path / "dot.png"
    cv2.imwrite(str(img), np.zeros((1, 9, 3), np.uint8))
    assert "at least 64" in _run(capsys, tmp_path, "--text", "hi", "--avatar", str(img))


def test_not_utf8_text(capsys, tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes(b"\xff\xfe\x00h\x00i\xff")
    assert "not UTF-8" in _run(capsys, tmp_path, "--text-file", str(f))


def test_a_misspelt_setting_in_the_python_api_is_one_clear_error(tmp_path):
    from stream import LipstreamError, render

    with pytest.raises(LipstreamError, match=r"^unknown setting 'fsp' \(known: avatar, background, batch_size, box"):
        render(str(tmp_path / "o.mp4"), text="Hi.", fsp=25)
