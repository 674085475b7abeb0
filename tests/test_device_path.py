"""On CUDA, nothing crosses to the host between the clock and the encoder's colour conversion."""
import pytest
import torch
from conftest import EXAMPLE_AVATAR


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_frame_path_never_synchronises_with_the_host(wav2lip_checkpoint, monkeypatch):
    import importlib

    from kernels import bgr_to_i420
    from kernels.testing import compile_kernels
    from stream.frames import FrameBatch
    from stream.lipsync.stage import LipSyncStage
    from stream.lipsync.wav2lip.model import Wav2LipModel
    from stream.lipsync.worker import LipSyncWorker
    from stream.video.avatar import load_avatar
    from stream.video.compose import ComposeStage

    dev = torch.device("cuda")
    # The bundled avatar's face box: this is about the frame path, not detection (whose OpenCV the
    # GPU image lacked).
    avatar = load_avatar(EXAMPLE_AVATAR, dev, box=(67, 170, 177, 270), use_cache=False)
    model = Wav2LipModel(wav2lip_checkpoint, dev, "bfloat16", max_batch=16)
    face = model.prepare(avatar)
    lipsync = LipSyncStage(LipSyncWorker(model, 16), face)
    compose = ComposeStage(avatar, face, model.dtype)
    batch = FrameBatch(0, 16, audio=None, avatar_idx=avatar.frame_index(torch.arange(16, device=dev)),
                       features=torch.randn(16, 1, 80, 16, device=dev))
    # The kernel tests may have put the kernels under the interpreter, which copies to the host.
    for name in ("kernels.prepare", "kernels.compose", "kernels.colour"):
        compile_kernels(importlib.import_module(name), monkeypatch)
    out = []
    lipsync.process(batch, lambda b: compose.process(b, out.append))  # compiles the kernels
    bgr_to_i420(out.pop().frames)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any device→host copy or sync raises
    try:
        lipsync.process(batch, lambda b: compose.process(b, out.append))
        yuv = bgr_to_i420(out[0].frames)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out[0].frames.is_cuda and out[0].frames.shape == (16, 512, 512, 3)
    assert yuv.shape == (16, 768, 512)
