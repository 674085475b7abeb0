"""A MuseTalk models folder that is not whole or not MuseTalk's is one line naming the file and the
layout, before any model is built; on the command line, exit 2 and no file."""
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

from stream import LipstreamError
from stream.lipsync.musetalk.files import LAYOUT, layout_text, resolve


def _copy(src: str, dst) -> str:
    shutil.copytree(src, dst)
    return str(dst)


@pytest.mark.parametrize("rel", list(LAYOUT.values()))
def test_each_missing_file_is_named_with_the_layout(musetalk_tiny, tmp_path, rel):
    folder = _copy(musetalk_tiny, tmp_path / "models")
    os.remove(os.path.join(folder, rel))
    with pytest.raises(LipstreamError) as e:
        resolve(folder)
    assert str(e.value) == (f"the MuseTalk models folder {folder} has no {rel} (the layout of MuseTalk's download "
                            f"script: {layout_text()})")


def test_a_file_or_a_wav2lip_checkpoint_is_not_a_models_folder(wav2lip_checkpoint, tmp_path):
    with pytest.raises(LipstreamError) as e:
        resolve(wav2lip_checkpoint)
    assert str(e.value) == ("--musetalk-models wants the folder MuseTalk's download script fills, not a file: "
                            f"{wav2lip_checkpoint} (a Wav2Lip checkpoint goes with --checkpoint)")
    with pytest.raises(LipstreamError, match="MuseTalk models folder not found: "):
        resolve(str(tmp_path / "nowhere"))


def _load(folder):
    from stream.lipsync.musetalk.model import MuseTalkModel

    return MuseTalkModel(folder, torch.device("cpu"), "float32")


def test_a_truncated_unet_or_a_wav2lip_checkpoint_in_its_place(musetalk_tiny, wav2lip_checkpoint, tmp_path):
    folder = _copy(musetalk_tiny, tmp_path / "models")
    unet = os.path.join(folder, LAYOUT["unet"])
    data = open(unet, "rb").read()
    with open(unet, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(LipstreamError, match=r"unet.pth is not a readable torch file \(truncated or another format\?\)"):
        _load(folder)
    shutil.copy(wav2lip_checkpoint, unet)
    with pytest.raises(LipstreamError) as e:
        _load(folder)
    assert str(e.value) == f"{unet} is a training checkpoint (a Wav2Lip one?), not MuseTalk's plain state dict"


def test_weights_that_do_not_fit_the_config(musetalk_tiny, tmp_path):
    folder = _copy(musetalk_tiny, tmp_path / "models")
    unet = os.path.join(folder, LAYOUT["unet"])
    state = torch.load(unet, weights_only=True)
    state["conv_in.weight"] = torch.zeros(32, 8, 1, 1)
    torch.save(state, unet)
    with pytest.raises(LipstreamError) as e:
        _load(folder)
    assert str(e.value) == (f"{unet} does not match {os.path.join(folder, LAYOUT['unet_config'])}: conv_in.weight has "
                            "shape (32, 8, 1, 1), expected (32, 8, 3, 3)")
    del state["conv_in.weight"]
    torch.save(state, unet)
    with pytest.raises(LipstreamError, match="1 parameters missing, 0 unexpected"):
        _load(folder)


def test_the_command_line_says_it_in_one_line_and_writes_nothing(musetalk_tiny, tmp_path):
    folder = _copy(musetalk_tiny, tmp_path / "models")
    os.remove(os.path.join(folder, LAYOUT["parsing"]))
    out = tmp_path / "out.mp4"
    proc = subprocess.run([sys.executable, "-m", "stream.cli", "render", "--text", "Hi.", "--musetalk-models", folder,
                           "--box", "67", "170", "177", "270", "-o", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"lipstream: error: the MuseTalk models folder {folder} "
                                                            "has no face-parse-bisent/79999_iter.pth")
    assert "Traceback" not in proc.stderr and not out.exists() and os.listdir(tmp_path) == ["models"]
