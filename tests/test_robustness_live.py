"""Bad input to folders, templates, excerpts, stdin and streams ends in one `error:` line and exit code 2,
with no traceback, no partial file, no changed input, and (where the error can be known early) no work done.

Helpers come from test_robustness; CUNET_ROBUSTNESS_LOG=FILE also gets these outcomes.
"""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_robustness import (
    FAST,
    RATE,
    _env,
    digest,
    error_lines,
    make_observer,
    partials,
    tone,
    tree,
)

from cunet.io.audio import ffmpeg_available

CLI = [sys.executable, "-m", "cunet.cli", "separate"]
_observe, _write_observations = make_observer()


def separate(
    args: list[str], cwd: Path, data: bytes | None = b"", timeout: float = 300, **kw
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *map(str, args)],
        cwd=cwd,
        input=data,
        capture_output=True,
        timeout=timeout,
        env=_env(),
        **kw,
    )


def one_error(proc: subprocess.CompletedProcess) -> str:
    stderr = proc.stderr.decode() if isinstance(proc.stderr, bytes) else proc.stderr
    lines = error_lines(stderr)
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, stderr)
    return lines[0]


def _wav_bytes(x: np.ndarray, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, RATE, format="WAV", subtype=subtype)
    return buf.getvalue()


@pytest.fixture
def song(tmp_path: Path) -> Path:
    sf.write(tmp_path / "song.wav", tone(0.5), RATE)
    (tmp_path / "existing.f32").write_bytes(b"keep me")
    return tmp_path


# -- refused before TensorFlow loads: cheap, and nothing is written ---------------------------------------------

EARLY = [
    (
        "duration_0",
        ["song.wav", "--duration", "0"],
        "--duration must be a number of seconds in (0, 864000], got 0.0",
    ),
    (
        "duration_nan",
        ["song.wav", "--duration", "nan"],
        "--duration must be a number of seconds in (0, 864000], got nan",
    ),
    (
        "start_negative",
        ["song.wav", "--start", "-1"],
        "--start must be a number of seconds in [0, 864000], got -1.0",
    ),
    (
        "raw_without_rate",
        ["-", "--raw-format", "f32le"],
        "raw stdin needs all three of --raw-format, --raw-rate and --raw-channels",
    ),
    (
        "raw_without_stdin",
        ["song.wav", "--raw-format", "s16le", "--raw-rate", "44100", "--raw-channels", "2"],
        "describe stdin; give - as an input",
    ),
    (
        "raw_six_channels",
        ["-", "--raw-format", "s16le", "--raw-rate", "44100", "--raw-channels", "6"],
        "--raw-channels must be 1 or 2, got 6",
    ),
    ("stdin_twice", ["-", "-"], "stdin (-) can be read once"),
    (
        "template_typo",
        ["song.wav", "--filename", "{track}/{stem.{ext}"],
        "--filename '{track}/{stem.{ext}':",
    ),
    (
        "template_unknown_field",
        ["song.wav", "--filename", "{song}/{stem}.{ext}"],
        "unknown field '{song}'",
    ),
    (
        "template_escape",
        ["song.wav", "--filename", "../../{stem}.{ext}"],
        "'..' components are not allowed",
    ),
    ("template_absolute", ["song.wav", "--filename", "/etc/{stem}"], "not an absolute path"),
    (
        "template_format_trick",
        ["song.wav", "--filename", "{stem.__class__.__name__}"],
        "unknown field",
    ),
    ("template_positional", ["song.wav", "--filename", "{0}{1}"], "unknown field '{0}'"),
    (
        "stream_existing_output",
        ["song.wav", "--stream", "-o", "existing.f32"],
        "output 'existing.f32' exists; use --force to overwrite",
    ),
    (
        "stream_two_inputs",
        ["song.wav", "song.wav", "--stream", "-o", "x.f32"],
        "--stream separates one input",
    ),
    ("stream_folder", [".", "--stream", "-o", "x.f32"], "--stream separates one input"),
    (
        "stream_output_folder",
        ["song.wav", "--stream", "-o", "."],
        "with --stream, -o is - (stdout) or a file",
    ),
    (
        "stream_rescale",
        ["song.wav", "--stream", "--clip", "rescale", "-o", "x.f32"],
        "--clip rescale needs the whole output",
    ),
    (
        "stream_residual",
        ["song.wav", "--stream", "--residual", "-o", "x.f32"],
        "--residual does not apply to --stream",
    ),
    (
        "stream_format",
        ["song.wav", "--stream", "-f", "flac", "-o", "x.f32"],
        "--format does not apply to --stream",
    ),
    ("stdout_without_stream", ["song.wav", "-o", "-"], "-o - (stdout) needs --stream"),
    (
        "mp3_bitrate_for_wav",
        ["song.wav", "--mp3-bitrate", "128"],
        "--mp3-bitrate applies to --format mp3",
    ),
    (
        "mp3_bitrate_odd",
        ["song.wav", "-f", "mp3", "--mp3-bitrate", "100"],
        "--mp3-bitrate must be one of",
    ),
    ("flac_float", ["song.wav", "-f", "flac", "--bits", "32f"], "flac holds no float samples"),
    (
        "clip_none_16bit",
        ["song.wav", "--clip", "none"],
        "--clip none keeps samples beyond full scale",
    ),
    (
        "float32_vs_bits",
        ["song.wav", "--float32", "--bits", "24"],
        "--float32 contradicts --bits 24",
    ),
    (
        "latency_nan",
        ["song.wav", "--latency", "nan"],
        "must be a number of seconds in (0, 600], got nan",
    ),
    (
        "latency_and_chunk",
        ["song.wav", "--latency", "2", "--chunk-seconds", "4"],
        "--latency sets the chunk and cross-fade",
    ),
    ("all_in_a_list", ["song.wav", "-i", "vocals,all"], "'all' cannot be combined"),
]


