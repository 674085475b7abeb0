"""The lip-sync worker: one thread per model and process runs every session's and every render's
frames, in batches that mix them, chosen by deadline.

A client submits a `Job` (consecutive frames of one avatar: their audio features, the avatar frames
they show, the time the first is due, a callback). The worker takes the jobs with the earliest deadlines, up to
`max_batch` frames, and runs them as one batch when the batch is full or when waiting longer would
make its earliest frame late by the measured cost of a batch that size. Callbacks run on the
worker's thread, in job order; a cancelled job still waiting is dropped, one already in the model
finishes and is thrown away by its owner.
"""
from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from typing import Callable

import torch

from ..device import cuda_index
from ..errors import one_line

log = logging.getLogger("lipstream")
MARGIN = 0.010  # seconds kept between a batch's expected end and its earliest deadline (compose, hand-over)
_EMA = 0.2  # weight of a new batch time in the running cost estimate
_SPREAD = 2.0  # estimate = mean + this many mean deviations: a shared CPU's batch times jitter by ±20 %
SAFETY = 1.25  # a batch starts this many estimated costs before its deadline: other threads slow it unannounced


class Job:
    __slots__ = ("features", "face", "idx", "deadline", "done", "cancelled")

    def __init__(self, features: torch.Tensor, face, idx: torch.Tensor, deadline: float,
                 done: Callable[[torch.Tensor | None, BaseException | None], None]):
        """`face`: the model's preparation of the avatar (`LipSyncModel.prepare`); `idx`: its frames."""
        self.features, self.face, self.idx, self.deadline, self.done = features, face, idx, deadline, done
        self.cancelled = False

    @property
    def frames(self) -> int:
        return int(self.features.shape[0])


