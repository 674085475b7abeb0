"""The served page in a real browser: Debian's headless Chromium, in a network namespace that has
only loopback, connects over WebRTC, presses Speak, and counts the frames and audio it decoded;
screenshots of the page show the avatar in the video element, its mouth moving while it speaks; pages
of other origins, and one that reaches the server under another name, cannot drive it."""
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
AVATAR = os.path.join(os.path.dirname(HERE), "stream", "assets", "astronaut.png")  # what `lipstream serve` shows
BOX = (67, 170, 177, 270)  # its face box (browser_check.py serves with it)
CHROMIUM = shutil.which("chromium")


def _loopback_namespace_reason() -> str | None:
    if CHROMIUM is None:
        return "Debian's chromium is not installed (apt-get install chromium)"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip (util-linux, iproute2) missing: no loopback-only namespace for the browser"
    probe = subprocess.run(["unshare", "-n", "--", "ip", "link", "set", "lo", "up"], capture_output=True)
    if probe.returncode != 0:
        return "cannot make a loopback-only network namespace here (needs root): " + probe.stderr.decode().strip()[:80]
    return None


REASON = _loopback_namespace_reason()


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_the_page_connects_speaks_and_decodes_in_chromium(tmp_path, video="lipstream"):
    """With the default video path; aiortc's own encoder is checked with an aiortc viewer (test_serve)."""
    script = (f"ip link set lo up && exec {sys.executable} {os.path.join(HERE, 'browser_check.py')} {CHROMIUM} {video} "
              f"{tmp_path}")
    proc = subprocess.run(["unshare", "-n", "--", "sh", "-c", script], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = json.loads(proc.stdout.strip().splitlines()[-1])
    assert state["stage"] == "done" and state["error"] is None, state
    idle, names = state["idle"], [e["name"] for e in state["events"]]
    assert idle["framesDecoded"] > 10 and idle["audioSamples"] > 0 and idle["audioEnergy"] == 0  # idle: silent
    assert state["framesDecoded"] - idle["framesDecoded"] > 25  # at least a second more of decoded video
    assert state["audioEnergy"] > 0  # the speech was heard
    assert names[:2] == ["speaking", "segment_end"] and state["latencyMs"] is not None
    # Another origin's form post and script are refused and nothing is said; an allowed origin's script
    # gets through its preflight and CORS; a page reaching the server under another name gets a 403.
    others = state["others"]
    assert others["evil"] == {"done": True, "script": "refused", "said": []}, others
    assert others["allowed"]["script"] == 202 and len(others["allowed"]["said"]) == 1, others
    assert others["allowed"]["said"][0].startswith("Said by a script on http://127.0.0.1:")
    assert json.loads(state["rebound"]) == {"error": "Host rebound.example:%s is refused: a server on a loopback "
                                                     "address answers only to a loopback name or address"
                                            % state["rebound_port"]}, state["rebound"]
    _check_the_picture(state["shots"], tmp_path)


def _shown(shot: dict, folder) -> np.ndarray:
    """The video element's pixels in a screenshot, at the avatar's size (grey levels)."""
    page = cv2.imread(str(folder / shot["file"]), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    k = shot["scale"]
    x, y, w, h = (int(round(shot[n] * k)) for n in ("x", "y", "width", "height"))
    avatar = cv2.imread(AVATAR, cv2.IMREAD_GRAYSCALE)
    assert shot["videoWidth"] == avatar.shape[1] and shot["videoHeight"] == avatar.shape[0], shot
    # The element is square like the avatar, so `object-fit: contain` fills it.
    return cv2.resize(page[y : y + h, x : x + w], avatar.shape[::-1], interpolation=cv2.INTER_AREA)


def _check_the_picture(shots: list[dict], folder) -> None:
    """Every screenshot shows the avatar (not black, its pixels correlate with the image); while it
    speaks the picture changes, in the mouth and nowhere else (not a frozen first frame)."""
    avatar = cv2.imread(AVATAR, cv2.IMREAD_GRAYSCALE).astype(np.float32)
    images = [_shown(s, folder) for s in shots]
    speaking = [image for shot, image in zip(shots, images) if shot["speaking"]]
    assert shots[0]["file"] == "idle.png" and len(speaking) >= 3, shots
    for shot, image in zip(shots, images):
        assert image.mean() > 40, f"{shot['file']} is dark: the video element shows no picture"
        assert np.corrcoef(image.ravel(), avatar.ravel())[0, 1] > 0.95, f"{shot['file']} does not show the avatar"
    t, b, l, r = BOX
    mouth = np.zeros(avatar.shape, bool)
    mouth[(t + b) // 2 : b, l + (r - l) // 4 : r - (r - l) // 4] = True  # the lower face's middle
    away = np.ones(avatar.shape, bool)
    away[t - 20 : b + 20, l - 20 : r + 20] = False
    pairs = [(np.abs(a - c)[mouth].mean(), np.abs(a - c)[away].mean())
             for i, a in enumerate(speaking) for c in speaking[i + 1 :]]
    in_mouth, elsewhere = max(pairs)
    assert in_mouth > 2.0, f"the mouth does not move between screenshots (at most {in_mouth:.2f} levels)"
    assert max(e for _, e in pairs) < 1.5 and in_mouth > 5 * elsewhere, pairs


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_the_transparent_page_draws_the_avatar_through_its_matte_over_the_body(tmp_path):
    """`/?transparent=1` over a magenta body, measured from a screenshot: magenta where the matte is 0,
    the face (not magenta) where it is 1."""
    sys.path.insert(0, HERE)
    from transparent_check import ROOT, matte

    shot = tmp_path / "page.png"
    script = (f"ip link set lo up && exec {sys.executable} {os.path.join(HERE, 'transparent_check.py')} "
              f"{CHROMIUM} {shot}")
    proc = subprocess.run(["unshare", "-n", "--", "sh", "-c", script], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = json.loads(proc.stdout.strip().splitlines()[-1])
    assert state["transparent"] and state["drawn"] > 10 and state["error"] is None, state
    image = cv2.imread(str(shot)).astype(int)
    assert image.shape == (512, 512, 3)
    m, avatar = matte(), cv2.imread(os.path.join(ROOT, "examples", "astronaut.png")).astype(int)
    far = cv2.distanceTransform((m == 0).astype(np.uint8), cv2.DIST_L2, 3) > 4
    inside = cv2.distanceTransform((m == 255).astype(np.uint8), cv2.DIST_L2, 3) > 4
    body = np.abs(image[far] - [255, 0, 255]).max(axis=1)  # BGR magenta
    assert np.median(body) <= 2 and (body <= 8).mean() > 0.99
    face = np.abs(image[inside] - avatar[inside]).mean(axis=1)
    assert face.mean() < 12  # the avatar through H.264 and the canvas
    assert (np.abs(image[inside] - [255, 0, 255]).max(axis=1) <= 8).mean() < 0.001
