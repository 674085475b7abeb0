"""`lipstream preview`: a live session seen and heard on this machine.

The speaker is the clock. Its output callback pulls 20 ms blocks from a buffer that a pump thread
fills with the session's audio, tick by tick (idle ticks bring their silence), so the buffer is the
session's sample clock laid end to end. Each callback notes which session sample starts its block
and when that block reaches the DAC (`outputBufferDacTime`, or now + the stream's latency where the
host API does not say): a video frame is shown once the DAC has reached its first sample, i.e. at
the moment its audio is heard. The pump keeps only a few blocks buffered, so the session's `lead`
and the device latency are the whole delay.

Without a sound output device the video is paced by the session's clock (frame k at start + k/fps)
and the preview says once that the audio is not played. With a display (`DISPLAY`) the frames go to
a tkinter window (PPM bytes into a PhotoImage: no PIL, and OpenCV here is headless); without one the
live page of `lipstream serve` is served on 127.0.0.1 and the session of each page that connects
says the text (or hears the microphone).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..errors import LipstreamError, one_line
from ..live.session import Frame, SegmentEnd, Session

log = logging.getLogger("lipstream")
BLOCK = 960  # 20 ms at 48 kHz
BUFFER_BLOCKS = 3  # blocks the pump keeps ahead of the speaker


@dataclass
class PreviewResult:
    frames: int = 0  # frames shown
    speaking_frames: int = 0
    audio_played: bool = False
    samples_played: int = 0  # session samples handed to the speaker
    underruns: int = 0  # callbacks that found the buffer short while speaking
    offsets_ms: list = field(default_factory=list)  # per shown frame: (DAC position − its first sample) in ms
    where: str = ""  # "window", "page http://…", or "headless"
    first_speaking_seconds: float | None = None  # from the start to the first speaking frame shown
    window_size: tuple | None = None
    speech_seconds: float = 0.0  # the utterances' playback positions at their SegmentEnds
    wall_seconds: float = 0.0  # from the start of playback to the end

    def summary(self) -> str:
        off = ""
        if self.offsets_ms:
            o = np.asarray(self.offsets_ms)
            off = f", frame shown after its sound by median {np.median(o):.1f} ms (p95 |offset| {np.percentile(np.abs(o), 95):.1f} ms)"
        audio = f"{self.samples_played / 48000:.2f} s of audio played" if self.audio_played else "audio not played"
        return (f"preview ({self.where}): {self.speech_seconds:.2f} s of speech in {self.wall_seconds:.2f} s, "
                f"{self.frames} frames shown, {self.speaking_frames} speaking, {audio}{off}")


class Speaker:
    """The session's audio to the sound card; `position()` is the session sample at the DAC now."""

    def __init__(self, sd, device=None, rate: int = 48000):
        self.rate = rate
        self._buf: deque[np.ndarray] = deque()
        self._off = 0  # samples of _buf[0] already played
        self.buffered = 0
        self.taken = 0  # session samples handed to the device
        self.underruns = 0
        self.speaking = False  # set by the pump: an underrun only counts while speech plays
        self._anchor: tuple[int, float, int] | None = None  # (first session sample, DAC time (monotonic), samples)
        self._lock = threading.Lock()
        self.stream = sd.OutputStream(samplerate=rate, blocksize=BLOCK, device=device, channels=1, dtype="float32",
                                      callback=self._callback, latency="low")
        self.latency = float(self.stream.latency)
        self.stream.start()

    def push(self, audio: np.ndarray) -> None:
        with self._lock:
            self._buf.append(audio)
            self.buffered += len(audio)

    def _callback(self, outdata, frames, time_info, status) -> None:
        out = outdata[:, 0]
        n = 0
        with self._lock:
            start = self.taken
            while n < frames and self._buf:
                a = self._buf[0]
                k = min(len(a) - self._off, frames - n)
                out[n : n + k] = a[self._off : self._off + k]
                n += k
                self._off += k
                if self._off == len(a):
                    self._buf.popleft()
                    self._off = 0
            self.taken += n
            self.buffered -= n
            now, dac = time_info.currentTime, time_info.outputBufferDacTime
            delay = dac - now if now > 0 and dac > now else self.latency  # ALSA's may be 0: the stream's latency
            if n or self._anchor is None:  # a block of silence only (underrun) keeps the last block's anchor
                self._anchor = (start, time.monotonic() + delay, n)
            if n < frames and self.speaking:
                self.underruns += 1
        out[n:] = 0.0

    def position(self) -> float:
        """The session sample at the DAC now (−1 before the first callback)."""
        with self._lock:
            anchor = self._anchor
        if anchor is None:
            return -1.0
        start, dac, n = anchor
        return start + min(float(n), (time.monotonic() - dac) * self.rate)

    def close(self) -> None:
        try:
            self.stream.close(ignore_errors=True)
        except Exception:  # noqa: BLE001
            pass


