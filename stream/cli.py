"""`lipstream` command line: render, serve, bench, doctor."""
from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
import time

from .errors import LipstreamError


def _render_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="what the avatar says")
    src.add_argument("--text-file", metavar="F", help="UTF-8 text file to say; - reads standard input as it arrives")
    src.add_argument("--audio", metavar="FILE", help="speech audio to lip-sync instead of TTS")
    src.add_argument("--mic", action="store_true", help="record the microphone until Ctrl-C (or --seconds) and lip-sync it")
    p.add_argument("--seconds", type=float, metavar="N", help="with --mic: stop recording after N seconds")
    _settings_args(p)
    p.add_argument("--encoder", choices=["auto", "libx264", "nvenc"],
                   help="video encoder (default auto: NVENC where the GPU has one, else libx264; the log says why)")
    p.add_argument("-o", "--output", default="out.mp4", metavar="OUT.mp4",
                   help="output: .mp4 (default out.mp4), .mov, .mkv, .h264 (video only), or - for fragmented MP4 on stdout")


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--token", help="require Authorization: Bearer TOKEN (default: $LIPSTREAM_TOKEN, if set)")
    p.add_argument("--ice-server", action="append", default=[], metavar="URL",
                   help="STUN/TURN server for WebRTC (repeatable; default none)")
    p.add_argument("--video", choices=["lipstream", "aiortc"], default="lipstream",
                   help="lipstream: its libx264 packets go out as they are (default); aiortc: aiortc encodes raw frames")
    p.add_argument("--ice-loopback-only", action="store_true",
                   help="offer only 127.0.0.1 to WebRTC (tests and benchmarks: no traffic off this machine)")
    p.add_argument("--max-sessions", type=int, help="live sessions at once (default: from the measured capacity)")
    p.add_argument("--lead", type=float, help="seconds of frames each session keeps ready ahead (default 0.2)")
    from .push.command import add_push_args  # --push URL: one broadcast beside the browser sessions

    add_push_args(p)
    _settings_args(p)


def _settings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--avatar", metavar="IMAGE_OR_VIDEO", help="face image or video (default: the bundled astronaut)")
    p.add_argument("--checkpoint", metavar="PATH", help="Wav2Lip checkpoint (wav2lip.pth / wav2lip_gan.pth); "
                   "without one the procedural mouth is used")
    p.add_argument("--box", nargs=4, type=int, metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
                   help="face box in pixels; skips face detection")
    p.add_argument("--fps", type=int, help="video frame rate (default 25)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where the models and frames live (default auto)")
    p.add_argument("--batch-size", type=int, help="frames per lip-sync batch (default 16)")
    p.add_argument("--precision", choices=["auto", "float32", "bfloat16", "float16"],
                   help="Wav2Lip precision (default auto: bf16 on CUDA and on CPUs with native bf16)")
    p.add_argument("--voice", help="eSpeak voice: a language (en-us, de, cmn…), a name, or auto to choose by "
                   "the text's script (default en-us; `lipstream voices` lists them)")
    p.add_argument("--tts", choices=["auto", "coqui", "espeak"],
                   help="speech engine (default auto: Coqui when --tts-model is given, else the embedded eSpeak NG)")
    p.add_argument("--tts-model", metavar="PATH_OR_NAME", help="Coqui TTS model: a checkpoint file or folder, or a "
                   "model name already in Coqui's local cache (never downloaded)")
    p.add_argument("--tts-config", metavar="CONFIG.json", help="the Coqui model's config (default: beside the model)")
    p.add_argument("--tts-speaker", metavar="NAME_OR_WAV", help="Coqui speaker: a name the model knows, or a WAV to clone (XTTS)")
    p.add_argument("--tts-language", metavar="LANG", help="Coqui language for multilingual models (en, de, …)")
    p.add_argument("--config", metavar="FILE.yaml", help="settings file; flags override it")
    p.add_argument("--no-cache", action="store_true", help="do not reuse or store the prepared avatar")


