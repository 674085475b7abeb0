"""`lipstream bench sessions`: N live sessions at once, each consumed at real-time pace by its own
thread, each saying a different text, interrupted once at a random moment (from another thread, as
a user would) and then speaking again.

Per N: frames that were ready when their consumer asked (`on_time`), how late the rest were,
say → first speaking frame and interrupt → first idle frame as the consumer saw them, the mouth's
offset from the sound (by content: the mouth region's change against each tick's loudness; only
where the mouth follows the sound, i.e. the procedural mouth or a given checkpoint), the mean
lip-sync batch, CPU and GPU load.
"""
from __future__ import annotations

import os
import random
import resource
import threading
import time

import numpy as np
import torch

from ..live.session import Frame, SegmentEnd, Session
from ..tts.chunker import sentences
from .machine import machine
from .report import table, write

READY_S = 0.002  # a pull that returns within this found its frame ready


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None}
    return {"p50": round(float(np.percentile(values, 50)), 1), "p95": round(float(np.percentile(values, 95)), 1)}


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _best_lag(motion: np.ndarray, loud: np.ndarray, reach: int = 3) -> int | None:
    n = len(motion)
    if n < 4 * reach or motion.std() == 0 or loud.std() == 0:
        return None

    def corr(lag):
        a, b = motion[max(0, lag) : n + min(0, lag)], loud[max(0, -lag) : n - max(0, lag)]
        return np.corrcoef(a, b)[0, 1]

    scores = {lag: corr(lag) for lag in range(-reach, reach + 1)}
    return max(scores, key=scores.get)