def _open_speaker(device=None) -> Speaker | None:
    from ..sources.mic import check_device, sounddevice

    try:
        sd = sounddevice()
        check_device("output", device, rates=(48000,))
        return Speaker(sd, device)
    except LipstreamError as e:
        log.warning("the audio is not played (%s); the video is paced by the session's clock", e)
    except Exception as e:  # noqa: BLE001 - PortAudioError opening the stream
        log.warning("the audio is not played (cannot open the sound output: %s); the video is paced by the "
                    "session's clock", one_line(e))
    return None


class Player:
    """Pulls `session` at the speaker's pace (or the session's clock) and hands each frame to `show`
    at the moment its audio is heard. Ends after `segments` SegmentEnds (None: when stopped)."""

    def __init__(self, session: Session, speaker: Speaker | None, segments: int | None):
        self.session, self.speaker, self.want = session, speaker, segments
        self.result = PreviewResult(audio_played=speaker is not None)
        self._frames: deque[Frame] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ended = 0
        self._end_sample: int | None = None
        self._k = 0  # the next tick the pump will take  # the samples of the last segment have all been queued here
        self.error: BaseException | None = None
        self.t0 = time.monotonic()
        self.expect_more = segments is None  # with the mic: a segment end is the end once the mic has stopped
        self._pump = threading.Thread(target=self._run, name="preview-pump", daemon=True)

    def start(self) -> Player:
        self.t0 = time.monotonic()
        self._pump.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def clock(self) -> float:
        """The session sample being heard (or due, without a speaker) now."""
        if self.speaker is not None:
            return self.speaker.position()
        return (time.monotonic() - self.t0) * self.session.sample_rate

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self.speaker is not None:
                    if self.speaker.buffered >= BUFFER_BLOCKS * BLOCK:
                        time.sleep(0.002)
                        continue
                else:
                    wait = self.t0 + self._k / self.session.fps - time.monotonic() - 0.05  # a little ahead of its time
                    if wait > 0:
                        time.sleep(min(wait, 0.01))
                        continue
                item = self.session.get()
                if item is None:
                    break
                if isinstance(item, SegmentEnd):
                    self.result.speech_seconds += item.playback_position
                    with self._lock:
                        self._ended += 1
                        if self.want is not None and self._ended >= self.want:
                            self._end_sample = self._k * self.session.samples_per_frame
                            return
                    continue
                if self.speaker is not None:
                    self.speaker.speaking = item.speaking
                    self.speaker.push(item.audio)
                with self._lock:
                    self._frames.append(item)
                    self._k = item.index + 1
        except BaseException as e:  # noqa: BLE001 - raised by the display loop
            self.error = e

    def finish_after(self, segments: int) -> None:
        """End once `segments` SegmentEnds have come (0: now); those already come count."""
        with self._lock:
            if self.want is not None:
                return
            self.want = segments
            if self._ended >= segments:
                self._end_sample = self._k * self.session.samples_per_frame
                self._stop.set()

    @property
    def done(self) -> bool:
        if self.error is not None:
            return True
        if self._end_sample is None:
            return self._stop.is_set()
        return self.clock() >= self._end_sample and not self._frames

    def due(self) -> Frame | None:
        """The newest frame whose first sample has reached the speaker (older ones are dropped)."""
        pos = self.clock()
        shown = None
        with self._lock:
            while self._frames and self._frames[0].pts <= pos:
                shown = self._frames.popleft()
        if shown is not None:
            r = self.result
            r.frames += 1
            if shown.speaking:
                r.speaking_frames += 1
                if r.first_speaking_seconds is None:
                    r.first_speaking_seconds = time.monotonic() - self.t0
            r.offsets_ms.append((pos - shown.pts) / self.session.sample_rate * 1000.0)
        return shown

    def close(self) -> None:
        self.result.wall_seconds = time.monotonic() - self.t0
        self._stop.set()
        self._pump.join(timeout=2.0)
        if self.speaker is not None:
            self.result.samples_played = self.speaker.taken
            self.result.underruns = self.speaker.underruns
            self.speaker.close()


def ppm(rgb: np.ndarray) -> bytes:
    """H×W×3 uint8 RGB as binary PPM (what Tk's PhotoImage reads without PIL)."""
    h, w, _ = rgb.shape
    return b"P6 %d %d 255\n" % (w, h) + np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()


def _window(player: Player, title: str, poll_ms: int = 4, on_tick=None) -> None:
    """Frames into a Tk window on the main thread until the player is done or the window is closed."""
    import tkinter as tk

    root = tk.Tk()
    root.title(title)
    label = tk.Label(root)
    label.pack()
    state = {"image": None}

    def tick():
        if on_tick is not None:
            on_tick()
        frame = player.due()
        if frame is not None:
            state["image"] = tk.PhotoImage(data=ppm(frame.rgb()), format="PPM")
            label.configure(image=state["image"])
            player.result.window_size = (root.winfo_width(), root.winfo_height())
        if player.done:
            root.quit()
            return
        root.after(poll_ms, tick)

    errors: list[BaseException] = []

    def report(kind, error, tb):  # Tk would print a callback's exception and go on; Ctrl-C must end it
        errors.append(error)
        root.quit()

    root.report_callback_exception = report
    root.protocol("WM_DELETE_WINDOW", player.stop)
    root.after(poll_ms, tick)
    try:
        root.mainloop()
    finally:
        root.destroy()
    if errors:
        raise errors[0]


