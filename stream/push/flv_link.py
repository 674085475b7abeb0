"""The pusher's end of one RTMP connection: a flv_out process (see flv_out.py for why), fed one
tick at a time and watched: a message it has not answered within STALL_LIMIT seconds kills it, which
fails whatever the writer was doing (`Lost`), as a dropped connection does."""
from __future__ import annotations

import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
import time

import av
import numpy as np

from ..audio.aac import configure_aac, pcm_frame

STALL_LIMIT = 5.0  # seconds a connect, a tick or the stream's end may wait on the ingest before it counts as lost
START_LIMIT = 20.0  # seconds for the process to start (Python and PyAV; a loaded machine is slow)
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # where `stream` is


class Lost(Exception):
    """The connection failed or was given up; `refused`: trying again cannot help."""

    def __init__(self, reason: str, refused: bool = False):
        super().__init__(reason)
        self.refused = refused


class _Settings:
    """What a `configure(ctx)` sets, recorded to be set alike on a codec context in flv_out's process."""

    def __init__(self, configure):
        object.__setattr__(self, "values", {})
        configure(self)

    def __setattr__(self, name, value):
        self.values[name] = value

    def __getattr__(self, name):
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


class Connection:
    """One FLV stream on one RTMP connection, made by a flv_out process; timestamps count from its
    first (key frame) tick."""

    def __init__(self, url: str, fmt):
        self.fmt = fmt
        self.base: int | None = None  # the tick at timestamp 0
        self.frames = 0
        self.error: Lost | None = None
        self._replies: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._waiting_since: float | None = None  # the oldest message not yet answered
        self._unanswered = 0
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.proc = subprocess.Popen([sys.executable, "-m", "stream.push.flv_out", url], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        self._watch = threading.Thread(target=self._read, name="rtmp-answers", daemon=True)
        self._watch.start()
        self._aac = av.CodecContext.create("aac", "w")  # the audio's encoder, this connection's timestamps
        configure_aac(self._aac)
        self._aac.open()
        try:
            self._expect("ready", START_LIMIT)
            self._send(("open", _Settings(fmt.configure).values, _Settings(configure_aac).values))
            self._expect("open", STALL_LIMIT)  # connected, published, the FLV header sent
        except BaseException:
            self.kill()
            raise

    def send(self, index: int, packets: list, audio: np.ndarray) -> bool:
        """Mux one tick; False while waiting for a key frame to start on."""
        if self.base is None:
            if not packets or not packets[0].is_keyframe:
                return False
            self.base = index
        out = [(0, bytes(p), p.pts - self.base, (p.dts if p.dts is not None else p.pts) - self.base, p.is_keyframe)
               for p in packets]
        out += self._audio(self._aac.encode(pcm_frame(audio, (index - self.base) * len(audio))))
        self._send(("tick", index, out))
        self.frames += 1
        return True

    def close(self) -> None:
        """The audio's end and the FLV trailer; the process then exits."""
        try:
            if self.base is not None:
                self._send(("tick", -1, self._audio(self._aac.encode(None))))
            self._send(("end",))
            self._expect("closed", STALL_LIMIT)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if threading.current_thread() is not self._watch:
            self._watch.join(timeout=1.0)  # it reads stdout until EOF: closed under it, the descriptor could be reused
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    @staticmethod
    def _audio(packets) -> list:
        return [(1, bytes(p), p.pts, p.dts, False) for p in packets]

    def _send(self, message) -> None:
        if self.error is not None:
            raise self.error
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self._unanswered += 1
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()
        try:
            self.proc.stdin.write(struct.pack("<I", len(data)) + data)
            self.proc.stdin.flush()
        except (OSError, ValueError):  # the process is gone (killed by the watch, or failed)
            self._watch.join(timeout=STALL_LIMIT)
            raise self.error or Lost("the connection's process ended") from None

    def _expect(self, name: str, seconds: float) -> None:
        try:
            reply = self._replies.get(timeout=seconds)
        except queue.Empty:
            self.error = Lost(f"the ingest did not answer for {seconds:.0f} s")
            raise self.error from None
        if reply is None or reply[0] != name:
            raise self.error or Lost(f"unexpected answer {reply[0]!r}")

    def _read(self) -> None:
        """The process's answers; and the watch: a message unanswered for STALL_LIMIT kills it."""
        fd, buf = self.proc.stdout.fileno(), b""
        while True:
            try:
                chunk = os.read(fd, 65536) if select.select([fd], [], [], 0.25)[0] else None
            except (OSError, ValueError):  # the pipe was closed (kill() waited a second for this thread)
                break
            if chunk is not None:
                if not chunk:
                    break
                buf += chunk
                while len(buf) >= 4 and len(buf) >= 4 + (n := struct.unpack("<I", buf[:4])[0]):
                    self._answer(pickle.loads(buf[4 : 4 + n]))
                    buf = buf[4 + n :]
            with self._lock:
                stalled = self._waiting_since is not None and time.monotonic() - self._waiting_since > STALL_LIMIT
            if stalled and self.error is None and self.base is not None:
                self.error = Lost(f"the ingest stopped answering for {STALL_LIMIT:.0f} s")
                self.proc.kill()
        self.error = self.error or Lost("the connection's process ended")
        self._replies.put(None)

    def _answer(self, reply: tuple) -> None:
        with self._lock:
            self._unanswered -= reply[0] != "ready"
            self._waiting_since = None if self._unanswered <= 0 else time.monotonic()
        if reply[0] == "error":
            self.error = Lost(reply[2], refused=reply[1])
            self._replies.put(None)
        elif reply[0] != "sent":
            self._replies.put(reply)
