from stream.cli.main import main


def test_doctor_reports_where_each_stage_ran(capsys):
    assert main(["-q", "doctor", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "torch: " in out and "cpu bf16: " in out
    assert "video encoder: libx264 (NVENC: the frames are on the CPU)" in out
    stages = out.split("stages ran on:")[1].strip().splitlines()
    assert [s.split()[0] for s in stages] == ["tts", "schedule", "lipsync", "compose", "encode", "aac", "file"]
    assert all(s.rstrip().endswith("(cpu)") for s in stages)