def _headless(player: Player, on_tick=None) -> None:
    """No window: the frames are taken at their time and dropped (tests, benchmarks)."""
    while True:
        if on_tick is not None:
            on_tick()
        player.due()
        if player.done:
            return
        time.sleep(0.004)


def preview(config=None, *, text: str | None = None, mic=None, display: str | None = None, port: int = 8080,
            output_device=None, on_address=None, **settings) -> PreviewResult:
    """A live session that says `text` (or hears `mic`, a `stream.sources.mic.Microphone`, until it
    stops), heard on the speaker and seen in a window. `display`: "window", "page" or "none"
    (frames consumed unseen); default a window when `DISPLAY` is set, else the page."""
    if (text is None) == (mic is None):
        raise LipstreamError("give exactly one of text or mic")
    display = display or ("window" if os.environ.get("DISPLAY") else "page")
    if display not in ("window", "page", "none"):
        raise LipstreamError(f"display must be window, page or none, not {display!r}")
    if display == "page":
        return _serve(config, text=text, mic=mic, port=port, on_address=on_address, **settings)
    from ..sources.mic import feed_session, stop_on_interrupt

    if display == "window":
        try:
            import tkinter as tk

            tk.Tk().destroy()
        except Exception as e:  # noqa: BLE001 - TclError: no display; ImportError: no Tk
            raise LipstreamError(f"cannot open a window on DISPLAY={os.environ.get('DISPLAY')!r} ({e})") from None
    with Session(config, **settings) as session:
        speaker = _open_speaker(output_device)
        player = Player(session, speaker, 1 if text is not None else None)
        player.result.where = display if display == "window" else "headless"
        feed = None
        try:
            if text is not None:
                session.say(text)
            player.start()
            if mic is not None:
                feed = feed_session(session, mic)

            def on_tick():
                if feed is not None and feed.ended:
                    feed.mic.check()
                    player.finish_after(1 if feed.segment is not None else 0)

            with stop_on_interrupt(mic):
                if display == "window":
                    _window(player, "lipstream preview", on_tick=on_tick)
                else:
                    _headless(player, on_tick=on_tick)
            if player.error is not None:
                raise player.error
        finally:
            if feed is not None:
                feed.mic.close()
            player.close()
    return player.result


def _serve(config, *, text, mic, port: int, on_address=None, **settings) -> PreviewResult:
    """No display: `lipstream serve`'s page on 127.0.0.1; each page's session says the text (or hears
    the microphone). Ends once a page has heard the whole text (or the microphone has stopped)."""
    import asyncio
    import json

    from aiohttp import web

    from ..config import as_config
    from ..serve.app import Server
    from ..serve.ice import _gather, aioice, offer_loopback
    ice = aioice.ice
    from ..sources.mic import feed_session, stop_on_interrupt

    cfg = as_config(config, **settings)
    result = PreviewResult(where=f"page http://127.0.0.1:{port}/")
    feeds = []

    class PreviewServer(Server):
        async def offer(self, request):
            response = await super().offer(request)
            viewer = self.viewers[json.loads(response.body)["session"]]
            emit = viewer.emit

            def on_event(name, data, emit=emit):
                emit(name, data)
                if name == "segment_end" and data.get("segment") == said.get(viewer.id):
                    result.speech_seconds += data.get("playback_position", 0.0)
                    loop.call_soon_threadsafe(done.set)

            viewer.media._events = on_event  # the media pump's events, before it starts
            viewer.emit = emit
            if text is not None:
                said[viewer.id] = viewer.session.say(text)
            elif mic is not None and not feeds:
                feeds.append(feed_session(viewer.session, mic))
            return response

        def _on_frame(self, viewer, frame, late):
            super()._on_frame(viewer, frame, late)
            result.frames += 1
            result.speaking_frames += frame.speaking

    said: dict[str, int] = {}

    async def run():
        nonlocal loop, done
        loop, done = asyncio.get_running_loop(), asyncio.Event()
        if ice.get_host_addresses is _gather:  # not already restricted (tests): a browser here reaches it on loopback
            offer_loopback(only=False)
        server = PreviewServer(cfg)
        runner = web.AppRunner(server.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise LipstreamError(f"cannot serve the preview page on 127.0.0.1:{port} ({e.strerror}); try --port") from None
        address = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"
        result.where = f"page {address}"
        print(f"lipstream: no display: open {address} to see and hear the preview", flush=True)
        if on_address is not None:
            on_address(address)
        try:
            while not done.is_set():
                if feeds and feeds[0].ended:
                    sid = next(iter(server.viewers), None)
                    said.setdefault(sid, feeds[0].segment)
                    if sid is None:
                        break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # the last packets leave
        finally:
            await runner.cleanup()

    loop = done = None
    with stop_on_interrupt(mic):
        asyncio.run(run())
    for f in feeds:
        f.mic.close()
    return result
