"""Whole renders through the real stages, checked by decoding the MP4 with PyAV."""
import subprocess
import sys

import av
import numpy as np
import pytest
from conftest import EXAMPLE_AVATAR, EXAMPLE_TEXT, ROOT

from stream import render
from stream.audio.schedule import Progress

BOX = (67, 170, 177, 270)  # the example's padded face box (top, bottom, left, right)


def _decode(path):
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        durations = (float(v.duration * v.time_base), float(a.duration * a.time_base))
        frames = [f.to_ndarray(format="bgr24").astype(np.int16) for f in c.decode(video=0)]
    return frames, durations


def _check_video(path, speech_samples, fps=25, moving=True):
    """eSpeak's output length varies by a few samples from call to call, so the render reports it."""
    frames, (video_s, audio_s) = _decode(path)
    expected = -(-speech_samples * fps // 22050)
    assert len(frames) == expected
    assert abs(video_s - audio_s) <= 1 / fps
    assert abs(video_s - expected / fps) < 1e-6
    t, b, l, r = BOX
    lower = [f[(t + b) // 2 : b, l:r] for f in frames]
    mouth_motion = max(np.abs(x - lower[0]).mean() for x in lower)
    outside = np.ones(frames[0].shape[:2], bool)
    outside[t - 8 : b + 8, l - 8 : r + 8] = False
    still = max(np.abs(f - frames[0])[outside].mean() for f in frames)
    if moving:
        assert mouth_motion > 3.0, "the mouth does not move"
    else:  # random weights barely react to audio: check the generated face was pasted in instead
        import cv2

        source = cv2.imread(EXAMPLE_AVATAR).astype(np.int16)
        assert np.abs(frames[0][(t + b) // 2 : b, l:r] - source[(t + b) // 2 : b, l:r]).mean() > 3.0
    assert still < 0.5, "pixels outside the face changed"
    return frames


def test_render_example_procedural(tmp_path):
    out = tmp_path / "hello.mp4"
    progress = Progress()
    result = render(str(out), text_file=EXAMPLE_TEXT, progress=progress)
    assert out.exists() and not list(tmp_path.glob(".*part"))
    _check_video(out, progress.speech_samples)
    assert "procedural" in result.summary() and result.frames == progress.total
    assert 5 < result.speech_seconds < 12


def test_render_with_wav2lip_checkpoint(tmp_path, wav2lip_checkpoint):
    out = tmp_path / "w2l.mp4"
    progress = Progress()
    result = render(str(out), text="A learned mouth.", checkpoint=wav2lip_checkpoint, batch_size=8,
                    box=BOX, progress=progress)
    _check_video(out, progress.speech_samples, moving=False)
    assert "lipsync wav2lip" in result.summary() and "folded channels_last" in result.summary()
    # Loading the checkpoint and folding it is set-up, reported apart from the render it is part of.
    assert 0 < result.setup_seconds < result.first_frame_seconds <= result.wall_seconds
    assert f"set-up and warm-up {result.setup_seconds:.2f} s" in result.summary()


def test_render_from_audio_file_at_other_fps(tmp_path, speech_22k):
    import soundfile

    wav = tmp_path / "speech.wav"
    soundfile.write(wav, speech_22k, 22051)  # an odd rate: decoded straight to 48 kHz
    out = tmp_path / "a.mp4"
    result = render(str(out), audio=str(wav), fps=30)
    frames, (video_s, audio_s) = _decode(out)
    assert abs(len(frames) - len(speech_22k) * 30 / 22051) <= 1
    assert abs(video_s - audio_s) <= 1 / 30
    assert result.frames == len(frames)


def test_console_script_prints_one_summary_line(tmp_path):
    out = tmp_path / "cli.mp4"
    proc = subprocess.run([sys.executable, "-m", "stream.cli", "-q", "render", "--text", "Hi there.", "-o", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "frames" in lines[0] and "real time" in lines[0] and "lipsync procedural" in lines[0]
    assert out.exists()


@pytest.mark.parametrize("fps", [25, 30])
def test_mouth_and_sound_are_in_sync(tmp_path, fps):
    """Through the real encoder and muxer: the mouth gap follows the decoded audio's loudness best
    with no frame of offset."""
    out = tmp_path / "sync.mp4"
    render(str(out), text_file=EXAMPLE_TEXT, fps=fps)
    with av.open(str(out)) as c:
        gap = np.array([-f.to_ndarray(format="gray")[148:162, 205:245].mean() for f in c.decode(video=0)])
    with av.open(str(out)) as c:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    n, step = len(gap), 48000 // fps
    loud = np.array([np.sqrt(np.mean(audio[i * step : (i + 1) * step] ** 2)) for i in range(n)])

    def corr(lag):
        a, b = gap[max(0, lag) : n + min(0, lag)], loud[max(0, -lag) : n - max(0, lag)]
        return np.corrcoef(a, b)[0, 1]

    scores = {lag: corr(lag) for lag in range(-3, 4)}
    assert max(scores, key=scores.get) == 0, scores
    assert scores[0] > 0.5


def test_video_avatar_plays_forward_then_backward(tmp_path):
    """Each avatar frame carries its index in a corner patch; the rendered video must show them in
    ping-pong order (0 1 2 3 4 5 4 3 2 1 0 1 …), face boxes tracked per frame."""
    import cv2

    image = cv2.resize(cv2.imread(EXAMPLE_AVATAR), (256, 256))
    src = tmp_path / "avatar.mp4"
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 256, 256, "yuv420p"
        s.options = {"crf": "0"}
        for i in range(6):
            frame = image.copy()
            frame[:32, :32] = 40 * i  # the marker: 0, 40, … 200
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    out = tmp_path / "out.mp4"
    render(str(out), text="One, two, three, four, five.", avatar=str(src))
    with av.open(str(out)) as c:
        shown = [int(round(f.to_ndarray(format="bgr24")[8:24, 8:24].mean() / 40)) for f in c.decode(video=0)]
    loop = [0, 1, 2, 3, 4, 5, 4, 3, 2, 1]
    assert len(shown) > 20
    assert shown == [loop[i % len(loop)] for i in range(len(shown))]


@pytest.mark.parametrize("fps", [25, 30])
def test_video_and_audio_start_and_end_together_by_their_timestamps(tmp_path, fps):
    """What a player goes by: both streams start at 0, frame i is stamped i/fps, and both last
    frames/fps, to the millisecond the MP4's edit lists are kept in (they trim AAC's priming and
    padding) — one frame missing from either would be 33 ms or more."""
    out = tmp_path / "ts.mp4"
    r = render(str(out), text="Hello there, checking the timestamps.", fps=fps, box=BOX)
    with av.open(str(out)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert float(v.start_time * v.time_base) == 0.0 and float(a.start_time * a.time_base) == 0.0
        assert abs(float(v.duration * v.time_base) - r.frames / fps) <= 1e-3
        assert abs(float(a.duration * a.time_base) - r.frames / fps) <= 1e-3
        stamps = [float(f.pts * v.time_base) for f in c.decode(video=0)]
    assert len(stamps) == r.frames
    assert all(abs(t - i / fps) < 1e-6 for i, t in enumerate(stamps))


def test_each_frame_gets_its_own_mel_window_and_the_masked_face(speech_22k, responsive_checkpoint):
    """Wav2Lip's routing, recomputed from scratch for chosen frames: frame i shows
    compose(model(mel window from frame i−1, crop with its lower half zeroed + crop))."""
    import torch
    import torchaudio
    from conftest import render_frames

    from kernels.compose import compose_ref
    from stream import load_wav2lip, wav2lip_mel

    pcm = speech_22k[:19000]  # 0.86 s, 21 frames
    frames, _, avatar, prep = render_frames(pcm, 22050, checkpoint=responsive_checkpoint, precision="float32", batch_size=8)
    mel = wav2lip_mel(torchaudio.functional.resample(torch.from_numpy(pcm), 22050, 16000))
    model = load_wav2lip(responsive_checkpoint, "cpu")  # the plain model: no folding, no lower-face shortcut
    crop = prep.inputs[:1].permute(0, 3, 1, 2).float() / 255
    face = torch.cat([torch.cat([crop[:, :, :48], torch.zeros_like(crop[:, :, 48:])], dim=2), crop], dim=1)

    def expected(i, lead=1):
        start = min(int(max(0, i - lead) * 80 / 25), mel.shape[1] - 16)
        with torch.no_grad():
            mouth = model(mel[:, start : start + 16].reshape(1, 1, 80, 16), face)
        return compose_ref(avatar.frames[:1], mouth, prep.boxes[:1], prep.masks[0])[0].int()

    for i in (0, 1, 9, 15, len(frames) - 1):
        assert (frames[i].int() - expected(i)).abs().max() <= 2, f"frame {i}"
    # The check can tell windows apart: a window a frame late would not pass.
    assert max((frames[i].int() - expected(i, lead=0)).abs().max().item() for i in (9, 15)) > 10
