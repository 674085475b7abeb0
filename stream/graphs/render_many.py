"""Many renders on Ray, one model per worker process (`lipstream render-many jobs.jsonl`).

Each line of the jobs file is one render, a JSON object: `output` (required), exactly one of `text`,
`text_file` or `audio`, and any `render` settings (`avatar`, `checkpoint`, `voice`, `fps`, `box`, …;
the names of `RenderConfig`). Relative paths are taken from the jobs file's folder. A job whose
output exists is skipped (outputs are written atomically, so an existing file is a finished one):
running the same file again renders only what is missing or failed.

Workers are Ray actors, each a process that loads the model once (`stream.graphs.runtime` shares it
within the process) and renders its jobs one after another; the driver hands the next job to
whichever worker finishes first. A job that fails (a bad line, a missing file, a worker that died)
is reported with its line number and the others go on. Exit status: 0 when every job was rendered
or skipped, 1 when any failed, 2 when the batch could not start (no jobs file, no Ray).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections import deque

from ..config import RenderConfig, make_config
from ..errors import LipstreamError, one_line

log = logging.getLogger("lipstream")
SOURCES = ("text", "text_file", "audio")
SETTINGS = {f.name for f in dataclasses.fields(RenderConfig)}
PATHS = ("output", "text_file", "audio", "avatar", "checkpoint", "tts_config")  # relative to the jobs file
MAYBE_PATHS = ("tts_model", "tts_speaker")  # a path when such a file exists there, else a name


def read_jobs(path: str) -> tuple[list[dict], list[dict]]:
    """(jobs, failures): each job `{line, output, source: {kind: value}, settings}`; each failure
    `{line, output, status: "failed", error}` for a line that is not a job."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise LipstreamError(f"cannot read jobs file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise LipstreamError(f"jobs file {path} is not UTF-8 text") from None
    base = os.path.dirname(os.path.abspath(path))
    jobs, failed, seen = [], [], {}
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            job = _parse(raw, base)
            if job["output"] in seen:
                raise LipstreamError(f"output {job['output']} is also written by line {seen[job['output']]}")
            seen[job["output"]] = number
            jobs.append({"line": number, **job})
        except LipstreamError as e:
            failed.append({"line": number, "output": None, "status": "failed", "error": str(e)})
    return jobs, failed