def _settings(args) -> dict:
    """The settings flags (None where not given: the config file or the default decides)."""
    return dict(avatar=args.avatar, checkpoint=args.checkpoint, box=tuple(args.box) if args.box else None,
                fps=args.fps, device=args.device, batch_size=args.batch_size, precision=args.precision,
                voice=args.voice, tts=args.tts, tts_model=args.tts_model, tts_config=args.tts_config,
                tts_speaker=args.tts_speaker, tts_language=args.tts_language, cache=False if args.no_cache else None)


class _Bar:
    """One self-rewriting line on a terminal; silent otherwise."""

    def __init__(self, progress, stream=sys.stderr):
        self.progress, self.stream = progress, stream
        self.enabled = stream.isatty()
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


def _cmd_render(args) -> int:
    from .config import make_config
    from .files import check_writable
    from .sources.chunker import read_text

    # Every setting, the output and the text are checked before torch and the media stack load.
    cfg = make_config(args.config, encoder=args.encoder, **_settings(args))
    check_writable(args.output)
    stdin = args.text_file == "-"  # read as it arrives, by render
    mic = _microphone(args)
    text = read_text(args.text, args.text_file) if args.audio is None and mic is None and not stdin else None

    from .audio.schedule import Progress
    from .render_file import render

    progress = Progress()
    bar = _Bar(progress)
    from .sources.mic import stop_on_interrupt

    try:
        with stop_on_interrupt(mic):  # Ctrl-C ends a recording: the file is finished, exit 0
            result = render(args.output, text=text, text_file="-" if stdin else None, audio=args.audio, mic=mic,
                            config=cfg, progress=progress, on_tick=bar.tick)
    finally:
        bar.close()
    print(result.summary(), file=sys.stderr if args.output == "-" else sys.stdout)  # stdout holds the video
    return 0


def _microphone(args):
    """--mic: the default input, checked (PortAudio, a device) before torch loads; None without --mic."""
    if args.seconds is not None and not args.mic:
        raise LipstreamError("--seconds goes with --mic")
    if not args.mic:
        return None
    from .sources.mic import Microphone

    return Microphone(seconds=args.seconds)


def _preview_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="what the avatar says")
    src.add_argument("--text-file", metavar="F", help="UTF-8 text file to say")
    src.add_argument("--mic", action="store_true", help="the microphone, live, until Ctrl-C (or --seconds)")
    p.add_argument("--seconds", type=float, metavar="N", help="with --mic: stop recording after N seconds")
    p.add_argument("--port", type=int, default=8080, help="without a display: port of the preview page (default 8080)")
    _settings_args(p)


def _cmd_preview(args) -> int:
    from .config import make_config
    from .sources.chunker import read_text

    cfg = make_config(args.config, **_settings(args))
    mic = _microphone(args)
    text = read_text(args.text, args.text_file) if mic is None else None
    from .sinks.preview import preview

    print(preview(cfg, text=text, mic=mic, port=args.port).summary())
    return 0


def _cmd_voices(args) -> int:
    from .sources.tts_espeak import voices

    want = (args.language or "").lower()
    rows = [v for v in voices() if not want or any(lang == want or lang.startswith(want + "-") for lang in v.languages)]
    if not rows:
        raise LipstreamError(f"no eSpeak voice speaks {args.language!r}")
    width = max(len(", ".join(v.languages)) for v in rows)
    for v in rows:
        print(f"{', '.join(v.languages):<{width}}  {v.name}  ({v.identifier})")
    return 0


