"""Stages in threads, joined by bounded queues: a slow consumer slows its producer.

A stage gets each item with `process(item, emit)` and the end of input with `finish(emit)`; it
calls `emit(out)` for every item it passes on. The first error anywhere stops every stage and is
raised from `Pipeline.run`.
"""
from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
from typing import Any, Callable, Iterable

import torch

from ..device import cuda_index
from ..stage import Stage

_END = object()


class _Stopped(Exception):
    pass


class Pipeline:
    def __init__(self, stages: list[Stage], depth: int = 4):
        self.stages = stages
        self._queues = [queue.Queue(maxsize=depth) for _ in stages]
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.warmup_seconds = 0.0  # the stages' one-off work (kernel compilation) before the first item

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

    def _run_stage(self, i: int, device_index: int | None) -> None:
        stage = self.stages[i]
        out = self._queues[i + 1] if i + 1 < len(self.stages) else None
        emit = (lambda item: self._put(out, item)) if out is not None else (lambda item: None)
        try:
            if device_index is not None:
                torch.cuda.set_device(device_index)  # a new thread starts on device 0
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
        def feed():
            try:
                for item in source:  # None: the source is waiting for input (a stop is noticed)
                    if self._stop.is_set():
                        raise _Stopped
                    if item is not None:
                        self._put(self._queues[0], item)
                self._put(self._queues[0], _END)
            except _Stopped:
                pass
            except BaseException as e:  # noqa: BLE001
                self._fail(e)

        threads = [_thread(self._run_stage, s.name, i, cuda_index(s.device)) for i, s in enumerate(self.stages)]
        threads.append(_thread(feed, "source"))
        started: list[threading.Event] = []
        try:  # a Ctrl-C at any moment still stops and waits for every thread that was started
            warm = time.perf_counter()
            for stage in self.stages:
                stage.warmup()
            self.warmup_seconds = time.perf_counter() - warm
            with _signals_deferred():  # an interrupt inside Thread.start would lose track of that thread
                for thread, done in threads:
                    thread.start()
                    started.append(done)
            for done in started:
                while not done.wait(timeout=0.1):
                    if poll is not None:
                        poll()
        finally:
            self._stop.set()
            try:
                _wait(started)
            finally:  # every stage releases what it holds, whatever a second Ctrl-C interrupted
                with _signals_deferred():
                    for stage in self.stages:
                        stage.close()
        if self._error is not None:
            raise self._error


def _thread(target, name: str, *args) -> tuple[threading.Thread, threading.Event]:
    """A daemon thread and an event set when its work is over. Waiting on the event, not on
    Thread.join: a join cut short by Ctrl-C can mark a thread that is still running as stopped
    (CPython's clean-up for bpo-45274 races with the thread), and it would then be left running."""
    done = threading.Event()

    def run():
        try:
            target(*args)
        finally:
            done.set()

    return threading.Thread(target=run, name=name, daemon=True), done


def _wait(events: list[threading.Event], seconds: float = 60.0) -> None:
    """Until every started thread's work is over (each notices the stop within a queue timeout, or
    after the model batch or TTS sentence it is in). A thread left running into interpreter exit
    aborts the process inside torch's native code, so a second Ctrl-C does not cut this short."""
    deadline, interrupted = time.monotonic() + seconds, None
    for done in events:
        while True:
            try:
                if done.wait(timeout=0.1) or time.monotonic() > deadline:
                    break
            except KeyboardInterrupt as e:  # SIGTERM's subclass too: raised again, as it came
                interrupted = interrupted or e
    if interrupted is not None:
        raise interrupted


@contextlib.contextmanager
def _signals_deferred():
    """SIGINT and SIGTERM that arrive inside the block take effect when it ends (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, frame: caught.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            signal.raise_signal(caught[0])  # now handled as it would have been
