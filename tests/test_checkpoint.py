import pytest
import torch

from stream import LipstreamError, Wav2Lip, load_wav2lip
from stream.lipsync.wav2lip.checkpoint import save_random_wav2lip


def test_parameter_count_matches_public_model():
    assert abs(sum(p.numel() for p in Wav2Lip().parameters()) / 1e6 - 36.3) < 0.05


@pytest.mark.parametrize("prefix", ["", "module."])
def test_public_format_loads_and_runs(tmp_path, prefix):
    path = tmp_path / "w.pth"
    save_random_wav2lip(str(path), seed=3, prefix=prefix)
    model = load_wav2lip(str(path), "cpu")
    assert not model.training
    reference = Wav2Lip()
    ckpt = torch.load(path, weights_only=True)["state_dict"]
    reference.load_state_dict({k.removeprefix("module."): v for k, v in ckpt.items()})
    reference.eval()
    mel, faces = torch.randn(2, 1, 80, 16), torch.rand(2, 6, 96, 96)
    with torch.no_grad():
        out = model(mel, faces)
        assert out.shape == (2, 3, 96, 96)
        assert 0 <= out.min() and out.max() <= 1
        assert torch.equal(out, reference(mel, faces))


def test_missing_truncated_and_foreign_files(tmp_path, wav2lip_checkpoint):
    with pytest.raises(LipstreamError, match="not found"):
        load_wav2lip(str(tmp_path / "nope.pth"), "cpu")
    truncated = tmp_path / "cut.pth"
    with open(wav2lip_checkpoint, "rb") as f:
        truncated.write_bytes(f.read(100_000))
    with pytest.raises(LipstreamError, match="not a readable torch checkpoint"):
        load_wav2lip(str(truncated), "cpu")
    foreign = tmp_path / "other.pth"
    torch.save({"state_dict": torch.nn.Linear(3, 3).state_dict()}, foreign)
    with pytest.raises(LipstreamError, match="not a Wav2Lip checkpoint"):
        load_wav2lip(str(foreign), "cpu")
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(LipstreamError, match="not a readable torch checkpoint"):
        load_wav2lip(str(text), "cpu")


def test_pre_zip_format_loads(tmp_path, wav2lip_checkpoint):
    """The public checkpoints were written by torch 1.x, before the zip format."""
    legacy = tmp_path / "legacy.pth"
    ckpt = torch.load(wav2lip_checkpoint, weights_only=True)
    torch.save(ckpt, legacy, _use_new_zipfile_serialization=False)
    a, b = load_wav2lip(str(legacy), "cpu"), load_wav2lip(wav2lip_checkpoint, "cpu")
    mel, faces = torch.randn(1, 1, 80, 16), torch.rand(1, 6, 96, 96)
    with torch.no_grad():
        assert torch.equal(a(mel, faces), b(mel, faces))


def test_an_untrained_checkpoint_gets_a_hint(wav2lip_checkpoint, caplog):
    with caplog.at_level("WARNING", logger="lipstream"):
        load_wav2lip(wav2lip_checkpoint, "cpu")  # saved after 1 training step
    assert "saved after 1 training step(s): an untrained Wav2Lip gives a flat, grey mouth" in caplog.text


def test_wrongly_shaped_inputs_are_refused():
    import torch

    from stream.lipsync.wav2lip.net import Wav2Lip

    model = Wav2Lip().eval()
    faces = torch.zeros(2, 6, 96, 96)
    with pytest.raises(ValueError, match=r"^mel windows must be B×1×80×16, not 2×1×80×15$"):
        model(torch.zeros(2, 1, 80, 15), faces)
    with pytest.raises(ValueError, match=r"^faces must be B×6×96×96, not 2×3×96×96$"):
        model(torch.zeros(2, 1, 80, 16), faces[:, :3])
    with pytest.raises(ValueError, match=r"^3 mel windows for 2 faces$"):
        model(torch.zeros(3, 1, 80, 16), faces)