@pytest.mark.parametrize("name,args,message", EARLY, ids=[e[0] for e in EARLY])
def test_refused_before_any_work(song: Path, name: str, args: list[str], message: str) -> None:
    before = digest(song)
    start = time.monotonic()
    line = one_error(separate([*args, "--model", "never-loaded.keras"], song))
    assert message in line, line
    assert digest(song) == before and partials(song) == []  # nothing written, nothing changed
    assert time.monotonic() - start < 60  # TensorFlow never loaded
    _observe(
        case=f"early_{name}",
        command="separate " + " ".join(args),
        outcome="error",
        exit=2,
        message=line,
    )


@pytest.mark.parametrize("which", ["stdin", "stdout"])
def test_terminals_are_refused(song: Path, which: str) -> None:
    """`separate -` reading a terminal, or --stream writing binary audio to one."""
    main, other = pty.openpty()
    try:
        args = ["-", "-o", "out"] if which == "stdin" else ["song.wav", "--stream"]
        proc = subprocess.run(
            [*CLI, *args, "--model", "never-loaded.keras"],
            cwd=song,
            capture_output=which == "stdin",
            stdin=other if which == "stdin" else subprocess.DEVNULL,
            stdout=other if which == "stdout" else None,
            stderr=subprocess.PIPE if which == "stdout" else None,
            timeout=60,
            env=_env(),
        )
    finally:
        os.close(main)
        os.close(other)
    line = one_error(proc)
    assert f"{which} is a terminal" in line
    _observe(
        case=f"{which}_terminal",
        command=f"separate {' '.join(args)} with {which} a terminal",
        outcome="error",
        exit=2,
        message=line,
    )


# -- found while running: stdin and stdout streams ---------------------------------------------------------------


