"""`cunet batch` on a real local Ray instance (2 CPUs, shared by the tests of this module): outputs
identical to `cunet separate`'s, a failing file reported while the rest goes on, a worker killed in the
middle of a song, a job stopped by a signal and started again, and the one-line errors (missing extra,
options) that need no Ray. The two-node cluster is in test_batch_cluster.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import synth_mixture
from test_cli import _run_without
from test_robustness import _env, error_lines, partials

from cunet.cli import main

ray = pytest.importorskip("ray")

RATE = 44100
FAST = ["--chunk-seconds", "1", "--overlap-seconds", "0.25"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_ray():
    """One embedded Ray instance for the module; `cunet batch` joins the one its process has. Ray's own
    SIGTERM handler is undone, as `cunet batch` undoes it."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        object_store_memory=128 * 1024 * 1024,
    )
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    yield ray
    ray.shutdown()
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def write_songs(folder: Path, names: list[str], seconds: float = 1.0) -> list[Path]:
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, synth_mixture(seconds, seed=i), RATE)
        paths.append(path)
    return paths


def records(report: Path) -> list[dict]:
    return [json.loads(line) for line in report.read_text().splitlines()]


def outputs_of(folder: Path) -> dict[str, bytes]:
    """{relative path: bytes} of the audio outputs under `folder` (reports left out)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix in (".wav", ".flac", ".mp3")
    }


def batch(args: list, capsys) -> tuple[int, list[str]]:
    """`cunet batch ARGS -q` in this process: exit code and stderr lines (no traceback)."""
    code = main(["batch", *[str(a) for a in args]])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, [line for line in err.splitlines() if line.strip()]


def test_help_is_instant_and_imports_neither_ray_nor_numpy() -> None:
    code = (
        "import sys; from cunet.cli import build_parser; p = build_parser();"
        "p._subparsers._group_actions[0].choices['batch'].format_help();"
        "assert 'ray' not in sys.modules and 'numpy' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_every_option_of_separate_is_taken_or_refused() -> None:
    """batch builds its options with separate's add_parser: an option added there must be placed here."""
    from cunet.cli import build_parser
    from cunet.commands import batch as command

    choices = build_parser()._subparsers._group_actions[0].choices
    separate_dests = {a.dest for a in choices["separate"]._actions}
    assert separate_dests == set(command.SHARED) | set(command.REFUSED)
    help_text = choices["batch"].format_help()
    assert "--stream" not in help_text and "--manifest" in help_text and "--ray" in help_text


@pytest.mark.parametrize(
    "args,expected",
    [
        (["-"], "error: a batch reads files, not stdin (-)"),
        (["x.wav", "--stream"], "error: --stream is for `cunet separate`"),
        ([], "error: nothing to separate: give inputs or --manifest FILE"),
        (["x.wav", "--actors", "0"], "error: --actors must be at least 1, got 0"),
        (["x.wav", "--float32", "--bits", "16"], "error: --float32 contradicts --bits 16"),
        (["x.wav", "--filename", "../{track}"], "error: --filename '../{track}'"),
        (["x.wav", "--manifest", "/no/such/list.txt"], "error: manifest '/no/such/list.txt'"),
    ],
)
def test_bad_options_are_one_line_before_any_work(args, expected, tmp_path, capsys) -> None:
    code, lines = batch([*args, "-o", tmp_path / "out"], capsys)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(expected), lines
    assert not (tmp_path / "out").exists()


