"""NVENC H.264 through PyNvVideoCodec: NV12 frames on the GPU in, Annex B packets out, no host copy.

NOT YET RUN ON NVENC HARDWARE: the GPUs lent to this project so far (H100, H200) have no NVENC, so
this encoder has never encoded a frame. What is tested is around it: the probe's answers, the
choice of libx264 with its one-line reason, and the container path it shares with libx264 (the
track header from the stream's own SPS/PPS, `h264_template`). The API used is PyNvVideoCodec 2.x's
(`CreateEncoder`, `Encode(frame, NV_ENC_PIC_PARAMS)`, `EndEncode`, as in its samples).
"""
from __future__ import annotations

import fractions
import functools

import av
import torch

from ..errors import LipstreamError, one_line


@functools.lru_cache(maxsize=None)
def unavailable(device: torch.device) -> str | None:
    """None where NVENC can encode for `device`, else why not, in a few words. Asked once per device:
    PyNvVideoCodec fails to import without an NVIDIA driver, and the H100, H200 and A100 have no
    NVENC (opening an encoder session fails)."""
    if device.type != "cuda":
        return "the frames are on the CPU"
    try:
        import PyNvVideoCodec as nvc
    except Exception as e:  # noqa: BLE001 - ImportError, or OSError/RuntimeError from its driver libraries
        return f"PyNvVideoCodec is not usable ({one_line(e)}; pip install 'lipstream[nvenc]')"
    try:
        probe = nvc.CreateEncoder(256, 256, "NV12", False, codec="h264", gpu_id=device.index or 0)
        probe.EndEncode()
    except Exception as e:  # noqa: BLE001 - PyNvVCExceptionUnsupported and whatever else the driver says
        return f"the {torch.cuda.get_device_name(device)} cannot open an NVENC session ({one_line(e)})"
    return None


class _Nv12:
    """One NV12 frame (a (H·3/2)×W uint8 CUDA tensor) as PyNvVideoCodec takes device input: its
    planes, each with `__cuda_array_interface__` (torch tensors have it)."""

    def __init__(self, nv12: torch.Tensor, height: int):
        self.planes = [nv12[:height].unsqueeze(-1), nv12[height:].view(height // 2, -1, 2)]

    def cuda(self):
        return self.planes


def _is_idr(data: bytes) -> bool:
    """Whether an Annex B access unit holds an IDR slice (NAL type 5)."""
    i = data.find(b"\x00\x00\x01")
    while i >= 0 and i + 3 < len(data):
        if data[i + 3] & 0x1F == 5:
            return True
        i = data.find(b"\x00\x00\x01", i + 3)
    return False


class NvencEncoder:
    """The encoder contract of `X264Encoder` (`encode(image, pts, fmt, keyframe)`, `flush()`), with
    device input: `input = "nv12"`, `device = "cuda"`. Low-latency preset, no B-frames (so packets
    leave in presentation order, dts = pts), an IDR every `keyint` frames with SPS/PPS repeated,
    an IDR on request. It reads each frame on torch's current stream, after the colour kernel."""

    name = "nvenc"
    input = "nv12"
    device = "cuda"

    def __init__(self, fmt, device: torch.device):
        import PyNvVideoCodec as nvc

        self._nvc, self.format = nvc, fmt
        gop = fmt.keyint or 10 * fmt.fps
        try:
            self._enc = nvc.CreateEncoder(
                fmt.width, fmt.height, "NV12", False, codec="h264", preset="P1", tuning_info="ultra_low_latency",
                fps=fmt.fps, gop=gop, idrperiod=gop, bf=0, repeatspspps=1, gpu_id=device.index or 0,
                cudastream=torch.cuda.current_stream(device).cuda_stream)
        except Exception as e:  # noqa: BLE001
            raise LipstreamError(f"NVENC refused {fmt.width}×{fmt.height} at {fmt.fps} fps: {one_line(e)}") from None
        self._time_base = fractions.Fraction(1, fmt.fps)

    def encode(self, image: torch.Tensor, pts: int, fmt: str = "nv12", keyframe: bool = False) -> list[av.Packet]:
        if fmt != "nv12" or not image.is_cuda:
            raise ValueError(f"NVENC takes NV12 frames on the GPU, not {fmt} on {image.device}")
        params = self._nvc.NV_ENC_PIC_PARAMS()
        params.inputTimeStamp = pts
        if keyframe:
            flags = self._nvc.NV_ENC_PIC_FLAGS
            params.encodePicFlags = int(flags.FORCEIDR) | int(flags.OUTPUT_SPSPPS)
        return [self._packet(p) for p in self._enc.Encode(_Nv12(image, self.format.height), params)]

    def flush(self) -> list[av.Packet]:
        return [self._packet(p) for p in self._enc.EndEncode()]

    def _packet(self, out) -> av.Packet:
        data = bytes(out["data"])
        packet = av.Packet(data)
        packet.pts = packet.dts = int(out["timestamp"])
        packet.time_base = self._time_base
        packet.is_keyframe = _is_idr(data)
        return packet