def _parse(raw: str, base: str) -> dict:
    try:
        obj = json.loads(raw)
    except ValueError as e:
        raise LipstreamError(f"not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise LipstreamError("a job is a JSON object")
    unknown = sorted(set(obj) - SETTINGS - set(SOURCES) - {"output"})
    if unknown:
        raise LipstreamError(f"unknown key {unknown[0]!r} (a job has output, one of {', '.join(SOURCES)}, "
                             "and settings)")
    given = [k for k in SOURCES if obj.get(k) is not None]
    if len(given) != 1:
        raise LipstreamError(f"give exactly one of {', '.join(SOURCES)}")
    for key in ("output", *given):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise LipstreamError(f"{key} must be a non-empty string")
    for key in PATHS:
        if isinstance(obj.get(key), str) and obj[key] != "-":
            obj[key] = os.path.join(base, os.path.expanduser(obj[key]))
    for key in MAYBE_PATHS:
        if isinstance(obj.get(key), str) and os.path.exists(os.path.join(base, obj[key])):
            obj[key] = os.path.join(base, obj[key])
    if obj["output"] == "-" or obj.get("text_file") == "-":
        raise LipstreamError("render-many writes files and reads no standard input: - is not allowed")
    settings = {k: v for k, v in obj.items() if k in SETTINGS}
    if isinstance(settings.get("box"), list):
        settings["box"] = tuple(settings["box"])
    make_config(**settings)  # every setting checked here, before any worker is asked
    return {"output": obj["output"], "source": {given[0]: obj[given[0]]}, "settings": settings}


class Renderer:
    """One worker process: renders a job at a time; the model stays loaded between jobs."""

    def __init__(self, level: int = logging.WARNING):
        logging.basicConfig(level=level, format="lipstream: %(message)s")

    def render(self, job: dict) -> dict:
        import socket

        from .render import render

        out = {"line": job["line"], "output": job["output"], "host": socket.gethostname(), "pid": os.getpid()}
        try:
            result = render(job["output"], config=make_config(**job["settings"]), **job["source"])
        except Exception as e:  # noqa: BLE001 - reported for this job; the worker takes the next one
            error = str(e) if isinstance(e, LipstreamError) else f"{type(e).__name__}: {e}"
            return {**out, "status": "failed", "error": error}
        return {**out, "status": "done", "frames": result.frames, "speech_seconds": round(result.speech_seconds, 3),
                "wall_seconds": round(result.wall_seconds, 3)}


def render_many(jobs_file: str, *, address: str | None = None, workers: int | None = None,
                cpus_per_worker: float = 1.0, gpus_per_worker: float | None = None, force: bool = False,
                num_cpus: int | None = None, report=print) -> list[dict]:
    """Run every job of `jobs_file`; returns one result per line (done, skipped or failed)."""
    jobs, results = read_jobs(jobs_file)
    for r in results:
        report(f"render-many: line {r['line']}: FAILED: {r['error']}")
    todo = deque(j for j in jobs if force or not os.path.exists(j["output"]))
    skipped = [{"line": j["line"], "output": j["output"], "status": "skipped"} for j in jobs if j not in todo]
    results += skipped
    if skipped:
        report(f"render-many: {len(skipped)} output(s) exist, skipped (--force renders them again)")
    if not todo:
        return sorted(results, key=lambda r: r["line"])
    try:
        import ray
        from ray.exceptions import RayActorError
    except ImportError:
        raise LipstreamError("render-many needs Ray: pip install 'lipstream[ray]'") from None

    started = ray.is_initialized()
    if not started:
        ray.init(address=address, num_cpus=num_cpus if address is None else None, include_dashboard=False,
                 logging_level=logging.WARNING)
    try:
        resources = ray.cluster_resources()
        gpus = gpus_per_worker if gpus_per_worker is not None else (1.0 if resources.get("GPU") else 0.0)
        if workers is None:
            workers = int(resources.get("CPU", 1) // cpus_per_worker)
            if gpus:
                workers = min(workers, int(resources.get("GPU", 0) // gpus))
        workers = max(1, min(workers, len(todo)))
        level = log.getEffectiveLevel()
        actor = ray.remote(Renderer).options(num_cpus=cpus_per_worker, num_gpus=gpus, max_restarts=0)
        total, done_count, t0 = len(todo), 0, time.perf_counter()
        report(f"render-many: {total} job(s) on {workers} worker(s) ({cpus_per_worker:g} CPU"
               + (f", {gpus:g} GPU" if gpus else "") + " each)")
        inflight: dict = {}

        def give(worker) -> None:
            if todo:
                job = todo.popleft()
                inflight[worker.render.remote(job)] = (worker, job)

        pool = [actor.remote(level) for _ in range(workers)]
        for w in pool:
            give(w)
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1)
            worker, job = inflight.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except RayActorError as e:  # the process died (out of memory, a crash): a new one takes over
                result = {"line": job["line"], "output": job["output"], "status": "failed",
                          "error": f"the worker died: {one_line(e)}"}
                pool.remove(worker)
                worker = actor.remote(level)
                pool.append(worker)
            except Exception as e:  # noqa: BLE001
                result = {"line": job["line"], "output": job["output"], "status": "failed",
                          "error": f"{type(e).__name__}: {e}"}
            done_count += 1
            results.append(result)
            if result["status"] == "done":
                report(f"render-many: [{done_count}/{total}] line {job['line']}: {job['output']}: "
                       f"{result['frames']} frames, {result['speech_seconds']:.2f} s of speech in "
                       f"{result['wall_seconds']:.2f} s ({time.perf_counter() - t0:.1f} s since the start)")
            else:
                report(f"render-many: [{done_count}/{total}] line {job['line']}: FAILED: {result['error']}")
            give(worker)
        for w in pool:
            ray.kill(w)
    finally:
        if not started:
            ray.shutdown()
    return sorted(results, key=lambda r: r["line"])
