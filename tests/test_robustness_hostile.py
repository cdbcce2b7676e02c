"""The failures an adversarial pass over the CLI found, each now one `error:` line and exit code 2
(or 128 + N for signal N), with no traceback, no partial file and bounded time and memory.

Helpers come from test_robustness; CUNET_ROBUSTNESS_LOG=FILE also gets these outcomes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_robustness import (
    FAST,
    RATE,
    _env,
    _staged_bytes,
    check_outputs,
    digest,
    error_lines,
    make_observer,
    partials,
    popen_cli,
    run_cli,
    tone,
    tree,
)

_observe, _write_observations = make_observer()


def cunet(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`cunet ARGS` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "cunet.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )


def one_error(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    lines = error_lines(proc.stderr)
    assert proc.returncode == code and len(lines) == 1, (proc.returncode, proc.stderr)
    return lines[0]


# -- chunk settings ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["separate", "export"])
@pytest.mark.parametrize(
    "option,value",
    [
        ("--chunk-seconds", "nan"),
        ("--chunk-seconds", "inf"),
        ("--overlap-seconds", "nan"),
        ("--overlap-seconds", "inf"),
    ],
)
def test_nan_and_inf_chunk_settings(tmp_path: Path, command: str, option: str, value: str) -> None:
    sf.write(tmp_path / "song.wav", tone(0.2), RATE)
    args = ["song.wav", "-o", "out"] if command == "separate" else ["-o", "out"]
    start = time.monotonic()
    line = one_error(cunet([command, *args, option, value], tmp_path))
    assert option in line and value in line and not (tmp_path / "out").exists()
    assert time.monotonic() - start < 60  # refused before TensorFlow is loaded
    _observe(
        case=f"{command}_{option}_{value}",
        command=f"cunet {command} ... {option} {value}",
        outcome="error",
        exit=2,
        message=line,
    )


# -- model files and configs from strangers ----------------------------------------------------------------------


def _keras_with_record(src: Path, dst: Path, record: bytes) -> Path:
    with zipfile.ZipFile(src) as archive, zipfile.ZipFile(dst, "w") as out:
        for name in archive.namelist():
            out.writestr(name, record if name == "cunet.json" else archive.read(name))
    return dst


@pytest.mark.parametrize(
    "name,record,message",
    [
        ("list", b"[1, 2]", "holds a JSON list, not a provenance record"),
        ("string", b'"a string"', "holds a JSON str"),
        ("deep", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        ("config_not_object", b'{"config": [1]}', "has a config of type list"),
    ],
    ids=["list", "string", "deep", "config_not_object"],
)
def test_model_record_of_the_wrong_type(
    tmp_path: Path, tiny_model_path: Path, name: str, record: bytes, message: str
) -> None:
    sf.write(tmp_path / "song.wav", tone(0.2), RATE)
    model = _keras_with_record(tiny_model_path, tmp_path / f"{name}.keras", record)
    line = one_error(run_cli(["song.wav", "-o", "out", "--model", str(model), *FAST], tmp_path))
    assert message in line and str(model) in line and not (tmp_path / "out").exists()
    _observe(
        case=f"model_record_{name}",
        what=f"cunet.json: {message.split(',')[0]}",
        outcome="error",
        exit=2,
        message=line.replace(str(tmp_path) + "/", ""),
    )


def test_zip_bomb_model_is_refused_unread(tmp_path: Path, tiny_model_path: Path) -> None:
    bomb = tmp_path / "bomb.keras"
    with (
        zipfile.ZipFile(tiny_model_path) as archive,
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out,
    ):
        for name in archive.namelist():
            out.writestr(name, archive.read(name))
        with out.open("model.weights.h5.extra", "w", force_zip64=True) as member:
            for _ in range(256):  # 256 MiB of zeros, about 256 KiB deflated
                member.write(bytes(1 << 20))
    sf.write(tmp_path / "song.wav", tone(0.2), RATE)
    start = time.monotonic()
    line = one_error(run_cli(["song.wav", "-o", "out", "--model", str(bomb), *FAST], tmp_path))
    assert "would unpack to" in line and "refusing" in line and time.monotonic() - start < 60
    _observe(
        case="model_zip_bomb",
        what=f"a .keras of {bomb.stat().st_size} bytes declaring 256 MiB more",
        outcome="error",
        exit=2,
        message=line.replace(str(tmp_path) + "/", ""),
    )


def _laughs() -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "name,text,message",
    [
        (
            "syntax",
            "model:\n  kind: conditioned\n  n_layers: [6, 7\n",
            "is not valid YAML: line 4, column 1",
        ),
        (
            "python_tag",
            "model: !!python/object/apply:os.system ['touch PWNED']\n",
            "line 1, column 8: could not determine a constructor",
        ),
        ("billion_laughs", _laughs(), "expands to more than 100000 values"),
        ("huge", "# " + "x" * (2 << 20) + "\n", "larger than 1 MiB"),
    ],
    ids=["syntax", "python_tag", "billion_laughs", "huge"],
)
def test_hostile_yaml_config(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / "bad.yaml").write_text(text, encoding="utf-8")
    start = time.monotonic()
    line = one_error(
        cunet(["train", "--config", "bad.yaml", "--musdb-root", ".", "--out", "run"], tmp_path)
    )
    assert message in line and "bad.yaml" in line and not (tmp_path / "run").exists()
    assert not (tmp_path / "PWNED").exists() and time.monotonic() - start < 60
    _observe(
        case=f"yaml_{name}",
        command="cunet train --config bad.yaml ...",
        outcome="error",
        exit=2,
        message=line,
    )


# -- training start-up ---------------------------------------------------------------------------------------------


def test_train_on_a_missing_root_is_one_line_without_tensorflow_chatter(tmp_path: Path) -> None:
    config = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    line = one_error(
        cunet(
            ["train", "--config", str(config), "--musdb-root", "nowhere", "--out", "run"], tmp_path
        )
    )
    assert line == "error: data folder 'nowhere' is not a directory"


def test_train_on_a_root_without_tracks(tmp_path: Path) -> None:
    config = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    (tmp_path / "musdb" / "train").mkdir(parents=True)
    proc = cunet(
        ["train", "--config", str(config), "--musdb-root", "musdb", "--is-wav", "--out", "run"],
        tmp_path,
    )
    assert "no training tracks found" in one_error(proc)


def test_export_prints_nothing_on_success(tmp_path: Path, tiny_model_path: Path) -> None:
    proc = cunet(
        [
            "export",
            "--model",
            str(tiny_model_path),
            "-o",
            "out/1",
            "-q",
            "--chunk-seconds",
            "1",
            "--overlap-seconds",
            "0.25",
        ],
        tmp_path,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert (tmp_path / "out" / "1" / "saved_model.pb").is_file()


# -- names -----------------------------------------------------------------------------------------------------------


def test_control_characters_in_names_stay_on_one_line(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    good, missing, junk = "a\nb\x1b[31m.wav", "gone\x07\n.wav", "junk\r\x1b]0;title\x07.wav"
    sf.write(tmp_path / good, tone(0.2), RATE)
    (tmp_path / junk).write_bytes(np.random.default_rng(0).bytes(2048))
    proc = run_cli(
        [good, missing, junk, "-o", "out", "--model", str(tiny_model_path), *FAST], tmp_path
    )
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 2, proc.stderr
    assert lines[0] == "error: gone\\x07\\n.wav: no such file"
    assert lines[1].startswith("error: junk\\r\\x1b]0;title\\x07.wav: cannot decode audio")
    check_outputs(tmp_path / "out" / "a\nb\x1b[31m", int(0.2 * RATE), RATE, 2)
    bad_model = one_error(
        run_cli([good, "-o", "out2", "--model", "m\n\x1b.keras", *FAST], tmp_path)
    )
    assert bad_model == "error: model 'm\\n\\x1b.keras' does not exist"
    _observe(
        case="control_characters",
        what="inputs named 'a\\nb\\x1b[31m.wav' (valid), 'gone\\x07\\n.wav' "
        "(missing), a junk file with \\r and an OSC sequence; --model 'm\\n\\x1b.keras'",
        outcome="error",
        exit=2,
        message=" | ".join([*lines, bad_model]),
    )


# -- signals and disk ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_termination_signal_mid_file_cleans_up(
    tmp_path: Path, tiny_model_path: Path, sig: int
) -> None:
    sf.write(tmp_path / "long song.wav", tone(20.0), RATE)
    before = digest(tmp_path)
    proc = popen_cli(
        ["long song.wav", "-o", "out", "--model", str(tiny_model_path), *FAST], tmp_path
    )
    deadline = time.monotonic() + 240
    try:
        while (
            proc.poll() is None
            and time.monotonic() < deadline
            and _staged_bytes(tmp_path / "out") < 100_000
        ):
            time.sleep(0.01)
        assert proc.poll() is None, f"finished before the signal: {proc.communicate()}"
        staged = partials(tmp_path / "out")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    name = signal.Signals(sig).name
    assert staged and proc.returncode == 128 + sig
    assert error_lines(err) == [f"error: interrupted ({name})"]
    assert partials(tmp_path) == [] and tree(tmp_path / "out" / "long song") == []
    assert {k: v for k, v in digest(tmp_path).items() if not k.startswith("out/")} == before
    _observe(
        case=f"signal_{name}",
        what=f"{name} while separating a 20 s file ({len(staged)} partials staged)",
        outcome=f"exit {proc.returncode}",
        message=f"error: interrupted ({name})",
        after="no outputs, no partial files",
    )


DISK_FULL = """
import resource, sys
from cunet import separator
load = separator.Separator.from_pretrained.__func__

