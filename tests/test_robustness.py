"""`separate` survives bad input, faults and tampered models, and shows it.

Every case ends in either a correct separation (input's length, rate and channels; finite samples) or one
`error: <input>: ...` line with exit code 2 -- never a traceback, never a file under a final output name
from a failed run, never a stray partial file, never a changed input. Most cases run the real CLI in a
subprocess (TensorFlow loads once per call, so one call takes many inputs); the rest use the Python API.

Set CUNET_ROBUSTNESS_LOG=FILE to get every observed outcome as JSON lines (docs/robustness.md is built
from it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from cunet.errors import AudioError
from cunet.io.atomic import PARTIAL_SUFFIX
from cunet.io.audio import AudioReader, ffmpeg_available, input_stem
from cunet.jobs import separate_file
from cunet.settings import ChunkSettings

INSTRUMENTS = ("vocals", "drums", "bass", "other")
CLI = [sys.executable, "-m", "cunet.cli", "separate"]
FAST = ["--chunk-seconds", "1", "--overlap-seconds", "0.25", "--quiet"]
RATE = 44100
# Root ignores permission bits; without these capabilities (kept by nothing else we need) it obeys them.
DROP_DAC = ["--bounding-set=-dac_override,-dac_read_search,-fowner", "--inh-caps=-all"]


def make_observer() -> tuple[Callable[..., None], Any]:
    """(observe, autouse fixture): records what each case did, appended to $CUNET_ROBUSTNESS_LOG (JSON lines)
    at the end of the module that assigns both to module-level names."""
    observed: list[dict] = []

    def observe(**record: object) -> None:
        observed.append(record)

    @pytest.fixture(scope="module", autouse=True)
    def write_observations():
        yield
        target = os.environ.get("CUNET_ROBUSTNESS_LOG")
        if target:
            with open(target, "a", encoding="utf-8") as f:
                for record in observed:
                    f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")

    return observe, write_observations


_observe, _write_observations = make_observer()


# -- helpers -------------------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": "1",
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
    }


def run_cli(
    args: list[str],
    cwd: Path,
    prefix: list[str] | None = None,
    timeout: float = 300,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*(prefix or []), *CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        preexec_fn=preexec_fn,
    )


def popen_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def error_lines(stderr: str) -> list[str]:
    """The `error: ` lines; fails if stderr holds anything else (tracebacks, library chatter)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert all(line.startswith("error: ") for line in lines), f"unexpected stderr lines:\n{stderr}"
    return lines


def partials(directory: Path) -> list[Path]:
    return [p for p in directory.rglob(f"*{PARTIAL_SUFFIX}*")] if directory.exists() else []


def _staged_bytes(directory: Path) -> int:
    """Size of the largest partial file in directory (0 if none); tolerates files vanishing meanwhile."""
    sizes = [0]
    for path in partials(directory):
        try:
            sizes.append(path.stat().st_size)
        except FileNotFoundError:
            pass
    return max(sizes)


def tree(directory: Path) -> list[str]:
    return (
        sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))
        if directory.exists()
        else []
    )


