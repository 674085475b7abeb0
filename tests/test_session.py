"""Live sessions: real eSpeak, the real shared worker and compose, consumed as a user's thread would."""
import asyncio
import gc
import random
import threading
import time
import weakref

import numpy as np
import pytest
import torch
from conftest import EXAMPLE_AVATAR, render_frames

from stream.audio.resample import StreamResampler
from stream.errors import LipstreamError
from stream.graphs import runtime
from stream.live.session import Frame, SegmentEnd, Session

BOX = (67, 170, 177, 270)
FPS = 25
SPF = 48000 // FPS


def drain(session, until=lambda items: False, seconds=60.0, idle=False):
    """Pull as fast as the session gives until `until(items)` holds after a SegmentEnd; idle frames
    are kept only with `idle` (a fast consumer gets thousands while speech is on its way)."""
    items, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        item = session.get()
        if idle or not isinstance(item, Frame) or item.speaking:
            items.append(item)
        else:
            time.sleep(0.001)  # a spinning consumer would starve the TTS thread of the GIL
        if isinstance(item, SegmentEnd) and until(items):
            return items
    raise AssertionError(f"no end after {seconds} s")


def ends(n):
    return lambda items: sum(isinstance(i, SegmentEnd) for i in items) >= n


def speaking(items):
    return [i for i in items if isinstance(i, Frame) and i.speaking]


def push_in_random_chunks(session, pcm, rate, rng):
    at = 0
    while at < len(pcm):
        n = int(rng.uniform(0.001, 2.0) * rate) if rng.random() < 0.3 else int(rng.uniform(0.001, 0.1) * rate)
        session.push_audio(pcm[at : at + max(1, n)], rate)
        at += max(1, n)
        if rng.random() < 0.3:
            time.sleep(rng.uniform(0, 0.02))
    session.end_segment()