class _Viewer:
    """One session's real-time consumer; it also says, interrupts and says again at random ticks."""

    def __init__(self, session: Session, texts: list[str], seconds: float, rng: random.Random):
        self.s, self.texts, self.seconds, self.rng = session, texts, seconds, rng
        self.phase = rng.uniform(0, 1 / session.fps)  # viewers do not all tick at once
        self.say_at = rng.uniform(0.2, 1.0)
        self.interrupt_at = rng.uniform(self.say_at + 1.0, max(self.say_at + 1.5, seconds - 2.0))
        self.waits, self.late, self.say_ms, self.interrupt_ms = [], [], [], []
        self.said = self.interrupted = None  # when the pending say / interrupt was made
        self.text = 0
        self.motion, self.loud = [], []
        a = session.avatar
        t, b, l, r = a.boxes[0].tolist()
        self._region = (slice((t + b) // 2, b), slice(l, r))
        self._idle = a.frames[int(a.loop[0])][self._region].float()

    def control(self, t0: float) -> None:
        """Say and interrupt at random moments of wall time, as a user would, not on a tick."""
        for at, act in ((self.say_at, self._say), (self.interrupt_at, self._interrupt)):
            pause = t0 + at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            act()

    def _say(self) -> None:
        self.said = time.perf_counter()
        self.s.say(self.texts[self.text % len(self.texts)])
        self.text += 1

    def _interrupt(self) -> None:
        self.interrupted = time.perf_counter()  # before the call: a pull may slip in between
        self.s.interrupt()

    def run(self, t0: float) -> None:
        fps, k = self.s.fps, 0
        while True:
            due = t0 + self.phase + k / fps
            if due - t0 > self.seconds:
                return
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            asked = time.perf_counter()
            item = self.s.get()
            again = False
            while isinstance(item, SegmentEnd):
                again = again or not item.interrupted  # keep speaking for the whole run
                item = self.s.get()
            got = time.perf_counter()
            self.waits.append(got - asked)
            self.late.append(max(0.0, got - due))
            self._look(item)
            said, interrupted = self.said, self.interrupted
            if said is not None and item.speaking:
                self.say_ms.append(1000 * (got - said))
                self.said = None
            if interrupted is not None and not item.speaking:
                self.interrupt_ms.append(1000 * (got - interrupted))
                self.interrupted, again = None, True
            if again:
                self._say()
            k += 1

    def _look(self, item: Frame) -> None:
        if item.speaking:
            self.motion.append((item.image[self._region].float() - self._idle).abs().mean())
            self.loud.append(float(np.sqrt(np.mean(item.audio ** 2))))

    def av_offset(self) -> int | None:
        if not self.motion:
            return None
        return _best_lag(torch.stack(self.motion).cpu().numpy(), np.array(self.loud))


def measure(n: int, seconds: float, settings: dict, texts: list[str], seed: int, follows_sound: bool) -> dict:
    from .machine import GpuSampler

    rng = random.Random(seed + n)
    sessions = [Session(max_sessions=max(n, settings.get("max_sessions") or 1), **settings) for _ in range(n)]
    try:
        for s in sessions:  # opened and idling before the clock starts
            s.get()
        viewers = [_Viewer(s, texts[i % len(texts):] + texts[: i % len(texts)], seconds, rng)
                   for i, s in enumerate(sessions)]
        worker = sessions[0].worker
        batches, frames = worker.batches, worker.frames
        cpu, t0 = _cpu_seconds(), time.perf_counter() + 0.1
        threads = [threading.Thread(target=f, args=(t0,), name=f"viewer-{i}")
                   for i, v in enumerate(viewers) for f in (v.run, v.control)]
        with GpuSampler(sessions[0].device) as gpu:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        wall = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu
        batches, frames = worker.batches - batches, worker.frames - frames
    finally:
        for s in sessions:
            s.close()
    waits = [w for v in viewers for w in v.waits]
    late = [x for v in viewers for x in v.late]
    offsets = [o for v in viewers if (o := v.av_offset()) is not None] if follows_sound else []
    return {
        "sessions": n,
        "fps": sessions[0].fps,
        "frames": len(waits),
        "on_time": round(sum(w <= READY_S for w in waits) / len(waits), 4),
        "late_p99_ms": round(1000 * float(np.percentile(late, 99)), 1),
        "say_to_first_speaking_frame_ms": _percentiles([x for v in viewers for x in v.say_ms]),
        "interrupt_to_idle_ms": _percentiles([x for v in viewers for x in v.interrupt_ms]),
        "av_offset_frames_max": max((abs(o) for o in offsets), default=None),
        "batch_mean": round(frames / batches, 2) if batches else None,
        "cpu_percent": round(100 * cpu / wall, 1),
        "gpu_util": gpu.mean,
    }


def bench_sessions(counts: list[int], seconds: float, settings: dict, text_file: str, search: bool,
                   follows_sound: bool, seed: int = 0, report=print) -> dict:
    with open(text_file, encoding="utf-8") as f:
        texts = sentences(f.read())
    rows: dict[int, dict] = {}

    def run(n: int) -> bool:
        if n not in rows:
            rows[n] = measure(n, seconds, settings, texts, seed, follows_sound)
            r = rows[n]
            report(f"{n} session(s): on_time {r['on_time']}, late p99 {r['late_p99_ms']} ms, "
                   f"say→speaking p95 {r['say_to_first_speaking_frame_ms']['p95']} ms, "
                   f"interrupt→idle p95 {r['interrupt_to_idle_ms']['p95']} ms, batch {r['batch_mean']}")
        return rows[n]["on_time"] >= 0.99

    for n in counts:
        run(n)
    if search:  # double until it fails, then halve the gap
        good = max([n for n in rows if rows[n]["on_time"] >= 0.99], default=0)
        bad = min([n for n in rows if rows[n]["on_time"] < 0.99 and n > good], default=None)
        while bad is None:
            n = max(1, 2 * good)
            if run(n):
                good = n
            else:
                bad = n
            if n >= 1024:
                break
        while bad is not None and bad - good > 1:
            mid = (good + bad) // 2
            good, bad = (mid, bad) if run(mid) else (good, mid)
    ok = [n for n, r in rows.items() if r["on_time"] >= 0.99]
    return {"rows": [rows[n] for n in sorted(rows)], "max": max(ok) if ok else 0}


def run(args, device: torch.device) -> int:
    from ..lipsync.wav2lip.checkpoint import save_random_wav2lip

    counts = [int(x) for x in args.sessions.split(",")]
    seconds = args.seconds if args.seconds is not None else 10.0
    settings = {"device": str(device), "cache": True}
    if args.box:
        settings["box"] = tuple(args.box)
    if args.lead:
        settings["lead"] = args.lead
    if args.batch_size:
        settings["batch_size"] = args.batch_size
    if args.precisions:
        settings["precision"] = args.precisions.split(",")[0]
    follows = True
    tmp = None
    name = args.lipsync or ("wav2lip" if args.checkpoint or args.wav2lip else
                            "musetalk" if args.musetalk_models else "procedural")
    if name == "wav2lip":
        if args.checkpoint:
            settings["checkpoint"] = args.checkpoint
        else:  # same shapes and cost as the public model; random weights do not follow the sound
            import tempfile

            tmp = tempfile.TemporaryDirectory()
            settings["checkpoint"] = os.path.join(tmp.name, "random_wav2lip.pth")
            save_random_wav2lip(settings["checkpoint"])
            follows = False
    elif name == "musetalk":
        if args.musetalk_models:
            settings["musetalk_models"] = args.musetalk_models
        else:  # the public shapes (or --tiny ones), random: the same cost, a mouth that ignores the sound
            import tempfile

            from ..lipsync.musetalk.random import save_random_musetalk

            tmp = tempfile.TemporaryDirectory()
            settings["musetalk_models"] = save_random_musetalk(os.path.join(tmp.name, "models"), tiny=args.tiny)
            follows = False
    try:
        result = bench_sessions(counts, seconds, settings, args.text_file, args.max, follows)
    finally:
        if tmp is not None:
            tmp.cleanup()
    given = args.checkpoint if name == "wav2lip" else args.musetalk_models if name == "musetalk" else None
    result = {"machine": machine(device), "lipsync": name,
              "weights": None if name == "procedural" else "given" if given else "random" + (", tiny" if args.tiny else ""),
              "seconds": seconds, **result}
    flat = [{**r, "say_p50": r["say_to_first_speaking_frame_ms"]["p50"], "say_p95": r["say_to_first_speaking_frame_ms"]["p95"],
             "interrupt_p50": r["interrupt_to_idle_ms"]["p50"], "interrupt_p95": r["interrupt_to_idle_ms"]["p95"],
             "av_offset": r["av_offset_frames_max"]} for r in result["rows"]]
    print()
    print(table(flat, ["sessions", "fps", "on_time", "late_p99_ms", "say_p50", "say_p95", "interrupt_p50",
                       "interrupt_p95", "av_offset", "batch_mean", "cpu_percent", "gpu_util"]))
    print(f"\nlargest N with on_time ≥ 0.99: {result['max']}")
    write(args.json, result)
    return 0
