"""Sizes, names, streams and races a hostile user can aim at the inputs and outputs: every size a header,
an option or a model record declares is checked before memory is committed to it; float options that
become sample counts cannot overflow; names need not be UTF-8; folders may be deep or partly unreadable;
standard streams may be closed; an input may shrink while it is read. Each case ends in a correct result
or in one `error:` line with exit code 2, no traceback, no partial file.

Helpers come from test_robustness; CUNET_ROBUSTNESS_LOG=FILE also gets these outcomes.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_robustness import (
    RATE,
    _env,
    _staged_bytes,
    check_outputs,
    error_lines,
    make_observer,
    partials,
    privilege_drop,
    tone,
    tree,
)

from cunet.io.audio import ffmpeg_available

CLI = [sys.executable, "-m", "cunet.cli", "separate"]
_observe, _write_observations = make_observer()


def separate(
    args: list, cwd: Path, data: bytes | None = b"", timeout: float = 300, **kw
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        input=data,
        capture_output=True,
        timeout=timeout,
        env=_env(),
        **kw,
    )


def one_error(proc: subprocess.CompletedProcess) -> str:
    stderr = os.fsdecode(proc.stderr) if isinstance(proc.stderr, bytes) else proc.stderr
    lines = error_lines(stderr)
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, stderr)
    return lines[0]


# The CLI, reporting its own peak resident memory (VmHWM, kB; per process image, unlike ru_maxrss, which a
# child inherits from the forking test process) into the file named by its first argument.
_MEASURED = (
    "import atexit, runpy, sys\n"
    "out = sys.argv.pop(1)\n"
    "def peak():\n"
    "    status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
    "    open(out, 'w').write(status.split()[0])\n"
    "atexit.register(peak)\n"
    "sys.argv[0] = 'cunet'\n"
    "runpy.run_module('cunet.cli', run_name='__main__')\n"
)


def measured(args: list, cwd: Path) -> tuple[int, str, int]:
    """(exit code, stderr, peak resident kB) of one `separate` call."""
    peak = cwd / "peak.txt"
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURED, str(peak), "separate", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    kb = int(peak.read_text())
    peak.unlink()
    return proc.returncode, proc.stderr, kb


def wav_header(
    channels: int, bits: int, tag: int = 1, rate: int = RATE, fmt_size: int = 16
) -> bytes:
    """A streaming WAV header (sizes unknown) whose `fmt ` chunk declares `fmt_size` bytes."""
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    return (
        b"RIFF\xff\xff\xff\xffWAVEfmt "
        + struct.pack("<I", fmt_size)
        + fmt
        + (b"" if fmt_size != 16 else b"data\xff\xff\xff\xff")
    )


def check_stems(folder: str | bytes, n_samples: int) -> None:
    """The four stems in `folder`, read through file objects: libsndfile opens no name that is not
    UTF-8, nor one longer than 1 kB."""
    for name in (b"vocals", b"drums", b"bass", b"other"):
        with open(os.path.join(os.fsencode(folder), name + b".wav"), "rb") as f:
            x, rate = sf.read(f)
        assert x.shape == (n_samples, 2) and rate == RATE and np.isfinite(x).all()


def remove_tree(top: Path) -> None:
    """Delete a folder tree without recursion (shutil.rmtree and os.walk recurse on Python 3.11)."""
    if not top.exists():
        return
    stack, folders = [str(top)], []
    while stack:
        here = stack.pop()
        folders.append(here)
        with os.scandir(here) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    os.unlink(entry.path)
    for here in reversed(folders):
        os.rmdir(here)


@pytest.fixture
def song(tmp_path: Path) -> Path:
    sf.write(tmp_path / "a.wav", tone(2.0), RATE)
    return tmp_path


# -- sizes declared by a stdin header: refused from the header, before the samples are read --------------------


@pytest.mark.parametrize(
    "name,header,message",
    [
        ("2000_channels_8bit", wav_header(2000, 8), "2000 channels are not supported"),
        ("1024_channels_float64", wav_header(1024, 64, tag=3), "1024 channels are not supported"),
        ("huge_fmt_chunk", wav_header(2, 16, fmt_size=0xFFFFFFF0), "a format chunk of 4294967280"),
        ("rate_1_hz", wav_header(2, 16, rate=1), "a sample rate of 1 Hz is too low"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v else "",
)
def test_stdin_header_sizes_are_refused_before_the_samples(
    song: Path, tiny_tflite_path: Path, name: str, header: bytes, message: str
) -> None:
    """The header is followed by a stream that never ends: the refusal must come from the header alone
    (before: a traceback, or gigabytes spooled before the refusal)."""
    proc = subprocess.Popen(
        [*CLI, "-", "-o", "out", "-q", "--model", str(tiny_tflite_path)],
        cwd=song,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(header + bytes(1 << 16))
        proc.stdin.flush()
    except BrokenPipeError:
        pass
    stdout, stderr = proc.communicate(timeout=120)  # stdin stays open: only the header decides
    line = one_error(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    assert line.startswith("error: stdin: ") and message in line, line
    assert not (song / "out").exists()
    _observe(case=f"stdin_{name}", outcome="error", exit=2, message=line)


@pytest.mark.parametrize("rate", ["1", "999"])
def test_raw_rate_below_the_minimum(song: Path, rate: str) -> None:
    raw = ["--raw-format", "s16le", "--raw-rate", rate, "--raw-channels", "2"]
    for extra in ([], ["--stream"]):
        line = one_error(separate(["-", "-o", "out", *raw, *extra], song, bytes(20000)))
        assert f"--raw-rate must be a sample rate in Hz in [1000, 768000], got {rate}" in line
    _observe(case=f"raw_rate_{rate}", outcome="error", exit=2, message=line)


def test_float64_beyond_float32_is_one_line(song: Path, tiny_tflite_path: Path) -> None:
    x = np.full((1000, 2), 1e300)
    x[::2] *= -1
    data = x.astype("<f8").tobytes()
    header = wav_header(2, 64, tag=3)[:-4] + struct.pack("<I", len(data))
    line = one_error(
        separate(["-", "-o", "out", "-q", "--model", tiny_tflite_path], song, header + data)
    )
    assert line == "error: stdin: input contains NaN or infinite samples"  # no RuntimeWarning lines
    _observe(case="stdin_float64_1e300", outcome="error", exit=2, message=line)


# -- float options that become sample counts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["a.wav", "-o", "out", "--start", "1e308"],
        ["a.wav", "--stream", "-o", "out.f32", "--start", "1e308"],
        ["-", "--stream", "-o", "out.f32", "--start", "1e308"],
        ["a.wav", "-o", "out", "--duration", "1e300"],
    ],
    ids=["file", "file_stream", "stdin_stream", "duration"],
)
def test_huge_start_or_duration(song: Path, args: list[str]) -> None:
    """Before: an OverflowError traceback (--stream) or an "unexpected OverflowError" line."""
    option = args[-2]
    data = (song / "a.wav").read_bytes() if args[0] == "-" else b""
    line = one_error(separate([*args, "-q"], song, data))
    assert f"{option} must be a number of seconds in" in line and "Overflow" not in line, line
    assert tree(song) == ["a.wav"]
    _observe(case=f"huge_{option[2:]}_{args[0]}", outcome="error", exit=2, message=line)


@pytest.mark.skipif(not ffmpeg_available(), reason="needs ffmpeg")
@pytest.mark.parametrize("stream", [False, True], ids=["files", "stream"])
def test_duration_below_one_sample_through_ffmpeg(
    song: Path, tiny_tflite_path: Path, stream: bool
) -> None:
    """Before: mp3/m4a/.stem.mp4 (decoded by ffmpeg) separated the whole file; wav refused it."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "a.wav", "a.mp3"], cwd=song, check=True, timeout=120
    )
    out = ["--stream", "-o", "out.f32"] if stream else ["-o", "out"]
    for name in ("a.mp3", "a.wav"):
        line = one_error(
            separate([name, *out, "-q", "--duration", "1e-5", "--model", tiny_tflite_path], song)
        )
        assert "--duration 1e-05 s is shorter than one sample at 44100 Hz" in line, line
    assert sorted(tree(song)) == ["a.mp3", "a.wav"]
    _observe(case=f"duration_1e-5_mp3_{'stream' if stream else 'files'}", message=line)


