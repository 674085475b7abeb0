"""The flags several commands share: the render settings (render, serve, preview, stream, worker)
and the push flags (serve, stream). Parsing them imports nothing heavy."""
from __future__ import annotations

import argparse


def add_settings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--avatar", metavar="IMAGE_OR_VIDEO", help="face image or video (default: the bundled astronaut)")
    p.add_argument("--lipsync", choices=["auto", "wav2lip", "musetalk", "procedural"],
                   help="lip-sync model (default auto: Wav2Lip with --checkpoint, MuseTalk with --musetalk-models, "
                   "else the weight-free procedural mouth)")
    p.add_argument("--checkpoint", metavar="PATH", help="Wav2Lip checkpoint (wav2lip.pth / wav2lip_gan.pth)")
    p.add_argument("--musetalk-models", metavar="DIR", help="MuseTalk 1.5 models: the folder its download script "
                   "fills (musetalkV15/, sd-vae/, whisper/, face-parse-bisent/)")
    p.add_argument("--box", nargs=4, type=int, metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
                   help="face box in pixels; skips face detection")
    p.add_argument("--fps", type=int, help="video frame rate (default 25)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where the models and frames live (default auto)")
    p.add_argument("--batch-size", type=int, help="frames per lip-sync batch (default 16)")
    p.add_argument("--precision", choices=["auto", "float32", "bfloat16", "float16"],
                   help="the learned model's precision (default auto: bf16 on CUDA and on CPUs with native bf16)")
    p.add_argument("--voice", help="eSpeak voice: a language (en-us, de, cmn…), a name, or auto to choose by "
                   "the text's script (default en-us; `lipstream voices` lists them)")
    p.add_argument("--tts", choices=["auto", "coqui", "espeak"],
                   help="speech engine (default auto: Coqui when --tts-model is given, else the embedded eSpeak NG)")
    p.add_argument("--tts-model", metavar="PATH_OR_NAME", help="Coqui TTS model: a checkpoint file or folder, or a "
                   "model name already in Coqui's local cache (never downloaded)")
    p.add_argument("--tts-config", metavar="CONFIG.json", help="the Coqui model's config (default: beside the model)")
    p.add_argument("--tts-speaker", metavar="NAME_OR_WAV", help="Coqui speaker: a name the model knows, or a WAV to clone (XTTS)")
    p.add_argument("--tts-language", metavar="LANG", help="Coqui language for multilingual models (en, de, …)")
    p.add_argument("--key", metavar="COLOR", help="a green-screen avatar: key out this colour (#00ff00, green, "
                   "blue…) into a matte, with a soft edge and the screen's spill taken off the face")
    p.add_argument("--background", metavar="COLOR|IMAGE|VIDEO", help="composite the avatar over a colour (#RRGGBB), "
                   "an image or a looping video; needs alpha (an RGBA avatar, a video with alpha, or --key)")
    p.add_argument("--config", metavar="FILE.yaml", help="settings file; flags override it")
    p.add_argument("--no-cache", action="store_true", help="do not reuse or store the prepared avatar")


def settings(args) -> dict:
    """The settings flags (None where not given: the config file or the default decides)."""
    return dict(avatar=args.avatar, lipsync=args.lipsync, checkpoint=args.checkpoint,
                musetalk_models=args.musetalk_models, box=tuple(args.box) if args.box else None,
                fps=args.fps, device=args.device, batch_size=args.batch_size, precision=args.precision,
                voice=args.voice, tts=args.tts, tts_model=args.tts_model, tts_config=args.tts_config,
                tts_speaker=args.tts_speaker, tts_language=args.tts_language, key=args.key, background=args.background,
                cache=False if args.no_cache else None)


def add_push_args(p: argparse.ArgumentParser) -> None:
    """--push and --push-token (`serve` and `stream`)."""
    p.add_argument("--push", metavar="URL", help="push a live broadcast: rtmp://HOST/APP/KEY, rtmps://…, "
                   "or a WHIP endpoint http(s)://…")
    p.add_argument("--push-token", metavar="T", help="WHIP: Authorization: Bearer T (default: $LIPSTREAM_PUSH_TOKEN)")
    p.add_argument("--profile", choices=["main", "baseline"], default="main", help="RTMP: the H.264 profile (default main)")
    p.add_argument("--stacked-alpha", action="store_true", help="push the avatar's colour above its matte (grey), "
                   "one opaque picture twice as tall, for a compositor to key (default: the flat picture)")
