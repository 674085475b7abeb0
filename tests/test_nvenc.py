"""The NVENC encoder's surroundings, on any machine: the probe, the choice of libx264 and its one-line
reason, and the packet path NVENC's output takes, fed with libx264's real Annex B output. The
encoding itself needs an NVIDIA GPU with NVENC (none lent so far has one): that test skips."""
import fractions
import logging
import sys
import types

import av
import numpy as np
import pytest
import torch

from stream.errors import LipstreamError
from stream.video import nvenc
from stream.video.encode import VideoFormat, X264Encoder, encoder_choice, make_video_encoder

FMT = VideoFormat(128, 96, 25, keyint=10)


@pytest.fixture(autouse=True)
def _fresh_probe():
    nvenc.unavailable.cache_clear()
    yield
    nvenc.unavailable.cache_clear()


def _frames(n=30):
    """Smooth colour ramps with a bright square moving across: what an encoder keeps near the input."""
    y, x = np.mgrid[0 : FMT.height, 0 : FMT.width]
    base = np.stack([x * 2, y * 2, 255 - x - y], axis=-1).clip(0, 255).astype(np.uint8)
    out = []
    for i in range(n):
        f = base.copy()
        f[30:60, 4 * i : 4 * i + 30] = 240
        out.append(f)
    return out


def test_frames_on_the_cpu_use_libx264():
    assert nvenc.unavailable(torch.device("cpu")) == "the frames are on the CPU"
    assert isinstance(make_video_encoder(FMT, torch.device("cpu")), X264Encoder)
    assert encoder_choice(torch.device("cpu")) == "libx264 (NVENC: the frames are on the CPU)"


def test_without_pynvvideocodec_libx264_says_why_once(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", None)  # not installed: the import fails
    cuda = torch.device("cuda", 0)
    with caplog.at_level(logging.INFO, logger="lipstream"):
        assert isinstance(make_video_encoder(FMT, cuda), X264Encoder)
        assert isinstance(make_video_encoder(FMT, cuda), X264Encoder)
    lines = [r.getMessage() for r in caplog.records if "video encoder" in r.getMessage()]
    assert len(lines) <= 1  # once per process and device (an earlier test may have said it already)
    why = nvenc.unavailable(cuda)
    assert why.startswith("PyNvVideoCodec is not usable (") and why.endswith("; pip install 'lipstream[nvenc]')")
    with pytest.raises(LipstreamError, match=r"^encoder nvenc: PyNvVideoCodec is not usable \("):
        make_video_encoder(FMT, cuda, "nvenc")
    assert isinstance(make_video_encoder(FMT, cuda, "libx264"), X264Encoder)


def test_a_gpu_without_nvenc_is_named(monkeypatch):
    """The H100, H200 and A100: PyNvVideoCodec imports, opening an encoder session fails."""
    def no_session(*args, **kwargs):
        raise RuntimeError("NvEncOpenEncodeSessionEx failed: NV_ENC_ERR_NO_ENCODE_DEVICE\nmore detail")

    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", types.SimpleNamespace(CreateEncoder=no_session))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert nvenc.unavailable(torch.device("cuda", 0)) == (
        "the NVIDIA H100 80GB HBM3 cannot open an NVENC session (NvEncOpenEncodeSessionEx failed: "
        "NV_ENC_ERR_NO_ENCODE_DEVICE)")


def test_idr_found_in_real_annex_b_packets():
    enc = X264Encoder(FMT)
    packets = []
    for i, image in enumerate(_frames()):
        packets += enc.encode(image, i, keyframe=i == 13)  # a forced IDR between the periodic ones
    packets += enc.flush()
    assert [nvenc._is_idr(bytes(p)) for p in packets] == [p.is_keyframe for p in packets]
    assert sum(p.is_keyframe for p in packets) >= 3


def test_nvenc_shaped_packets_make_a_playable_file(tmp_path):
    """What NVENC hands back (Annex B bytes and a timestamp per frame) through the encoder's packet
    wrapper and the file sink, with libx264's real output standing in for NVENC's bitstream."""
    from stream.audio.aac import AacStage
    from stream.audio.schedule import Progress
    from stream.frames import FrameBatch
    from stream.sinks.file import FileSink

    x264 = X264Encoder(VideoFormat(128, 96, 25, keyint=10, tune="zerolatency"))  # no B-frames, as NVENC
    wrapper = object.__new__(nvenc.NvencEncoder)
    wrapper._time_base = fractions.Fraction(1, 25)
    packets = []
    for i, image in enumerate(_frames()):
        for p in x264.encode(image, i):
            packets.append(wrapper._packet({"data": bytes(p), "picture_type": 0, "timestamp": p.pts}))
    assert [p.pts for p in packets] == list(range(30)) and packets[0].is_keyframe
    out = tmp_path / "nvenc-shaped.mp4"
    sink, aac, items = FileSink(str(out), FMT, Progress()), AacStage(), []
    aac.process(FrameBatch(0, 30, np.zeros(30 * 1920, np.float32), packets=packets), items.append)
    aac.finish(items.append)
    for item in items:
        sink.process(item, lambda _: None)
    sink.finish(lambda _: None)
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert len(frames) == 30
    assert np.abs(frames[17].astype(int) - _frames()[17].astype(int)).mean() < 12  # the picture, not garbage


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nvenc_encodes_nv12_from_the_gpu(tmp_path):
    device = torch.device("cuda", torch.cuda.current_device())
    why = nvenc.unavailable(device)
    if why is not None:
        pytest.skip(f"no NVENC here: {why}")
    from kernels import bgr_to_nv12

    enc = make_video_encoder(FMT, device)
    assert isinstance(enc, nvenc.NvencEncoder)
    frames = torch.from_numpy(np.stack(_frames())).to(device)
    nv12 = bgr_to_nv12(frames)
    packets = []
    for i in range(len(frames)):
        packets += enc.encode(nv12[i], i, keyframe=i == 13)
    packets += enc.flush()
    assert packets[0].is_keyframe and any(p.is_keyframe and p.pts == 13 for p in packets)
    assert [p.pts for p in packets] == list(range(30))  # no B-frames: presentation order