def test_without_the_extra_it_is_one_line_naming_the_pip_install(tmp_path) -> None:
    sf.write(tmp_path / "song.wav", synth_mixture(0.2), RATE)
    proc = _run_without("ray", "batch", str(tmp_path / "song.wav"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert error_lines(proc.stderr) == [
        'error: Ray is not installed (cunet batch needs it); pip install "cunet[ray]"'
    ]


def test_outputs_are_identical_to_separate(local_ray, tiny_tflite_path, tmp_path, capsys) -> None:
    music = tmp_path / "music"
    write_songs(music, ["a.wav", "b.flac", "album/c.wav", "album/deep/d.ogg"])
    common = [
        music,
        "-r",
        "-i",
        "vocals,drums",
        "--residual",
        "--filename",
        "{folder}/{track}/{index:02d}-{stem}.{ext}",
        "-f",
        "flac",
        "--bits",
        "24",
        "--model",
        tiny_tflite_path,
        *FAST,
        "-q",
    ]
    assert main(["separate", *[str(a) for a in common], "-o", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    code, lines = batch([*common[:-1], "-o", tmp_path / "batch", "--actors", "2"], capsys)
    assert code == 0, lines
    expected = outputs_of(tmp_path / "one")
    assert len(expected) == 16 and outputs_of(tmp_path / "batch") == expected
    report = records(tmp_path / "batch" / "batch-report.jsonl")
    assert sorted(r["input"] for r in report) == sorted(
        str(music / p) for p in ("a.wav", "b.flac", "album/c.wav", "album/deep/d.ogg")
    )
    for r in report:
        assert r["status"] == "ok" and r["error"] is None and len(r["outputs"]) == 4
        assert r["audio_seconds"] == pytest.approx(1.0) and r["seconds"] > 0
    assert lines[0].startswith("note: 4 of 4 songs to separate on 2 workers")
    assert lines[-1].startswith("batch: 4 separated, 0 skipped (done before);")
    assert "audio-hours per hour" in lines[-1]
    assert not (tmp_path / "batch" / ".cunet-batch").exists() and not partials(tmp_path / "batch")


def test_a_failing_file_is_one_line_the_rest_goes_on_and_a_rerun_skips_done_songs(
    local_ray, tiny_tflite_path, tmp_path, capsys
) -> None:
    music = tmp_path / "music"
    write_songs(music, ["a.wav", "b.wav", "c.wav"])
    (music / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    out = tmp_path / "out"
    args = [music, "-o", out, "-i", "vocals", "--model", tiny_tflite_path, *FAST]
    code, lines = batch(args, capsys)
    assert code == 1
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and str(music / "broken.wav") in errors[0], lines
    assert sorted(p.parent.name for p in out.rglob("vocals.wav")) == ["a", "b", "c"]
    failures = (out / "batch-failures.csv").read_text().splitlines()
    assert failures[0] == "input,error" and len(failures) == 2
    assert failures[1].startswith(f"{music / 'broken.wav'},")
    assert "1 failed (listed in" in lines[-1]
    first = {p: p.stat().st_mtime_ns for p in out.rglob("vocals.wav")}

    # Again: the done songs are skipped (not rewritten); the broken one fails again.
    code, lines = batch([*args, "-q"], capsys)
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error:")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("vocals.wav")} == first
    second = records(out / "batch-report.jsonl")[4:]
    assert sorted((Path(r["input"]).name, r["status"]) for r in second) == [
        ("a.wav", "skipped"),
        ("b.wav", "skipped"),
        ("broken.wav", "failed"),
        ("c.wav", "skipped"),
    ]

    # Repaired, the failures file is the manifest that retries just that song.
    sf.write(music / "broken.wav", synth_mixture(0.5, seed=9), RATE)
    code, lines = batch(["--manifest", out / "batch-failures.csv", *args[1:]], capsys)
    assert code == 0 and (out / "broken" / "vocals.wav").is_file()
    assert not (out / "batch-failures.csv").exists()  # nothing failed this time
    assert lines[-1].startswith("batch: 1 separated, 0 skipped")


def _crash_once(source: str, chunks: int) -> None:
    """A chunk hook: the worker process dies in the middle of 'crash.wav', the first time only."""
    if source.endswith("crash.wav") and chunks == 2:
        marker = Path(source).with_name("crashed-once")
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)


def test_a_worker_killed_mid_song_is_replaced_and_its_song_written_once(
    local_ray, tiny_tflite_path, tmp_path
) -> None:
    from cunet.batch import BatchOptions, WorkerSettings, list_inputs, run_batch
    from cunet.settings import ChunkSettings

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    music = tmp_path / "music"
    write_songs(music, ["a.wav", "crash.wav", "c.wav", "d.wav"], seconds=3.0)
    settings = WorkerSettings(
        scratch="",
        model=str(tiny_tflite_path),
        chunks=ChunkSettings(1.0, 0.25),
        instruments=("bass",),
    )
    notes: list[str] = []
    report = run_batch(
        list_inputs([str(music)]),
        tmp_path / "out",
        settings,
        BatchOptions(actors=2, quiet=True, hook=_crash_once),
        note=notes.append,
    )
    died = int((music / "crashed-once").read_text())
    assert report.totals.ok == 4 and report.totals.failed == 0
    lines = records(tmp_path / "out" / "batch-report.jsonl")
    crash = [r for r in lines if r["input"].endswith("crash.wav")]
    assert len(crash) == 1 and crash[0]["status"] == "ok" and crash[0]["attempts"] == 2
    assert not crash[0]["worker"].split("@")[0].endswith(f":{died}")  # another worker process
    assert any("crash.wav: its worker died" in n and "attempt 2" in n for n in notes), notes
    written = sf.read(tmp_path / "out" / "crash" / "bass.wav")[0]
    assert written.shape == (3 * RATE, 2)
    assert not partials(tmp_path / "out") and not (tmp_path / "out" / ".cunet-batch").exists()


def test_a_stopped_job_started_again_does_only_what_is_left(
    local_ray, tiny_tflite_path, tmp_path, capsys
) -> None:
    """SIGTERM mid-job (a separate process with its own embedded Ray): finished songs stay, nothing is
    left half-written under a final name, and the rerun skips them."""
    music = tmp_path / "music"
    names = [f"song{i:02d}.wav" for i in range(10)]
    write_songs(music, names, seconds=20.0)
    out = tmp_path / "out"
    args = [music, "-o", out, "-i", "vocals", "--model", tiny_tflite_path, *FAST]
    cmd = [sys.executable, "-m", "cunet", "batch", *map(str, args), "--actors", "1", "-q"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stderr=subprocess.PIPE, text=True)
    report = out / "batch-report.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if report.is_file() and report.read_text().count('"status": "ok"') >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert error_lines(stderr) == ["error: interrupted (SIGTERM)"]
    reported = {Path(r["input"]).stem for r in records(report) if r["status"] == "ok"}
    finals = sorted(out.rglob("vocals.wav"))
    done = {p.parent.name for p in finals}  # a song may be written just before the report line
    assert len(reported) >= 2 and reported <= done and len(done) < len(names)
    for path in finals:  # complete, or not there at all
        assert sf.info(str(path)).frames == 20 * RATE
    assert not partials(out) and not (out / ".cunet-batch").exists()

    n_lines = len(records(report))
    code, lines = batch([*args, "-q"], capsys)
    assert code == 0 and lines == []
    again = records(report)[n_lines:]
    assert {Path(r["input"]).stem for r in again if r["status"] == "skipped"} == done
    assert len([r for r in again if r["status"] == "ok"]) == len(names) - len(done)
    assert len(list(out.rglob("vocals.wav"))) == len(names)
    assert np.isfinite(sf.read(out / "song09" / "vocals.wav")[0]).all()