class LipSyncWorker:
    """`submit(job)` from any thread; `done(faces B×3×S×S, None)` or `done(None, error)` follows."""

    def __init__(self, model, max_batch: int):
        """`model`: a `LipSyncModel`."""
        self.model, self.max_batch = model, max_batch
        self.device, self.dtype, self.name = model.device, model.dtype, model.name
        self._cuda_index = cuda_index(self.device)
        self._cond = threading.Condition()
        self._pending: list[Job] = []
        self._cost: dict[int, float] = {}  # frames in a batch → seconds, a cautious running estimate
        self._stats: dict[int, tuple[float, float]] = {}  # frames → (mean seconds, mean deviation)
        self._timing: list[tuple[int, torch.cuda.Event, torch.cuda.Event]] = []  # CUDA batches not yet timed
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches = 0
        self.failed = 0  # batches that raised; their jobs' owners got the error (a session shows those frames idle)
        self.frames = 0
        self.batch_sizes: collections.Counter[int] = collections.Counter()  # frames per model call → calls
        self.busy = 0.0  # seconds the worker thread spent on batches (on CUDA: launching them)

    def describe(self) -> str:
        return self.model.describe()

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the lip-sync worker is closed")
            self._pending.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=f"lipsync-{self.name}", daemon=True)
                self._thread.start()
            self._cond.notify()

    def hurry(self, job: Job) -> None:
        """Its consumer is waiting: the job is due now."""
        with self._cond:
            job.deadline = min(job.deadline, time.perf_counter())
            self._cond.notify()

    def backlog(self) -> int:
        """Frames waiting for the model."""
        with self._cond:
            return sum(j.frames for j in self._pending if not j.cancelled)

    def cancel(self, jobs) -> None:
        """Drop jobs still waiting; one already in the model finishes and its result is not delivered."""
        with self._cond:
            for job in jobs:
                job.cancelled = True
            self._pending = [j for j in self._pending if not j.cancelled]

    def estimate(self, n: int) -> float | None:
        """Expected seconds for a batch of n frames, from the batches measured so far (None: none yet)."""
        known = sorted(self._cost.items())
        if not known:
            return None
        if n in self._cost:
            return self._cost[n]
        below = [(k, c) for k, c in known if k < n]
        above = [(k, c) for k, c in known if k > n]
        if below and above:  # a fixed cost plus a cost per frame between the nearest two
            (k0, c0), (k1, c1) = below[-1], above[0]
            return c0 + (c1 - c0) * (n - k0) / (k1 - k0)
        k, c = (above[0] if above else below[-1])
        return c * n / k if k < n else c  # above the largest: per frame; below the smallest: no less

    def close(self) -> None:
        with self._cond:
            self._closed = True
            pending, self._pending = self._pending, []
            self._cond.notify()
        for job in pending:
            job.done(None, RuntimeError("the lip-sync worker was closed"))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    # The worker thread.

    def _loop(self) -> None:
        if self._cuda_index is not None:
            torch.cuda.set_device(self._cuda_index)
        with torch.inference_mode():
            while (jobs := self._take()) is not None:
                try:
                    self._run(jobs)
                except Exception as e:  # noqa: BLE001 - the worker must outlive a bad batch
                    log.exception("lip-sync batch failed")
                    self.failed += 1
                    for job in jobs:
                        self._deliver(job, None, e)
                jobs = None  # not held while waiting: a closed session must be freed

    def _take(self) -> list[Job] | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                self._harvest_timings()
                self._pending = [j for j in self._pending if not j.cancelled]
                if not self._pending:
                    self._cond.wait()
                    continue
                self._pending.sort(key=lambda j: j.deadline)  # stable: a client's jobs keep their order
                slack = self._pending[0].deadline - time.perf_counter() - MARGIN
                batch, n = [], 0
                for job in self._pending:
                    grown = n + job.frames
                    if batch and grown > self.max_batch:
                        break
                    batch.append(job)
                    n = grown
                full = n >= self.max_batch or len(batch) < len(self._pending)
                cost = self.estimate(n)
                wait = 0.0 if cost is None else slack - SAFETY * cost
                if full or wait <= 0:
                    del self._pending[: len(batch)]
                    return batch
                self._cond.wait(timeout=wait)

    def _run(self, jobs: list[Job]) -> None:
        # Jobs of one avatar sit together so each avatar's inputs are gathered in one call.
        jobs.sort(key=lambda j: id(j.face))
        n = sum(j.frames for j in jobs)
        start = time.perf_counter()
        cuda = self.device.type == "cuda"
        if cuda:
            begin = torch.cuda.Event(enable_timing=True)
            begin.record()
        try:
            groups = [list(g) for _, g in itertools.groupby(jobs, key=lambda j: id(j.face))]
            inputs = torch.cat([self.model.gather(g[0].face, torch.cat([j.idx for j in g])) for g in groups])
            faces = self.model(torch.cat([j.features for j in jobs]).to(self.device), inputs)
        except Exception as e:  # noqa: BLE001 - handed to every job's owner; the next batch starts afresh
            self.failed += 1
            log.warning("lip-sync batch of %d frames (%d jobs) failed: %s", n, len(jobs), one_line(e))
            e.__traceback__ = None  # its frames hold the batch's tensors (an out-of-memory error needs them freed)
            for job in jobs:
                self._deliver(job, None, e)
            self.busy += time.perf_counter() - start
            return
        at = 0
        for job in jobs:
            if not job.cancelled:
                self._deliver(job, faces[at : at + job.frames], None)
            at += job.frames
        # The cost counts the owners' callbacks (compose) too: they delay the frames as much.
        if cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._timing.append((n, begin, end))  # read later, without waiting for the GPU
        else:
            self._record(n, time.perf_counter() - start)
        self.busy += time.perf_counter() - start
        self.batches += 1
        self.frames += n
        self.batch_sizes[n] += 1

    def _deliver(self, job: Job, mouths, error) -> None:
        try:
            job.done(mouths, error)
        except Exception:  # noqa: BLE001 - one client's failing callback must not stop the others
            log.exception("lip-sync job callback failed")

    def _record(self, n: int, seconds: float) -> None:
        mean, dev = self._stats.get(n, (seconds, 0.0))
        dev += _EMA * (abs(seconds - mean) - dev)
        mean += _EMA * (seconds - mean)
        self._stats[n] = mean, dev
        self._cost[n] = mean + _SPREAD * dev

    def _harvest_timings(self) -> None:
        while self._timing and self._timing[0][2].query():
            n, begin, end = self._timing.pop(0)
            self._record(n, begin.elapsed_time(end) / 1000.0)