# -- memory bounded whatever the options -----------------------------------------------------------------------


def test_latency_does_not_grow_memory(song: Path, tiny_tflite_path: Path) -> None:
    """`--latency 600` is accepted, but its chunks are no longer than the default chunk: memory is that of
    the default chunking (before: 3.8 GB with the tiny model for a 2 s file, 7.95 GB with the shipped one)."""
    from cunet.chunking import MAX_LATENCY_CHUNK_SECONDS, chunks_for_latency
    from cunet.config import AudioConfig

    assert chunks_for_latency(600, AudioConfig(), 64).chunk_seconds <= MAX_LATENCY_CHUNK_SECONDS
    peaks = {}
    for latency in ("1", "600"):
        code, stderr, peaks[latency] = measured(
            ["a.wav", "--stream", "--latency", latency, "-o", f"out{latency}.f32"]
            + ["--model", str(tiny_tflite_path)],
            song,
        )
        assert code == 0 and "Traceback" not in stderr, stderr
    assert peaks["600"] < 600_000, peaks  # kB
    _observe(case="latency_600_memory", outcome="separated", peak_kB=peaks)


# -- paths that are not UTF-8 ----------------------------------------------------------------------------------------


def test_names_that_are_not_utf8(song: Path, tiny_tflite_path: Path) -> None:
    """Linux names are bytes: an input, -o or --filename with a byte that is not UTF-8 separates."""
    base = os.fsencode(song)
    os.rename(base + b"/a.wav", base + b"/b\xff.wav")
    model = ["-q", "--model", str(tiny_tflite_path)]
    bad = os.fsdecode(b"b\xff.wav")
    for args in (
        [bad, "--stream", "-o", "s.f32"],
        [bad, "-o", "out1"],
        [bad, "-o", os.fsdecode(b"out\xfe")],
        [bad, "-o", "out3", "--filename", os.fsdecode(b"{track}/\xfd{stem}.{ext}")],
    ):
        proc = separate([*args, *model], song)
        assert proc.returncode == 0 and not proc.stderr, (args, proc.stderr)
    assert (song / "s.f32").stat().st_size == 2 * RATE * 8 * 4
    check_stems(base + b"/out1/b\xff", 2 * RATE)
    check_stems(base + b"/out\xfe/b\xff", 2 * RATE)
    written = sorted(os.listdir(base + b"/out3/b\xff"))
    assert written == [b"\xfd" + n + b".wav" for n in (b"bass", b"drums", b"other", b"vocals")]
    _observe(case="non_utf8_names", outcome="separated", exit=0)


