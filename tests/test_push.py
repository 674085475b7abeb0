"""`lipstream stream --push`: RTMP and WHIP on loopback, a real listener at the other end.

RTMP is received by PyAV itself (`listen=1`) in a subprocess, so it can be killed mid-stream; WHIP
by a small aiohttp + aiortc endpoint here. Every wait has a timeout."""
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from stream.cli.main import main
from stream.serve.ice import offer_loopback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOX = ["--box", "67", "170", "177", "270"]
MOUTH = (148, 162, 205, 245)  # under the bundled avatar's upper teeth, where her mouth opens
SENTENCE = "Hello there, this is a test of the live push."

offer_loopback(only=True)  # WebRTC never leaves this machine

LISTENER = r"""
import av, json, sys, time, numpy as np
t, b, l, r = %r
out = lambda **kw: print(json.dumps(kw), flush=True)
first = None
try:
    c = av.open(sys.argv[1], options={"listen": "1", "timeout": "30"})
    out(open=time.time())
    for p in c.demux():
        now = time.time()
        if p.pts is None:
            continue
        for f in p.decode():
            if p.stream.type == "video":
                level = float(f.to_ndarray(format="gray")[t:b, l:r].mean())
                first = level if first is None else first
                out(k="v", t=now, pts=float(f.pts * f.time_base), key=p.is_keyframe, m=first - level)
            else:
                a = f.to_ndarray()
                out(k="a", t=now, pts=float(f.pts * f.time_base), n=f.samples, rms=float(np.sqrt(np.mean(a ** 2))))
except Exception as e:
    out(end=type(e).__name__)
""" % (MOUTH,)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Listener:
    """An RTMP ingest in a subprocess: every decoded frame, as JSON lines, read by a thread."""

    def __init__(self, url: str):
        self.proc = subprocess.Popen([sys.executable, "-c", LISTENER, url], stdout=subprocess.PIPE, text=True)
        self.items, self.ended = [], threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.items.append(json.loads(line))
        self.ended.set()

    def video(self):
        return [i for i in self.items if i.get("k") == "v"]

    def audio(self):
        return [i for i in self.items if i.get("k") == "a"]

    def kill(self):
        self.proc.kill()
        self.proc.wait(5)


