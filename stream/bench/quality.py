"""`lipstream bench quality`: what the viewer sees, measured on a video against the avatar it came
from (stream/quality): lip sync (LSE-D, LSE-C, with `--syncnet`), the mouth's sharpness, the
paste's seams, its jitter, jumps at speech start and end. Without `--video` it renders the text
first with the given settings (1 s of silence before and after, so speech starts and ends inside
the clip)."""
from __future__ import annotations

import os
import tempfile

import numpy as np
import torch

from ..errors import LipstreamError
from .machine import machine
from .report import table, write

SILENCE = 1.0  # seconds before and after the speech of a render made here


def run(args, device: torch.device) -> int:
    from ..config import make_config
    from ..lipsync.registry import make_model
    from ..quality.clip import measure
    from ..quality.syncnet import load_syncnet
    from ..video.avatar import load_avatar

    if args.video is not None and args.wav2lip:
        raise LipstreamError("--wav2lip renders with random weights: not with --video (--lipsync names the video's model)")
    if args.video is not None and not os.path.isfile(args.video):
        raise LipstreamError(f"video not found: {args.video}")
    syncnet = load_syncnet(args.syncnet, device) if args.syncnet else None  # a bad file fails before the render
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config(None, avatar=args.avatar, box=tuple(args.box) if args.box else None, device=str(device),
                          checkpoint=args.checkpoint or (_random_wav2lip(tmp) if args.wav2lip else None),
                          lipsync=args.lipsync or "auto", musetalk_models=args.musetalk_models,
                          batch_size=args.batch_size, tts_model=args.tts_model, tts_config=args.tts_config)
        video, made = args.video, None
        if video is None:
            video = os.path.join(tmp, "quality.mp4")
            made = render_clip(video, cfg, args.text_file, device)
        cpu = torch.device("cpu")
        avatar = load_avatar(cfg.avatar, cpu, cfg.box, cfg.cache)
        face = make_model(cfg, cpu).prepare(avatar)  # where the model pastes, and its blend masks
        scores = measure(video, avatar.frames.numpy(), face.boxes.numpy(), face.masks.float().numpy(), syncnet)
    result = {"machine": machine(device), "video": args.video or f"render of {os.path.relpath(args.text_file)}",
              "avatar": os.path.basename(cfg.avatar), "box": list(cfg.box) if cfg.box else None,
              "lipsync": cfg.lipsync_model, "weights": "given" if args.checkpoint or args.musetalk_models else
              ("random" if args.wav2lip else None),
              "syncnet": os.path.basename(args.syncnet) if args.syncnet else None, **scores}
    if made is not None:
        result["render"] = {"frames": made.frames, "stages": made.stages}
        print(f"rendered {made.frames} frames: {' · '.join(made.stages)}\n")
    print(table(rows(result), ["metric", "value", "detail"]))
    write(args.json, result)
    return 0


def _random_wav2lip(folder: str) -> str:
    from ..lipsync.wav2lip.checkpoint import save_random_wav2lip

    path = os.path.join(folder, "random_wav2lip.pth")
    save_random_wav2lip(path)  # the public shapes: structure only, the mouth it paints is not learned
    return path


def render_clip(out: str, cfg, text_file: str, device: torch.device):
    """The text spoken by the configured engine, between two seconds of silence, rendered to `out`."""
    import soundfile

    from ..graphs.render import render
    from ..tts.chunker import read_text, sentences
    from ..tts.registry import make_tts

    text = read_text(None, text_file)
    tts = make_tts(cfg, device)
    tts.check(text)
    pcm = [np.asarray(c.cpu() if isinstance(c, torch.Tensor) else c, np.float32).reshape(-1)
           for piece in sentences(text) for c in tts.synthesize(piece)]
    silence = np.zeros(int(SILENCE * tts.sample_rate), np.float32)
    wav = out + ".wav"
    soundfile.write(wav, np.concatenate([silence, *pcm, silence]), tts.sample_rate)
    return render(out, audio=wav, config=cfg)


def _n(v, unit: str = "") -> str:
    return "—" if v is None else f"{v:.2f}{unit}"


def rows(r: dict) -> list[dict]:
    """The table: one row per measure, its headline number and what it is made of."""
    s, sh, se, j, ju = r["sync"], r["sharpness"], r["seam"], r["jitter"], r["jump"]
    sync = (["—", f"needs {s['needs']}"] if "needs" in s else
            [f"LSE-D {s['lse_d']:.3f}, LSE-C {s['lse_c']:.3f}",
             f"offset {s['offset']:+d} frames (+: the audio leads), {s['windows']} windows"])
    jitter = (["—", j["why"]] if j["px_per_frame"] is None else
              [_n(j["px_per_frame"], " px/frame"), f"the paste against the face it sits on: max {_n(j['max_px'])} px, "
               f"offset {_n(j['offset_px'])} px; the face track moves {_n(j['track_px_per_frame'])} px/frame"])
    jump = (["—", ju["why"]] if ju["ratio"] is None else
            [_n(ju["ratio"]), f"largest change within 2 frames of {ju['transitions']} speech starts/ends "
                              f"({ju['largest']}) ÷ median while speaking ({ju['typical']})"])
    return [
        {"metric": "sync", "value": sync[0], "detail": sync[1]},
        {"metric": "sharpness", "value": _n(sh["ratio"]),
         "detail": f"mouth's Laplacian variance ÷ the source's, speaking; idle {_n(sh['idle'])}; "
                   f"unpasted part of the face box {_n(sh['unpasted'])} (the codec's share)"},
        {"metric": "seam", "value": _n(se["seam"]),
         "detail": f"gradient energy on the mask's 0.5 contour ÷ 3–5 px inside and outside (source "
                   f"{_n(se['seam_source'])}); face box edge {_n(se['edge'])} (source {_n(se['edge_source'])})"},
        {"metric": "jitter", "value": jitter[0], "detail": jitter[1]},
        {"metric": "jump", "value": jump[0], "detail": jump[1]},
    ]
