"""The served page in a real browser: Debian's headless Chromium, in a network namespace that has
only loopback, connects over WebRTC, presses Speak, and counts the frames and audio it decoded; pages
of other origins, and one that reaches the server under another name, cannot drive it."""
import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
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
def test_the_page_connects_speaks_and_decodes_in_chromium(video="lipstream"):
    """With the default video path; aiortc's own encoder is checked with an aiortc viewer (test_serve)."""
    script = f"ip link set lo up && exec {sys.executable} {os.path.join(HERE, 'browser_check.py')} {CHROMIUM} {video}"
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