# -- folders: deep, partly unreadable ---------------------------------------------------------------------------------


def test_a_very_deep_folder_tree(song: Path, tiny_tflite_path: Path) -> None:
    """1200 nested folders (a 2.4 kB path, legal): before, a RecursionError after 15 s and nothing done."""
    deep = song / "deep"
    deep.mkdir()
    os.link(song / "a.wav", deep / "top.wav")
    here = str(deep)
    for _ in range(1200):
        here += "/d"
        os.mkdir(here)
    os.link(song / "a.wav", here + "/bottom.wav")
    try:
        proc = separate(["deep", "-r", "-o", "out", "-q", "--model", tiny_tflite_path], song)
        assert proc.returncode == 0 and not proc.stderr, proc.stderr
        check_outputs(song / "out" / "top", 2 * RATE, RATE, 2)
        check_stems(str(song / "out") + "/d" * 1200 + "/bottom", 2 * RATE)
    finally:  # pytest's own clean-up (shutil.rmtree) recurses, and would fail on these trees
        for top in (song / "deep", song / "out"):
            remove_tree(top)
    _observe(case="deep_tree_1200", outcome="separated", exit=0)


def test_an_unreadable_subfolder_is_a_note(song: Path, tiny_tflite_path: Path) -> None:
    prefix = privilege_drop()
    if prefix is None:
        pytest.skip("cannot drop root's permission override here")
    (song / "in" / "locked").mkdir(parents=True)
    sf.write(song / "in" / "ok.wav", tone(0.5), RATE)
    sf.write(song / "in" / "locked" / "x.wav", tone(0.5), RATE)
    (song / "in" / "locked").chmod(0)
    try:
        proc = subprocess.run(
            [*prefix, *CLI, "in", "-r", "-o", "out", "--model", str(tiny_tflite_path)],
            cwd=song,
            capture_output=True,
            text=True,
            timeout=300,
            env=_env(),
        )
    finally:
        (song / "in" / "locked").chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert "note: in/locked: skipped (cannot list the folder: Permission denied)" in proc.stderr
    check_outputs(song / "out" / "ok", RATE // 2, RATE, 2)
    _observe(case="unreadable_subfolder", outcome="note; the rest separated", exit=0)


# -- closed standard streams -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,args,fd,message",
    [
        ("stdin", ["-", "-o", "out"], 0, "error: stdin is closed"),
        ("stdout", ["a.wav", "--stream"], 1, "error: stdout is closed"),
        ("stderr", ["missing.wav", "-o", "out"], 2, None),
    ],
)
def test_closed_standard_streams(
    song: Path, tiny_tflite_path: Path, name: str, args: list[str], fd: int, message: str | None
) -> None:
    proc = subprocess.run(
        [*CLI, *args, "-q", "--model", str(tiny_tflite_path)],
        cwd=song,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        preexec_fn=lambda: os.close(fd),  # after the pipes are in place: `<&-`, `>&-`, `2>&-`
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr, proc.stdout)
    if message is not None:
        assert one_error(proc).startswith(message)
    else:
        assert proc.stderr == "" and "Traceback" not in proc.stdout
    assert tree(song) == ["a.wav"]
    _observe(case=f"closed_{name}", outcome="error", exit=2, message=message)


