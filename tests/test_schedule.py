import numpy as np
import torch

from stream.audio.clock import Clock
from stream.audio.mel import wav2lip_mel
from stream.audio.resample import StreamResampler
from stream.audio.schedule import FrameScheduler, Progress
from stream.frames import PcmChunk
from stream.lipsync.mel_windows import MelWindows


class _StillAvatar:
    def frame_index(self, i):
        return torch.zeros_like(torch.as_tensor(i))


def test_clock_integer_arithmetic():
    c = Clock(22050, 25)
    assert c.frames_for(22050) == 25 and c.frames_for(22051) == 26 and c.frames_for(1) == 1
    assert c.frame_start(1, 48000) == 1920 and [c.mel_start(i) for i in range(5)] == [0, 0, 3, 6, 9]
    assert Clock(16000, 30).mel_start(4) == 8  # int(3 · 80 / 30): one frame of lead, as in training


def test_scheduler_windows_and_audio_follow_the_clock(speech_22k):
    batches, progress = [], Progress()
    s = FrameScheduler(25, _StillAvatar(), torch.device("cpu"), batch_size=7, progress=progress,
                       features=lambda fps: MelWindows(fps, torch.device("cpu")))
    for i in range(0, len(speech_22k), 1500):
        s.process(PcmChunk(speech_22k[i : i + 1500], 22050), batches.append)
    s.finish(batches.append)
    n = -(-len(speech_22k) * 25 // 22050)
    assert progress.total == n == sum(b.count for b in batches)
    assert [b.count for b in batches[:4]] == [2, 4, 7, 7]  # a quick first frame, then full batches
    assert all(b.count == 7 for b in batches[2:-1]) and 1 <= batches[-1].count <= 7
    assert [b.start for b in batches] == [0, 2] + list(range(6, n, 7))
    mel = torch.cat([b.features for b in batches])
    r = StreamResampler(22050, 16000)
    whole = wav2lip_mel(torch.cat([r.push(torch.from_numpy(speech_22k)), r.finish()]))
    t = whole.shape[1]
    for i in (0, 1, 10, n // 2, n - 1):
        start = min(int(max(0, i - 1) * 80 / 25), t - 16)
        assert torch.allclose(mel[i, 0], whole[:, start : start + 16], atol=1e-4)
    audio = np.concatenate([b.audio for b in batches])
    assert len(audio) == n * 1920  # padded with silence to the last frame's end
    assert all(len(b.audio) == b.count * 1920 for b in batches)
