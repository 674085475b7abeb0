"""The microphone as a source of speech: PortAudio through sounddevice, imported only when used.

`Microphone` records mono int16 blocks (20 ms by default) in sounddevice's callback thread. It is
used two ways:
- `chunks()`: an iterator of `PcmChunk`, the source `render(mic=...)` takes, so frames are made
  while the recording goes on;
- `feed_session(session, mic)`: each block is pushed into a live `Session` straight from the
  callback thread (`push_audio`), and the utterance ends (`end_segment`) when the recording stops.

The recording stops after `seconds` of audio (counted in samples: the audio clock, not wall time),
on `stop()` (Ctrl-C in the CLI), or when the device fails. Every problem with PortAudio or the
device is a `LipstreamError` with one line that says what to do.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

from ..errors import LipstreamError, one_line
from ..frames import PcmChunk

log = logging.getLogger("lipstream")

INSTALL_PORTAUDIO = "apt-get install libportaudio2"
NO_PORTAUDIO = f"PortAudio is not installed (sounddevice needs it for the microphone and the speaker): {INSTALL_PORTAUDIO}"
RATES = (48000, 44100, 32000, 24000, 22050, 16000)  # tried in order; all are rates Session.push_audio takes
STALL_SECONDS = 3.0  # a started stream that delivers nothing for this long has failed


def sounddevice():
    """The sounddevice module, or a LipstreamError naming what to install."""
    try:
        import sounddevice as sd
    except OSError:  # raised at import: 'PortAudio library not found'
        raise LipstreamError(NO_PORTAUDIO) from None
    except ImportError:
        raise LipstreamError("the sounddevice package is missing: pip install sounddevice") from None
    return sd


def _device_error(sd, kind: str, device, e: Exception) -> LipstreamError:
    what = f"device {device!r}" if device is not None else f"the default {kind} device"
    return LipstreamError(f"cannot use {what} for {kind} ({one_line(e)}); `python -m sounddevice` lists the devices")


def check_device(kind: str, device=None, rates=RATES, channels: int = 1) -> tuple[int, dict]:
    """(sample rate, device info) for mono `kind` ('input' or 'output'), or a LipstreamError."""
    sd = sounddevice()
    try:
        info = sd.query_devices(device, kind=kind)
    except (ValueError, sd.PortAudioError) as e:
        if device is None:
            raise LipstreamError(f"no audio {kind} device found (no sound card or microphone?)"
                                 if kind == "input" else f"no audio {kind} device found") from None
        raise _device_error(sd, kind, device, e) from None
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    default = int(info.get("default_samplerate") or 0)
    tried = list(rates) + ([default] if default and default not in rates else [])
    last: Exception | None = None
    for rate in tried:
        try:
            check(device=device, channels=channels, dtype="int16", samplerate=rate)
            return rate, info
        except (ValueError, sd.PortAudioError) as e:
            last = e
    raise _device_error(sd, kind, device, last)


class Microphone:
    """Mono int16 recording from `device` (default: the system's default input)."""

    def __init__(self, seconds: float | None = None, device=None, block_seconds: float = 0.02,
                 sample_rate: int | None = None):
        if seconds is not None and seconds <= 0:
            raise LipstreamError(f"--seconds must be positive, not {seconds}")
        self.device, self.seconds = device, seconds
        rate, info = check_device("input", device, (sample_rate,) if sample_rate else RATES)
        self.sample_rate, self.name = rate, info.get("name", "?")
        self.block = max(1, round(rate * block_seconds))
        self.limit = round(seconds * rate) if seconds is not None else None
        self.recorded = 0  # samples delivered
        self.overflows = 0
        self.started_at: float | None = None  # perf_counter when the stream started
        self.first_block_at: float | None = None
        self._stop = threading.Event()
        self._done = threading.Event()  # the stream has stopped calling back
        self._queue: queue.Queue = queue.Queue()
        self._sink: Callable[[np.ndarray], None] | None = None
        self._stream = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    # Control.

    def start(self, on_block: Callable[[np.ndarray], None] | None = None) -> Microphone:
        """Open and start the stream; `on_block(int16 array)` runs in the callback thread when given,
        otherwise blocks go to `chunks()`."""
        with self._lock:
            if self._stream is not None:
                return self
            sd = self._sd = sounddevice()
            self._sink = on_block
            try:
                self._stream = sd.InputStream(samplerate=self.sample_rate, blocksize=self.block, device=self.device,
                                              channels=1, dtype="int16", callback=self._callback,
                                              finished_callback=self._done.set)
                self.started_at = time.perf_counter()
                self._stream.start()
            except (ValueError, sd.PortAudioError) as e:
                self._stream = None
                raise _device_error(sd, "input", self.device, e) from None
        log.info("recording from %s at %d Hz%s (Ctrl-C stops)", self.name, self.sample_rate,
                 f" for {self.seconds:g} s" if self.seconds else "")
        return self

    def stop(self) -> None:
        """Stop recording (safe from a signal handler: only sets a flag; the stream ends at its next block)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close(ignore_errors=True)
            except Exception:  # noqa: BLE001 - a device already gone cannot be closed twice
                pass
            if self.overflows:
                log.warning("the microphone dropped audio %d times (input overflow)", self.overflows)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Until the recording is over (stopped, `seconds` reached or the device failed)."""
        return self._done.wait(timeout)

    @property
    def seconds_recorded(self) -> float:
        return self.recorded / self.sample_rate

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    # The PortAudio thread.

    def _callback(self, indata, frames, time_info, status) -> None:
        sd = self._sd
        if status.input_overflow:
            self.overflows += 1
        if self._stop.is_set():
            raise sd.CallbackStop
        block = indata[:, 0].copy()
        if self.limit is not None:
            block = block[: self.limit - self.recorded]
        self.recorded += len(block)
        if self.first_block_at is None:
            self.first_block_at = time.perf_counter()
        if len(block):
            if self._sink is not None:
                try:
                    self._sink(block)
                except BaseException as e:  # noqa: BLE001 - ends the recording; raised by the consumer
                    self._error = e
                    self._stop.set()
                    raise sd.CallbackAbort from None
            else:
                self._queue.put(block)
        if self.limit is not None and self.recorded >= self.limit:
            self._stop.set()
            raise sd.CallbackStop

    # As a render source.

    def chunks(self, chunk_seconds: float = 0.1) -> Iterator[PcmChunk]:
        """The recording as PcmChunks (float32), about `chunk_seconds` each, until it stops; starts the
        stream if it is not running. Closes the stream at the end."""
        self.start()
        want = max(self.block, round(self.sample_rate * chunk_seconds))
        parts: list[np.ndarray] = []
        have, last = 0, time.monotonic()
        try:
            while True:
                try:
                    block = self._queue.get(timeout=0.05)
                except queue.Empty:
                    if self._stop.is_set() or self._done.is_set():
                        if not self._done.is_set():
                            self._done.wait(0.5)  # the callback ends the stream at its next block
                        if self._queue.empty():
                            break
                        continue
                    if time.monotonic() - last > STALL_SECONDS:
                        raise LipstreamError(f"the microphone ({self.name}) delivered no audio for "
                                             f"{STALL_SECONDS:g} s: the device stopped or is not a capture device")
                    continue
                last = time.monotonic()
                parts.append(block)
                have += len(block)
                if have >= want:
                    yield PcmChunk(np.concatenate(parts).astype(np.float32) / 32768.0, self.sample_rate)
                    parts, have = [], 0
            if parts:
                yield PcmChunk(np.concatenate(parts).astype(np.float32) / 32768.0, self.sample_rate)
            self.check()
        finally:
            self.close()


class SessionFeed:
    """The microphone into a live session: blocks pushed from the callback thread, `end_segment` on stop."""

    def __init__(self, session, mic: Microphone):
        self.session, self.mic = session, mic
        self.segment: int | None = None
        self.pushed = 0
        self._ended = threading.Event()
        self._watch: threading.Thread | None = None

    def _push(self, block: np.ndarray) -> None:
        self.segment = self.session.push_audio(block, self.mic.sample_rate)
        self.pushed += len(block)

    def start(self) -> SessionFeed:
        self.mic.start(on_block=self._push)
        self._watch = threading.Thread(target=self._end_when_done, name="mic-feed", daemon=True)
        self._watch.start()
        return self

    def _end_when_done(self) -> None:
        while not self.mic.wait(0.05):
            if self.mic.stopped:  # stop() asked: the callback ends the stream at its next block
                self.mic.wait(1.0)
                break
        self.mic.close()
        try:
            self.session.end_segment()
        except LipstreamError:  # the session was closed first
            pass
        self._ended.set()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop recording and end the utterance (its SegmentEnd follows its last frame)."""
        self.mic.stop()
        if self._watch is not None:
            self._ended.wait(timeout)
        self.mic.check()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._ended.wait(timeout)


def feed_session(session, mic: Microphone | None = None, **mic_args) -> SessionFeed:
    """Start feeding `session` from `mic` (default: a new `Microphone(**mic_args)`); returns the feed."""
    return SessionFeed(session, mic or Microphone(**mic_args)).start()


class stop_on_interrupt:
    """While inside: the first Ctrl-C stops `mic` (the recording ends, what was heard is finished),
    a second one interrupts as usual. Main thread only; elsewhere, or with no mic, it does nothing."""

    def __init__(self, mic: Microphone | None):
        self.mic, self._previous = mic, None

    def __enter__(self):
        import signal

        if self.mic is None or threading.current_thread() is not threading.main_thread():
            return self

        def handler(signum, frame):
            signal.signal(signal.SIGINT, self._previous)
            log.warning("stopping the recording; finishing what was heard (Ctrl-C again abandons it)")
            self.mic.stop()

        self._previous = signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc):
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
