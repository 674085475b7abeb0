"""`lipstream render-many JOBS.jsonl`: many renders on Ray (`stream.graphs.render_many`)."""
from __future__ import annotations

import json
import sys
import time


def add_args(p) -> None:
    p.add_argument("jobs", metavar="JOBS.jsonl", help="one render per line: {\"text\" | \"text_file\" | \"audio\", "
                   "\"output\", settings…}")
    p.add_argument("--address", help="Ray cluster to join (default: start a local one; 'auto': the running one)")
    p.add_argument("--workers", type=int, help="worker processes (default: the cluster's CPUs / --cpus-per-worker)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs each worker reserves (default 1)")
    p.add_argument("--gpus-per-worker", type=float, help="GPUs each worker reserves (default 1 on a cluster with "
                   "GPUs, else 0)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--force", action="store_true", help="render jobs whose output exists too")
    p.add_argument("--json", metavar="F", help="write the results (one object per line) to F")


def run(args) -> int:
    from ..graphs.render_many import render_many

    t0 = time.perf_counter()
    results = render_many(args.jobs, address=args.address, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                          gpus_per_worker=args.gpus_per_worker, force=args.force, num_cpus=args.num_cpus)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
    count = {s: sum(r["status"] == s for r in results) for s in ("done", "skipped", "failed")}
    speech = sum(r.get("speech_seconds", 0.0) for r in results)
    wall = time.perf_counter() - t0
    failed = [str(r["line"]) for r in results if r["status"] == "failed"]
    print(f"render-many: {count['done']} rendered, {count['skipped']} skipped, {count['failed']} failed"
          + (f" (line {', '.join(failed)})" if failed else "")
          + f" in {wall:.1f} s" + (f"; {speech:.1f} s of speech, {speech / wall:.2f}× real time" if speech else ""),
          file=sys.stdout)
    return 1 if failed else 0