def loaded_then_disk_full(cls, *args, **kwargs):  # the model loads, then the disk is full
    sep = load(cls, *args, **kwargs)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
    return sep

separator.Separator.from_pretrained = classmethod(loaded_then_disk_full)
from cunet.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_disk_already_full_when_outputs_are_opened(
    tmp_path: Path, tiny_model_path: Path, fmt: str
) -> None:
    """RLIMIT_FSIZE 0 (Python ignores SIGXFSZ, so writes fail with EFBIG) stands in for a full disk."""
    sf.write(tmp_path / "a.wav", tone(0.3), RATE)
    sf.write(tmp_path / "b.wav", tone(0.3, RATE, 1), RATE)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            DISK_FULL,
            "separate",
            "a.wav",
            "b.wav",
            "-o",
            "out",
            "-f",
            fmt,
            "--model",
            str(tiny_model_path),
            *FAST,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 2, proc.stderr
    assert all("cannot write" in line for line in lines), lines
    assert [
        p for p in (tmp_path / "out").rglob("*") if p.is_file()
    ] == []  # no 0-byte partials either
    _observe(
        case=f"disk_full_at_open_{fmt}",
        what=f"RLIMIT_FSIZE 0 once the model is loaded, -f {fmt}",
        outcome="error",
        exit=2,
        message=lines[0],
    )


