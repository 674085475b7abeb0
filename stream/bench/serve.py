"""`lipstream bench serve`: `lipstream serve` in its own process, N aiortc viewers on loopback in
this one. Each viewer says a different sentence at a random moment and interrupts it at another;
per video mode and N: the frames each viewer received against 25 a second, say → first speaking
frame and interrupt → silence at the viewer, the A/V offset on the received media, and the
server's CPU per session (read from /proc, so the viewers' own decoding is not counted)."""
from __future__ import annotations

import asyncio
import collections
import os
import random
import socket
import subprocess
import sys
import threading
import time

import aiohttp
import numpy as np

from ..tts.chunker import sentences
from .machine import machine
from .report import table, write

MOUTH = (148, 162, 205, 245)  # where the bundled avatar's mouth opens, under her upper teeth (its face box is 67 170 177 270)
BOX = ("67", "170", "177", "270")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _p(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None}
    return {"p50": round(float(np.percentile(values, 50)), 1), "p95": round(float(np.percentile(values, 95)), 1)}


class _Server:
    def __init__(self, video: str, max_sessions: int, extra: list[str]):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "-q", "serve", "--port", str(self.port), "--video", video,
             "--ice-loopback-only", "--max-sessions", str(max_sessions), "--box", *BOX, *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # Read as it comes: a full pipe would stop the server (a soak runs for hours); the tail says why it died.
        self.log: collections.deque[str] = collections.deque(maxlen=200)
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()

    async def ready(self, seconds: float = 120.0) -> None:
        deadline = time.monotonic() + seconds
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    time.sleep(0.2)  # the last lines
                    raise RuntimeError(f"lipstream serve exited: {''.join(self.log)[-500:]}")
                try:
                    async with http.get(self.base + "/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError("lipstream serve did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _measure(server: _Server, n: int, seconds: float, texts: list[str], rng: random.Random) -> dict:
    from ..serve.client import PeerClient
    from ..serve.ice import offer_loopback

    offer_loopback(only=True)
    clients = [PeerClient(server.base, mouth=MOUTH) for _ in range(n)]
    try:
        for c in clients:
            await c.connect()
        deadline = time.monotonic() + 20
        while not all(len(c.video) > 5 and len(c._sr) == 2 for c in clients):
            if time.monotonic() > deadline:
                raise RuntimeError("viewers did not start receiving")
            await asyncio.sleep(0.05)
        cpu, t0 = _cpu_seconds(server.proc.pid), time.time()
        plans = []

        async def drive(i: int, c: PeerClient) -> None:
            say_at = rng.uniform(0.3, 1.5)
            stop_at = rng.uniform(say_at + 1.0, max(say_at + 1.5, seconds - 1.5))
            await asyncio.sleep(say_at)
            said = time.time()
            await c.say(" ".join(texts[i % len(texts):] + texts[: i % len(texts)]))
            await asyncio.sleep(stop_at - say_at)
            stopped = time.time()
            await c.interrupt()
            plans.append((c, said, stopped))

        await asyncio.gather(*(drive(i, c) for i, c in enumerate(clients)), asyncio.sleep(seconds))
        t1 = time.time()
        cpu = _cpu_seconds(server.proc.pid) - cpu
    finally:
        for c in clients:
            await c.close()
    received = [len([a for a, _, _ in c.video if t0 <= a < t1]) / ((t1 - t0) * 25) for c in clients]
    say_ms, stop_ms, stop_sent_ms, offsets = [], [], [], []
    for c, said, stopped in plans:
        moving = c.first_video(said, moving=True, sent=False)
        if moving is not None:
            say_ms.append(1000 * (moving - said))
        silent, silent_sent = c.first_audio(stopped, loud=False, sent=False), c.first_audio(stopped, loud=False)
        if silent is not None:
            stop_ms.append(1000 * (silent - stopped))
        if silent_sent is not None:
            stop_sent_ms.append(1000 * (silent_sent - stopped))
        lag = c.av_offset_frames(said, stopped, 25)
        if lag is not None:
            offsets.append(abs(lag))
    return {
        "sessions": n,
        "received_fraction_min": round(min(received), 3),
        "say_to_first_speaking_frame_ms": _p(say_ms),
        "interrupt_to_silence_ms": _p(stop_ms),  # at the viewer: aiortc's 80 ms audio jitter buffer included
        "interrupt_to_silence_sent_ms": _p(stop_sent_ms),  # when the server sent silence, by its sender reports
        "av_offset_frames_max": max(offsets) if offsets else None,
        "server_cpu_percent_per_session": round(100 * cpu / (t1 - t0) / n, 1),
    }


async def bench_serve(videos: list[str], counts: list[int], seconds: float, extra: list[str], text_file: str,
                      report=print) -> dict:
    with open(text_file, encoding="utf-8") as f:
        texts = sentences(f.read())
    rows = []
    for video in videos:
        server = _Server(video, max(counts), extra)
        try:
            await server.ready()
            for n in counts:
                row = {"video": video, **await _measure(server, n, seconds, texts, random.Random(n))}
                rows.append(row)
                report(f"{video} × {n}: received {row['received_fraction_min']} of 25 fps (worst viewer), "
                       f"say→speaking p95 {row['say_to_first_speaking_frame_ms']['p95']} ms, "
                       f"interrupt→silence p95 {row['interrupt_to_silence_ms']['p95']} ms, "
                       f"server CPU {row['server_cpu_percent_per_session']} % per session")
        finally:
            server.stop()
    best = {}
    for video in videos:
        ok = [r["sessions"] for r in rows if r["video"] == video and r["received_fraction_min"] >= 0.95]
        best[video] = max(ok) if ok else 0
    return {"rows": rows, "max": best}


def serve_args(args, device, tmp: str) -> list[str]:
    """The server's flags: the device, and Wav2Lip (`--checkpoint`, or random weights saved in `tmp`) when asked for."""
    extra = ["--device", str(device)]
    if args.checkpoint or args.wav2lip:
        from ..lipsync.wav2lip.checkpoint import save_random_wav2lip

        ckpt = args.checkpoint or os.path.join(tmp, "random_wav2lip.pth")
        if not args.checkpoint:
            save_random_wav2lip(ckpt)
        extra += ["--checkpoint", ckpt]
    return extra


def run(args, device) -> int:
    import tempfile

    videos = (args.video or "lipstream,aiortc").split(",")
    counts = [int(x) for x in args.sessions.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        extra = serve_args(args, device, tmp)
        result = asyncio.run(bench_serve(videos, counts, args.seconds or 10.0, extra, args.text_file))
    result = {"machine": machine(device), "lipsync": "wav2lip" if len(extra) > 2 else "procedural",
              "seconds": args.seconds or 10.0, **result}
    flat = [{**r, "say_p50": r["say_to_first_speaking_frame_ms"]["p50"], "say_p95": r["say_to_first_speaking_frame_ms"]["p95"],
             "stop_p50": r["interrupt_to_silence_ms"]["p50"], "stop_p95": r["interrupt_to_silence_ms"]["p95"],
             "stop_sent_p95": r["interrupt_to_silence_sent_ms"]["p95"], "av_offset": r["av_offset_frames_max"],
             "cpu_per_session": r["server_cpu_percent_per_session"]} for r in result["rows"]]
    print()
    print(table(flat, ["video", "sessions", "received_fraction_min", "say_p50", "say_p95", "stop_p50", "stop_p95",
                       "stop_sent_p95", "av_offset", "cpu_per_session"]))
    print(f"\nlargest N with every viewer at ≥ 95 % of 25 fps: {result['max']}")
    write(args.json, result)
    return 0