def digest(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def tone(seconds: float, rate: int = RATE, n_channels: int = 2) -> np.ndarray:
    n = max(0, int(round(seconds * rate)))
    t = np.arange(n) / rate
    return np.stack(
        [0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(n_channels)], 1
    ).astype(np.float32)


def check_outputs(
    folder: Path, n_samples: int, rate: int, n_channels: int, fmt: str = "wav"
) -> list[np.ndarray]:
    """All four stems exist, readable, with the expected length, rate and channels, and finite samples."""
    arrays = []
    for name in INSTRUMENTS:
        path = folder / f"{name}.{fmt}"
        assert path.is_file(), f"missing {path}"
        info = sf.info(path)
        assert (info.frames, info.samplerate, info.channels) == (n_samples, rate, n_channels), (
            path,
            info,
        )
        y, _ = sf.read(path, dtype="float32", always_2d=True)
        assert np.isfinite(y).all() and np.abs(y).max() <= 1.0
        arrays.append(y)
    return arrays


def input_props(path: Path) -> tuple[int, int, int]:
    """(n_samples, rate, channels) as cunet decodes the file."""
    with AudioReader(path) as reader:
        return reader.info.n_samples, reader.info.sample_rate, reader.info.n_channels


_DROP_PREFIX: list[str] | None | bool = False


def privilege_drop() -> list[str] | None:
    """Command prefix under which permission bits apply ([] when not root), or None if impossible here."""
    global _DROP_PREFIX
    if _DROP_PREFIX is False:
        _DROP_PREFIX = None
        if os.geteuid() != 0:
            _DROP_PREFIX = []
        elif shutil.which("setpriv"):
            probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"cunet-ro-probe-{os.getpid()}"
            probe.mkdir(exist_ok=True)
            probe.chmod(0o555)
            try:
                proc = subprocess.run(
                    [
                        "setpriv",
                        *DROP_DAC,
                        sys.executable,
                        "-c",
                        "import os, sys; sys.exit(0 if not os.access(sys.argv[1], os.W_OK) else 1)",
                        str(probe),
                    ],
                    capture_output=True,
                    timeout=60,
                )
                if proc.returncode == 0:
                    _DROP_PREFIX = ["setpriv", *DROP_DAC]
            finally:
                probe.chmod(0o755)
                probe.rmdir()
    return _DROP_PREFIX  # type: ignore[return-value]


# -- the bad-input suite: one CLI call over every input ----------------------------------------------------


@dataclass
class Case:
    name: str
    file: str
    what: str
    build: Callable[[Path], None]
    error: str | None = None  # regex the error line must match; None: a correct separation
    needs: str | None = None  # "ffmpeg" or "privdrop"


def _write(
    data: np.ndarray, rate: int = RATE, subtype: str | None = None
) -> Callable[[Path], None]:
    return lambda p: sf.write(p, data, rate, subtype=subtype, format=p.suffix.lstrip(".").upper())


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(data)


def _cut(fmt: str, keep: Callable[[int], int]) -> Callable[[Path], None]:
    def build(p: Path) -> None:
        full = p.with_name(f"full-source.{fmt}.tmp")
        sf.write(
            full,
            np.random.default_rng(3).uniform(-0.5, 0.5, (RATE, 2)).astype(np.float32),
            RATE,
            format=fmt.upper(),
        )
        data = full.read_bytes()
        full.unlink()
        p.write_bytes(data[: keep(len(data))])

    return build


def _with_bad_sample(value: float) -> Callable[[Path], None]:
    x = tone(0.5)
    x[1000, 1] = value
    return _write(x, subtype="FLOAT")


def _square(p: Path) -> None:
    t = np.arange(RATE // 2) / RATE
    sq = np.sign(np.sin(2 * np.pi * 100 * t)) + (np.sin(2 * np.pi * 100 * t) == 0)
    sf.write(p, np.stack([sq, -sq], 1), RATE, subtype="PCM_16")  # full scale: +-32767/-32768


def _mp3(p: Path) -> None:
    src = p.with_name("mp3-source.wav.tmp")
    sf.write(src, tone(0.7, 44100, 1), 44100, format="WAV")
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-i",
            str(src),
            "-c:a",
            "libmp3lame",
            "-f",
            "mp3",
            str(p),
        ],
        check=True,
    )
    src.unlink()


def _setup_blocked_dir(out: Path, stem: str) -> None:  # OUT/<stem> is a file
    out.mkdir(exist_ok=True)
    (out / stem).write_bytes(b"not a directory")


def _setup_blocked_file(out: Path, stem: str) -> None:  # OUT/<stem>/vocals.wav is a directory
    (out / stem / "vocals.wav").mkdir(parents=True)


def _setup_existing(out: Path, stem: str) -> None:  # OUT/<stem>/vocals.wav exists
    (out / stem).mkdir(parents=True)
    (out / stem / "vocals.wav").write_bytes(b"sentinel: must survive")


def _setup_readonly(out: Path, stem: str) -> None:  # OUT/<stem> exists, read-only
    (out / stem).mkdir(parents=True)
    (out / stem).chmod(0o555)