def until(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def post(url, body=None):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(body or {}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def stream_cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stream.cli", "stream", *args, *BOX], cwd=ROOT, stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_rtmp_push_is_idle_then_speaks_in_real_time_with_audio_in_step():
    url = f"rtmp://127.0.0.1:{free_port()}/live/test-key"
    ingest = Listener(url)
    time.sleep(0.3)
    proc = stream_cli("--push", url, "--text-file", "-")
    try:
        until(lambda: len(ingest.video()) >= 25, 30, "a second of idle frames")
        said = time.time()
        proc.stdin.write(SENTENCE + "\n\n")  # a blank line ends the utterance
        proc.stdin.flush()
        until(lambda: any(v["m"] > 2 for v in ingest.video()), 10, "speech")
        until(lambda: ingest.video()[-1]["t"] > said + 1.0 and all(v["m"] < 1 for v in ingest.video()[-25:]), 15,
              "idle again")
        proc.stdin.close()  # the input ends: the command ends once everything is spoken
        assert proc.wait(15) == 0, proc.stderr.read()
        assert ingest.ended.wait(10)
    finally:
        proc.kill()
        ingest.kill()
    video, audio = ingest.video(), ingest.audio()
    span = video[-1]["pts"] - video[0]["pts"]
    assert len(video) >= 0.95 * (span * 25 + 1), f"{len(video)} frames for {span:.2f} s"
    # Paced in real time: every frame arrives at its timestamp plus a steady delay (not in bursts).
    # (The listener reads ahead before its open returns: the first frames' arrival times are late.)
    settled = [v["t"] - v["pts"] for v in video[len(video) // 2 :]]
    assert max(settled) - min(settled) < 0.25, f"arrival jitter {max(settled) - min(settled):.3f} s"
    # Audio continuous over the same time.
    for a, b in zip(audio, audio[1:]):
        assert abs(b["pts"] - (a["pts"] + a["n"] / 48000)) <= 0.002, (a, b)
    assert abs((audio[-1]["pts"] + audio[-1]["n"] / 48000) - (video[-1]["pts"] + 0.04)) < 0.1
    # Speech: the mouth opens when the sound starts (timestamps within one frame), then idle.
    mouth = next(v for v in video if v["m"] > 2)
    sound = next(a for a in audio if a["rms"] > 0.01)
    assert abs(mouth["pts"] - sound["pts"]) <= 0.040 + 1024 / 48000, (mouth, sound)
    assert video[0]["key"] and all(v["m"] < 1 for v in video[-10:])
    keys = [v["pts"] for v in video if v["key"]]
    assert all(b - a <= 2.0 + 1e-3 for a, b in zip(keys + [video[-1]["pts"]], keys[1:] + [video[-1]["pts"]])), keys
    print(f"\nRTMP say -> first speaking frame at the listener: {1000 * (mouth['t'] - said):.0f} ms; "
          f"first loud audio: {1000 * (sound['t'] - said):.0f} ms")


def test_rtmp_ingest_killed_and_restarted_gets_the_stream_again():
    port = free_port()
    url = f"rtmp://127.0.0.1:{port}/live/test-key"
    first = Listener(url)
    time.sleep(0.3)
    control = free_port()
    proc = stream_cli("--push", url, "--control", f"127.0.0.1:{control}")  # no input: on air until stopped
    try:
        until(lambda: len(first.video()) >= 25, 30, "the first connection")
        first.kill()
        time.sleep(1.0)
        second = Listener(url)
        try:
            until(lambda: len(second.video()) >= 25, 20, "frames on the second connection")
            said = post(f"http://127.0.0.1:{control}/sessions/broadcast/say", {"text": "Back again."})
            assert said == (202, {"segment": 1})
            until(lambda: any(v["m"] > 2 for v in second.video()), 10, "speech said through --control")
        finally:
            second.kill()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 143
        err = proc.stderr.read()
    finally:
        proc.kill()
        first.kill()
    assert second.video()[0]["key"]
    assert err.count("connection lost") + err.count("cannot connect") >= 1 and "retrying in" in err, err
    assert "(connection 2)" in err, err
    # The session kept its clock throughout: its frame index went on while the ingest was away.
    lost = int(re.search(r"connection lost at session frame (\d+)", err).group(1))
    back = int(re.search(r"on air at \S+ from session frame (\d+) \(connection 2\)", err).group(1))
    assert back - lost >= 25 * 1.0, (lost, back)  # at least the second the ingest was down
    assert err.endswith("lipstream: terminated\n") and "Traceback" not in err, err
    print(f"\nreconnect: lost at session frame {lost}, on air again from frame {back} ({(back - lost) / 25:.2f} s later)")


def test_serve_push_broadcasts_beside_the_browser_sessions_and_its_api_drives_it():
    url = f"rtmp://127.0.0.1:{free_port()}/live/test-key"
    ingest = Listener(url)
    time.sleep(0.3)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "serve", "--port", str(port), "--push", url, *BOX],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        until(lambda: len(ingest.video()) >= 25, 30, "the broadcast")
        assert post(f"{base}/sessions/broadcast/say", {"text": SENTENCE}) == (202, {"segment": 1})
        until(lambda: any(v["m"] > 2 for v in ingest.video()), 10, "speech")
        assert post(f"{base}/sessions/broadcast/interrupt") == (200, {"interrupted": True})
        n = len(ingest.video())
        until(lambda: len(ingest.video()) > n + 10, 5, "frames after the interrupt")
        assert all(v["m"] < 1 for v in ingest.video()[n + 5 :]), "still speaking after the interrupt"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        assert ingest.ended.wait(10) and ingest.items[-1] == {"end": "OSError"}  # the pusher closed the stream
        err = proc.stderr.read()
    finally:
        proc.kill()
        ingest.kill()
    assert "on air at" in err and "ended after" in err and "Traceback" not in err, err


class WhipEndpoint:
    """A WHIP ingest: POST an offer (application/sdp, bearer token) → 201 answer + Location; DELETE ends it."""

    def __init__(self, token="s3cret", busy=0):
        self.token, self.pcs, self.deleted, self.busy = token, {}, [], busy
        self.video, self.audio = [], []
        self.app = web.Application()
        self.app.add_routes([web.post("/whip", self.post), web.delete("/whip/{id}", self.delete)])

    async def post(self, request):
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=401, text="bad token")
        assert request.content_type == "application/sdp"
        if self.busy:
            self.busy -= 1
            return web.Response(status=503, text="try again")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

        @pc.on("track")
        def on_track(track):
            async def read():
                try:
                    while True:
                        frame = await track.recv()
                        (self.audio if track.kind == "audio" else self.video).append((time.time(), frame))
                except MediaStreamError:
                    pass
            asyncio.ensure_future(read())

        await pc.setRemoteDescription(RTCSessionDescription(sdp=await request.text(), type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        rid = f"r{len(self.pcs) + 1}"
        self.pcs[rid] = pc
        return web.Response(status=201, text=pc.localDescription.sdp, content_type="application/sdp",
                            headers={"Location": f"/whip/{rid}"})

    async def delete(self, request):
        self.deleted.append(request.match_info["id"])
        await self.pcs[request.match_info["id"]].close()
        return web.Response(status=200)


def mouth_of(frame) -> float:
    t, b, l, r = MOUTH
    return float(frame.to_ndarray(format="gray")[t:b, l:r].mean())


async def serve_whip(ingest) -> tuple[web.AppRunner, str]:
    """The test's WHIP endpoint on a free loopback port; its runner (to clean up) and URL."""
    runner = web.AppRunner(ingest.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/whip"


def test_whip_push_sends_video_and_audio_and_deletes_its_session_at_the_end():
    async def run():
        ingest = WhipEndpoint(busy=1)
        runner, url = await serve_whip(ingest)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stream.cli", "stream", "--push", url, "--push-token", "s3cret", "--ice-loopback-only",
            "--text-file", "-", *BOX, cwd=ROOT, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while len(ingest.video) < 25:
                assert time.monotonic() < deadline, "no video"
                await asyncio.sleep(0.05)
            idle = mouth_of(ingest.video[-1][1])
            said = time.time()
            proc.stdin.write((SENTENCE + "\n\n").encode())
            await proc.stdin.drain()
            while not any(t > said and idle - mouth_of(f) > 2 for t, f in ingest.video[-5:]):
                assert time.monotonic() < deadline + 10, "no speech"
                await asyncio.sleep(0.02)
            speaking = next(t for t, f in ingest.video if t > said and idle - mouth_of(f) > 2)
            proc.stdin.close()
            code = await asyncio.wait_for(proc.wait(), 20)
            err = (await proc.stderr.read()).decode()
            await asyncio.sleep(0.2)
        finally:
            if proc.returncode is None:
                proc.kill()
            await runner.cleanup()
            for pc in ingest.pcs.values():
                await pc.close()
        return ingest, code, err, said, speaking

    ingest, code, err, said, speaking = asyncio.run(run())
    assert code == 0, err
    assert ingest.deleted == ["r1"], err
    assert "cannot connect (503 Service Unavailable: try again); retrying in 0.5 s" in err, err
    assert len(ingest.video) > 50 and len(ingest.audio) > 100
    loud = [t for t, f in ingest.audio if t > said and float(abs(f.to_ndarray()).mean()) > 300]
    assert loud, "no speech in the audio"
    print(f"\nWHIP say -> first speaking frame at the endpoint: {1000 * (speaking - said):.0f} ms; "
          f"first loud audio: {1000 * (loud[0] - said):.0f} ms")


def test_a_refusal_that_cannot_succeed_is_one_error_line_and_exit_2(capsys):
    async def run():
        ingest = WhipEndpoint(token="right")
        runner, url = await serve_whip(ingest)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stream.cli", "-q", "stream", "--push", url, "--push-token", "wrong",
            "--ice-loopback-only", "--text", "Hello.", *BOX, cwd=ROOT, stderr=subprocess.PIPE)
        try:
            code = await asyncio.wait_for(proc.wait(), 30)
            err = (await proc.stderr.read()).decode()
        finally:
            if proc.returncode is None:
                proc.kill()
            await runner.cleanup()
        return url, code, err

    url, code, err = asyncio.run(run())
    assert code == 2
    assert err == f"lipstream: error: the WHIP endpoint {url} refused the stream: 401 Unauthorized (check --push-token)\n"
    assert main(["stream", "--push", "ftp://example.invalid/live/x", "--text", "Hi."]) == 2
    assert main(["stream", "--push", "rtmp://127.0.0.1/live", "--text", "Hi."]) == 2
    out = capsys.readouterr().err.splitlines()
    assert out == ["lipstream: error: push URL ftp://example.invalid/live/x: the scheme must be rtmp://, rtmps:// (RTMP) "
                   "or http(s):// (a WHIP endpoint)",
                   "lipstream: error: push URL rtmp://127.0.0.1/live needs an application and a stream name: "
                   "rtmp://HOST[:PORT]/APP/STREAM"]


class Proxy:
    """A TCP relay to an RTMP listener (`target`, a port) for each connection it accepts; with
    `target` None it accepts and never reads or answers, as an ingest whose process hangs or whose
    network path silently drops everything."""

    def __init__(self, target):
        self.target, self.accepted = target, []  # (time, target) of each connection
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen()
        self.port = self.server.getsockname()[1]
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            target = self.target
            self.accepted.append((time.monotonic(), target))
            self.held.append(client)
            if target is not None:
                upstream = socket.create_connection(("127.0.0.1", target))
                self.held.append(upstream)
                threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
                threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        while data := src.recv(65536):
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self):
        self.server.close()
        for s in self.held:
            s.close()


def metric(url, name):
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


def children(pid, name):
    """Pids of `pid`'s child processes whose command line holds `name`."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except (OSError, ValueError):
            continue
        if ppid == pid and name in cmd:
            found.append(int(entry))
    return found


def test_an_rtmp_ingest_that_stops_answering_never_holds_the_clock_and_is_reconnected():
    """The connection stops mid-stream (its writer, FFmpeg in the flv_out process, is stopped as a
    write that never returns is), then every new connection is accepted and never answered, then the
    ingest is back. Each failure is one log line after 5 s; the session's clock never stops."""
    first_port = free_port()
    first = Listener(f"rtmp://127.0.0.1:{first_port}/live/test-key")
    second = None
    time.sleep(0.3)
    proxy = Proxy(first_port)
    control = free_port()
    metrics = f"http://127.0.0.1:{control}/metrics"
    proc = stream_cli("--push", f"rtmp://127.0.0.1:{proxy.port}/live/test-key", "--control", f"127.0.0.1:{control}")
    lines = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), line.rstrip()) for line in proc.stderr))
    reader.start()
    try:
        until(lambda: len(first.video()) >= 25, 30, "the first connection")
        writer = children(proc.pid, "stream.push.flv_out")
        assert len(writer) == 1
        proxy.target = None  # from now on the ingest accepts and never answers
        os.kill(writer[0], signal.SIGSTOP)
        stopped = time.monotonic()
        sent = [(stopped, metric(metrics, "lipstream_frames_sent_total"))]
        while time.monotonic() - stopped < 16:
            time.sleep(0.5)
            sent.append((time.monotonic(), metric(metrics, "lipstream_frames_sent_total")))
        second_port = free_port()
        second = Listener(f"rtmp://127.0.0.1:{second_port}/live/test-key")
        time.sleep(0.3)
        proxy.target, healed = second_port, time.monotonic()
        until(lambda: len(second.video()) >= 25, 30, "frames on the next connection")
        back = time.monotonic()
        sent.append((back, metric(metrics, "lipstream_frames_sent_total")))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 143
        reader.join(10)
    finally:
        proc.kill()
        first.kill()
        if second is not None:
            second.kill()
        proxy.close()
    (t0, n0), (t1, n1) = sent[0], sent[-1]
    assert n1 - n0 >= 0.9 * 25 * (t1 - t0), sent  # 25 frames a second throughout
    steps = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(sent, sent[1:])]
    assert min(steps) > 15, steps  # never held, not even for half a second
    err = "\n".join(line for _, line in lines)
    shown = r"lipstream: push: rtmp://127\.0\.0\.1:\d+/live/te…: "
    lost = [(t, line) for t, line in lines if "connection lost" in line]
    assert len(lost) == 1 and re.fullmatch(shown + r"connection lost at session frame \d+ \(the ingest stopped "
                                           r"answering for 5 s\); retrying in 0\.5 s", lost[0][1]), err
    dark = [t for t, target in proxy.accepted if target is None]
    unanswered = [(t, line) for t, line in lines if "cannot connect" in line]
    assert len(unanswered) == len(dark) >= 2, err  # one line for each connection that was never answered
    assert all(re.fullmatch(shown + r"cannot connect \(the ingest did not answer for 5 s\); retrying in [\d.]+ s", line)
               for _, line in unanswered), err
    waits = [t - a for (t, _), a in zip(unanswered, dark)]
    assert all(4.5 < w < 7.5 for w in waits), waits
    assert "(connection 2)" in err and "Traceback" not in err, err
    print(f"\nrecovery: writer stuck → connection lost after {lost[0][0] - stopped:.1f} s; each unanswered connect "
          f"given up after {', '.join(f'{w:.1f}' for w in waits)} s; ingest back → on air again "
          f"{next(t for t, target in proxy.accepted if target is not None and t > healed) - healed:.1f} s later "
          f"(25 frames there after {back - healed:.1f} s)")
