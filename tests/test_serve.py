"""`lipstream serve` on loopback, driven by real aiortc peers and plain HTTP."""
import asyncio
import contextlib
import io
import threading
import time
import wave
from collections import deque

import aiohttp
import numpy as np
import pytest
import torch
from aiohttp import web

from stream.config import make_config
from stream.graphs import runtime
from stream.serve.app import MAX_TEXT, Server
from stream.serve.client import PeerClient, session_events
from stream.serve.ice import offer_loopback

BOX = (67, 170, 177, 270)
MOUTH = (148, 162, 205, 245)  # under the bundled avatar's upper teeth, where her mouth opens
LONG = "Hello there, this is a test of the live server. It keeps on talking for a good while, so it can be stopped."

offer_loopback(only=True)  # WebRTC never leaves this machine


@contextlib.asynccontextmanager
async def serving(video="lipstream", token=None, **settings):
    server = Server(make_config(box=BOX, **settings), token=token, video=video)
    runner = web.AppRunner(server.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield server, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    finally:
        await runner.cleanup()


async def events_of(base, session, into, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else None
    await session_events(base, session, lambda name, data: into.append((time.time(), name, data)), headers)


async def until(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


async def watched(base, **kw):
    """A connected viewer that receives frames, the list its session's events go to, and their listener."""
    c = PeerClient(base, **kw)
    await c.connect()
    events = []
    listener = asyncio.ensure_future(events_of(base, c.session, events))
    await until(lambda: len(c.video) > 5)
    return c, events, listener


@pytest.mark.parametrize("video", ["lipstream", "aiortc"])
def test_a_viewer_sees_and_hears_speech_in_sync_and_an_interrupt_silences_it(video):
    async def main():
        async with serving(video) as (server, base):
            c = PeerClient(base, mouth=MOUTH)
            await c.connect()
            events = []
            listener = asyncio.ensure_future(events_of(base, c.session, events))
            await until(lambda: len(c.video) > 5 and c._sr.keys() == {"audio", "video"})
            t0 = time.time()
            said = time.time()
            segment = await c.say(LONG)
            await asyncio.sleep(1.8)
            stopped = time.time()
            await c.interrupt()
            await asyncio.sleep(0.8)
            t1 = time.time()
            listener.cancel()
            await c.close()
            return c, events, segment, (t0, said, stopped, t1)

    c, events, segment, (t0, said, stopped, t1) = asyncio.run(main())
    got = [a for a, _, _ in c.video if t0 <= a < t1]
    # aiortc's own VP8/H.264 encoder, in Python's thread, fell to 52 of 65 frames on a loaded 2-core CI
    # machine; lipstream's encoder keeps 95 % there. (bench serve measures delivery on a quiet machine.)
    share = 0.95 if video == "lipstream" else 0.75
    assert len(got) >= share * (t1 - t0) * 25, f"{len(got)} frames in {t1 - t0:.2f} s"
    assert len([a for a, _, _ in c.audio if t0 <= a < t1]) >= 0.95 * (t1 - t0) * 50  # 20 ms packets
    assert c.first_audio(said, loud=True) - said < 1.0  # speech started
    assert abs(c.av_offset_frames(said, stopped, 25)) <= 1, "mouth and sound apart at the viewer"
    silent = c.first_audio(stopped, loud=False)
    assert silent - stopped < 0.1 + 0.02, f"audio went silent {1000 * (silent - stopped):.0f} ms after the interrupt"
    assert not any(rms > 0.01 for a, p, rms in c.audio if c.sent_at("audio", p) > silent + 0.1)
    names = [(n, d) for _, n, d in events]
    assert ("speaking", {"segment": segment}) in names
    ends = [d for n, d in names if n == "segment_end"]
    assert ends and ends[0]["segment"] == segment and ends[0]["interrupted"] and 0 < ends[0]["playback_position"] < 2.0


def test_speech_posted_as_pcm_or_wav_is_spoken_as_it_arrives(speech_22k):
    pcm = (speech_22k[:22050] * 32767).astype("<i2").tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(np.repeat(np.frombuffer(pcm, "<i2"), 2).tobytes())

    async def chunks(data):
        for i in range(0, len(data), 3001):  # odd sizes: samples split across chunks
            yield data[i : i + 3001]
            await asyncio.sleep(0.01)

    async def main():
        async with serving() as (server, base):
            c = PeerClient(base)
            await c.connect()
            events = []
            listener = asyncio.ensure_future(events_of(base, c.session, events))
            async with aiohttp.ClientSession() as http:
                for url, body in ((f"{base}/sessions/{c.session}/audio?rate=22050", pcm),
                                  (f"{base}/sessions/{c.session}/audio", buf.getvalue())):
                    async with http.post(url, data=chunks(body)) as r:
                        assert r.status == 202, await r.text()
                await until(lambda: sum(n == "segment_end" for _, n, _ in events) == 2)
            listener.cancel()
            await c.close()
            return [d for _, n, d in events if n == "segment_end"]

    ends = asyncio.run(main())
    assert [e["interrupted"] for e in ends] == [False, False]
    assert all(abs(e["playback_position"] - 1.0) < 0.001 for e in ends)


def test_bad_requests_get_their_status_and_a_json_error():
    async def main():
        async with serving(token="s3cret", max_sessions=1) as (server, base):
            auth = {"Authorization": "Bearer s3cret"}
            as_json = {**auth, "Content-Type": "application/json"}
            async with aiohttp.ClientSession() as http:
                async def call(method, path, status, headers=auth, **kw):
                    async with http.request(method, base + path, headers=headers, **kw) as r:
                        body = await r.json()
                        assert r.status == status and isinstance(body.get("error", ""), str), (path, r.status, body)
                        return body

                assert (await call("GET", "/healthz", 200, headers={}))["status"] == "ok"
                await call("GET", "/", 401, headers={})
                await call("POST", "/offer", 401, headers={"Authorization": "Bearer wrong"}, json={})
                await call("POST", "/offer", 400, headers=as_json, data=b"{not json")
                await call("POST", "/offer", 400, json=["a list"])
                await call("POST", "/offer", 400, json={"sdp": "v=0", "type": "answer"})
                bad = await call("POST", "/offer", 400, json={"sdp": "v=0\r\nm=video 9\r\nm=audio 9\r\n", "type": "offer"})
                assert bad["error"].startswith("cannot use this offer")
                await call("POST", "/offer", 413, headers=as_json, data=b"x" * (300 * 1024))
                for method, path in (("POST", "/sessions/nope/say"), ("POST", "/sessions/nope/interrupt"),
                                     ("DELETE", "/sessions/nope"), ("GET", "/sessions/nope/events")):
                    assert (await call(method, path, 404, json={}))["error"] == "no such session"
                pcm = {**auth, "Content-Type": "application/octet-stream"}
                assert (await call("POST", "/sessions/nope/audio?rate=16000", 404, headers=pcm, data=b"\0\0"))["error"] \
                    == "no such session"
                c = PeerClient(base, token="s3cret")
                await c.connect()
                sid = c.session
                assert len(sid) >= 20  # unguessable
                await call("POST", f"/sessions/{sid}/say", 413, json={"text": "a" * (MAX_TEXT + 1)})
                await call("POST", f"/sessions/{sid}/say", 400, json={"text": "   "})
                await call("POST", f"/sessions/{sid}/say", 400, json={"words": "hi"})
                await call("POST", f"/sessions/{sid}/audio", 400, headers=pcm, data=b"\x00\x01" * 100)  # PCM, no rate
                other = PeerClient(base, token="s3cret")
                with pytest.raises(RuntimeError, match=r"/offer: 503 .*session limit reached"):
                    await other.connect()
                await other.close()
                async with http.get(f"{base}/metrics", headers=auth) as r:
                    text = await r.text()
                    assert r.status == 200 and "lipstream_sessions 1.0" in text
                    assert "lipstream_lipsync_batch_frames_bucket" in text and "lipstream_say_to_first_frame_seconds" in text
                await c.close()
                assert (await call("GET", "/healthz", 200, headers={}))["sessions"] == 0

    asyncio.run(main())


def _keyframes_around(act):
    """Whether each video packet sent was a keyframe, and how many were sent before `act(base, viewer, sent)`
    took effect (past the first IDR, before the next periodic one): what it returns, else the count
    when it was called."""
    async def main():
        async with serving() as (server, base):
            c = PeerClient(base)
            await c.connect()
            await until(lambda: len(c.video) > 30)
            viewer = next(iter(server.viewers.values()))
            sent = []
            original = viewer.media.video.put
            viewer.media.video.put = lambda packet: (sent.append(packet.is_keyframe), original(packet))
            await asyncio.sleep(0.2)
            before = len(sent)
            before = await act(base, viewer, sent) or before
            await asyncio.sleep(0.4)
            await c.close()
            return sent, before

    return asyncio.run(main())


def test_a_keyframe_request_gets_an_idr_at_once():
    async def request(base, viewer, sent):
        sender = next(t.sender for t in viewer.pc.getTransceivers() if t.kind == "video")
        sender._send_keyframe()  # what aiortc calls on a viewer's PLI or FIR

    sent, before = _keyframes_around(request)
    # The frame in the encoder when the request came may leave first, as a P-frame: the IDR is the next.
    assert not any(sent[:before]) and any(sent[before : before + 2])


def test_video_goes_on_with_an_idr_after_an_interrupt_drops_packets():
    async def interrupt(base, viewer, sent):
        encoder = viewer.media._encoder
        encode, busy = encoder.encode, threading.Event()

        def slow(*args):  # the interrupt lands while a frame is in the encoder: that P-frame is stale too
            busy.set()
            time.sleep(0.2)
            return encode(*args)

        encoder.encode = slow
        while not busy.is_set():
            await asyncio.sleep(0.005)
        encoder.encode = encode
        before = len(sent)
        async with aiohttp.ClientSession() as http:
            assert (await http.post(f"{base}/sessions/{viewer.id}/interrupt", json={})).status == 200
        return before

    sent, before = _keyframes_around(interrupt)
    assert not any(sent[:before]) and sent[before]  # the queue may have held P-frames the viewer now lacks


def test_connect_speak_disconnect_cycles_leave_nothing_behind():
    async def main():
        async with serving() as (server, base):
            async def cycle():
                c = PeerClient(base)
                await c.connect()
                await until(lambda: len(c.video) > 0)
                await c.say("Hi.")
                await c.close()

            await cycle()
            threads = threading.active_count()
            for _ in range(30):  # a thread, task or session kept per cycle shows as 30
                await cycle()
            await until(lambda: not server.viewers and runtime.open_sessions() == 0)
            await asyncio.sleep(0.5)
            return threads, threading.active_count()

    before, after = asyncio.run(main())
    assert after <= before + 2  # the default executor may have grown a thread or two


def test_a_tts_failure_is_an_error_event_and_the_session_speaks_the_next_say():
    async def main():
        async with serving() as (server, base):
            c, events, listener = await watched(base, mouth=MOUTH)
            engine = server.viewers[c.session].session._tts
            speak, failed = engine.speak, []

            def breaking(piece, on_audio):
                if failed:
                    return speak(piece, on_audio)
                made = []
                speak(piece, lambda pcm: made.append(pcm) or True)
                for pcm in made[: len(made) // 2]:
                    on_audio(pcm)
                failed.append(time.time())
                raise RuntimeError("the voice engine crashed\nits traceback")

            engine.speak = breaking
            first = await c.say(LONG)
            await until(lambda: any(n == "segment_end" for _, n, _ in events), 20)
            frames_at_failure = len(c.video)
            second = await c.say("Hello again.")
            await until(lambda: sum(n == "segment_end" for _, n, _ in events) == 2, 20)
            listener.cancel()
            await c.close()
            return events, first, second, failed[0], len(c.video) - frames_at_failure

    events, first, second, failed, later = asyncio.run(main())
    names = [(n, d) for _, n, d in events]
    error = [(t, d) for t, n, d in events if n == "error"]
    assert [d for _, d in error] == [{"error": "speech synthesis failed: the voice engine crashed", "segment": first}]
    ends = [d for n, d in names if n == "segment_end"]
    assert [(e["segment"], e["interrupted"]) for e in ends] == [(first, True), (second, False)]
    assert names.index(("error", error[0][1])) < names.index(("segment_end", ends[0]))  # the reason, then the end
    assert ("speaking", {"segment": second}) in names and later > 10
    print(f"recovery: TTS failure → error event at the client {1000 * (error[0][0] - failed):.0f} ms "
          "(the frames it made play out first)")


def test_a_failed_lipsync_batch_is_one_error_event_and_the_video_goes_on():
    async def main():
        async with serving() as (server, base):
            c, events, listener = await watched(base)
            worker = server.viewers[c.session].session.worker
            model, armed = worker.model, []

            class Failing:
                def __call__(self, features, inputs):
                    if not armed:
                        armed.append(time.time())
                        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
                    return model(features, inputs)

                def __getattr__(self, name):
                    return getattr(model, name)

            worker.model = Failing()
            try:
                segment = await c.say(LONG)
                t0 = time.time()
                await asyncio.sleep(2.0)
                t1 = time.time()
            finally:
                worker.model = model
            listener.cancel()
            await c.close()
            return events, segment, [a for a, _, _ in c.video if t0 <= a < t1], t1 - t0

    events, segment, frames, seconds = asyncio.run(main())
    assert [d for _, n, d in events if n == "error"] == [
        {"error": "CUDA out of memory. Tried to allocate 2.00 GiB", "segment": segment}]
    assert ("speaking", {"segment": segment}) in [(n, d) for _, n, d in events]
    assert len(frames) >= 0.95 * seconds * 25  # the pump never stopped


VANISHING_VIEWER = r"""
import asyncio, sys
from stream.serve.client import PeerClient
from stream.serve.ice import offer_loopback
offer_loopback(only=True)
async def main():
    c = PeerClient(sys.argv[1])
    await c.connect()
    while len(c.video) < 10:
        await asyncio.sleep(0.05)
    print(c.session, flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


def test_a_viewer_that_vanishes_without_closing_is_freed_within_30_s(caplog):
    """The viewer's process is stopped (SIGSTOP): its sockets stay open, nothing more comes from it —
    no RTCP, no STUN, no DTLS close — as when a laptop sleeps or its network drops."""
    import os
    import signal
    import subprocess
    import sys

    async def main():
        async with serving() as (server, base):
            proc = subprocess.Popen([sys.executable, "-c", VANISHING_VIEWER, base], stdout=subprocess.PIPE, text=True,
                                    env={**os.environ, "PYTHONPATH": os.getcwd()})
            try:
                loop = asyncio.get_running_loop()
                sid = (await asyncio.wait_for(loop.run_in_executor(None, proc.stdout.readline), 60)).strip()
                assert sid in server.viewers
                os.kill(proc.pid, signal.SIGSTOP)
                gone = time.monotonic()
                await until(lambda: sid not in server.viewers, 40)
                freed = time.monotonic() - gone
                await until(lambda: runtime.open_sessions() == 0)
            finally:
                proc.kill()
                proc.wait()
            return sid, freed

    with caplog.at_level("INFO", logger="lipstream"):
        sid, freed = asyncio.run(main())
    assert freed < 30, f"freed after {freed:.1f} s"
    assert f"session {sid}: no word from the viewer for 15 s; freed" in [r.getMessage() for r in caplog.records]
    print(f"recovery: vanished viewer freed after {freed:.1f} s")


def test_an_audio_upload_cut_mid_body_speaks_what_arrived_then_idles(speech_22k, caplog):
    import socket

    pcm = (speech_22k[:22050] * 32767).astype("<i2").tobytes()  # 1 s at 22.05 kHz
    sent = pcm[: len(pcm) // 2 + 1]  # half of it, an odd byte over: half a sample

    async def main():
        async with serving() as (server, base):
            c, events, listener = await watched(base)
            port = int(base.rsplit(":", 1)[1])

            def upload():
                with socket.create_connection(("127.0.0.1", port)) as s:
                    s.sendall((f"POST /sessions/{c.session}/audio?rate=22050 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                               f"Content-Type: application/octet-stream\r\nContent-Length: {len(pcm)}\r\n\r\n").encode())
                    s.sendall(sent)
                    time.sleep(0.3)
                # closed mid-body: the rest never comes

            await asyncio.get_running_loop().run_in_executor(None, upload)
            cut = time.time()
            await until(lambda: any(n == "segment_end" for _, n, _ in events), 10)
            ended = next(t for t, n, _ in events if n == "segment_end")
            await asyncio.sleep(0.5)
            session = server.viewers[c.session].session
            idle = [session._segments, session._open, session._audio_seg]
            listener.cancel()
            await c.close()
            return events, idle, ended - cut

    with caplog.at_level("INFO", logger="lipstream"):
        events, idle, took = asyncio.run(main())
    ends = [d for _, n, d in events if n == "segment_end"]
    assert len(ends) == 1 and not ends[0]["interrupted"]
    assert ends[0]["playback_position"] == pytest.approx(len(sent) // 2 / 22050, abs=0.001)  # all that arrived
    assert idle == [deque(), [], None]  # nothing left open: idle
    cut = [r.getMessage() for r in caplog.records if "audio upload cut" in r.getMessage()]
    assert len(cut) == 1 and cut[0].endswith(f"audio upload cut after {len(sent)} bytes (Connection lost); what arrived is spoken"), cut
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # no traceback
    print(f"recovery: cut audio upload → its segment_end {1000 * took:.0f} ms after the cut")
