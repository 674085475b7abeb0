"""Run inside a loopback-only network namespace (see test_page.py): serve an RGBA avatar, open
`/?transparent=1` in headless Chromium over a magenta page body (an OBS scene's stand-in), wait
for the page to draw frames through the matte, and write a screenshot of the 512×512 viewport
to the path given; print the page's state as JSON."""
import asyncio
import base64
import json
import os
import signal
import sys
import tempfile

import aiohttp
import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from browser_check import Page, _site, first_page, launch  # noqa: E402

from stream.config import make_config  # noqa: E402
from stream.serve.app import Server  # noqa: E402
from stream.serve.ice import offer_loopback  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def matte(h=512, w=512):
    """255 inside a circle around the face, 0 outside, a 12-px ramp (tests/test_alpha.py's)."""
    yy, xx = np.mgrid[:h, :w]
    return np.clip((230 - np.hypot(yy - h / 2, xx - w / 2)) * 255 / 12, 0, 255).astype(np.uint8)


async def main(chromium: str, shot: str) -> dict:
    offer_loopback(only=True)
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        avatar = os.path.join(profile, "rgba.png")
        cv2.imwrite(avatar, np.dstack([cv2.imread(os.path.join(ROOT, "examples", "astronaut.png")), matte()]))
        server = Server(make_config(avatar=avatar, box=(67, 170, 177, 270)))
        runner, port = await _site(server.app())
        browser = launch(chromium, profile, "--hide-scrollbars")
        try:
            async with aiohttp.ClientSession() as http:
                async with http.ws_connect(await first_page(http), max_msg_size=0) as ws:
                    page = Page(ws)
                    await page.call("Emulation.setDeviceMetricsOverride", width=512, height=512, deviceScaleFactor=1,
                                    mobile=False)
                    await page.call("Page.navigate", url=f"http://127.0.0.1:{port}/?transparent=1")
                    state = {}
                    for _ in range(150):
                        await asyncio.sleep(0.1)
                        state = json.loads(await page.eval("window.lipstream && JSON.stringify(window.lipstream)")
                                           or "{}")
                        if state.get("drawn", 0) > 10 or state.get("error"):
                            break
                    # The scene behind the page: a magenta body under the transparent canvas.
                    await page.eval("document.body.style.background = 'rgb(255, 0, 255)'; true")
                    await asyncio.sleep(0.5)
                    state = json.loads(await page.eval("JSON.stringify(window.lipstream)"))
                    png = await page.call("Page.captureScreenshot", format="png")
                    with open(shot, "wb") as f:
                        f.write(base64.b64decode(png["data"]))
                    return state
        finally:
            os.killpg(browser.pid, signal.SIGTERM)
            browser.wait(timeout=10)
            await runner.cleanup()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
