"""`lipstream render`: text, an audio file or the microphone → a lip-synced video file."""
from __future__ import annotations

import argparse
import sys
import time

from ..errors import LipstreamError
from .settings import add_settings_args, settings


def add_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="what the avatar says")
    src.add_argument("--text-file", metavar="F", help="UTF-8 text file to say; - reads standard input as it arrives")
    src.add_argument("--audio", metavar="FILE", help="speech audio to lip-sync instead of TTS")
    src.add_argument("--mic", action="store_true", help="record the microphone until Ctrl-C (or --seconds) and lip-sync it")
    p.add_argument("--seconds", type=float, metavar="N", help="with --mic: stop recording after N seconds")
    add_settings_args(p)
    p.add_argument("--encoder", choices=["auto", "libx264", "nvenc"],
                   help="video encoder (default auto: NVENC where the GPU has one, else libx264; the log says why)")
    p.add_argument("-o", "--output", default="out.mp4", metavar="OUT.mp4",
                   help="output: .mp4 (default out.mp4), .mov, .mkv, .h264 (video only), or - for fragmented MP4 on stdout")


class _Bar:
    """One self-rewriting line on a terminal; silent otherwise."""

    def __init__(self, progress, stream=None):
        self.progress, self.stream = progress, stream or sys.stderr  # the stream of now, not of the import
        self.enabled = self.stream.isatty()
        self._last = 0.0
        self._t0 = time.perf_counter()

    def tick(self) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self._last < 0.1:
            return
        self._last = now
        p = self.progress
        speech = p.speech_samples / p.sample_rate if p.sample_rate else 0.0
        if p.total:
            filled = int(30 * p.done / p.total)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {p.done}/{p.total} frames"
        else:
            bar = f"{p.done} frames"
        self.stream.write(f"\r{bar}  {speech:.1f} s of speech  {now - self._t0:.1f} s\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def run(args) -> int:
    from ..config import make_config
    from ..files import check_writable
    from ..tts.chunker import read_text

    # Every setting, the output and the text are checked before torch and the media stack load.
    cfg = make_config(args.config, encoder=args.encoder, **settings(args))
    check_writable(args.output)
    stdin = args.text_file == "-"  # read as it arrives, by render
    mic = microphone(args)
    text = read_text(args.text, args.text_file) if args.audio is None and mic is None and not stdin else None

    from ..audio.schedule import Progress
    from ..graphs.render import render

    progress = Progress()
    bar = _Bar(progress)
    from ..sources.mic import stop_on_interrupt

    try:
        with stop_on_interrupt(mic):  # Ctrl-C ends a recording: the file is finished, exit 0
            result = render(args.output, text=text, text_file="-" if stdin else None, audio=args.audio, mic=mic,
                            config=cfg, progress=progress, on_tick=bar.tick)
    finally:
        bar.close()
    print(result.summary(), file=sys.stderr if args.output == "-" else sys.stdout)  # stdout holds the video
    return 0


def microphone(args):
    """--mic: the default input, checked (PortAudio, a device) before torch loads; None without --mic."""
    if args.seconds is not None and not args.mic:
        raise LipstreamError("--seconds goes with --mic")
    if not args.mic:
        return None
    from ..sources.mic import Microphone

    return Microphone(seconds=args.seconds)