def test_pushed_speech_matches_render_frame_for_frame(speech_22k):
    """Random chunk sizes (1 ms to 2 s) in bursts: the speaking frames are exactly render's, and so is the audio."""
    rng = random.Random(7)
    with Session(box=BOX, cache=False) as s:
        consumer_items = []
        t = threading.Thread(target=lambda: consumer_items.extend(drain(s, ends(1))))
        t.start()
        push_in_random_chunks(s, speech_22k, 22050, rng)
        t.join(timeout=60)
    spoken = speaking(consumer_items)
    expected = -(-len(speech_22k) * FPS // 22050)
    assert len(spoken) == expected
    assert [f.index for f in spoken] == list(range(spoken[0].index, spoken[0].index + expected))  # no gap
    frames, audio, _, _ = render_frames(speech_22k, 22050)
    assert len(frames) == expected
    for k, f in enumerate(spoken):
        assert torch.equal(f.image, frames[k]), f"frame {k} differs from render"
    r = StreamResampler(22050, 48000)
    whole = torch.cat([r.push(torch.from_numpy(speech_22k)), r.finish()]).numpy()
    got = np.concatenate([f.audio for f in spoken])
    assert len(got) == expected * SPF and np.array_equal(got[: len(whole)], whole) and not got[len(whole) :].any()
    assert np.array_equal(audio, got)
    end = consumer_items[-1]
    assert isinstance(end, SegmentEnd) and not end.interrupted
    assert end.playback_position == pytest.approx(len(whole) / 48000)


def test_wav2lip_session_matches_render_within_rounding(speech_22k, wav2lip_checkpoint):
    """Wav2Lip on the CPU rounds differently by batch size (oneDNN): equal up to one level at a few pixels."""
    pcm = speech_22k[: 6615]  # 0.3 s: 8 frames, one batch
    with Session(box=BOX, checkpoint=wav2lip_checkpoint, precision="float32", batch_size=8, cache=False) as s:
        s.push_audio(pcm, 22050)
        s.end_segment()
        spoken = speaking(drain(s, ends(1)))
    frames, _, _, _ = render_frames(pcm, 22050, checkpoint=wav2lip_checkpoint, precision="float32", batch_size=8)
    assert len(spoken) == len(frames) == 8
    for k, f in enumerate(spoken):
        diff = (f.image.int() - frames[k].int()).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3, k


def test_idle_before_between_and_after_segments(speech_22k):
    with Session(box=BOX) as s:
        before = [s.get() for _ in range(10)]
        s.push_audio(speech_22k[:11025], 22050)
        s.end_segment()
        s.push_audio(speech_22k[11025:22050], 22050)
        s.end_segment()
        items = drain(s, ends(2), idle=True)
        after = [s.get() for _ in range(10)]
    source = torch.from_numpy(__import__("cv2").imread(EXAMPLE_AVATAR))
    for f in before + after:
        assert isinstance(f, Frame) and not f.speaking and not f.audio.any()
        assert torch.equal(f.image, source[:512, :512])
    marks = [i for i in items if isinstance(i, SegmentEnd)]
    assert [m.segment for m in marks] == [1, 2] and not any(m.interrupted for m in marks)
    for m in marks:
        mine = [i for i in items if isinstance(i, Frame) and i.segment == m.segment]
        assert len(mine) == 13  # ceil(0.5 s · 25)
        assert m.playback_position == pytest.approx(0.5)  # the audio yielded, padding of the last frame excluded
    frames = [i for i in before + items + after if isinstance(i, Frame)]
    assert [f.index for f in frames] == list(range(len(frames)))  # one tick after another, idle or not
    assert all(f.pts == f.index * SPF and len(f.audio) == SPF for f in frames)


def test_interrupt_at_random_moments(speech_22k):
    rng = random.Random(3)
    with Session(box=BOX) as s:
        for trial in range(6):
            seg = s.push_audio(speech_22k, 22050)
            s.end_segment()
            for _ in range(rng.randrange(0, 40)):
                s.get()
            s.interrupt()
            asked = time.perf_counter()
            items = []
            while not isinstance(item := s.get(), Frame):
                items.append(item)
            assert time.perf_counter() - asked < 0.1
            assert not item.speaking and not item.audio.any()
            assert [(m.segment, m.interrupted) for m in items] in ([(seg, True)], [(seg, False)])
            later = [s.get() for _ in range(50)]
            assert not any(isinstance(i, Frame) and i.speaking for i in later), "old speech came back"
        again = s.push_audio(speech_22k[:22050], 22050)
        s.end_segment()
        items = drain(s, ends(1))
        assert len([f for f in speaking(items) if f.segment == again]) == 25


def test_interrupt_stops_text_and_the_next_say_speaks():
    with Session(box=BOX) as s:
        first = s.say("This is a long sentence that will not be finished. Nor will this one, or the one after it.")
        s.say("A queued second utterance.")
        got = []
        while len(speaking(got)) < 5:
            got.append(s.get())
        s.interrupt()
        marks = []
        while not isinstance(item := s.get(), Frame):
            marks.append(item)
        assert not item.speaking
        assert [(m.segment, m.interrupted) for m in marks] == [(first, True), (first + 1, True)]
        assert 0 < marks[0].playback_position <= 5 * SPF / 48000 + 1e-9 and marks[1].playback_position == 0
        third = s.say("Hello again.")
        items = drain(s, ends(1))
        assert items[-1] == SegmentEnd(third, items[-1].playback_position, False)
        assert len(speaking(items)) > 10 and all(f.segment == third for f in speaking(items))


def test_text_written_word_by_word_speaks_before_it_is_complete():
    text = "Hello there, my friend. This reply arrives one word at a time, as a language model writes it."
    words = text.split(" ")
    with Session(box=BOX) as s:
        seg = s.say(words[0] + " ", flush=False)
        assert all(s.say(w + " ", flush=False) == seg for w in words[1:3])  # "Hello there, my": a first clause
        deadline, got = time.monotonic() + 30, []
        while not speaking(got):
            assert time.monotonic() < deadline, "no speech before the rest of the text"
            got.append(s.get())
            time.sleep(0.001)
        assert not any(isinstance(i, SegmentEnd) for i in got) and speaking(got)[0].segment == seg
        for w in words[3:]:
            assert s.say(w + " ", flush=False) == seg
        assert s.end_segment() == seg
        items = got + drain(s, ends(1))
        streamed = speaking(items)
        assert items[-1] == SegmentEnd(seg, items[-1].playback_position, False)
        assert all(f.segment == seg for f in streamed)
        whole = s.say(text)
        said = speaking(drain(s, ends(1)))
        assert all(f.segment == whole for f in said)
        # the same words in the same order: the same speech, give or take eSpeak's pauses between pieces
        assert 0.85 < len(streamed) / len(said) < 1.3, (len(streamed), len(said))


def test_mouth_follows_the_sound_with_no_frame_of_offset():
    """The procedural mouth gap against the loudness of the audio yielded with each frame."""
    with Session() as s:
        s.say("Open wide, then close. Papa, mama, baba: open and shut, open and shut.")
        frames = speaking(drain(s, ends(1)))
    gap = np.array([-f.image[148:162, 205:245].float().mean().item() for f in frames])
    loud = np.array([np.sqrt(np.mean(f.audio ** 2)) for f in frames])
    n = len(gap)

    def corr(lag):
        a, b = gap[max(0, lag) : n + min(0, lag)], loud[max(0, -lag) : n - max(0, lag)]
        return np.corrcoef(a, b)[0, 1]

    scores = {lag: corr(lag) for lag in range(-3, 4)}
    assert max(scores, key=scores.get) == 0, scores


def test_two_sessions_with_different_avatars_share_the_worker(tmp_path, speech_22k):
    import cv2

    other = tmp_path / "small.png"
    cv2.imwrite(str(other), cv2.resize(cv2.imread(EXAMPLE_AVATAR), (384, 384)))
    box2 = (50, 128, 133, 203)
    a_pcm, b_pcm = speech_22k[:30000], speech_22k[20000:45000]

    def alone(avatar, box, pcm):
        with Session(avatar=avatar, box=box) as s:
            s.push_audio(pcm, 22050)
            s.end_segment()
            return [f.image for f in speaking(drain(s, ends(1)))]

    want_a, want_b = alone(EXAMPLE_AVATAR, BOX, a_pcm), alone(str(other), box2, b_pcm)
    sa, sb = Session(avatar=EXAMPLE_AVATAR, box=BOX), Session(avatar=str(other), box=box2)
    assert sa.worker is sb.worker
    batches = sa.worker.batches
    got = {}
    try:
        threads = [threading.Thread(target=lambda s=s, k=k: got.__setitem__(k, drain(s, ends(1))))
                   for s, k in ((sa, "a"), (sb, "b"))]
        for t in threads:
            t.start()
        sa.push_audio(a_pcm, 22050)
        sb.push_audio(b_pcm, 22050)
        sa.end_segment()
        sb.end_segment()
        for t in threads:
            t.join(timeout=60)
    finally:
        sa.close()
        sb.close()
    for want, key in ((want_a, "a"), (want_b, "b")):
        frames = [f.image for f in speaking(got[key])]
        assert len(frames) == len(want) and all(torch.equal(x, y) for x, y in zip(frames, want))
    assert sa.worker.batches > batches


def test_async_iteration_and_real_time_consumer():
    async def main():
        with Session(box=BOX) as s:
            seg = s.say("Hello from an event loop.")
            items, t0 = [], time.perf_counter()
            async for item in s:
                items.append(item)
                if isinstance(item, SegmentEnd):
                    break
                await asyncio.sleep(max(0.0, t0 + len([i for i in items if isinstance(i, Frame)]) / FPS - time.perf_counter()))
            return seg, items

    seg, items = asyncio.run(main())
    assert items[-1].segment == seg and len(speaking(items)) > 20


def test_session_limit_and_release(speech_22k):
    first = Session(box=BOX, max_sessions=1)
    with pytest.raises(LipstreamError, match=r"^session limit reached: 1 session\(s\) open, max_sessions is 1$"):
        Session(box=BOX, max_sessions=1)
    first.close()
    Session(box=BOX, max_sessions=1).close()


def test_open_speak_close_cycles_leave_nothing_behind():
    def cycle():
        s = Session(box=BOX)
        s.say("Hi.")
        drain(s, ends(1))
        s.close()
        return weakref.ref(s)

    cycle()
    threads = {t.ident for t in threading.enumerate()}
    refs = [cycle() for _ in range(200)]
    for _ in range(100):  # the last session's final TTS task or model batch may still be finishing
        gc.collect()
        if not any(r() for r in refs):
            break
        time.sleep(0.02)
    assert not any(r() for r in refs)
    assert {t.ident for t in threading.enumerate()} <= threads
    assert runtime.open_sessions() == 0


def test_bad_input_is_one_clear_error():
    with Session(box=BOX) as s:
        with pytest.raises(LipstreamError, match=r"^int16 PCM has an odd number of bytes \(3\)$"):
            s.push_audio(b"abc", 16000)
        with pytest.raises(LipstreamError, match=r"^sample rate 22051 is not supported \(one of 8000, "):
            s.push_audio(np.zeros(10, np.float32), 22051)
        with pytest.raises(LipstreamError, match=r"^PCM must be mono"):
            s.push_audio(np.zeros((10, 2), np.float32), 16000)
        s.push_audio(np.zeros(100, np.int16), 16000)
        with pytest.raises(LipstreamError, match=r"^sample rate changed within an utterance \(16000 → 48000\)"):
            s.push_audio(np.zeros(100, np.float32), 48000)
        with pytest.raises(LipstreamError, match="^empty text: nothing to say$"):
            s.say("  ")
    with pytest.raises(LipstreamError, match="^session .* is closed$"):
        s.say("Hello.")
    with pytest.raises(LipstreamError, match=r"^fps 7 does not divide the 48 kHz audio clock"):
        Session(fps=7)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_sessions_speak_on_the_device_and_give_their_memory_back(wav2lip_checkpoint):
    def cycle():
        with Session(device="cuda", box=BOX, checkpoint=wav2lip_checkpoint, precision="bfloat16") as s:
            s.say("Hi there.")
            frames = speaking(drain(s, ends(1)))
            assert frames and all(f.image.is_cuda and f.image.shape == (512, 512, 3) for f in frames)

    cycle()  # the model, its graphs and the kernels stay for the process; the rest must not
    torch.cuda.synchronize()
    gc.collect()
    base = torch.cuda.memory_allocated()
    for _ in range(20):
        cycle()
    torch.cuda.synchronize()
    gc.collect()
    assert torch.cuda.memory_allocated() <= base
    assert runtime.open_sessions() == 0


def test_a_video_avatar_loops_on_through_speech_and_idle(tmp_path, speech_22k, monkeypatch):
    """Each avatar frame carries its index in a corner patch: tick k shows loop[k], speaking or not,
    the idle ticks left before speech for the model's time included."""
    import av
    import cv2

    image = cv2.resize(cv2.imread(EXAMPLE_AVATAR), (256, 256))
    src = tmp_path / "avatar.mp4"
    with av.open(str(src), "w") as c:
        st = c.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt, st.options = 256, 256, "yuv420p", {"crf": "0"}
        for i in range(6):
            frame = image.copy()
            frame[:32, :32] = 40 * i
            for p in st.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                c.mux(p)
        for p in st.encode(None):
            c.mux(p)
    with Session(avatar=str(src), box=(34, 85, 88, 135)) as s:
        monkeypatch.setattr(s.worker, "estimate", lambda n: 0.15)  # a model as slow as Wav2Lip on a CPU
        first = [s.get() for _ in range(7)]
        s.push_audio(speech_22k[:30000], 22050)
        s.end_segment()
        items = first + drain(s, ends(1), idle=True) + [s.get() for _ in range(7)]
    frames = [i for i in items if isinstance(i, Frame)]
    assert sum(f.speaking for f in frames) == 35 and not frames[-1].speaking
    start = next(k for k, f in enumerate(frames) if f.speaking)
    assert start - len(first) >= 3  # speech began a few ticks after it was pushed, idle ticks in between
    assert [f.index for f in frames] == list(range(len(frames)))  # one tick after another, none skipped
    loop = [0, 1, 2, 3, 4, 5, 4, 3, 2, 1]
    shown = [int(round(f.image[8:24, 8:24].float().mean().item() / 40)) for f in frames]
    assert shown == [loop[f.index % len(loop)] for f in frames]


def test_a_tts_failure_mid_utterance_ends_it_interrupted_and_the_next_say_speaks():
    """The engine breaks in the middle of the second sentence: what it made plays, the utterance ends
    interrupted with the reason, nothing more of it is synthesised, and the session speaks on."""
    with Session(box=BOX) as s:
        speak, pieces, failed = s._tts.speak, [], []

        def breaking(piece, on_audio):
            pieces.append(piece)
            if len(pieces) != 2:
                return speak(piece, on_audio)
            made = []
            speak(piece, lambda pcm: made.append(pcm) or True)
            for pcm in made[: len(made) // 2]:  # half of it arrives, then the engine raises
                on_audio(pcm)
            failed.append(time.perf_counter())
            raise RuntimeError("the voice engine crashed\n  (its traceback, a second line)")

        s._tts.speak = breaking
        first = s.say("The first sentence is spoken whole. The second one breaks off halfway through its words. "
                      "The third is never synthesised.")
        items = drain(s, ends(1))
        ended = time.perf_counter()
        end = items[-1]
        assert end == SegmentEnd(first, end.playback_position, True,
                                 "speech synthesis failed: the voice engine crashed")
        assert len(pieces) == 2, pieces  # the utterance ended where the engine failed
        spoken = speaking(items)
        assert len(spoken) * SPF / 48000 == pytest.approx(end.playback_position, abs=1 / FPS)
        assert end.playback_position > 1.0 and all(f.segment == first and f.error is None for f in spoken)
        idle = [s.get() for _ in range(20)]
        assert all(isinstance(f, Frame) and not f.speaking and not f.audio.any() for f in idle)
        said = time.perf_counter()
        again = s.say("Hello again.")
        items = [s.get()]
        while not (isinstance(items[-1], Frame) and items[-1].speaking):
            items.append(s.get())
        first_frame = time.perf_counter()
        items += drain(s, ends(1))
        assert items[-1] == SegmentEnd(again, items[-1].playback_position, False) and items[-1].error is None
        assert len(speaking(items)) > 10 and all(f.segment == again for f in speaking(items))
    print(f"recovery: TTS failure → SegmentEnd {1000 * (ended - failed[0]):.0f} ms (a fast consumer); "
          f"next say → its first speaking frame {1000 * (first_frame - said):.0f} ms")


def test_a_failed_lipsync_batch_idles_its_frames_once_and_both_sessions_in_it_speak_on(speech_22k, caplog):
    """Two sessions consumed in real time share a batch that raises (out of memory): only that batch's
    frames show the idle face, with their speech; each session hears of it once, in the first of them;
    the next tick is lip-synced again, and no later pull raises."""
    sessions = [Session(box=BOX, max_sessions=2), Session(box=BOX, max_sessions=2)]
    worker = sessions[0].worker
    assert sessions[1].worker is worker
    run, state = worker._run, {"armed": False, "failed": {}, "at": None, "batch": None}

    def run_and_fail_once(jobs):
        owners = {j.done.func.__self__ for j in jobs}
        if state["batch"] is None and owners == set(sessions):
            state["armed"], state["batch"] = True, (sum(j.frames for j in jobs), len(jobs))
            for j in jobs:
                state["failed"].setdefault(j.done.func.__self__, []).extend(e.slot for e in j.done.args[0])
        return run(jobs)

    class Failing:
        def __init__(self, model):
            self.model = model

        def __call__(self, features, inputs):
            if state["armed"]:
                state["armed"], state["at"] = False, time.perf_counter()
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\n(details)")
            return self.model(features, inputs)

        def __getattr__(self, name):
            return getattr(self.model, name)

    got = {s: [] for s in sessions}

    def consume(s):
        start = time.perf_counter()
        for k in range(150):
            got[s].append((s.get(), time.perf_counter()))
            time.sleep(max(0.0, start + (k + 1) / FPS - time.perf_counter()))

    failed_before, original = worker.failed, worker.model
    worker._run, worker.model = run_and_fail_once, Failing(original)
    try:
        for s in sessions:
            s.push_audio(speech_22k, 22050)
            s.end_segment()
        threads = [threading.Thread(target=consume, args=(s,)) for s in sessions]
        with caplog.at_level("WARNING", logger="lipstream"):
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
    finally:
        worker._run, worker.model = run, original
        for s in sessions:
            s.close()
    assert worker.failed == failed_before + 1 and set(state["failed"]) == set(sessions)
    n, jobs = state["batch"]
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("lip-sync batch")] == [
        f"lip-sync batch of {n} frames ({jobs} jobs) failed: CUDA out of memory. Tried to allocate 2.00 GiB"]
    for s in sessions:
        slots = state["failed"][s]
        frames = {f.index: (f, t) for f, t in got[s] if isinstance(f, Frame)}
        assert len(frames) >= 149  # and perhaps the SegmentEnd
        face = next(f for f, _ in frames.values() if not f.speaking).image  # the image avatar's idle face
        hit = [frames[k][0] for k in slots]
        assert all(f.speaking and f.audio.any() and torch.equal(f.image, face) for f in hit)  # idle face, speech on
        assert [f.error for f in hit] == ["CUDA out of memory. Tried to allocate 2.00 GiB"] + [None] * (len(hit) - 1)
        assert sum(f.error is not None for f, _ in frames.values()) == 1  # once
        after = [frames[k][0] for k in range(max(slots) + 1, max(slots) + 11)]
        assert all(f.speaking and f.error is None for f in after)  # the next ticks are the next batches'
        assert sum(not torch.equal(f.image, face) for f in after) >= 5  # lip-synced again
        recovered = frames[max(slots) + 1][1] - state["at"]
        print(f"recovery: failed lip-sync batch → {len(slots)} of session {s.id}'s frames idle "
              f"({1000 * len(slots) / FPS:.0f} ms of mouth), the next tick lip-synced, pulled "
              f"{1000 * recovered:.0f} ms after the failure")
