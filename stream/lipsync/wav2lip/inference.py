"""Wav2Lip in its inference form: BatchNorm folded into the convolutions, the decoder on the lower
face only, channels_last, reduced precision, fixed batch buckets and, on CUDA, one CUDA graph per
bucket.

Only torch here: this is the CUDA compute path.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..precision import resolve_precision
from .lower_face import LowerFaceWav2Lip
from .net import Conv, Wav2Lip, check_inputs

BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def fold_batchnorm(model: Wav2Lip) -> Wav2Lip:
    """A copy whose every Conv→BN pair is one convolution (computed in float64, stored in float32)."""
    model = copy.deepcopy(model).float().eval()
    for block in model.modules():
        if not isinstance(block, Conv) or isinstance(block.conv_block[1], nn.Identity):
            continue
        conv, bn = block.conv_block[0], block.conv_block[1]
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        # Conv2d weights are (out, in, kh, kw); ConvTranspose2d weights are (in, out, kh, kw).
        shape = (1, -1, 1, 1) if isinstance(conv, nn.ConvTranspose2d) else (-1, 1, 1, 1)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
        with torch.no_grad():
            conv.weight.copy_((conv.weight.double() * scale.view(shape)).float())
            conv.bias = nn.Parameter(((bias - bn.running_mean.double()) * scale + bn.bias.double()).float())
        block.conv_block[1] = nn.Identity()
    return model


def bucket_for(n: int) -> int:
    for b in BUCKETS:
        if b >= n:
            return b
    return BUCKETS[-1]


ENGINES = ("graphs", "compile", "eager")


class InferenceWav2Lip:
    """`__call__(mel B×1×80×16, faces B×6×96×96) → mouths B×3×96×96` in `dtype`, any B.

    engine: `graphs` (CUDA graphs per bucket; eager on the CPU), `compile` (torch.compile with
    reduce-overhead, for measuring against `graphs`), or `eager`.
    """

    def __init__(self, model: Wav2Lip, device: torch.device, precision: str = "auto", engine: str = "graphs",
                 lower_face: bool = True):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
        self.device = torch.device(device)
        self.dtype = resolve_precision(precision, self.device)
        folded = fold_batchnorm(model).to(self.device, self.dtype).to(memory_format=torch.channels_last)
        # Rows above ROWS_FROM are the reference face: the blend mask never shows them.
        self.model = LowerFaceWav2Lip(folded) if lower_face else folded
        if engine == "compile":
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            self.model = torch.compile(self.model, mode=mode, dynamic=False)
        self.lower_face, self.engine = lower_face, engine
        self.cuda_graphs = engine == "graphs" and self.device.type == "cuda"
        self._graphs: dict[int, tuple] = {}
        self._pool = None

    def warmup(self, max_batch: int) -> None:
        """Capture the graph of every bucket up to `max_batch` now, largest first so the rest share
        its memory pool. Call it before other threads use the GPU: a capture must not overlap
        their allocations."""
        if not self.cuda_graphs:
            return
        for size in sorted((b for b in BUCKETS if b <= bucket_for(max_batch)), reverse=True):
            self._graph(size)

    def describe(self) -> str:
        name = str(self.dtype).removeprefix("torch.")
        engine = "cuda-graphs" if self.cuda_graphs else ("compiled" if self.engine == "compile" else "eager")
        return f"{name} folded channels_last" + (" lower-face" if self.lower_face else "") + f" {engine}"

    def _inputs(self, mel: torch.Tensor, faces: torch.Tensor, size: int):
        n = mel.shape[0]
        if n < size:  # pad to the bucket so only a few shapes (and graphs) ever exist
            mel = torch.cat([mel, mel.new_zeros((size - n, *mel.shape[1:]))])
            faces = torch.cat([faces, faces.new_zeros((size - n, *faces.shape[1:]))])
        mel = mel.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        faces = faces.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        return mel, faces

    def _graph(self, size: int):
        if size not in self._graphs:
            mel = torch.zeros(size, 1, 80, 16, device=self.device, dtype=self.dtype)
            faces = torch.zeros(size, 6, 96, 96, device=self.device, dtype=self.dtype)
            mel, faces = self._inputs(mel, faces, size)
            side = torch.cuda.Stream(device=self.device)
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.no_grad():
                for _ in range(3):  # cuDNN picks its algorithms before capture
                    self.model(mel, faces)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"), torch.no_grad():
                out = self.model(mel, faces)
            self._pool = self._pool or graph.pool()
            self._graphs[size] = (graph, mel, faces, out)
        return self._graphs[size]

    @torch.inference_mode()
    def __call__(self, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        check_inputs(mel, faces)
        n = mel.shape[0]
        if n > BUCKETS[-1]:
            step = BUCKETS[-1]
            return torch.cat([self(mel[i : i + step], faces[i : i + step]) for i in range(0, n, step)])
        # Fixed shapes matter to graphs and compiled code only; eager runs the batch as it is.
        size = bucket_for(n) if self.cuda_graphs or self.engine == "compile" else n
        if self.cuda_graphs:
            graph, static_mel, static_faces, out = self._graph(size)
            m, f = self._inputs(mel, faces, size)
            static_mel.copy_(m)
            static_faces.copy_(f)
            graph.replay()
            return out[:n].clone()  # the next replay overwrites `out`
        m, f = self._inputs(mel, faces, size)
        return self.model(m, f)[:n]
