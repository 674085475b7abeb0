"""Stages in threads, joined by bounded queues: a slow consumer slows its producer.

A stage gets each item with `process(item, emit)` and the end of input with `finish(emit)`; it
calls `emit(out)` for every item it passes on. The first error anywhere stops every stage and is
raised from `Pipeline.run`.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Iterable

import torch

_END = object()


class Stage:
    name = "stage"
    engine = "python"
    device: Any = "cpu"
    busy = 0.0  # seconds spent in process/finish, excluding waits on the queues

    def process(self, item: Any, emit: Callable[[Any], None]) -> None:
        emit(item)

    def finish(self, emit: Callable[[Any], None]) -> None:
        pass

    def describe(self) -> str:
        return f"{self.name} {self.engine} ({self.device})"

    def warmup(self) -> None:
        """One-off work (kernel compilation, graph capture) done before the first item, off the clock."""


class _Stopped(Exception):
    pass


class Pipeline:
    def __init__(self, stages: list[Stage], depth: int = 4):
        self.stages = stages
        self._queues = [queue.Queue(maxsize=depth) for _ in stages]
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    def _fail(self, e: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = e
        self._stop.set()

    def _put(self, q: queue.Queue, item: Any) -> None:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return
            except queue.Full:
                pass
        raise _Stopped

    def _get(self, q: queue.Queue) -> Any:
        while not self._stop.is_set():
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                pass
        raise _Stopped

    def _run_stage(self, i: int) -> None:
        stage = self.stages[i]
        out = self._queues[i + 1] if i + 1 < len(self.stages) else None
        emit = (lambda item: self._put(out, item)) if out is not None else (lambda item: None)
        try:
            device = stage.device
            if isinstance(device, torch.device) and device.type == "cuda":
                torch.cuda.set_device(device)  # a new thread starts on device 0
            with torch.inference_mode():  # grad mode is per thread: every stage runs inference only
                self._loop(stage, self._queues[i], out, emit)
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the caller of run()
            self._fail(e)

    def _loop(self, stage: Stage, inq: queue.Queue, out: queue.Queue | None, emit) -> None:
        while True:
            item = self._get(inq)
            start = time.perf_counter()
            if item is _END:
                stage.finish(emit)
                stage.busy += time.perf_counter() - start
                if out is not None:
                    self._put(out, _END)
                return
            stage.process(item, emit)
            stage.busy += time.perf_counter() - start  # includes time blocked in emit: an upper bound

    def run(self, source: Iterable[Any], poll: Callable[[], None] | None = None) -> None:
        for stage in self.stages:
            stage.warmup()
        threads = [threading.Thread(target=self._run_stage, args=(i,), name=s.name, daemon=True)
                   for i, s in enumerate(self.stages)]
        for t in threads:
            t.start()

        def feed():
            try:
                for item in source:
                    self._put(self._queues[0], item)
                self._put(self._queues[0], _END)
            except _Stopped:
                pass
            except BaseException as e:  # noqa: BLE001
                self._fail(e)

        feeder = threading.Thread(target=feed, name="source", daemon=True)
        feeder.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(timeout=0.1)
                    if poll is not None:
                        poll()
        finally:
            self._stop.set()
            # Stopped stages notice within one queue timeout; one inside a long call (a model
            # batch, a TTS sentence) gets a few seconds before the process is left to end it.
            for t in [feeder, *threads]:
                t.join(timeout=5)
        if self._error is not None:
            raise self._error
