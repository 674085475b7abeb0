"""Deliberate breakages, each applied to a copy of the tree and run against the tests that should
catch it. Not part of the default test command:

    python tests/mutations.py            # every entry
    python tests/mutations.py NAME …     # some

prints `caught` or `NOT CAUGHT` per entry and exits 1 if any was not caught. Run it when you change
a tested area; add an entry whenever a bug is fixed that the suite did not catch.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 240  # seconds; every listed file passes in under a minute when nothing is broken


@dataclass
class Mutation:
    name: str
    path: str  # relative to the repository
    old: str  # must occur exactly once
    new: str
    tests: tuple[str, ...]


MUTATIONS = [
    # Transparent avatars (issue 28).
    Mutation("webm-vp9-without-alpha", "stream/video/alpha_codecs.py", 'VP9 = Codec("libvpx-vp9", "yuv420p", "yuva420p",',
             'VP9 = Codec("libvpx-vp9", "yuv420p", "yuv420p",', ("tests/test_alpha.py",)),
    Mutation("vp9-avatar-read-by-ffmpegs-decoder", "stream/sources/media.py",
             'if stream.codec_context.name == "vp9" and stream.metadata.get("alpha_mode") == "1":', "if False:",
             ("tests/test_alpha.py",)),
    Mutation("alpha-mov-stays-h264", "stream/sinks/file.py", 'return ALPHA_MOV if alpha and kind == ".mov" else CONTAINERS[kind]',
             "return CONTAINERS[kind]", ("tests/test_alpha.py",)),
    Mutation("background-rounds-down", "kernels/background.py",
             "return ((m * frames.to(torch.int32) + (255 - m) * bg + 127) // 255).to(torch.uint8)",
             "return ((m * frames.to(torch.int32) + (255 - m) * bg) // 255).to(torch.uint8)",
             ("tests/test_kernels_background.py",)),
    Mutation("background-kernel-ignores-the-matte", "kernels/background.py",
             "    m = tl.load(matte_ptr + p, mask=live, other=0).to(tl.int32)\n",
             "    m = tl.load(matte_ptr + p, mask=live, other=0).to(tl.int32) * 0 + 255\n",
             ("tests/test_kernels_background.py",)),
    Mutation("key-without-despill", "stream/video/matte.py",
             "    fg[..., c] -= _lead(fg, c).clamp_min(0)", "    pass", ("tests/test_alpha.py",)),
    Mutation("key-hard-edge", "stream/video/matte.py", "    a = ((raw - KEY_NEAR) / (KEY_FAR - KEY_NEAR)).clamp(0.0, 1.0)",
             "    a = (raw > 0.5).float()", ("tests/test_alpha.py",)),
    Mutation("idle-frame-without-matte", "stream/live/output.py",
             "            return Frame(slot, slot * self.samples_per_frame, image, self._silence, OUT_RATE, matte=matte)",
             "            return Frame(slot, slot * self.samples_per_frame, image, self._silence, OUT_RATE)",
             ("tests/test_session_alpha.py",)),
    Mutation("stacked-side-by-side", "kernels/background.py",
             "return torch.cat([frames, matte.unsqueeze(-1).expand(frames.shape)], dim=1)",
             "return torch.cat([frames, matte.unsqueeze(-1).expand(frames.shape)], dim=2)",
             ("tests/test_kernels_background.py",)),
    Mutation("transparent-page-opaque", "stream/serve/page.html", "o[i + 3] = px[half + i + 1];", "o[i + 3] = 255;",
             ("tests/test_page.py",)),
    # MuseTalk 1.5 (issue "A lip-sync model users can ship").
    Mutation("musetalk-window-a-step-late", "stream/lipsync/musetalk/features.py",
             "a = math.floor(i * mult) - 2 * p - first", "a = math.floor(i * mult) - 2 * p - first + 1",
             ("tests/test_musetalk_features.py",)),
    Mutation("musetalk-live-cut-by-the-pushes", "stream/lipsync/musetalk/features.py",
             "self._compute(need - self._seg)", "self._compute(self._audio.numel())",
             ("tests/test_musetalk_features.py",)),
    Mutation("musetalk-mask-upper-half-kept", "stream/lipsync/musetalk/blend.py",
             "        inside[: int(side * UPPER_BOUNDARY)] = 0\n", "", ("tests/test_musetalk_blend.py",)),
    Mutation("musetalk-cache-ignores-the-vae", "stream/lipsync/musetalk/model.py",
             "files.signature(self.files[\"vae\"]),", "", ("tests/test_musetalk.py",)),
    # The six breakages the suite once missed (issue "Tests that fail when the product breaks").
    Mutation("compose-mask-of-ones", "stream/video/compose.py", "self.face.boxes[idx], self.face.mask(idx))",
             "self.face.boxes[idx], torch.ones_like(self.face.mask(idx)))", ("tests/test_compose.py",)),
    Mutation("write-in-place", "stream/files.py", "    tmp = temporary_beside(path)\n    try:\n        with open(tmp",
             "    tmp = path\n    try:\n        with open(tmp", ("tests/test_files.py",)),
    Mutation("mp4-partial-file-kept", "stream/sinks/file.py", "                pass\n            if self._tmp is not None:\n                discard(self._tmp)\n",
             "                pass\n",
             ("tests/test_file_sink.py",)),
    Mutation("cache-key-ignores-box", "stream/video/avatar.py", "tuple(box) if box is not None else None", "None",
             ("tests/test_avatar.py",)),
    Mutation("video-pts-one-frame-late", "stream/video/encode.py", "self.encoder.encode(images[k], item.start + k, fmt)",
             "self.encoder.encode(images[k], item.start + k + 1, fmt)", ("tests/test_render.py",)),
    Mutation("chunker-drops-long-rest", "stream/tts/chunker.py", "        if clauses:\n            return clauses[-1]",
             "        if clauses:\n            self._buf = self._buf[: clauses[-1]]\n            return clauses[-1]",
             ("tests/test_chunker.py",)),
    Mutation("chunker-first-cut-ignores-later-text", "stream/tts/chunker.py", "ends = [_sentence_end(buf)]",
             "ends = [_sentence_end(buf[:FIRST])]", ("tests/test_chunker.py",)),
    Mutation("boxes-not-smoothed", "stream/video/face.py", "return smooth_boxes(np.array(found))",
             "return np.array(found)", ("tests/test_face.py",)),
    Mutation("stdout-video-starts-late", "stream/sinks/file.py", "default_base_moof+delay_moov", "default_base_moof",
             ("tests/test_file_sink.py",)),
    # Voice, push and the adapters.
    Mutation("stdin-loses-the-last-chunk", "stream/sources/speech.py", "    for chunk in chunker.flush():",
             "    for chunk in chunker.flush()[:-1]:", ("tests/test_stdin.py",)),
    Mutation("coqui-loaded-per-engine", "stream/tts/coqui_load.py", "        loaded = _models.get(key)\n",
             "        loaded = None\n", ("tests/test_tts_coqui.py",)),
    Mutation("coqui-vocoder-ignored", "stream/tts/coqui.py", "use_griffin_lim=synth.vocoder_model is None)",
             "use_griffin_lim=True)", ("tests/test_tts_coqui.py::test_a_spectrogram_model_speaks_through_its_vocoder_or_griffin_lim",)),
    Mutation("rtmp-keyframes-too-rare", "stream/push/rtmp.py", "KEY_SECONDS = 2 ", "KEY_SECONDS = 5 ",
             ("tests/test_push.py",)),
    Mutation("livekit-clear-buffer-ignored", "stream/adapters/livekit.py", "        self._resampler = None\n        self.session.interrupt()\n",
             "        self._resampler = None\n", ("tests/test_livekit.py",)),
    Mutation("pipecat-interruption-not-passed-on", "stream/adapters/pipecat.py",
             "                self.session.interrupt()\n            await self.push_frame(frame, direction)\n",
             "                self.session.interrupt()\n", ("tests/test_pipecat.py",)),
    Mutation("preview-ignores-output-latency", "stream/preview/speaker.py",
             "self._anchor = (start, time.monotonic() + delay, n)", "self._anchor = (start, time.monotonic(), n)",
             ("tests/test_preview.py",)),
    # Nearly missed then.
    Mutation("mp4-drops-audio-end", "stream/audio/aac.py", "audio_packets=list(self.ctx.encode(None))",
             "audio_packets=[]", ("tests/test_render.py",)),
    Mutation("mel-lead-zero", "stream/audio/clock.py", "MEL_LEAD = 1 ", "MEL_LEAD = 0 ",
             ("tests/test_render.py", "tests/test_schedule.py")),
    Mutation("preemphasis-changed", "stream/audio/mel.py", "PREEMPHASIS = 0.97", "PREEMPHASIS = 0.9",
             ("tests/test_mel.py",)),
    Mutation("upper-half-masked", "kernels/prepare.py", "out[:, :c, h // 2 :] = 0", "out[:, :c, : h // 2] = 0",
             ("tests/test_render.py",)),
    Mutation("chunked-products", "stream/audio/exact.py", "    m = a.shape[0]\n", "    return a @ b\n    m = a.shape[0]\n",
             ("tests/test_mel.py", "tests/test_resample.py")),
    # Live sessions.
    Mutation("interrupt-keeps-queue", "stream/live/output.py", "        self._queue = deque(kept)\n",
             "        self._queue = deque(kept + [e for e in self._queue if isinstance(e, _Entry)])\n",
             ("tests/test_session.py",)),
    Mutation("speech-on-wrong-avatar-frame", "stream/live/output.py", "torch.arange(slot, slot + n, device=self.device)",
             "torch.arange(slot + 1, slot + n + 1, device=self.device)", ("tests/test_session.py",)),
    Mutation("idle-frame-off-the-loop", "stream/live/output.py", "frame = entry.frame or self._idle(entry.slot)",
             "frame = entry.frame or self._idle(entry.slot + 1)", ("tests/test_session.py",)),
    Mutation("mouths-to-wrong-frames", "stream/lipsync/worker.py", "self._deliver(job, faces[at : at + job.frames], None)",
             "self._deliver(job, faces[at : at + job.frames].flip(0), None)", ("tests/test_session.py",)),
    Mutation("playback-position-counts-queued", "stream/live/output.py",
             "return min(seg.played * self.samples_per_frame, speech) / OUT_RATE",
             "return min(seg.queued * self.samples_per_frame, speech) / OUT_RATE", ("tests/test_session.py",)),
    # Serve.
    Mutation("keyframe-requests-ignored", "stream/serve/app.py", "                sender._send_keyframe = on_keyframe_request\n",
             "", ("tests/test_serve.py",)),
    Mutation("no-token-check", "stream/serve/app.py", "if not hmac.compare_digest(given.encode(), self.token.encode()):",
             "if False:", ("tests/test_serve.py",)),
    Mutation("interrupt-without-idr", "stream/serve/media.py",
             "        self._keyframe = self._keyframe or self.mode == \"lipstream\"\n", "", ("tests/test_serve.py",)),
    Mutation("stale-p-frame-after-interrupt", "stream/serve/media.py", "            return  # encoded while a drop",
             "            pass  # encoded while a drop", ("tests/test_serve.py",)),
    Mutation("nvenc-keyframes-unmarked", "stream/video/nvenc.py", "packet.is_keyframe = _is_idr(data)",
             "packet.is_keyframe = False", ("tests/test_nvenc.py",)),
    Mutation("file-track-header-not-checked", "stream/video/encode.py", "if not (first.is_keyframe and",
             "if False and not (first.is_keyframe and", ("tests/test_file_sink.py",)),
    Mutation("audio-after-video", "stream/serve/media.py",
             "                self._send_audio(item)\n                await self._send_video(item)\n",
             "                await self._send_video(item)\n                await asyncio.sleep(0.05)\n                self._send_audio(item)\n",
             ("tests/test_serve.py",)),
    Mutation("wav-channels-not-mixed", "stream/serve/wav.py",
             "return x.reshape(-1, self.channels).mean(axis=1) if self.channels > 1 else x", "return x",
             ("tests/test_serve.py",)),
    # Faults a session survives (issue 23).
    Mutation("tts-failure-ends-uninterrupted", "stream/live/output.py", "_Marker(seg, seg.error is not None)",
             "_Marker(seg, False)", ("tests/test_session.py::test_a_tts_failure_mid_utterance_ends_it_interrupted_and_the_next_say_speaks",)),
    Mutation("lipsync-failure-silences-frames", "stream/live/output.py", "self._idle(e.slot, e, report), None",
             "self._idle(e.slot), None", ("tests/test_session.py::test_a_failed_lipsync_batch_idles_its_frames_once_and_both_sessions_in_it_speak_on",)),
    Mutation("lipsync-failure-reported-per-job", "stream/live/output.py",
             "if error is not None and live and self._failure != self.worker.failed:", "if error is not None and live:",
             ("tests/test_session.py::test_a_failed_lipsync_batch_idles_its_frames_once_and_both_sessions_in_it_speak_on",)),
    Mutation("silent-viewer-kept", "stream/serve/app.py", "elif connected and now - viewer.heard > SILENT_TIMEOUT:",
             "elif False:", ("tests/test_serve.py::test_a_viewer_that_vanishes_without_closing_is_freed_within_30_s",)),
    Mutation("cut-upload-is-a-traceback", "stream/serve/app.py", "except (ClientPayloadError, ConnectionError) as e:",
             "except () as e:", ("tests/test_serve.py::test_an_audio_upload_cut_mid_body_speaks_what_arrived_then_idles",)),
    Mutation("rtmp-stall-not-watched", "stream/push/flv_link.py",
             'for {STALL_LIMIT:.0f} s")\n                self.proc.kill()', 'for {STALL_LIMIT:.0f} s")\n                pass',
             ("tests/test_push.py::test_an_rtmp_ingest_that_stops_answering_never_holds_the_clock_and_is_reconnected",)),
    Mutation("rtmp-connect-unbounded", "stream/push/flv_link.py", 'self._expect("open", STALL_LIMIT)',
             'self._expect("open", 3600)',
             ("tests/test_push.py::test_an_rtmp_ingest_that_stops_answering_never_holds_the_clock_and_is_reconnected",)),
    Mutation("disk-full-traceback", "stream/sinks/file.py", "        except (av.FFmpegError, OSError) as e:\n            where",
             "        except () as e:\n            where", ("tests/test_file_sink.py",)),
    # A local server that other web pages cannot drive (issue 23).
    Mutation("json-without-content-type", "stream/serve/guard.py", "if request.content_type not in wanted or given is None:",
             "if False:", ("tests/test_guard.py",)),
    Mutation("no-origin-check", "stream/serve/guard.py", "if _origin(origin) not in self.allowed:", "if False:",
             ("tests/test_guard.py",)),
    Mutation("no-host-check", "stream/serve/guard.py",
             "if self.loopback and host is not None and not is_loopback_host(_hostname(host)):", "if False:",
             ("tests/test_guard.py",)),
    Mutation("no-cors-headers", "stream/serve/guard.py", "            response.headers.update(cors)", "            pass",
             ("tests/test_guard.py",)),
    Mutation("page-origin-refused", "stream/serve/guard.py", "return site is not None and host is not None and _site(site[0], host) == site",
             "return False", ("tests/test_page.py",)),
    # What the viewer sees: the quality measures (bench quality) and the page's picture.
    Mutation("mfcc-preemphasis-changed", "stream/quality/mfcc.py", "PREEMPH, CEPLIFTER = 0.97, 22",
             "PREEMPH, CEPLIFTER = 0.95, 22", ("tests/test_quality.py",)),
    Mutation("lse-offset-off-by-one", "stream/quality/sync.py", "padded = F.pad(audio, (0, 0, VSHIFT, VSHIFT))",
             "padded = F.pad(audio, (0, 0, VSHIFT + 1, VSHIFT - 1))", ("tests/test_quality.py",)),
    Mutation("lse-edges-left-out", "stream/quality/sync.py", "    mean = dists.mean(dim=0)\n",
             "    mean = torch.stack([dists[max(0, VSHIFT - k) : n - max(0, k - VSHIFT), k].mean()\n"
             "                        for k in range(2 * VSHIFT + 1)])\n", ("tests/test_quality.py",)),
    Mutation("seam-off-the-contour", "stream/quality/metrics.py", "upper, _bands(canvas >= 0.5), _bands(inside_box))",
             "upper, _bands(canvas > 0), _bands(inside_box))", ("tests/test_quality.py",)),
    Mutation("quality-frames-in-loop-order", "stream/quality/clip.py",
             "    return np.array([int(np.argmin(((thumbs - _thumb(f)[weight]) ** 2).sum(axis=1))) for f in frames])",
             "    return np.array([i % len(avatar) for i, _ in enumerate(frames)])", ("tests/test_quality.py",)),
    Mutation("page-video-black", "stream/serve/page.html", "  video { width: 100%;", "  video { filter: brightness(0); width: 100%;",
             ("tests/test_page.py",)),
    Mutation("page-video-frozen", "stream/serve/media.py", "        image = frame.bgr()\n",
             "        image = self.__dict__.setdefault(\"_still\", frame.bgr())\n", ("tests/test_page.py",)),
    # The weight-free mouth moves the avatar's own lips (issue 21).
    Mutation("procedural-line-from-every-column", "stream/lipsync/procedural.py",
             "cols = np.arange(int(mid - half), int(mid + half) + 1)", "cols = np.arange(a, b)",
             ("tests/test_procedural.py",)),
    Mutation("procedural-alpha-everywhere", "stream/lipsync/procedural.py",
             "alpha = torch.maximum(moved, edge).unsqueeze(1)", "alpha = torch.ones_like(edge).unsqueeze(1)",
             ("tests/test_procedural.py",)),
    Mutation("procedural-gap-over-the-teeth", "stream/lipsync/procedural.py",
             "below = self._rows - line  # rows under the line are > 0", "below = self._rows - line + 5",
             ("tests/test_procedural.py",)),
    Mutation("compose-ignores-face-alpha", "kernels/compose.py", "        m = m * mouths[:, 3:4].float()\n",
             "        pass\n", ("tests/test_kernels_compose.py",)),
]



def _copy() -> str:
    tmp = tempfile.mkdtemp(prefix="lipstream-mutation-")
    for name in ("stream", "kernels", "tests", "examples"):
        shutil.copytree(os.path.join(ROOT, name), os.path.join(tmp, name),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), tmp)
    return tmp


def run(m: Mutation) -> tuple[bool, float]:
    tree = _copy()
    try:
        target = os.path.join(tree, m.path)
        with open(target, encoding="utf-8") as f:
            text = f.read()
        if text.count(m.old) != 1:
            raise SystemExit(f"{m.name}: the text to break occurs {text.count(m.old)} times in {m.path}")
        with open(target, "w", encoding="utf-8") as f:
            f.write(text.replace(m.old, m.new))
        env = {**os.environ, "PYTHONPATH": tree,  # the copy, not the installed checkout
               "NUMBA_CACHE_DIR": os.path.join(ROOT, ".pytest_cache", "numba")}  # librosa's kernels compiled once
        start = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *m.tests],
                                  cwd=tree, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            return True, time.monotonic() - start  # the tests hung: that is not a pass
        return proc.returncode != 0, time.monotonic() - start
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def main(names: list[str]) -> int:
    chosen = [m for m in MUTATIONS if not names or m.name in names]
    missed = 0
    for m in chosen:
        caught, seconds = run(m)
        missed += not caught
        print(f"{'caught    ' if caught else 'NOT CAUGHT'}  {m.name:<34} {seconds:5.1f} s  ({', '.join(m.tests)})", flush=True)
    print(f"{len(chosen) - missed} of {len(chosen)} caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
