"""`lipstream bench soak`: `lipstream serve` in its own process for `--minutes`, N aiortc viewers on
loopback in this one (as `bench serve`), each speaking, pausing and being interrupted in a seeded
random loop. Every minute: the server's resident memory, threads and open descriptors (from /proc),
its GPU memory on CUDA (NVML), the frames each viewer received and how many came late, and the A/V
offset on the received media of the utterances that ended in that minute (PeerClient's measure, as
`bench serve` takes it). A table as it goes, the same numbers as JSON, and a plot of memory and
frames on time."""
from __future__ import annotations

import asyncio
import io
import os
import random
import time

import aiohttp

from ..tts.chunker import sentences
from .machine import machine
from .report import table, write
from .serve import MOUTH, _Server, serve_args

FPS = 25
MINUTE = 60.0
LATE = 2 / FPS  # a frame later than this behind the minute's quickest path from sender to viewer is late
INTERRUPTED = 0.35  # share of utterances cut short
GOALS = {"rss_growth_mb": 5.0, "received_min": 0.95}
COLUMNS = ["minute", "rss_mb", "threads", "fds", "gpu_mb", "received_min", "received_mean", "late_max",
           "server_late", "utterances", "interrupted", "av_offset"]


def _status(pid: int) -> dict:
    """Resident memory (MB), threads and open descriptors of process `pid`."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1), "threads": int(fields["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def _gpu_mb(pid: int, device) -> float | None:
    """The process's memory on the GPU (NVML), None off CUDA or without NVML."""
    if device.type != "cuda":
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        used = [p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle) if p.pid == pid]
        return round(used[0] / 2**20, 1) if used and used[0] is not None else 0.0
    except Exception:  # noqa: BLE001 - NVML is optional: the number is then missing
        return None