# -- decided cases ---------------------------------------------------------------------------------------------------


def test_all_with_an_unknown_name_is_an_error(tmp_path: Path) -> None:
    line = one_error(cunet(["separate", "x.wav", "-i", "all,foo"], tmp_path))
    assert line == "error: 'all' cannot be combined with other instruments (got 'all,foo')"
    assert one_error(cunet(["separate", "x.wav", "-o", ""], tmp_path)).startswith(
        "error: empty output"
    )
    assert one_error(cunet(["export", "-o", ""], tmp_path)).startswith("error: empty output")
    _observe(
        case="all_and_unknown",
        command="separate x.wav -i all,foo",
        outcome="error",
        exit=2,
        message=line,
    )


def test_special_files_and_video_only_inputs(tmp_path: Path, tiny_model_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.wav")
    inputs = ["fifo.wav", "/dev/zero"]
    if (
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "color=c=black:s=32x32:d=1",
                "-c:v",
                "mpeg4",
                str(tmp_path / "video.mp4"),
            ],
            capture_output=True,
        ).returncode
        == 0
    ):
        inputs.append("video.mp4")
    proc = run_cli(
        [*inputs, "-o", "out", "--model", str(tiny_model_path), *FAST], tmp_path, timeout=120
    )
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == len(inputs), proc.stderr
    assert (
        lines[0]
        == "error: fifo.wav: not a regular file (a pipe, device or socket); give an audio file"
    )
    assert (
        lines[1]
        == "error: /dev/zero: not a regular file (a pipe, device or socket); give an audio file"
    )
    if "video.mp4" in inputs:
        assert lines[2] == "error: video.mp4: no audio stream (a video-only or data file?)"
    assert tree(tmp_path / "out") == []
    _observe(
        case="special_inputs",
        what="a FIFO, /dev/zero and a video-only mp4",
        outcome="error",
        exit=2,
        message=" | ".join(lines),
    )


def test_two_processes_same_outputs_without_force(tmp_path: Path, tiny_model_path: Path) -> None:
    """Both pass the early `exists` check; the first to publish wins, the other fails and removes its partials."""
    sf.write(tmp_path / "shared.wav", tone(2.0), RATE)
    common = ["shared.wav", "-o", "out", "--model", str(tiny_model_path), *FAST]
    procs = [popen_cli(common, tmp_path), popen_cli(common, tmp_path)]
    results = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    errors = [line for _, err in results for line in error_lines(err)]
    assert (
        codes == [0, 2] and len(errors) == 1 and "exists" in errors[0] and "--force" in errors[0]
    ), errors
    check_outputs(tmp_path / "out" / "shared", 2 * RATE, RATE, 2)
    assert partials(tmp_path / "out") == []
    _observe(
        case="concurrent_no_force",
        what="two processes, same input and OUTDIR, no --force",
        outcome="one exits 0, the other 2",
        message=errors[0].replace(str(tmp_path) + "/", ""),
    )


# -- .tflite models from strangers ---------------------------------------------------------------------------------


def test_bad_tflite_models_are_one_line_each(tmp_path: Path, tiny_tflite_path: Path) -> None:
    """Truncated, random, empty, record-less, tampered and mismatched `.tflite` files: one `error:` line each,
    exit code 2, no output, within seconds (LiteRT files never load TensorFlow)."""
    from test_litert import bad_tflite_files

    sf.write(tmp_path / "song.wav", tone(0.3), RATE)
    for name, (path, message) in bad_tflite_files(tiny_tflite_path, tmp_path).items():
        start = time.monotonic()
        line = one_error(
            cunet(["separate", "song.wav", "-o", "out", "-q", "--model", str(path)], tmp_path)
        )
        elapsed = time.monotonic() - start
        assert message in line and path.name in line and not (tmp_path / "out").exists(), (
            name,
            line,
        )
        assert elapsed < 60, (name, elapsed)
        _observe(
            case=f"tflite_{name}",
            command=f"separate song.wav --model {path.name}",
            outcome="error",
            exit=2,
            message=line.replace(str(tmp_path) + "/", ""),
            seconds=round(elapsed, 2),
        )
