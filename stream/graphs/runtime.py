"""What exists once per process: each lip-sync model with its worker, each prepared avatar and each
model's preparation of it (its `Face`), the open-session count, and the threads that run
text-to-speech for live sessions.

Workers are counted by their users (sessions and renders); a few unused ones are kept for the next
user, since loading a model and capturing its graphs costs seconds. Avatars live as long as
someone holds them.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from ..errors import LipstreamError
from ..lipsync import registry
from ..lipsync.contract import Face
from ..lipsync.worker import Job, LipSyncWorker
from ..video.avatar import Avatar, load_avatar

log = logging.getLogger("lipstream")
KEEP_IDLE_WORKERS = 2
KEEP_RECENT_AVATARS = 2
CAPACITY_SHARE = 0.4  # of the worker's measured frames/s given to sessions by default: TTS, mel, compose and the consumers share the machine (2-core CPU, procedural: 636 frames/s measured, 10 sessions = 250 frames/s kept on time)

_lock = threading.Lock()
_workers: dict[tuple, LipSyncWorker] = {}
_users: dict[tuple, int] = {}
_idle: OrderedDict[tuple, None] = OrderedDict()  # unused workers, least recently used first
_avatars: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_face_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_recent: OrderedDict[tuple, Avatar] = OrderedDict()  # the last avatars used, held even when no session is open
_sessions: weakref.WeakSet = weakref.WeakSet()
_capacity: dict[tuple, float] = {}  # worker key → measured frames/s (model + compose)
_tts_pool: ThreadPoolExecutor | None = None


def acquire_worker(cfg, device: torch.device) -> LipSyncWorker:
    """The process's worker for this model, loaded on first use; give it back with `release_worker`."""
    key = registry.key(cfg, device)
    with _lock:
        worker = _workers.get(key)
        if worker is None:
            worker = _workers[key] = LipSyncWorker(registry.make_model(cfg, device), cfg.batch_size)
        elif cfg.batch_size != worker.max_batch:
            log.info("lip-sync worker already runs with batch size %d (asked for %d)", worker.max_batch, cfg.batch_size)
        _users[key] = _users.get(key, 0) + 1
        _idle.pop(key, None)
        return worker


def release_worker(worker: LipSyncWorker) -> None:
    evict = []
    with _lock:
        key = next((k for k, w in _workers.items() if w is worker), None)
        if key is None:
            return
        _users[key] -= 1
        if _users[key] == 0:
            _idle[key] = None
            while len(_idle) > KEEP_IDLE_WORKERS:
                old, _ = _idle.popitem(last=False)
                evict.append(_workers.pop(old))
                _users.pop(old)
                _capacity.pop(old, None)
    for w in evict:
        w.close()


def workers() -> list[LipSyncWorker]:
    with _lock:
        return list(_workers.values())


def shared_avatar(cfg, device: torch.device) -> Avatar:
    """One prepared avatar per file, box and device while anyone holds it; the last few stay for the
    next session (a viewer who reconnects does not wait for the avatar to be read again)."""
    try:
        st = os.stat(cfg.avatar)
        key = (os.path.realpath(cfg.avatar), st.st_mtime_ns, st.st_size, cfg.box, cfg.key_rgb, str(device))
    except OSError:
        return load_avatar(cfg.avatar, device, cfg.box, use_cache=cfg.cache, screen=cfg.key_rgb)  # its own clear error
    with _lock:
        avatar = _avatars.get(key)
    if avatar is None:
        avatar = load_avatar(cfg.avatar, device, cfg.box, use_cache=cfg.cache, screen=cfg.key_rgb)
        with _lock:
            avatar = _avatars.setdefault(key, avatar)
    with _lock:
        _recent[key] = avatar
        _recent.move_to_end(key)
        while len(_recent) > KEEP_RECENT_AVATARS:
            _recent.popitem(last=False)
    return avatar


def shared_face(avatar: Avatar, worker: LipSyncWorker) -> Face:
    """The worker's model's preparation of `avatar`, made once and held by the avatar (so it lives as
    long as the avatar does); a second caller waits for the first's (MuseTalk encodes every frame)."""
    key = worker.model.identity()
    with _lock:  # one preparation at a time per avatar
        lock = _face_locks.setdefault(avatar, threading.Lock())
    with lock:
        face = avatar.faces.get(key)
        if face is None:
            face = avatar.faces[key] = worker.model.prepare(avatar)
    return face


def capacity(cfg, device: torch.device, worker: LipSyncWorker, avatar: Avatar, face: Face) -> float:
    """Frames per second the worker sustains at its batch size, compose included, measured once."""
    key = registry.key(cfg, device)
    if key not in _capacity:
        from kernels import compose

        def run(n: int) -> float:
            done: Future = Future()

            def finish(mouths, error):
                if error is None:
                    compose(avatar.frames[job.idx], mouths, face.boxes[job.idx], face.mask(job.idx))
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                done.set_exception(error) if error else done.set_result(None)

            idx = torch.zeros(n, dtype=torch.long, device=device)
            job = Job(torch.zeros(n, *worker.model.feature_shape, device=device), face, idx, 0.0, finish)
            start = time.perf_counter()
            worker.submit(job)
            done.result()
            return time.perf_counter() - start

        for n in (1, worker.max_batch):  # a small and a full batch, so the worker can interpolate
            run(n)
        # The best of three: other work on the machine only ever slows a run (on the shared 2-core
        # box one run gave anywhere from 39 to 749 frames/s, and one session as the limit).
        _capacity[key] = worker.max_batch / min(run(worker.max_batch) for _ in range(3))
        log.info("lip-sync worker %s: %.0f frames/s at batch %d", worker.describe(), _capacity[key], worker.max_batch)
    return _capacity[key]


def check_room(limit: int) -> None:
    with _lock:
        _check_room(limit)


def _check_room(limit: int) -> None:
    if len(_sessions) >= limit:
        raise SessionLimitError(f"session limit reached: {len(_sessions)} session(s) open, max_sessions is {limit}")


def admit(session, limit: int) -> None:
    with _lock:
        _check_room(limit)
        _sessions.add(session)


def leave(session) -> None:
    with _lock:
        _sessions.discard(session)


def open_sessions() -> int:
    with _lock:
        return len(_sessions)


def tts_pool() -> ThreadPoolExecutor:
    """Threads that synthesise live sessions' text, a sentence per task, so sessions take turns."""
    global _tts_pool
    with _lock:
        if _tts_pool is None:
            _tts_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lipstream-tts")
        return _tts_pool


class SessionLimitError(LipstreamError):
    """No room for another session in this process."""


@atexit.register
def shutdown() -> None:
    """Stop every worker thread (before the interpreter tears torch down under them); a later
    user loads its model again."""
    with _lock:
        workers = list(_workers.values())
        _workers.clear()
        _users.clear()
        _idle.clear()
        _capacity.clear()
    for w in workers:
        w.close()