async def _metric(http, base: str, name: str) -> float:
    async with http.get(base + "/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


class _Viewer:
    """One viewer, its events and its seeded loop of say, wait (or interrupt), pause."""

    def __init__(self, base: str, rng: random.Random, texts: list[str]):
        from ..serve.client import PeerClient

        self.client, self.rng, self.texts, self.base = PeerClient(base, mouth=MOUTH), rng, texts, base
        self.windows: list[tuple[float, float, bool]] = []  # (said, ended, interrupted), time.time()
        self.ends: dict[int, float] = {}  # segment → when its segment_end arrived
        self.errors: list[dict] = []

    def on_event(self, name: str, data: dict) -> None:
        if name == "segment_end":
            self.ends[data["segment"]] = time.time()
        elif name == "error":
            self.errors.append(data)

    async def drive(self, stop: asyncio.Event) -> None:
        rng, c = self.rng, self.client
        await asyncio.sleep(rng.uniform(0.0, 3.0))
        while not stop.is_set():
            said = time.time()
            segment = await c.say(" ".join(rng.sample(self.texts, rng.randint(1, 3))))
            cut = rng.random() < INTERRUPTED
            deadline = time.monotonic() + (rng.uniform(1.0, 4.0) if cut else 60.0)
            while segment not in self.ends and time.monotonic() < deadline and not stop.is_set():
                await asyncio.sleep(0.05)
            if segment not in self.ends and not stop.is_set():
                await c.interrupt()
                cut = True
            if not stop.is_set():
                self.windows.append((said, self.ends.get(segment, time.time()), cut))
            await asyncio.sleep(rng.uniform(0.5, 3.0))

    def minute(self, t0: float, t1: float) -> dict:
        """Frames received in [t0, t1) against 25 a second, the late ones, and each finished utterance's A/V offset."""
        c = self.client
        got = [(a, pts) for a, pts, _ in c.video if t0 <= a < t1]
        paths = [a - pts / 90000 for a, pts in got]
        quickest = min(paths, default=0.0)
        offsets = [c.av_offset_frames(said, ended, FPS) for said, ended, _ in self.windows if t0 <= ended < t1
                   and ended - said >= 1.0]
        row = {"received": round(len(got) / ((t1 - t0) * FPS), 3), "late": sum(p - quickest > LATE for p in paths),
               "utterances": sum(t0 <= e < t1 for _, e, _ in self.windows),
               "interrupted": sum(t0 <= e < t1 and cut for _, e, cut in self.windows),
               "av_offsets": [o for o in offsets if o is not None]}
        c.forget(t1 - 2 * MINUTE)  # the next minute's utterances may have begun in this one
        return row


async def soak(n: int, minutes: int, extra: list[str], texts: list[str], seed: int, video: str, device,
               report=print) -> dict:
    from ..serve.ice import offer_loopback

    offer_loopback(only=True)
    server = _Server(video, n, extra)
    rows, stop, at_start = [], asyncio.Event(), None
    viewers = [_Viewer(server.base, random.Random(seed * 1000 + i), texts) for i in range(n)]
    tasks = []
    try:
        await server.ready()
        for v in viewers:
            await v.client.connect()
        deadline = time.monotonic() + 30
        while not all(len(v.client.video) > 5 and len(v.client._sr) == 2 for v in viewers):
            if time.monotonic() > deadline:
                raise RuntimeError("viewers did not start receiving")
            await asyncio.sleep(0.05)
        at_start = _status(server.proc.pid)  # warm, every viewer connected, nothing said yet
        tasks = [asyncio.ensure_future(v.client.events(v.on_event)) for v in viewers]
        tasks += [asyncio.ensure_future(v.drive(stop)) for v in viewers]
        async with aiohttp.ClientSession() as http:
            start, late = time.time(), await _metric(http, server.base, "lipstream_late_frames_total")
            report("  ".join(COLUMNS))
            for m in range(1, minutes + 1):
                await asyncio.sleep(max(0.0, start + m * MINUTE - time.time()))
                failed = [t for t in tasks if t.done() and t.exception() is not None]
                if failed:
                    log = "".join(server.log)[-1500:]
                    raise RuntimeError(f"a viewer failed: {failed[0].exception()!r}; the server's log ends:\n{log}")
                t1 = time.time()
                per = [v.minute(t1 - MINUTE, t1) for v in viewers]
                server_late = await _metric(http, server.base, "lipstream_late_frames_total")
                offsets = [abs(o) for p in per for o in p["av_offsets"]]
                row = {"minute": m, **_status(server.proc.pid), "gpu_mb": _gpu_mb(server.proc.pid, device),
                       "received_min": min(p["received"] for p in per),
                       "received_mean": round(sum(p["received"] for p in per) / n, 3),
                       "late_max": max(p["late"] for p in per), "server_late": int(server_late - late),
                       "utterances": sum(p["utterances"] for p in per), "interrupted": sum(p["interrupted"] for p in per),
                       "av_offset": max(offsets) if offsets else None, "viewers": per}
                late = server_late
                rows.append(row)
                report("  ".join(str(row[k]) for k in COLUMNS))
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for v in viewers:
            await v.client.close()
        server.stop()
    return {"at_start": at_start, "rows": rows, "summary": summary(rows), "errors": [e for v in viewers for e in v.errors]}


def summary(rows: list[dict]) -> dict:
    """Growth after the first two minutes (warm-up: the model, the encoders, the allocator's pools) and the goals."""
    settled = rows[1:] if len(rows) > 2 else rows
    spread = lambda key: max(r[key] for r in settled) - min(r[key] for r in settled)  # noqa: E731
    growth = round(rows[-1]["rss_mb"] - settled[0]["rss_mb"], 1)
    first = next((r["av_offset"] for r in rows if r["av_offset"] is not None), None)
    last = next((r["av_offset"] for r in reversed(rows) if r["av_offset"] is not None), None)
    worst = min(r["received_min"] for r in rows)
    return {"rss_growth_mb": growth, "threads_spread": spread("threads"), "fds_spread": spread("fds"),
            "received_min": worst, "av_offset_first": first, "av_offset_last": last,
            "goals_met": {"rss": growth < GOALS["rss_growth_mb"], "threads": spread("threads") == 0,
                          "fds": spread("fds") == 0, "received": worst >= GOALS["received_min"],
                          "av_offset": first == 0 and last == 0}}


def plot(path: str, rows: list[dict], title: str) -> None:
    """RSS and frames on time per minute, as a PNG (matplotlib, imported only here)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from ..files import write_atomically

    minutes = [r["minute"] for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 5.5))
    top.plot(minutes, [r["rss_mb"] for r in rows], marker="o", ms=3)
    top.set_ylabel("server RSS (MB)")
    top.set_title(title, fontsize=10)
    bottom.plot(minutes, [r["received_min"] for r in rows], marker="o", ms=3, label="worst viewer")
    bottom.plot(minutes, [r["received_mean"] for r in rows], marker=".", ms=3, label="mean")
    bottom.axhline(GOALS["received_min"], color="grey", lw=0.8, ls="--", label="goal")
    bottom.set_ylabel("frames on time (of 25/s)")
    bottom.set_xlabel("minute")
    bottom.set_ylim(min(0.9, min(r["received_min"] for r in rows) - 0.01), 1.01)
    bottom.legend(loc="lower right", fontsize=8)
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_atomically(path, buf.getvalue())
    print(f"wrote {path}")


def run(args, device) -> int:
    import tempfile

    from ..errors import LipstreamError

    n = max(int(x) for x in args.sessions.split(","))
    minutes = args.minutes
    if minutes < 1 or n < 1:
        raise LipstreamError("soak needs --minutes and --sessions of at least 1")
    video = (args.video or "lipstream").split(",")[0]
    with open(args.text_file, encoding="utf-8") as f:
        texts = sentences(f.read())
    with tempfile.TemporaryDirectory() as tmp:
        extra = serve_args(args, device, tmp)
        result = asyncio.run(soak(n, minutes, extra, texts, args.seed, video, device,
                                  report=lambda line: print(line, flush=True)))
    lipsync = "wav2lip" if len(extra) > 2 else "procedural"
    result = {"machine": machine(device), "lipsync": lipsync, "video": video, "sessions": n, "minutes": minutes,
              "seed": args.seed, **result}
    s = result["summary"]
    print()
    print(table(result["rows"], COLUMNS))
    print(f"\nRSS growth after minute 2: {s['rss_growth_mb']} MB (goal < {GOALS['rss_growth_mb']}); threads spread "
          f"{s['threads_spread']}, descriptors spread {s['fds_spread']} (goal 0); worst viewer's minute "
          f"{s['received_min']} of 25 fps (goal ≥ {GOALS['received_min']}); A/V offset first {s['av_offset_first']}, "
          f"last {s['av_offset_last']} frames (goal 0); {len(result['errors'])} error events")
    print(f"goals met: {s['goals_met']}")
    write(args.json, result)
    png = args.plot or (os.path.splitext(args.json)[0] + ".png" if args.json else None)
    if png:
        plot(png, result["rows"], f"lipstream serve, {n} {lipsync} sessions ({video} video), {minutes} min, "
                                  f"{result['machine']['cpu'] or 'cpu'} {result['machine']['device']}")
    return 0