def _stdin_cases() -> list[tuple[str, list[str], bytes, str]]:
    x = tone(1.0)
    wav = _wav_bytes(x)
    raw16 = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    return [
        (
            "stdin_closed_early",
            ["-o", "out"],
            wav[: len(wav) // 2],
            "stdin: the stream ended after 22044 of the 44100 samples its WAV header announced (closed early?)",
        ),
        (
            "stdin_closed_early_stream",
            ["--stream", "-o", "out.f32"],
            wav[: len(wav) // 2],
            "closed early?",
        ),
        (
            "stdin_broken_raw",
            ["-o", "out", "--raw-format", "s16le", "--raw-rate", "44100", "--raw-channels", "2"],
            raw16[:-3],
            "in the middle of a sample frame (1 stray bytes",
        ),
        ("stdin_empty", ["-o", "out"], b"", "stdin: no data (the stream is empty)"),
        ("stdin_not_wav", ["-o", "out"], b"ID3\x03" + bytes(2000), "stdin: not a WAV stream"),
        (
            "stdin_excerpt_past_end",
            ["--stream", "--start", "5", "-o", "out.f32"],
            wav,
            "--start 5 s is at or past the end of the stream (1.000 s)",
        ),
    ]


@pytest.mark.parametrize(
    "name,args,data,message", _stdin_cases(), ids=[c[0] for c in _stdin_cases()]
)
def test_bad_stdin(
    tmp_path: Path, tiny_model_path: Path, name: str, args: list[str], data: bytes, message: str
) -> None:
    line = one_error(
        separate(["-", *args, "--model", tiny_model_path, "--latency", "0.5", "-q"], tmp_path, data)
    )
    assert message in line, line
    assert tree(tmp_path) == [] or tree(tmp_path) == ["out"] and tree(tmp_path / "out") == []
    assert partials(tmp_path) == []
    _observe(
        case=name, command=f"separate - {' '.join(args)}", outcome="error", exit=2, message=line
    )


def test_stdout_closed_by_its_reader(tmp_path: Path, tiny_model_path: Path) -> None:
    """`separate - --stream ... | head -c 1000`: the reader goes away mid-stream."""
    x = tone(6.0)
    proc = subprocess.Popen(
        [
            *CLI,
            "-",
            "--stream",
            "--raw-format",
            "f32le",
            "--raw-rate",
            str(RATE),
            "--raw-channels",
            "2",
            "-i",
            "vocals",
            "--latency",
            "0.5",
            "--model",
            str(tiny_model_path),
            "-q",
        ],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    try:
        proc.stdin.write(x.astype("<f4").tobytes()[: RATE * 8])  # 1 s, then keep stdin open
        proc.stdin.flush()
        first = proc.stdout.read(1000)
        proc.stdout.close()
        proc.stdin.write(x.astype("<f4").tobytes()[RATE * 8 :])
        proc.stdin.close()
    except BrokenPipeError:
        pass
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert len(first) == 1000
    lines = error_lines(err)
    assert proc.returncode == 2 and lines == [
        "error: the output stream was closed by its reader (broken pipe)"
    ]
    _observe(
        case="stdout_closed",
        command="separate - --stream ... | head -c 1000",
        outcome="error",
        exit=2,
        message=lines[0],
    )


def test_latency_below_the_models_smallest(tmp_path: Path, tiny_model_path: Path) -> None:
    sf.write(tmp_path / "song.wav", tone(0.5), RATE)
    line = one_error(
        separate(
            [
                "song.wav",
                "--stream",
                "--latency",
                "0.1",
                "-o",
                "out.f32",
                "--model",
                tiny_model_path,
            ],
            tmp_path,
        )
    )
    assert "--latency 0.1 s is below this model's smallest, 0.320 s" in line
    assert not (tmp_path / "out.f32").exists() and partials(tmp_path) == []
    _observe(
        case="latency_too_small",
        command="separate song.wav --stream --latency 0.1 -o out.f32",
        outcome="error",
        exit=2,
        message=line,
    )


# -- folders, collisions, excerpts in one call -----------------------------------------------------------------


def test_inputs_that_collide_or_replace_inputs_stop_before_any_work(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    for folder in ("cd1", "cd2"):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "intro.wav", tone(0.3), RATE)
    before = digest(tmp_path)
    line = one_error(
        separate(
            ["cd1/intro.wav", "cd2/intro.wav", "-o", "out", "--model", tiny_model_path, *FAST],
            tmp_path,
        )
    )
    assert line.startswith(
        "error: inputs 'cd1/intro.wav' and 'cd2/intro.wav' would both be written to "
        "'out/intro/vocals.wav'"
    )
    assert not (tmp_path / "out").exists() and digest(tmp_path) == before
    _observe(
        case="collision",
        command="separate cd1/intro.wav cd2/intro.wav -o out",
        outcome="error",
        exit=2,
        message=line,
    )
    # An earlier stem given again with its song: the song's new stem would replace that input.
    (tmp_path / "out" / "intro").mkdir(parents=True)
    sf.write(tmp_path / "out" / "intro" / "vocals.wav", tone(0.3), RATE)
    before = digest(tmp_path)
    line = one_error(
        separate(
            [
                "cd1/intro.wav",
                "out/intro/vocals.wav",
                "-o",
                "out",
                "--force",
                "--model",
                tiny_model_path,
                *FAST,
            ],
            tmp_path,
        )
    )
    assert (
        "output 'out/intro/vocals.wav' of cd1/intro.wav would replace the input 'out/intro/vocals.wav'"
        in line
    )
    assert digest(tmp_path) == before and partials(tmp_path) == []
    _observe(
        case="output_replaces_input",
        command="separate cd1/intro.wav out/intro/vocals.wav -o out --force",
        outcome="error",
        exit=2,
        message=line,
    )


def test_excerpt_past_the_end_and_empty_folder_fail_alone(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    """One call: a short wav and an mp3 start past their end, a folder holds no audio; the long input is
    separated from 1.5 s on."""
    sf.write(tmp_path / "short.wav", tone(1.0), RATE)
    sf.write(tmp_path / "long.wav", tone(2.5), RATE)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("no audio here")
    inputs = ["short.wav", "long.wav", "docs"]
    if ffmpeg_available():
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-i",
                str(tmp_path / "short.wav"),
                str(tmp_path / "clip.mp3"),
            ],
            check=True,
        )
        inputs.append("clip.mp3")
    before = digest(tmp_path)
    proc = separate(
        [*inputs, "-o", "out", "--start", "1.5", "--model", tiny_model_path, *FAST],
        tmp_path,
        timeout=300,
    )
    lines = error_lines(proc.stderr.decode())
    assert proc.returncode == 2 and len(lines) == len(inputs) - 1, lines
    assert (
        lines[0] == "error: docs: no audio files in this folder (-r looks in subfolders too)"
    )  # found first
    assert (
        lines[1] == "error: short.wav: --start 1.5 s is at or past the end of the audio (1.000 s)"
    )
    if "clip.mp3" in inputs:
        assert lines[2] == "error: clip.mp3: --start 1.5 s is at or past the end of the audio"
    assert sf.info(tmp_path / "out" / "long" / "vocals.wav").frames == RATE
    assert not (tmp_path / "out" / "short").exists() and partials(tmp_path) == []
    assert {k: v for k, v in digest(tmp_path).items() if not k.startswith("out/")} == before
    for line in lines:
        _observe(
            case="excerpt_or_folder",
            command=f"separate {' '.join(inputs)} -o out --start 1.5",
            outcome="error",
            exit=2,
            message=line,
        )
