"""Run inside a loopback-only network namespace (see test_page.py): serve, open the page in headless
Chromium, type a sentence, press Speak, and print what the page itself counted, as JSON."""
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import aiohttp
from aiohttp import web

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stream.config import make_config  # noqa: E402
from stream.serve.app import Server  # noqa: E402
from stream.serve.ice import offer_loopback  # noqa: E402

CDP_PORT = 9222


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


async def main(chromium: str, video: str) -> dict:
    offer_loopback(only=True)
    server = Server(make_config(box=(67, 170, 177, 270)), video=video)
    runner = web.AppRunner(server.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = subprocess.Popen([
            chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
            "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={profile}",
            f"--remote-debugging-port={CDP_PORT}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "TMPDIR": profile})  # its singleton socket folder goes with the profile
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(100):
                    try:
                        async with http.get(f"http://127.0.0.1:{CDP_PORT}/json/list") as r:
                            targets = [t for t in await r.json() if t["type"] == "page"]
                            if targets:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
                async with http.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
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
                    await page.eval("document.getElementById('text').value = 'Hello from the browser test.';"
                                    "document.getElementById('speak').click(); true")
                    started = time.monotonic()
                    while time.monotonic() - started < 4.0:
                        await asyncio.sleep(0.25)
                        state = json.loads(await page.eval("JSON.stringify(window.lipstream)"))
                        if any(e["name"] == "segment_end" for e in state["events"]):
                            break
                    await asyncio.sleep(0.5)
                    state = json.loads(await page.eval("JSON.stringify(window.lipstream)"))
                    return {"stage": "done", "idle": idle, **state}
        finally:
            os.killpg(browser.pid, signal.SIGTERM)  # the browser and its helper processes
            browser.wait(timeout=10)
            await runner.cleanup()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
