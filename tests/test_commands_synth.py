"""`cunet synth` on the command line: one-line errors with exit 2, notes, the summary."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from synth_midi import band_song
from test_synth_render import _soundfont

from cunet.cli import build_parser, main
from cunet.workers import cpu_count


def test_help_lists_synth(capsys):
    t0 = time.perf_counter()
    try:
        build_parser().parse_args(["synth", "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "--stems" in capsys.readouterr().out and time.perf_counter() - t0 < 5


def test_render_prints_notes_and_summary(tmp_path, capsys):
    band_song(tmp_path / "midi" / "band.mid")
    (tmp_path / "midi" / "broken.mid").write_bytes(b"\x00" * 10)
    rc = main(
        [
            "synth",
            "--midi",
            str(tmp_path / "midi"),
            "--out",
            str(tmp_path / "ds"),
            "--minutes",
            "0.1",
            "--soundfont",
            _soundfont(),
            "--jobs",
            "1",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0
    assert "note: skipped" in err and "broken.mid" in err and "real-time factor" in err
    assert (tmp_path / "ds" / "manifest.json").is_file()


def test_nothing_usable_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "midi").mkdir()
    (tmp_path / "midi" / "broken.mid").write_bytes(b"")
    rc = main(
        [
            "synth",
            "--midi",
            str(tmp_path / "midi"),
            "--out",
            str(tmp_path / "ds"),
            "--minutes",
            "1",
            "--soundfont",
            _soundfont(),
            "-q",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        rc == 2
        and err[-1].startswith("error: no usable MIDI")
        and "Traceback" not in "\n".join(err)
    )
    rc = main(
        [
            "synth",
            "--midi",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "ds"),
            "--minutes",
            "1",
            "-q",
        ]
    )
    assert rc == 2 and "is not a directory" in capsys.readouterr().err
    notsf = tmp_path / "x.sf2"
    notsf.write_text("x")
    rc = main(
        [
            "synth",
            "--midi",
            str(tmp_path / "midi"),
            "--out",
            str(tmp_path / "ds"),
            "--minutes",
            "1",
            "--soundfont",
            str(notsf),
            "-q",
        ]
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert (
        rc == 2
        and lines[0].startswith("note: skipped soundfont")
        and lines[-1].startswith("error: none of")
    )


def test_out_is_a_file_exits_2(tmp_path, capsys):
    band_song(tmp_path / "midi" / "band.mid")
    (tmp_path / "taken").write_text("x")
    rc = main(
        [
            "synth",
            "--midi",
            str(tmp_path / "midi"),
            "--out",
            str(tmp_path / "taken"),
            "--minutes",
            "0.1",
            "--soundfont",
            _soundfont(),
            "-q",
            "--jobs",
            "1",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: cannot write the dataset folder")
    assert (tmp_path / "taken").read_text() == "x"


def _synth(tmp_path, *extra):
    band_song(tmp_path / "midi" / "band.mid")
    return [
        "synth",
        "--midi",
        str(tmp_path / "midi"),
        "--out",
        str(tmp_path / "ds"),
        "--minutes",
        "0.1",
        "--soundfont",
        _soundfont(),
        *extra,
    ]


def test_jobs_are_capped_at_the_cpus_and_the_songs(tmp_path, capsys):
    assert main(_synth(tmp_path, "-j", "1000")) == 0
    err = capsys.readouterr().err
    run = json.loads((tmp_path / "ds" / "manifest.json").read_text())["run"]
    assert 1 <= run["jobs"] == min(cpu_count(), run["songs_rendered"])
    notes = [line for line in err.splitlines() if "--jobs" in line]
    assert len(notes) == 1 and notes[0].startswith(f"note: --jobs 1000 capped at {run['jobs']} (")
    assert f"{cpu_count()} CPU" in notes[0]


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(stat.parent.name))
    return found


@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_ctrl_c_while_workers_start_is_one_line_and_exit_130(tmp_path, delay):
    """The terminal sends SIGINT to the whole process group, half-started workers included."""
    args = _synth(tmp_path, "-j", "1000", "-q")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cunet", *args],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not _children(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, "no worker started"
        time.sleep(delay)  # 0: workers still starting Python; 0.3: importing cunet
        workers = _children(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    lines = [line for line in err.strip().splitlines() if not line.startswith("note: --jobs")]
    assert (proc.returncode, lines) == (130, ["error: interrupted (SIGINT)"])
    assert len(workers) <= cpu_count() + 1  # the workers, and multiprocessing's resource tracker
    assert not list((tmp_path / "ds").glob(".staging-*"))


def test_a_foreign_manifest_is_one_line_and_unchanged(tmp_path, capsys):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "manifest.json").write_text('{"mine": true}')
    assert main(_synth(tmp_path, "-q")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: '{tmp_path / 'ds' / 'manifest.json'}' exists and was not written by cunet synth, "
        "which never replaces what it did not create; give another --out (or move it away)"
    ]
    assert (tmp_path / "ds" / "manifest.json").read_text() == '{"mine": true}'


def test_a_negative_seed_is_one_line(tmp_path, capsys):
    assert main(_synth(tmp_path, "-q", "--seed", "-1")) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --seed must be a whole number >= 0, got -1"
    ]