# -- an input that shrinks while it is read --------------------------------------------------------------------------


def test_input_truncated_while_separated(song: Path, tiny_tflite_path: Path) -> None:
    """Before: exit 0 with stems of the original length, silent after the cut, and no note."""
    sf.write(song / "long.wav", tone(60.0), RATE, subtype="PCM_16")
    proc = subprocess.Popen(
        [*CLI, "long.wav", "-o", "out", "-q", "--chunk-seconds", "1", "--overlap-seconds", "0.25"]
        + ["--model", str(tiny_tflite_path)],
        cwd=song,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    deadline = time.monotonic() + 120
    while _staged_bytes(song / "out") < 50_000 and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.truncate(song / "long.wav", 2_000_000)
    _, stderr = proc.communicate(timeout=300)
    line = one_error(subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr))
    assert "long.wav: the file ended after" in line and "shrank while it was read" in line, line
    assert not (song / "out" / "long").exists() and partials(song / "out") == []
    _observe(case="input_truncated_while_read", outcome="error", exit=2, message=line)


# -- output options ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [".{stem}.999999.abc.cunet-partial", "{track}/x.cunet-partial{stem}.{ext}"],
)
def test_filename_like_a_partial_file(song: Path, template: str) -> None:
    """Before: written, then deleted by the next plain run as a dead process's leftovers."""
    line = one_error(separate(["a.wav", "-o", "out", "-q", "--filename", template], song))
    assert "cunet's partial files" in line and tree(song) == ["a.wav"], line
    _observe(case="filename_partial", outcome="error", exit=2, message=line)


def test_mp3_bitrate_zero(song: Path) -> None:
    """Before: accepted, and written at 320 kbit/s."""
    line = one_error(separate(["a.wav", "-o", "out", "-f", "mp3", "--mp3-bitrate", "0"], song))
    assert "--mp3-bitrate must be one of 32, " in line and line.endswith("got 0"), line
    _observe(case="mp3_bitrate_0", outcome="error", exit=2, message=line)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--bits", "8"], "argument --bits: invalid choice: '8'"),
        (["--raw-format", "s32le"], "argument --raw-format: invalid choice: 's32le'"),
        (["--start", "0x10"], "argument --start: invalid float value: '0x10'"),
        (["-f", "ogg"], "argument -f/--format: invalid choice: 'ogg'"),
    ],
)
def test_bad_option_types_are_one_line(song: Path, args: list[str], message: str) -> None:
    """Before: argparse's 14-line usage block, then the error."""
    start = time.monotonic()
    line = one_error(separate(["a.wav", *args], song))
    assert line.startswith(f"error: {message}") and line.endswith("(see 'cunet separate --help')")
    assert time.monotonic() - start < 60
    _observe(case=f"argparse_{args[0]}", outcome="error", exit=2, message=line)
