"""A batch's record: one JSONL line per song and run, the failures CSV (a manifest to retry them), the
progress bar's figures and the closing line."""

from __future__ import annotations

import datetime
import json
import os
import time
from pathlib import Path

from cunet.batch.listing import read_manifest
from cunet.batch.report import Report


def test_lines_totals_failures_and_summary(tmp_path: Path, capsys) -> None:
    report = Report(tmp_path / "r" / "report.jsonl", tmp_path / "f.csv", 3, "job-1", quiet=False)
    report.song("a.wav", "ok", {"vocals": "out/a/vocals.wav"}, 2.5, audio_seconds=180.0, attempts=1)
    report.song("b.wav", "skipped", {"vocals": "out/b/vocals.wav"})
    report.song("c,1.wav", "failed", error="c,1.wav: cannot decode audio", attempts=3)
    lines = [json.loads(x) for x in (tmp_path / "r" / "report.jsonl").read_text().splitlines()]
    finished = datetime.datetime.fromisoformat(lines[0].pop("finished").replace("Z", "+00:00"))
    assert abs(finished.timestamp() - time.time()) < 60
    assert lines[0] == {
        "input": "a.wav",
        "outputs": {"vocals": "out/a/vocals.wav"},
        "seconds": 2.5,
        "status": "ok",
        "error": None,
        "audio_seconds": 180.0,
        "attempts": 1,
        "job": "job-1",
    }
    assert [x["status"] for x in lines] == ["ok", "skipped", "failed"]
    t = report.totals
    assert (t.ok, t.skipped, t.failed, t.audio_seconds) == (1, 1, 1, 180.0)
    report.close()
    assert "songs: 100%" in capsys.readouterr().err  # the bar, on stderr
    assert (tmp_path / "f.csv").read_text() == (
        f'input,error\n"{os.path.abspath("c,1.wav")}","c,1.wav: cannot decode audio"\n'
    )
    assert read_manifest(str(tmp_path / "f.csv")) == [(os.path.abspath("c,1.wav"), None)]
    summary = report.summary()
    assert summary.startswith(
        f"batch: 1 separated, 1 skipped (done before), 1 failed (listed in {tmp_path / 'f.csv'}); "
        "0:03:00 of audio in 0:00:"
    )
    assert summary.endswith(f"audio-hours per hour); report: {tmp_path / 'r' / 'report.jsonl'}")


def test_a_run_without_failures_removes_the_old_failures_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "f.csv").write_text("input,error\nold.wav,old\n")
    report = Report(tmp_path / "report.jsonl", tmp_path / "f.csv", 1, "job-2", quiet=True)
    report.song("old.wav", "ok", {}, 1.0, audio_seconds=1.0)
    report.close()
    assert not (tmp_path / "f.csv").exists() and capsys.readouterr().err == ""
    assert report.audio_hours_per_hour() > 0