CASES: list[Case] = [
    Case("empty", "empty.wav", "empty file (0 bytes)", _bytes(b""), r"file is empty"),
    Case(
        "zero_samples",
        "zero.wav",
        "valid wav header, 0 samples",
        _write(np.zeros((0, 2)), subtype="FLOAT"),
        r"contains no audio samples",
    ),
    Case("one_sample", "one.wav", "1 sample", _write(tone(1 / RATE)[:1] + 0.1)),
    Case(
        "random_wav",
        "random.wav",
        "4 KiB random bytes named .wav",
        _bytes(np.random.default_rng(0).bytes(4096)),
        r"cannot decode audio",
    ),
    Case(
        "random_mp3",
        "noise.mp3",
        "4 KiB random bytes named .mp3",
        _bytes(np.random.default_rng(1).bytes(4096)),
        r"cannot decode audio",
    ),
    Case(
        "wav_header_cut",
        "wav_header_cut.wav",
        "wav cut after 30 bytes (inside the header)",
        _cut("wav", lambda n: 30),
        r"cannot decode audio",
    ),
    Case(
        "flac_header_cut",
        "flac_header_cut.flac",
        "flac cut after 20 bytes (inside the header)",
        _cut("flac", lambda n: 20),
        r"cannot decode audio",
    ),
    Case(
        "wav_data_cut",
        "wav_data_cut.wav",
        "wav cut in the middle of the data (header claims 1 s)",
        _cut("wav", lambda n: n // 2),
    ),
    Case(
        "flac_data_cut",
        "flac_data_cut.flac",
        "flac cut in the middle of the data",
        _cut("flac", lambda n: n // 2),
        r"cannot decode audio",
    ),
    Case(
        "nan",
        "nan.wav",
        "float wav with one NaN sample",
        _with_bad_sample(np.nan),
        r"NaN or infinite",
    ),
    Case(
        "inf",
        "inf.wav",
        "float wav with one +inf sample",
        _with_bad_sample(np.inf),
        r"NaN or infinite",
    ),
    Case("square", "square.wav", "clipped full-scale square wave (16-bit)", _square),
    Case("silence", "silence.wav", "digital silence", _write(np.zeros((RATE // 2, 2)))),
    Case("dc", "dc.wav", "DC offset 0.5", _write(np.full((RATE // 2, 2), 0.5))),
    Case("rate_8k", "rate8000.wav", "8 kHz", _write(tone(0.5, 8000), 8000)),
    Case("rate_22k", "rate22050.wav", "22.05 kHz", _write(tone(0.5, 22050), 22050)),
    Case("rate_48k", "rate48000.wav", "48 kHz", _write(tone(0.5, 48000), 48000)),
    Case("rate_96k", "rate96000.wav", "96 kHz", _write(tone(0.5, 96000), 96000)),
    Case("mono", "mono.wav", "mono", _write(tone(0.5, RATE, 1))),
    Case(
        "six_channels",
        "six.wav",
        "6 channels (5.1)",
        _write(tone(0.5, RATE, 6)),
        r"6 channels are not supported",
    ),
    Case(
        "unicode_name",
        "my song ünïcødé 歌.wav",
        "name with spaces and non-ASCII",
        _write(tone(0.5)),
    ),
    Case(
        "unicode_mp3",
        "spaced ñame.mp3",
        "mp3 (via ffmpeg) with space and non-ASCII name",
        _mp3,
        None,
        "ffmpeg",
    ),
    Case(
        "dots_name",
        "...wav",
        "name '...wav' (stem used to be '..': outputs went above OUTDIR)",
        _write(tone(0.3)),
    ),
    Case(
        "two_dots_name",
        "..wav",
        "name '..wav' (stem used to be '.': outputs went into OUTDIR itself)",
        _write(tone(0.2)),
    ),
    Case(
        "folder",
        "folder.wav",
        "a directory given as input, holding no audio",
        lambda p: p.mkdir(),
        r"no audio files in this folder",
    ),
    Case("missing", "missing.wav", "a file that does not exist", lambda p: None, r"no such file"),
    Case(
        "outdir_stem_is_file",
        "blocked_dir.wav",
        "OUTDIR/<stem> is an existing file",
        _write(tone(0.3)),
        r"exists and is not a directory",
    ),
    Case(
        "output_is_directory",
        "blocked_file.wav",
        "OUTDIR/<stem>/vocals.wav is a directory",
        _write(tone(0.3)),
        r"exists and is not a file",
    ),
    Case(
        "output_exists",
        "existing.wav",
        "OUTDIR/<stem>/vocals.wav exists, no --force",
        _write(tone(0.3)),
        r"exists; use --force",
    ),
    Case(
        "readonly_stem_dir",
        "readonly.wav",
        "OUTDIR/<stem> exists read-only",
        _write(tone(0.3)),
        r"is not writable",
        "privdrop",
    ),
]
OUT_SETUP = {
    "outdir_stem_is_file": _setup_blocked_dir,
    "output_is_directory": _setup_blocked_file,
    "output_exists": _setup_existing,
    "readonly_stem_dir": _setup_readonly,
}


def _available(case: Case) -> bool:
    if case.needs == "ffmpeg":
        return ffmpeg_available()
    if case.needs == "privdrop":
        return privilege_drop() is not None
    return True


@dataclass
class BatchRun:
    root: Path
    out: Path
    proc: subprocess.CompletedProcess
    before: dict[str, str]
    after: dict[str, str]
    preexisting: dict[str, list[str]]
    props: dict[str, tuple[int, int, int]]
    seconds: float


@pytest.fixture(scope="module")
def batch(tmp_path_factory, tiny_model_path) -> BatchRun:
    """Build every bad input, then run one `separate` over all of them (as an unprivileged-acting root)."""
    root = tmp_path_factory.mktemp("bad inputs")
    inputs, out = root / "in", root / "out"
    inputs.mkdir()
    out.mkdir()
    args, props, preexisting = [], {}, {}
    for case in CASES:
        if not _available(case):
            continue
        path = inputs / case.file
        case.build(path)
        args.append(f"in/{case.file}")
        if case.name in OUT_SETUP:
            OUT_SETUP[case.name](out, input_stem(case.file))
            preexisting[case.name] = tree(out / input_stem(case.file))
        if case.error is None:
            props[case.name] = input_props(path)
    before = digest(inputs)
    start = time.monotonic()
    try:
        proc = run_cli(
            [*args, "-o", "out", "--model", str(tiny_model_path), *FAST],
            root,
            prefix=privilege_drop(),
        )
    finally:
        if (out / "readonly").is_dir():
            (out / "readonly").chmod(0o755)  # let pytest clean up
    seconds = time.monotonic() - start
    return BatchRun(root, out, proc, before, digest(inputs), preexisting, props, seconds)


def test_batch_exit_code_and_stderr(batch: BatchRun) -> None:
    """Exit 2 (some inputs failed); stderr is exactly one `error:` line per failing input, nothing else."""
    lines = error_lines(batch.proc.stderr)
    expected = [c for c in CASES if c.error and _available(c)]
    assert batch.proc.returncode == 2
    assert len(lines) == len(expected), lines
    _observe(
        case="batch",
        command="separate <all inputs> -o out",
        exit=batch.proc.returncode,
        seconds=round(batch.seconds, 1),
        errors=len(lines),
    )


def test_batch_leaves_inputs_unchanged_and_no_partials(batch: BatchRun) -> None:
    assert batch.after == batch.before
    assert partials(batch.root) == []
    assert not (batch.root / "vocals.wav").exists() and not (batch.out / "vocals.wav").exists()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_case(batch: BatchRun, case: Case) -> None:
    if not _available(case):
        pytest.skip(
            "ffmpeg is not installed"
            if case.needs == "ffmpeg"
            else "running as root and cannot drop CAP_DAC_OVERRIDE (setpriv missing or not permitted), "
            "so permission bits would be ignored"
        )
    arg = f"in/{case.file}"
    mine = [line for line in error_lines(batch.proc.stderr) if line.startswith(f"error: {arg}: ")]
    folder = batch.out / input_stem(case.file)
    if case.error is None:
        assert mine == []
        n, rate, ch = batch.props[case.name]
        arrays = check_outputs(folder, n, rate, ch)
        if case.name == "silence":
            assert all(np.abs(y).max() == 0 for y in arrays)
        _observe(
            case=case.name,
            file=case.file,
            what=case.what,
            outcome="separated",
            outputs=f"4 stems, {n} samples @ {rate} Hz x {ch} ch",
        )
    else:
        assert len(mine) == 1, (arg, batch.proc.stderr)
        assert re.search(case.error, mine[0]), mine[0]
        # No output of this run under the final names: only what the test itself put there.
        assert tree(folder) == batch.preexisting.get(case.name, [])
        if case.name == "output_exists":
            assert (folder / "vocals.wav").read_bytes() == b"sentinel: must survive"
        _observe(case=case.name, file=case.file, what=case.what, outcome="error", message=mine[0])


# -- output location faults ------------------------------------------------------------------------------


def test_readonly_output_directory(tmp_path: Path, tiny_model_path: Path) -> None:
    prefix = privilege_drop()
    if prefix is None:
        pytest.skip(
            "running as root and cannot drop CAP_DAC_OVERRIDE (setpriv missing or not permitted), "
            "so a read-only directory would still be writable"
        )
    sf.write(tmp_path / "a.wav", tone(0.3), RATE)
    sf.write(tmp_path / "b.wav", tone(0.3, RATE, 1), RATE)
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        proc = run_cli(
            ["a.wav", "b.wav", "-o", "ro", "--model", str(tiny_model_path), *FAST], tmp_path, prefix
        )
    finally:
        (tmp_path / "ro").chmod(0o755)
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2
    assert lines == [
        "error: a.wav: output directory 'ro' is not writable",
        "error: b.wav: output directory 'ro' is not writable",
    ]
    assert tree(tmp_path / "ro") == []
    _observe(
        case="readonly_outdir",
        what="-o a read-only directory (root without CAP_DAC_OVERRIDE)",
        outcome="error",
        exit=proc.returncode,
        message=lines[0],
    )


def test_outdir_is_an_existing_file(tmp_path: Path, tiny_model_path: Path, capsys) -> None:
    """Through the CLI's main() in-process: every input reports it; the file is untouched."""
    from cunet.cli import separate_main as main

    sf.write(tmp_path / "a.wav", tone(0.3), RATE)
    (tmp_path / "target").write_bytes(b"keep me")
    code = main(
        [
            str(tmp_path / "a.wav"),
            str(tmp_path / "missing.wav"),
            "-o",
            str(tmp_path / "target"),
            "--model",
            str(tiny_model_path),
            *FAST,
        ]
    )
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 2
    assert "exists and is not a directory" in lines[0] and "no such file" in lines[1]
    assert (tmp_path / "target").read_bytes() == b"keep me"
    _observe(
        case="outdir_is_file",
        what="-o names an existing file",
        outcome="error",
        exit=code,
        message=lines[0].replace(str(tmp_path) + "/", ""),
    )


def test_output_that_is_the_input_is_refused_even_with_force(
    tmp_path: Path, tiny_model_path: Path, capsys
) -> None:
    """`separate DIR/vocals/vocals.wav -o DIR --force` would replace its own input with the vocals stem."""
    from cunet.cli import separate_main as main

    song = tmp_path / "vocals" / "vocals.wav"
    song.parent.mkdir()
    sf.write(song, tone(0.3), RATE)
    before = digest(tmp_path)
    code = main([str(song), "-o", str(tmp_path), "--force", "--model", str(tiny_model_path), *FAST])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1 and "is the input file itself" in lines[0], lines
    assert digest(tmp_path) == before and partials(tmp_path) == []
    _observe(
        case="output_is_input",
        what="input DIR/vocals/vocals.wav, -o DIR --force (output = input)",
        outcome="error",
        exit=code,
        message=lines[0].replace(str(tmp_path) + "/", ""),
    )


def test_write_failure_midway_leaves_nothing(tmp_path: Path, tiny_model_path: Path) -> None:
    """A 1.2 MB file-size limit (stands in for a full disk; keras needs ~0.8 MB to unpack the tiny model)
    breaks writing the long input's stems midway: it fails cleanly, and the short input still succeeds."""
    sf.write(tmp_path / "long.wav", tone(5.0), RATE)  # float32 stereo stems: ~1.76 MB each
    sf.write(tmp_path / "short.wav", tone(0.5, RATE, 1), RATE)  # ~88 kB each
    before = digest(tmp_path)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_200_000, 1_200_000))

    proc = run_cli(
        ["long.wav", "short.wav", "-o", "out", "--float32", "--model", str(tiny_model_path), *FAST],
        tmp_path,
        preexec_fn=limit,
    )
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("error: long.wav: cannot write"), lines
    assert tree(tmp_path / "out" / "long") == [] and partials(tmp_path) == []
    check_outputs(tmp_path / "out" / "short", int(0.5 * RATE), RATE, 1)
    assert digest(tmp_path / "out").keys() >= {"short/vocals.wav"}
    assert {k: v for k, v in digest(tmp_path).items() if not k.startswith("out/")} == before
    _observe(
        case="disk_full",
        what="writing fails midway (RLIMIT_FSIZE 1.2 MB), two inputs",
        outcome="error",
        exit=proc.returncode,
        message=lines[0],
    )


# -- process faults --------------------------------------------------------------------------------------


def test_sigkill_mid_file_leaves_no_output_and_rerun_cleans_up(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    sf.write(tmp_path / "long song.wav", tone(20.0), RATE)
    before = digest(tmp_path)
    args = ["long song.wav", "-o", "out", "--model", str(tiny_model_path), *FAST]
    proc = popen_cli(args, tmp_path)
    deadline = time.monotonic() + 240
    try:
        # Kill once some audio (> 100 kB of the ~3.5 MB per stem) has been staged: mid-file for sure.
        while (
            proc.poll() is None
            and time.monotonic() < deadline
            and _staged_bytes(tmp_path / "out") < 100_000
        ):
            time.sleep(0.01)
        assert proc.poll() is None, f"finished before it could be killed: {proc.communicate()}"
        staged = partials(tmp_path / "out")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert staged, "no partial file was seen before the kill"
    assert tree(tmp_path / "out" / "long song") == []  # nothing under a final name
    stale = partials(tmp_path / "out")
    assert stale  # SIGKILL cannot clean up; the next run must

    rerun = run_cli(args, tmp_path)
    assert rerun.returncode == 0 and error_lines(rerun.stderr) == []
    check_outputs(tmp_path / "out" / "long song", 20 * RATE, RATE, 2)
    assert partials(tmp_path / "out") == []
    assert {k: v for k, v in digest(tmp_path).items() if not k.startswith("out/")} == before
    _observe(
        case="sigkill",
        what="SIGKILL while separating a 20 s file, then rerun",
        outcome="killed (-9)",
        after_kill=f"no outputs, {len(stale)} stale partial(s)",
        rerun=f"exit {rerun.returncode}, 4 complete stems, stale partials removed",
    )


def test_two_processes_share_an_output_directory(tmp_path: Path, tiny_model_path: Path) -> None:
    """Two concurrent runs into one OUTDIR: each with its own input, plus the same input with --force."""
    lengths = {"shared": 2.0, "a": 1.0, "b": 1.5}
    for name, seconds in lengths.items():
        sf.write(tmp_path / f"{name}.wav", tone(seconds), RATE)
    common = ["-o", "out", "--force", "--model", str(tiny_model_path), *FAST]
    procs = [
        popen_cli(["shared.wav", "a.wav", *common], tmp_path),
        popen_cli(["shared.wav", "b.wav", *common], tmp_path),
    ]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, results, strict=False):
        assert p.returncode == 0 and error_lines(err) == []
    for name, seconds in lengths.items():
        check_outputs(tmp_path / "out" / name, int(seconds * RATE), RATE, 2)
    assert partials(tmp_path / "out") == []
    _observe(
        case="concurrent",
        what="two processes, same OUTDIR, one shared input (--force) + one own input each",
        outcome="both exit 0",
        outputs="all 12 stems readable, right length, no partials",
    )


# -- the Python API -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,rate,match",
    [
        (lambda: np.full((1000, 2), np.nan, np.float32), RATE, "NaN or infinite"),
        (lambda: np.zeros((0, 2), np.float32), RATE, "n_samples > 0"),
        (lambda: np.zeros((10, 2, 2), np.float32), RATE, "n_samples, n_channels"),
        (lambda: np.zeros((1000, 6), np.float32), RATE, "6 channels"),
        (lambda: np.zeros((1000, 2), np.float32), 0, "invalid sample rate"),
    ],
    ids=["nan", "empty", "3d", "six_channels", "rate_0"],
)
def test_api_rejects_bad_arrays(tiny_separator, make, rate: int, match: str) -> None:
    with pytest.raises(AudioError, match=match):
        tiny_separator.separate(make(), rate)


@pytest.mark.parametrize(
    "rate,shape", [(8000, (1,)), (96000, (5000, 2)), (44100, (3,)), (22050, (2, 1))]
)
def test_api_tiny_inputs_keep_shape(tiny_separator, rate: int, shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    out = tiny_separator.separate(x, rate, ["vocals", "bass"])
    assert all(y.shape == x.shape and np.isfinite(y).all() for y in out.values())


def _fail_on(counter: list[int], at: int, exc: BaseException) -> Callable[[], None]:
    def tick() -> None:
        counter[0] += 1
        if counter[0] == at:
            raise exc

    return tick


def test_api_failure_creating_writers_leaves_no_partials(
    tiny_separator, tmp_path: Path, monkeypatch
) -> None:
    """The third stem's writer fails to open: the two already staged are removed (they used to leak)."""
    import cunet.io.output as output_module

    real, calls = output_module.AtomicAudioWriter, [0]
    tick = _fail_on(calls, 3, AudioError("cannot write to 'out': disk full"))

    def flaky(*args, **kwargs):
        tick()
        return real(*args, **kwargs)

    monkeypatch.setattr(output_module, "AtomicAudioWriter", flaky)
    sf.write(tmp_path / "x.wav", tone(0.3), RATE)
    with pytest.raises(AudioError, match="disk full"):
        separate_file(tiny_separator, tmp_path / "x.wav", tmp_path / "out", progress=False)
    assert calls[0] == 3 and partials(tmp_path) == [] and tree(tmp_path / "out" / "x") == []


@pytest.mark.parametrize("stage", ["finish", "chunk"])
def test_api_failure_late_leaves_no_output_set(
    tiny_separator, tmp_path: Path, monkeypatch, stage: str
) -> None:
    """Encoding the 2nd stem fails (finish), or Ctrl-C arrives mid-file (chunk): no stem is published."""
    from cunet.chunk_separator import ChunkSeparator
    from cunet.io.writer import AtomicAudioWriter

    calls = [0]
    if stage == "finish":
        real_finish = AtomicAudioWriter.finish
        tick = _fail_on(calls, 2, AudioError("cannot encode mp3: ffmpeg failed"))

        def finish(self):
            tick()
            real_finish(self)

        monkeypatch.setattr(AtomicAudioWriter, "finish", finish)
        expected: type[BaseException] = AudioError
    else:
        real_chunk = ChunkSeparator.separate_chunk
        tick = _fail_on(calls, 2, KeyboardInterrupt())

        def process(self, *args):
            tick()
            return real_chunk(self, *args)

        monkeypatch.setattr(ChunkSeparator, "separate_chunk", process)
        expected = KeyboardInterrupt
    sf.write(tmp_path / "x.wav", tone(2.0), RATE)
    before = digest(tmp_path)
    with pytest.raises(expected):
        separate_file(tiny_separator, tmp_path / "x.wav", tmp_path / "out", progress=False)
    assert tree(tmp_path / "out" / "x") == [] and partials(tmp_path) == []
    assert digest(tmp_path) == before


# -- tampered models -------------------------------------------------------------------------------------------


def _rewrite_zip(src: Path, dst: Path, replace: dict[str, bytes | None]) -> Path:
    """Copy a zip, replacing (bytes) or dropping (None) some entries."""
    with zipfile.ZipFile(src) as archive, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as out:
        for name in archive.namelist():
            if name in replace:
                if replace[name] is not None:
                    out.writestr(name, replace[name])
            else:
                out.writestr(name, archive.read(name))
    return dst


def _edit_layer(model_config: dict, name: str, **changes: object) -> dict:
    """A copy of a keras model config with the named layer's entries replaced."""
    edited = json.loads(json.dumps(model_config))
    for layer in edited["config"]["layers"]:
        if layer["name"] == name:
            layer.update(changes)
            return edited
    raise KeyError(name)


@dataclass
class BadModels:
    paths: dict[str, Path]
    marker: Path
    descriptions: dict[str, str]


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory, tiny_model_path: Path) -> BadModels:
    import keras

    root = tmp_path_factory.mktemp("bad models")
    marker = root / "MODEL CODE RAN"
    with zipfile.ZipFile(tiny_model_path) as archive:
        config = json.loads(archive.read("config.json"))
        provenance = json.loads(archive.read("cunet.json"))
        weights = archive.read("model.weights.h5")
    data = tiny_model_path.read_bytes()
    # A Lambda whose code would create the marker file when the model is rebuilt (only the layer object is
    # created here; its function is never called in this process).
    evil = eval(f"lambda x: (open({str(marker)!r}, 'w').close(), x)[1]")  # noqa: S307 - the point of the test
    lambda_config = keras.layers.Lambda(evil, name="enc_act_0").get_config()
    prov = dict(provenance)
    paths: dict[str, Path] = {}
    descriptions = {
        "truncated": "first 60% of a valid .keras (zip cut off)",
        "random_bytes": "64 KiB of random bytes named .keras",
        "empty": "0-byte .keras",
        "lambda_layer": "config.json: a LeakyReLU replaced by a Lambda whose code creates a marker file",
        "unknown_class": "config.json: a layer's class replaced by EvilLayer from module evil_module",
        "non_keras_module": "config.json: a layer's class replaced by os.system",
        "no_provenance": "valid keras model without cunet.json",
        "invalid_provenance": "cunet.json config with n_channels = 3",
        "mismatched_provenance": "cunet.json config with n_bins = 64 (weights are for 128)",
        "truncated_weights": "model.weights.h5 inside the zip cut in half",
        "nan_weights": "mask layer bias set to NaN (file otherwise valid)",
    }
    paths["truncated"] = root / "truncated.keras"
    paths["truncated"].write_bytes(data[: int(len(data) * 0.6)])
    paths["random_bytes"] = root / "random.keras"
    paths["random_bytes"].write_bytes(np.random.default_rng(0).bytes(65536))
    paths["empty"] = root / "empty.keras"
    paths["empty"].write_bytes(b"")
    edits = {
        "lambda_layer": _edit_layer(
            config,
            "enc_act_0",
            class_name="Lambda",
            module="keras.layers",
            registered_name=None,
            config=lambda_config,
        ),
        "unknown_class": _edit_layer(
            config,
            "dec_act_0",
            class_name="EvilLayer",
            module="evil_module",
            registered_name="evil>EvilLayer",
        ),
        "non_keras_module": _edit_layer(
            config, "dec_act_0", class_name="system", module="os", registered_name=None
        ),
    }
    for name, cfg in edits.items():
        paths[name] = _rewrite_zip(
            tiny_model_path, root / f"{name}.keras", {"config.json": json.dumps(cfg)}
        )
    paths["no_provenance"] = _rewrite_zip(
        tiny_model_path, root / "no_provenance.keras", {"cunet.json": None}
    )
    for name, section, key, value in [
        ("invalid_provenance", "audio", "n_channels", 3),
        ("mismatched_provenance", "audio", "n_bins", 64),
    ]:
        prov = json.loads(json.dumps(provenance))
        prov["config"][section][key] = value
        paths[name] = _rewrite_zip(
            tiny_model_path, root / f"{name}.keras", {"cunet.json": json.dumps(prov)}
        )
    paths["truncated_weights"] = _rewrite_zip(
        tiny_model_path,
        root / "truncated_weights.keras",
        {"model.weights.h5": weights[: len(weights) // 2]},
    )
    from cunet.engines.loading import load_keras_model
    from cunet.provenance import save_model

    model, _, _ = load_keras_model(tiny_model_path)
    mask = model.get_layer("mask")
    kernel, bias = mask.get_weights()
    mask.set_weights([kernel, np.full_like(bias, np.nan)])
    paths["nan_weights"] = save_model(model, root / "nan_weights.keras", provenance)
    assert not marker.exists()
    return BadModels(paths, marker, descriptions)


MODEL_ERRORS = {
    "truncated": "not a valid .keras archive",
    "random_bytes": "not a valid .keras archive",
    "empty": "not a valid .keras archive",
    "lambda_layer": "contains Python code",
    "unknown_class": "EvilLayer",
    "non_keras_module": "system",
    "no_provenance": "no cunet provenance",
    "invalid_provenance": "invalid config",
    "mismatched_provenance": "is not the cunet network",
    "truncated_weights": "weights do not match their recorded checksum",
}


@pytest.mark.parametrize("name", list(MODEL_ERRORS))
def test_api_rejects_tampered_model(bad_models: BadModels, name: str) -> None:
    from cunet.errors import ModelError
    from cunet.separator import Separator

    path = bad_models.paths[name]
    with pytest.raises(ModelError) as err:
        Separator.from_pretrained(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and MODEL_ERRORS[name] in message, message
    assert len(message) < 600
    assert not bad_models.marker.exists()
    _observe(
        case=f"api_model_{name}",
        what=bad_models.descriptions[name],
        outcome="ModelError",
        message=message.replace(str(path.parent) + "/", ""),
    )


def test_api_model_with_nan_weights_fails_cleanly(bad_models: BadModels, tmp_path: Path) -> None:
    from cunet.errors import ModelError
    from cunet.separator import Separator

    sep = Separator.from_pretrained(
        bad_models.paths["nan_weights"], chunks=ChunkSettings(1.0, 0.25)
    )
    sf.write(tmp_path / "x.wav", tone(0.5), RATE)
    with pytest.raises(ModelError, match="NaN or infinite") as err:
        separate_file(sep, tmp_path / "x.wav", tmp_path / "out", progress=False)
    assert tree(tmp_path / "out" / "x") == [] and partials(tmp_path) == []
    _observe(
        case="api_model_nan_weights",
        what=bad_models.descriptions["nan_weights"],
        outcome="loads; separate_file raises ModelError, no outputs",
        message=str(err.value),
    )


# Through the CLI: five of the files above (the others are covered through the API above).
CLI_MODELS = ["truncated", "random_bytes", "lambda_layer", "unknown_class", "no_provenance"]


@pytest.mark.parametrize("name", CLI_MODELS)
def test_cli_rejects_tampered_model(bad_models: BadModels, tmp_path: Path, name: str) -> None:
    sf.write(tmp_path / "song.wav", tone(0.5), RATE)
    path = bad_models.paths[name]
    proc = run_cli(["song.wav", "-o", "out", "--model", str(path), *FAST], tmp_path)
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert (
        lines[0].startswith("error: ") and str(path) in lines[0] and MODEL_ERRORS[name] in lines[0]
    ), lines[0]
    assert not (tmp_path / "out").exists()
    assert not bad_models.marker.exists()
    _observe(
        case=f"model_{name}",
        what=bad_models.descriptions[name],
        outcome="error",
        exit=proc.returncode,
        message=lines[0].replace(str(path.parent) + "/", ""),
    )


def test_loading_never_runs_code_from_the_model_file(bad_models: BadModels) -> None:
    """The Lambda model is refused without running its code -- even after some other code in the process
    switched keras to unsafe deserialization -- while keras with safe_mode=False does run it (the control
    that shows the file really carries code)."""
    import keras
    from keras.src.backend.common import global_state

    from cunet.errors import ModelError
    from cunet.separator import Separator

    path = bad_models.paths["lambda_layer"]
    previous = global_state.get_global_attribute("safe_mode_saving")
    keras.config.enable_unsafe_deserialization()
    try:
        with pytest.raises(ModelError, match="contains Python code"):
            Separator.from_pretrained(path)
    finally:
        global_state.set_global_attribute("safe_mode_saving", previous)
    assert not bad_models.marker.exists()

    try:
        keras.saving.load_model(path, compile=False, safe_mode=False)
    except Exception:  # noqa: BLE001 - the rebuilt graph may not match the weights; the code ran before that
        pass
    assert bad_models.marker.exists(), (
        "control failed: the crafted Lambda did not run even when allowed"
    )
    bad_models.marker.unlink()
    _observe(
        case="model_code_execution",
        what="Lambda model loaded via Separator.from_pretrained after "
        "keras.config.enable_unsafe_deserialization()",
        outcome="ModelError, marker file not created",
        control="keras.saving.load_model(safe_mode=False) creates the marker",
    )
