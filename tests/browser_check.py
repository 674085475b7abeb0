"""Run inside a loopback-only network namespace (see test_page.py): serve, open the page in headless
Chromium, type a sentence, press Speak, and print what the page itself counted, as JSON. Then pages
of two other origins (one of them allowed) and a DNS-rebinding name try to drive the server. With a
folder, screenshots of the page (DevTools' Page.captureScreenshot) idle and while the avatar speaks
go there, each listed with the video element's place on the page."""
import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

import aiohttp
from aiohttp import web

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stream.config import make_config  # noqa: E402
from stream.serve.app import Server  # noqa: E402
from stream.serve.ice import offer_loopback  # noqa: E402

CDP_PORT = 9222
SHOT_EVERY = 0.15  # seconds between screenshots while the avatar speaks
VIDEO_PLACE = ("(() => { const v = document.getElementById('video'), r = v.getBoundingClientRect();"
               " return JSON.stringify({x: r.x, y: r.y, width: r.width, height: r.height,"
               " videoWidth: v.videoWidth, videoHeight: v.videoHeight, scale: window.devicePixelRatio,"
               " currentTime: v.currentTime}); })()")
REBOUND = "rebound.example"  # a name the browser resolves to 127.0.0.1, as a DNS-rebinding page's does

# A page of another origin: a form-like (simple, no-cors) request and a script's JSON request, each
# trying to make the avatar speak in the session `?session=` names on the server `?target=`.
OTHER_PAGE = """<!doctype html><script>
const q = new URLSearchParams(location.search), url = `${q.get("target")}sessions/${q.get("session")}/say`;
window.result = {done: false};
(async () => {
  await fetch(url, {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
                    body: JSON.stringify({text: "Said by a form on " + location.origin})});
  try {
    const r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                body: JSON.stringify({text: "Said by a script on " + location.origin})});
    result.script = r.status;
  } catch (e) { result.script = "refused"; }
  result.done = true;
})();
</script>"""


class Page:
    """Just enough of the Chrome DevTools Protocol: navigate and evaluate."""

    def __init__(self, ws):
        self.ws, self.n = ws, 0

    async def call(self, method, **params):
        self.n += 1
        await self.ws.send_json({"id": self.n, "method": method, "params": params})
        while True:
            reply = await self.ws.receive_json()
            if reply.get("id") == self.n:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    async def eval(self, expression):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")


def launch(chromium: str, profile: str, *extra: str) -> subprocess.Popen:
    """Headless Chromium with DevTools on CDP_PORT, WebRTC allowed on loopback, in its own process group."""
    return subprocess.Popen([
        chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={profile}", *extra,
        f"--remote-debugging-port={CDP_PORT}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "TMPDIR": profile})  # its singleton socket folder goes with the profile


async def first_page(http) -> str:
    """The DevTools WebSocket of the browser's first tab, once it answers."""
    for _ in range(100):
        try:
            async with http.get(f"http://127.0.0.1:{CDP_PORT}/json/list") as r:
                targets = [t for t in await r.json() if t["type"] == "page"]
                if targets:
                    return targets[0]["webSocketDebuggerUrl"]
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("chromium's DevTools did not answer")


async def _site(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


async def screenshot(page: Page, folder: str, name: str) -> dict:
    """The page as a PNG in `folder`, and where the video element was on it."""
    place = json.loads(await page.eval(VIDEO_PLACE))
    shot = await page.call("Page.captureScreenshot", format="png")
    with open(os.path.join(folder, name), "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    return {"file": name, **place}


async def main(chromium: str, video: str, shots: str | None = None) -> dict:
    offer_loopback(only=True)
    others = web.Application()
    others.add_routes([web.get("/", lambda request: web.Response(text=OTHER_PAGE, content_type="text/html"))])
    allowed_runner, allowed = await _site(others)
    evil_runner, evil = await _site(others)
    server = Server(make_config(box=(67, 170, 177, 270)), video=video, allow_origins=[f"http://127.0.0.1:{allowed}"])
    runner, port = await _site(server.app())
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = launch(chromium, profile, "--window-size=800,800", f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1")
        try:
            async with aiohttp.ClientSession() as http:
                async with http.ws_connect(await first_page(http), max_msg_size=0) as ws:
                    page = Page(ws)
                    await page.call("Page.navigate", url=url)
                    state = {}
                    for _ in range(100):
                        await asyncio.sleep(0.1)
                        state = await page.eval("window.lipstream && JSON.stringify(window.lipstream)")
                        state = json.loads(state) if state else {}
                        if state.get("connection") == "connected" or state.get("error"):
                            break
                    if state.get("connection") != "connected":
                        return {"stage": "connect", **state}
                    await asyncio.sleep(1.0)
                    idle = json.loads(await page.eval("JSON.stringify(window.lipstream)"))
                    taken = [{**await screenshot(page, shots, "idle.png"), "speaking": False}] if shots else []
                    await page.eval("document.getElementById('text').value = 'Hello from the browser test.';"
                                    "document.getElementById('speak').click(); true")
                    started = time.monotonic()
                    while time.monotonic() - started < 4.0:
                        await asyncio.sleep(SHOT_EVERY if shots else 0.25)
                        state = json.loads(await page.eval("JSON.stringify(window.lipstream)"))
                        if any(e["name"] == "segment_end" for e in state["events"]):
                            break
                        if shots and state["speaking"]:
                            taken.append({**await screenshot(page, shots, f"speaking-{len(taken)}.png"), "speaking": True})
                    await asyncio.sleep(0.5)
                    state = json.loads(await page.eval("JSON.stringify(window.lipstream)"))
                    others = await _other_pages(http, server, state["session"], url, {"allowed": allowed, "evil": evil})
                    rebound = await _open(http, f"http://{REBOUND}:{port}/healthz", "document.body.innerText")
                    return {"stage": "done", "idle": idle, **state, "others": others, "rebound": rebound,
                            "rebound_port": port, "shots": taken}
        finally:
            os.killpg(browser.pid, signal.SIGTERM)  # the browser and its helper processes
            browser.wait(timeout=10)
            for r in (runner, allowed_runner, evil_runner):
                await r.cleanup()


async def _other_pages(http, server: Server, session: str, target: str, ports: dict) -> dict:
    """For each other origin: what its script saw, and the texts that reached the session's `say`."""
    said, found = [], {}
    spoken = server.viewers[session].session
    say = spoken.say
    spoken.say = lambda text, *a, **kw: said.append(text) or say(text, *a, **kw)
    for name, port in ports.items():
        before = len(said)
        page_url = f"http://127.0.0.1:{port}/?session={session}&target={target}"
        script = await _open(http, page_url, "window.result.done && JSON.stringify(window.result)")
        found[name] = {**json.loads(script or "{}"), "said": said[before:]}
    return found


async def _open(http, url: str, expression: str):
    """`expression`'s first truthy value in a new tab at `url` (None after 10 s); the tab is closed."""
    async with http.put(f"http://127.0.0.1:{CDP_PORT}/json/new?{urllib.parse.quote(url, safe='')}") as r:
        target = await r.json()
    try:
        async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            page = Page(ws)
            for _ in range(100):
                value = await page.eval(expression)
                if value:
                    return value
                await asyncio.sleep(0.1)
    finally:
        async with http.get(f"http://127.0.0.1:{CDP_PORT}/json/close/{target['id']}"):
            pass
    return None


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:4]))))
