"""What every benchmark reports beside its numbers: the machine, GPU utilisation while it ran, and
seconds per call of a step that may run asynchronously on a GPU."""
from __future__ import annotations

import datetime
import platform
import threading
import time

import torch

from ..lipsync.precision import cpu_has_bf16


class GpuSampler:
    """Mean GPU utilisation (NVML) while a block runs; None where NVML is absent."""

    def __init__(self, device: torch.device):
        self.handle, self.samples = None, []
        if device.type != "cuda":
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        except Exception:  # noqa: BLE001 - NVML is optional: the number is then simply missing
            self.handle = None

    def __enter__(self):
        self.samples, self._stop = [], threading.Event()
        if self.handle is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)

    def __exit__(self, *exc):
        self._stop.set()
        if self.handle is not None:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine(device: torch.device) -> dict:
    info = {"date": datetime.date.today().isoformat(), "torch": torch.__version__, "device": str(device),
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "cpu_bf16": cpu_has_bf16()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def seconds_per_call(fn, device: torch.device, seconds: float, sync_every: int = 1) -> float:
    """Seconds per call of `fn`, after one warm-up call, over at least `seconds`."""
    fn()
    sync(device)
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        if n % sync_every == 0:
            sync(device)
            if time.perf_counter() - start >= seconds:
                return (time.perf_counter() - start) / n
