"""`lipstream bench tts`: each speech engine's time to its first chunk, its speed, and the whole path
text → first rendered frame. eSpeak NG always; Coqui with `--tts-model`, else a tiny random VITS
(the loaders and the per-sentence path are real, the model's cost is not). Engines take turns
within each round, so a machine whose speed drifts treats them alike; medians are reported."""
from __future__ import annotations

import importlib.util
import os
import statistics
import tempfile
import time

import torch

from ..config import make_config
from ..graphs.render import render
from ..tts.chunker import sentences
from ..tts.registry import make_tts
from .machine import machine
from .report import table, write

ROUNDS = 5


def _first_chunk(tts, piece: str) -> float:
    start = time.perf_counter()
    chunks = tts.synthesize(piece)
    next(chunks)
    elapsed = time.perf_counter() - start
    chunks.close()
    return elapsed


def _speed(tts, pieces: list[str]) -> tuple[float, float]:
    """Seconds of speech made per second of synthesis, over every piece of the text; and the speech."""
    start, samples = time.perf_counter(), 0
    for piece in pieces:
        samples += sum(len(c) for c in tts.synthesize(piece))
    speech = samples / tts.sample_rate
    return speech / (time.perf_counter() - start), speech


def _first_frame(settings: dict, text: str, device: torch.device) -> float:
    with tempfile.TemporaryDirectory() as d:
        r = render(os.path.join(d, "o.mp4"), text=text, device=str(device), box=(67, 170, 177, 270), **settings)
    return r.first_frame_seconds


def run(args, device: torch.device) -> int:
    with open(args.text_file, encoding="utf-8") as f:
        text = f.read()
    pieces = sentences(text)
    tmp = None
    engines = {"espeak-ng": {"tts": "espeak"}}
    if args.tts_model:
        engines["coqui"] = {"tts": "coqui", "tts_model": args.tts_model, "tts_config": args.tts_config}
    elif importlib.util.find_spec("TTS") is None:
        print("coqui-tts is not installed: eSpeak NG only")
    else:
        from ..tts.coqui_random import save_random_vits

        tmp = tempfile.TemporaryDirectory()
        model, config = save_random_vits(tmp.name, sample_rate=22050)
        engines["coqui vits (tiny, random)"] = {"tts": "coqui", "tts_model": model, "tts_config": config}
    try:
        loaded, tts = {}, {}
        for name, settings in engines.items():
            start = time.perf_counter()
            tts[name] = make_tts(make_config(**settings), device)
            loaded[name] = time.perf_counter() - start
            _first_frame(settings, pieces[0], device)  # warm: the worker, the avatar, the engine's first call
        first: dict[str, list] = {n: [] for n in engines}
        speed: dict[str, list] = {n: [] for n in engines}
        frame: dict[str, list] = {n: [] for n in engines}
        speech: dict[str, float] = {}
        for _ in range(ROUNDS):
            for name, settings in engines.items():
                first[name].append(_first_chunk(tts[name], pieces[0]))
                rate, speech[name] = _speed(tts[name], pieces)
                speed[name].append(rate)
                frame[name].append(_first_frame(settings, " ".join(pieces[:2]), device))
    finally:
        if tmp is not None:
            tmp.cleanup()
    rows = [{"engine": n, "device": tts[n].device, "load_s": round(loaded[n], 2),
             "first_chunk_ms": round(1000 * statistics.median(first[n]), 1),
             "realtime_factor": round(statistics.median(speed[n]), 1), "speech_s": round(speech[n], 1),
             "text_to_first_frame_ms": round(1000 * statistics.median(frame[n]), 1),
             "first_piece": pieces[0]} for n in engines]
    print(table(rows, ["engine", "device", "load_s", "first_chunk_ms", "realtime_factor", "speech_s",
                       "text_to_first_frame_ms"]))
    print(f"\nfirst piece: {pieces[0]!r}; speed over {len(pieces)} pieces of {os.path.relpath(args.text_file)}; "
          f"medians of {ROUNDS} rounds, engines taking turns")
    write(args.json, {"machine": machine(device), "rounds": ROUNDS, "rows": rows,
                      "samples": {n: {"first_chunk_s": first[n], "realtime_factor": speed[n],
                                      "first_frame_s": frame[n]} for n in engines}})
    return 0