def _cmd_serve(args) -> int:
    import os

    from aiohttp import web

    from .config import make_config
    from .serve.app import Server
    from .serve.ice import offer_loopback

    cfg = make_config(args.config, max_sessions=args.max_sessions, lead=args.lead, **_settings(args))
    token = args.token or os.environ.get("LIPSTREAM_TOKEN") or None
    if args.ice_loopback_only or args.host in ("127.0.0.1", "localhost", "::1"):
        offer_loopback(only=args.ice_loopback_only)  # a browser on this machine reaches a loopback server over loopback
    server = Server(cfg, token=token, ice_servers=args.ice_server, video=args.video)
    shown = f"http://{args.host}:{args.port}/" + ("?token=…" if token else "")
    app = server.app()
    if args.push:
        from .push.broadcast import serve_push

        serve_push(app, server, args.push, args.push_token or os.environ.get("LIPSTREAM_PUSH_TOKEN"), args.profile)
    web.run_app(app, host=args.host, port=args.port, print=lambda *_: print(f"lipstream: serving on {shown}"),
                access_log=None)
    return 0


class _Terminated(KeyboardInterrupt):
    """SIGTERM, taking Ctrl-C's way out: every stage stopped and joined, nothing half-written."""


def _terminate(signum, frame):
    raise _Terminated


_MODULE_COMMANDS = {  # name: (module with add_args(parser) and run(args), loading nothing heavy; help)
    "stream": (".push.command", "one live avatar, always on air, pushed to RTMP(S) or WHIP"),
    "bench": (".bench", "measure the lip-sync stage and a whole render, sessions, serve, TTS engines"),
    "doctor": (".doctor", "what this machine offers, and where each stage runs"),
    "render-many": (".render_many", "many renders on Ray, one per line of a JSONL file"),
    "worker": (".adapters.worker", "a LiveKit Agents worker: lip-synced avatars for agents' rooms"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lipstream", description="Real-time lip-synced talking avatars.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors and the summary")
    sub = parser.add_subparsers(dest="command", required=True)
    quiet = argparse.ArgumentParser(add_help=False)  # -q after the command too: `lipstream render -q …`
    quiet.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only errors and the summary")
    _render_args(sub.add_parser("render", parents=[quiet], help="text or audio → lip-synced MP4"))
    _serve_args(sub.add_parser("serve", parents=[quiet], help="live avatars over WebRTC: a page, an HTTP API, events, metrics"))
    _preview_args(sub.add_parser("preview", parents=[quiet], help="a live session seen and heard here: a window "
                                 "(or a local page without a display) and the speaker"))
    voices = sub.add_parser("voices", parents=[quiet], help="the embedded eSpeak NG voices and their languages")
    voices.add_argument("language", nargs="?", help="only voices of this language (en, de, cmn…)")
    for name, (module, text) in _MODULE_COMMANDS.items():
        importlib.import_module(module, __package__).add_args(sub.add_parser(name, parents=[quiet], help=text))
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="lipstream: %(message)s")
    try:
        if args.command in _MODULE_COMMANDS:
            return importlib.import_module(_MODULE_COMMANDS[args.command][0], __package__).run(args)
        if args.command == "serve":
            return _cmd_serve(args)
        if args.command == "voices":
            return _cmd_voices(args)
        if args.command == "preview":
            return _cmd_preview(args)
        return _cmd_render(args)
    except LipstreamError as e:
        print(f"lipstream: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print("lipstream: terminated" if isinstance(e, _Terminated) else "lipstream: interrupted", file=sys.stderr)
        return 143 if isinstance(e, _Terminated) else 130


def console() -> int:
    """The `lipstream` command: `main`, then a quiet exit. Once the command is over (finished, failed
    or stopped), a further Ctrl-C or SIGTERM is ignored while the shared lip-sync workers stop: one
    arriving as the interpreter shuts down would leave a worker inside torch and abort the process."""
    code = 130
    try:
        try:
            code = main()
        finally:
            _ignore_signals()
    except KeyboardInterrupt as e:  # another signal came as the first was answered (`timeout` sends two)
        _ignore_signals()
        code = 143 if isinstance(e, _Terminated) else 130
    finally:
        if "stream.runtime" in sys.modules:
            sys.modules["stream.runtime"].shutdown()
    return code


def _ignore_signals() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(console())
