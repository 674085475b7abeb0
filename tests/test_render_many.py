"""`lipstream render-many` on a local Ray instance with two workers."""
import json
import os

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'lipstream[ray]')")

from stream.cli.main import main  # noqa: E402
from stream.graphs.render_many import read_jobs  # noqa: E402

BOX = [67, 170, 177, 270]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=1, include_dashboard=False, object_store_memory=80 * 1024 * 1024, logging_level="WARNING")
    yield
    ray.shutdown()


def write_jobs(folder, lines):
    path = folder / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_batch_bad_line_and_resume(tmp_path, local_ray, capsys):
    jobs = write_jobs(tmp_path, [
        json.dumps({"text": "Hello there.", "output": "a.mp4", "box": BOX}),
        json.dumps({"text": "Good morning.", "output": "out/b.mp4", "box": BOX, "fps": 24}),
        '{"text": "no closing brace", "output": "c.mp4"',
        "",
        json.dumps({"text": "See you.", "output": "d.mp4", "box": BOX, "voice": "en-gb"}),
        json.dumps({"audio": "missing.wav", "output": "e.mp4", "box": BOX}),  # fails in its worker
    ])
    (tmp_path / "out").mkdir()
    report = tmp_path / "results.jsonl"
    # One worker: Ray's processes cost this 2-core machine more than the jobs (29 s with two on a
    # loaded run); the spreading over workers is Ray's, what is tested here is lipstream's part.
    assert main(["render-many", jobs, "--workers", "1", "--json", str(report)]) == 1
    out = capsys.readouterr().out
    assert "line 3: FAILED: not valid JSON" in out
    assert "line 6: FAILED:" in out and "missing.wav" in out
    assert "3 rendered, 0 skipped, 2 failed (line 3, 6)" in out
    for name in ("a.mp4", "out/b.mp4", "d.mp4"):
        assert (tmp_path / name).stat().st_size > 1000
    assert not (tmp_path / "e.mp4").exists() and not (tmp_path / "c.mp4").exists()
    results = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(r["line"], r["status"]) for r in results] == [(1, "done"), (2, "done"), (3, "failed"), (5, "done"),
                                                            (6, "failed")]
    assert len({r["pid"] for r in results if r["status"] == "done"}) == 1  # one worker kept its model for every job
    assert all(r["frames"] > 10 for r in results if r["status"] == "done")

    # Again: the finished ones are skipped, the failed ones tried again (and fail again).
    before = {n: os.path.getmtime(tmp_path / n) for n in ("a.mp4", "out/b.mp4", "d.mp4")}
    assert main(["render-many", jobs]) == 1
    out = capsys.readouterr().out
    assert "3 output(s) exist, skipped" in out
    assert "0 rendered, 3 skipped, 2 failed (line 3, 6)" in out
    assert before == {n: os.path.getmtime(tmp_path / n) for n in before}


def test_job_lines_are_checked_before_any_work(tmp_path):
    jobs = write_jobs(tmp_path, [
        json.dumps({"output": "a.mp4"}),
        json.dumps({"text": "x", "audio": "y.wav", "output": "b.mp4"}),
        json.dumps({"text": "x", "output": "c.mp4", "fps": "fast"}),
        json.dumps({"text": "x", "output": "d.mp4", "colour": "red"}),
        json.dumps(["text", "output"]),
        json.dumps({"text": "x", "output": "e.mp4"}),
        json.dumps({"text": "y", "output": "e.mp4"}),
    ])
    good, bad = read_jobs(jobs)
    assert [j["line"] for j in good] == [6]
    assert good[0]["output"] == str(tmp_path / "e.mp4")  # relative to the jobs file
    errors = {b["line"]: b["error"] for b in bad}
    assert errors[1].startswith("give exactly one of text, text_file, audio")
    assert errors[2].startswith("give exactly one of")
    assert "fps must be a whole number" in errors[3]
    assert "unknown key 'colour'" in errors[4]
    assert errors[5] == "a job is a JSON object"
    assert errors[7] == f"output {tmp_path / 'e.mp4'} is also written by line 6"
