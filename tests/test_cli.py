"""The command line as a user meets it: start-up, flags in either place, voices, Ctrl-C and SIGTERM."""
import _thread
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT

from stream import render
from stream.cli.main import main
from stream.errors import LipstreamError
from stream.tts.espeak import EspeakTTS, find_voice, voice_for

BOX = (67, 170, 177, 270)


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_help_and_setting_errors_come_before_torch_loads():
    probe = ("import sys\nfrom stream.cli import main\n"
             "for argv in (['--help'], ['render', '--help'], ['render', '--fps', '0', '--text', 'hi'],"
             " ['render', '--text', '  '], ['render', '--box', '10', '5', '0', '0'], ['bench', '--help']):\n"
             "    try:\n        code = main(argv)\n    except SystemExit as e:\n        code = e.code\n"
             "    print('RESULT', argv[0], code, 'torch' in sys.modules)\n")
    proc = _python(probe)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert [code for _, code, _ in lines] == ["0", "0", "2", "2", "2", "0"]
    assert all(imported == "False" for _, _, imported in lines), lines  # torch was never imported
    assert "fps must be a whole number from 1 to 120, not 0" in proc.stderr
    assert "empty text: nothing to say" in proc.stderr


def test_quiet_works_before_or_after_the_command(tmp_path, capsys):
    assert main(["render", "-q", "--text", "Hi.", "-o", str(tmp_path / "a.mp4")]) == 0
    assert main(["-q", "render", "--text", "Hi.", "-o", str(tmp_path / "b.mp4")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and all("since the process started" in line for line in out)


def test_box_errors_say_what_is_wrong(tmp_path, capsys):
    def error(*box):
        assert main(["render", "--text", "hi", "--box", *map(str, box), "-o", str(tmp_path / "o.mp4")]) == 2
        return capsys.readouterr().err.strip()

    assert error(10, 5, 0, 0) == ("lipstream: error: --box 10 5 0 0: the box is TOP BOTTOM LEFT RIGHT, "
                                  "so top must be less than bottom and left less than right")
    assert error(0, 600, 0, 100) == "lipstream: error: --box 0 600 0 100 reaches outside astronaut.png, which is 512×512"


def test_voices_are_listed_checked_and_chosen_by_script(capsys, caplog):
    assert main(["voices", "de"]) == 0
    assert "German" in capsys.readouterr().out
    with pytest.raises(LipstreamError, match=r"^unknown eSpeak voice 'vulcan': `lipstream voices` lists them"):
        EspeakTTS("vulcan")
    assert find_voice("en-us").identifier == "gmw/en-US" and find_voice("English (America)").languages[0] == "en-us"
    assert find_voice("cmn").identifier == "sit/cmn"
    english = find_voice("en-us")
    assert voice_for("你好，世界。", english).languages[0] == "cmn"
    assert voice_for("Привет, мир.", english).languages[0] == "ru"
    assert voice_for("Hello, world.", english) is english
    with caplog.at_level("WARNING", logger="lipstream"):
        EspeakTTS("en-us").check("你好，世界。今天天气很好。")
    assert "mostly in Han script" in caplog.text and "--voice cmn" in caplog.text
    caplog.clear()
    chunks, auto = [], EspeakTTS("auto")
    auto.check("你好，世界。")  # auto chooses: no warning
    auto.speak("你好，世界。", chunks.append)
    english_chunks = []
    EspeakTTS("en-us").speak("你好，世界。", english_chunks.append)
    assert not caplog.text and sum(map(len, chunks)) != sum(map(len, english_chunks))  # another voice read it


def test_an_interrupted_render_stops_every_stage_and_leaves_nothing(tmp_path):
    """Ctrl-C at random moments: the KeyboardInterrupt reaches the caller only after every stage
    thread has ended (one left running into interpreter exit aborts it), and no file is left."""
    rng = random.Random(5)
    for i in range(8):
        before = set(threading.enumerate())
        timer = threading.Timer(rng.uniform(0.0, 0.5), _thread.interrupt_main)
        timer.start()
        try:
            render(str(tmp_path / f"r{i}.mp4"), text="One two three four five six seven eight nine ten.", box=BOX)
            timer.cancel()
            continue  # finished before the interrupt
        except KeyboardInterrupt:
            pass
        finally:
            timer.join()
        left = [t for t in set(threading.enumerate()) - before if t.name in
                ("tts", "schedule", "lipsync", "compose", "encode", "mp4", "source")]
        assert not left, left
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".r{i}.mp4")]


@pytest.mark.parametrize("signals, code", [((signal.SIGINT,), 130), ((signal.SIGINT, signal.SIGINT), 130),
                                           ((signal.SIGTERM,), 143)])
def test_ctrl_c_and_sigterm_exit_cleanly(tmp_path, signals, code):
    """Once or twice (an impatient user; `timeout` also signals twice: the process and its group)."""
    out = tmp_path / "long.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "-q", "render", "--text-file",
                             os.path.join(ROOT, "examples", "bench.txt"), "--box", *map(str, BOX), "-o", str(out)],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".long.mp4.*.part")) and time.monotonic() < deadline:
        time.sleep(0.05)  # until the render is writing its file: threads running, frames flowing
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.05)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "terminate called" not in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
