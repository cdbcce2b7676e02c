"""`separate` through the CLI: folders, --filename, bit depths, clipping, excerpts, stdin/stdout,
streaming, and the instruments of the model in use. Most calls run `main()` in this process (TensorFlow is
loaded once); the pipes run the real command in a subprocess."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import synth_mixture
from test_robustness import _env, error_lines

from cunet.cli import separate_main

RATE = 44100
FAST = ["--chunk-seconds", "1", "--overlap-seconds", "0.25"]


def run(args: list[str], capsys) -> tuple[int, list[str]]:
    """`separate ARGS` in-process: exit code and stderr lines but progress bars (checked for tracebacks)."""
    code = separate_main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    progress = [
        line for line in lines if not line.startswith(("note: ", "error: ")) and " -> " not in line
    ]
    assert all("%|" in line for line in progress), progress  # tqdm bars only
    return code, [line for line in lines if line not in progress]


def read(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float32", always_2d=True)[0]


def test_help_names_the_shipped_instruments_and_new_options(capsys) -> None:
    with pytest.raises(SystemExit):
        separate_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "The shipped model has vocals, drums, bass, other; other models may have others" in text
    for option in (
        "--filename",
        "--bits",
        "--clip",
        "--mp3-bitrate",
        "--start",
        "--duration",
        "--stream",
        "--latency",
        "--raw-format",
        "--recursive",
    ):
        assert option in text


def test_help_choices_agree_with_the_modules() -> None:
    """--help keeps copies (no numpy import); they must match the modules that own them."""
    from cunet.commands import POSTPROCESS_CHOICES
    from cunet.commands import separate as command
    from cunet.io.naming import DEFAULT_TEMPLATE
    from cunet.io.output import CLIP_MODES
    from cunet.io.pcm import INPUT_ENCODINGS
    from cunet.io.writer import BITS
    from cunet.postprocess import MODES

    assert (
        command.BITS_CHOICES,
        command.CLIP_CHOICES,
        command.RAW_CHOICES,
        POSTPROCESS_CHOICES,
        command.DEFAULT_FILENAME,
    ) == (BITS, CLIP_MODES, INPUT_ENCODINGS, MODES, DEFAULT_TEMPLATE)


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """music/{a.wav, B.flac, cover.jpg, .junk.wav, album/{c.wav, notes.txt, deep/d.ogg}}."""
    root = tmp_path / "music"
    for i, rel in enumerate(["a.wav", "B.flac", "album/c.wav", "album/deep/d.ogg"]):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, synth_mixture(0.3, seed=i), RATE)
    (root / "cover.jpg").write_bytes(b"\xff\xd8 not audio")
    (root / "album" / "notes.txt").write_text("liner notes")
    (root / ".junk.wav").write_bytes(b"resource fork")
    return root


def test_folders_recursive_in_a_stable_order_skipping_non_audio(
    library: Path, tiny_model_path: Path, capsys
) -> None:
    out = library / "separated"  # inside the scanned folder: never taken as input
    code, lines = run(
        [library, "-r", "-o", out, "-i", "vocals", "--model", tiny_model_path, *FAST], capsys
    )
    assert code == 0
    notes = [line for line in lines if line.startswith("note:")]
    done = [line.split(" -> ")[0] for line in lines if " -> " in line]
    assert sorted(notes) == [
        f"note: {library / 'album' / 'notes.txt'}: skipped (not an audio file)",
        f"note: {library / 'cover.jpg'}: skipped (not an audio file)",
    ]
    assert done == [
        str(library / p) for p in ("a.wav", "B.flac", "album/c.wav", "album/deep/d.ogg")
    ]
    found = sorted(str(p.relative_to(out)) for p in out.rglob("*.wav"))
    assert found == [
        "B/vocals.wav",
        "a/vocals.wav",
        "album/c/vocals.wav",
        "album/deep/d/vocals.wav",
    ]
    assert read(out / "album" / "deep" / "d" / "vocals.wav").shape == (int(0.3 * RATE), 2)
    # A second run finds the same inputs, not the outputs of the first; without -r, only the top folder.
    code, lines = run(
        [library, "-o", out, "-i", "vocals", "--force", "--model", tiny_model_path, *FAST], capsys
    )
    assert code == 0 and [line.split(" -> ")[0] for line in lines if " -> " in line] == [
        str(library / "a.wav"),
        str(library / "B.flac"),
    ]
    assert f"note: {library / 'album'}: skipped (a folder; -r separates subfolders too)" in lines


def test_filename_template_with_index_and_folder(
    library: Path, tiny_model_path: Path, capsys
) -> None:
    out = library.parent / "out"
    code, _ = run(
        [
            library / "album",
            "-r",
            "-o",
            out,
            "-i",
            "bass,vocals",
            "-f",
            "flac",
            "--bits",
            "24",
            "--filename",
            "{index:02d}-{stem}/{folder}/{track}.{ext}",
            "--model",
            tiny_model_path,
            *FAST,
            "-q",
        ],
        capsys,
    )
    assert code == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.flac")) == [
        "01-vocals/c.flac",
        "01-vocals/deep/d.flac",
        "03-bass/c.flac",
        "03-bass/deep/d.flac",
    ]
    assert sf.info(out / "03-bass" / "c.flac").subtype == "PCM_24"


@pytest.mark.parametrize(
    "template,message",
    [
        ("../{track}/{stem}.{ext}", "'..' components are not allowed"),
        ("/tmp/{track}/{stem}.{ext}", "not an absolute path"),
        ("{track}/../../{stem}", "'..' components are not allowed"),
        ("{stem.__class__}", "unknown field '{stem.__class__}'"),
        ("{0}/{stem}", "unknown field '{0}'"),
        ("{track}/{stem", "expected '}' before end of string"),
        (
            "{instrument}.{ext}",
            "unknown field '{instrument}' (valid: {track}, {stem}, {ext}, {index}, {folder})",
        ),
    ],
)
def test_bad_templates_fail_before_any_work(
    tmp_path: Path, template: str, message: str, capsys
) -> None:
    sf.write(tmp_path / "song.wav", synth_mixture(0.2), RATE)
    code, lines = run(
        [
            tmp_path / "song.wav",
            "-o",
            tmp_path / "out",
            "--filename",
            template,
            "--model",
            tmp_path / "not-loaded.keras",
        ],
        capsys,
    )  # the model is never reached
    assert (
        code == 2
        and len(lines) == 1
        and lines[0].startswith("error: --filename")
        and message in lines[0]
    )
    assert not (tmp_path / "out").exists()


def test_two_inputs_mapping_to_one_output_fail_before_any_work(
    tmp_path: Path, tiny_model_path: Path, capsys
) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "song.wav", synth_mixture(0.2), RATE)
    code, lines = run(
        [
            tmp_path / "a" / "song.wav",
            tmp_path / "b" / "song.wav",
            "-o",
            tmp_path / "out",
            "--model",
            tiny_model_path,
            *FAST,
        ],
        capsys,
    )
    assert code == 2 and len(lines) == 1
    assert lines[0] == (
        f"error: inputs '{tmp_path / 'a' / 'song.wav'}' and '{tmp_path / 'b' / 'song.wav'}' would "
        f"both be written to '{tmp_path / 'out' / 'song' / 'vocals.wav'}'; make --filename tell them "
        "apart (fields: {folder}, {track}, {stem}, {index}, {ext})"
    )
    assert not (tmp_path / "out").exists()
    # Two stems of one input: a template without {stem} or {index}.
    code, lines = run(
        [
            tmp_path / "a" / "song.wav",
            "-o",
            tmp_path / "out",
            "-i",
            "vocals,bass",
            "--filename",
            "{track}.{ext}",
            "--model",
            tiny_model_path,
            *FAST,
        ],
        capsys,
    )
    assert code == 2 and "'vocals' and 'bass' of song would both be written" in lines[0]
    assert not (tmp_path / "out").exists()


def test_bit_depths_round_trip_and_clip_modes(
    tmp_path: Path, tiny_model_path: Path, capsys
) -> None:
    x = 3.0 * synth_mixture(1.0, seed=1)  # beyond full scale: a float wav holds it
    sf.write(tmp_path / "loud.wav", x, RATE, subtype="FLOAT")
    common = [
        tmp_path / "loud.wav",
        "-i",
        "vocals,drums",
        "--residual",
        "--model",
        tiny_model_path,
        *FAST,
    ]
    assert run([*common, "-o", tmp_path / "f", "--bits", "32f", "-q"], capsys)[0] == 0
    ref = {
        k: read(tmp_path / "f" / "loud" / f"{k}.wav")
        for k in ("vocals", "drums", "no_vocals", "no_drums")
    }
    assert max(np.abs(y).max() for y in ref.values()) > 1.0  # --clip none: kept beyond full scale
    peak = max(np.abs(y).max() for y in ref.values())

    code, lines = run(
        [*common, "-o", tmp_path / "c", "--bits", "24"], capsys
    )  # clamp (the default)
    over = sum(int(np.count_nonzero(np.abs(y) > 1)) for y in ref.values())
    assert (
        code == 0
        and f"note: {tmp_path / 'loud.wav'}: clamped {over} samples beyond full scale" in lines[0]
    )
    for key, y in ref.items():
        z = read(tmp_path / "c" / "loud" / f"{key}.wav")
        assert sf.info(tmp_path / "c" / "loud" / f"{key}.wav").subtype == "PCM_24"
        np.testing.assert_allclose(z, np.clip(y, -1, 1), atol=2.0**-23)  # 24-bit round trip

    code, lines = run([*common, "-o", tmp_path / "r", "--clip", "rescale", "--bits", "32f"], capsys)
    assert code == 0 and f"all outputs scaled by {1 / peak:.4f}" in lines[0]
    for key, y in ref.items():  # one gain for all: stems + residuals still add up
        np.testing.assert_allclose(
            read(tmp_path / "r" / "loud" / f"{key}.wav"), y / peak, atol=1e-6
        )

    code, lines = run([*common, "-o", tmp_path / "n", "--clip", "none"], capsys)
    assert (
        code == 2
        and "--clip none keeps samples beyond full scale" in lines[0]
        and not (tmp_path / "n").exists()
    )


def _hop_samples(
    chunk_seconds: float = 1.0, overlap: int = int(0.25 * RATE)
) -> tuple[int, int, int]:
    from cunet.config import AudioConfig
    from cunet.settings import ChunkSettings

    audio = AudioConfig(n_fft=256, hop_length=128, n_bins=128)  # configs/tiny.yaml
    chunk, ov = ChunkSettings(chunk_seconds, overlap / RATE).samples(audio, 64)
    return chunk, ov, chunk - ov


def test_excerpt_matches_the_full_run_away_from_the_edges(
    tmp_path: Path, tiny_model_path: Path, capsys
) -> None:
    """The excerpt starts on a chunk boundary of the full run: every chunk that sees only the excerpt's own
    samples is the same chunk in both runs, so the output there is the same."""
    chunk, overlap, hop = _hop_samples()
    x = synth_mixture(6.0, seed=2)
    sf.write(tmp_path / "song.flac", x, RATE, subtype="PCM_24")
    common = ["-i", "vocals", "--bits", "32f", "--model", tiny_model_path, *FAST, "-q"]
    assert run([tmp_path / "song.flac", "-o", tmp_path / "full", *common], capsys)[0] == 0
    start, length = 2 * hop, int(2.5 * RATE)
    assert (
        run(
            [
                tmp_path / "song.flac",
                "-o",
                tmp_path / "part",
                "--start",
                repr(start / RATE),
                "--duration",
                repr(length / RATE),
                *common,
            ],
            capsys,
        )[0]
        == 0
    )
    full, part = (
        read(tmp_path / "full" / "song" / "vocals.wav"),
        read(tmp_path / "part" / "song" / "vocals.wav"),
    )
    assert part.shape == (length, 2)
    # Excerpt chunk j covers excerpt samples [j*hop - overlap, j*hop - overlap + chunk); chunk 0 sees the zeros
    # before the start, chunks reaching past the end see zeros after it.
    first_bad_end = min(j for j in range(100) if j * hop - overlap + chunk > length)
    lo, hi = hop, first_bad_end * hop - overlap
    assert hi - lo > RATE // 2
    np.testing.assert_allclose(part[lo:hi], full[start + lo : start + hi], atol=1e-4)


def test_model_instruments_through_the_cli(
    tmp_path: Path, five_instrument_model_path: Path, capsys
) -> None:
    sf.write(tmp_path / "song.wav", synth_mixture(0.3), RATE)
    code, _ = run(
        [
            tmp_path / "song.wav",
            "-i",
            "guitar",
            "-o",
            tmp_path / "out",
            "--model",
            five_instrument_model_path,
            *FAST,
            "-q",
        ],
        capsys,
    )
    assert code == 0 and read(tmp_path / "out" / "song" / "guitar.wav").shape == (
        int(0.3 * RATE),
        2,
    )
    code, lines = run(
        [
            tmp_path / "song.wav",
            "-i",
            "guitar,piano",
            "-o",
            tmp_path / "out2",
            "--model",
            five_instrument_model_path,
            *FAST,
        ],
        capsys,
    )
    assert code == 2 and lines == [
        "error: unknown instrument 'piano' for this model (it separates: vocals, drums, "
        "bass, other, guitar)"
    ]
    code, _ = run(
        [
            tmp_path / "song.wav",
            "-o",
            tmp_path / "all",
            "--model",
            five_instrument_model_path,
            *FAST,
            "-q",
        ],
        capsys,
    )
    assert code == 0 and sorted(p.stem for p in (tmp_path / "all" / "song").iterdir()) == [
        "bass",
        "drums",
        "guitar",
        "other",
        "vocals",
    ]


# -- pipes: the real command in a subprocess ------------------------------------------------------------------


def pipe(
    args: list[str], data: bytes, cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cunet.cli", "separate", *map(str, args)],
        input=data,
        cwd=cwd,
        capture_output=True,
        timeout=timeout,
        env=_env(),
    )


def test_stdin_wav_to_files_and_raw_stream_to_stdout(
    tmp_path: Path, tiny_model_path: Path, capsys
) -> None:
    x = synth_mixture(2.0, seed=3)
    sf.write(tmp_path / "song.wav", x, RATE, subtype="FLOAT")
    model = ["--model", tiny_model_path]
    # Files from a WAV on stdin equal those from the file.
    wav = io.BytesIO()
    sf.write(wav, x, RATE, format="WAV", subtype="FLOAT")
    proc = pipe(
        ["-", "-o", "out", "-i", "bass", "--bits", "32f", *model, *FAST, "-q"],
        wav.getvalue(),
        tmp_path,
    )
    assert proc.returncode == 0 and error_lines(proc.stderr.decode()) == []
    assert (
        run(
            [
                tmp_path / "song.wav",
                "-o",
                tmp_path / "ref",
                "-i",
                "bass",
                "--bits",
                "32f",
                *model,
                *FAST,
                "-q",
            ],
            capsys,
        )[0]
        == 0
    )
    np.testing.assert_allclose(
        read(tmp_path / "out" / "stdin" / "bass.wav"),
        read(tmp_path / "ref" / "song" / "bass.wav"),
        atol=1e-6,
    )
    # Raw PCM in, the separated stream out, equal to the offline run with the same chunking (--latency).
    assert (
        run(
            [
                tmp_path / "song.wav",
                "-o",
                tmp_path / "lat",
                "-i",
                "vocals,drums",
                "--latency",
                "0.5",
                "--bits",
                "32f",
                *model,
                "-q",
            ],
            capsys,
        )[0]
        == 0
    )
    proc = pipe(
        [
            "-",
            "--stream",
            "--raw-format",
            "f32le",
            "--raw-rate",
            RATE,
            "--raw-channels",
            2,
            "-i",
            "vocals,drums",
            "--latency",
            "0.5",
            "-o",
            "-",
            *model,
        ],
        x.astype("<f4").tobytes(),
        tmp_path,
    )
    lines = proc.stderr.decode().splitlines()
    assert proc.returncode == 0 and all(line.startswith("note: ") for line in lines), lines
    assert (
        "f32le, 44100 Hz, 4 channels; latency bound" in lines[0] and "measured median" in lines[-1]
    )
    y = np.frombuffer(proc.stdout, "<f4").reshape(-1, 4)  # vocals L R, drums L R
    assert y.shape[0] == x.shape[0]
    np.testing.assert_allclose(y[:, :2], read(tmp_path / "lat" / "song" / "vocals.wav"), atol=1e-4)
    np.testing.assert_allclose(y[:, 2:], read(tmp_path / "lat" / "song" / "drums.wav"), atol=1e-4)
    # 16-bit in and out, a WAV file streamed into a raw file.
    proc = pipe(
        [
            "song.wav",
            "--stream",
            "-i",
            "vocals",
            "--latency",
            "0.5",
            "--bits",
            "16",
            "-o",
            "v.s16",
            *model,
            "-q",
        ],
        b"",
        tmp_path,
    )
    assert proc.returncode == 0 and proc.stderr == b"" and proc.stdout == b""
    v = np.frombuffer((tmp_path / "v.s16").read_bytes(), "<i2").reshape(-1, 2) / 32768
    np.testing.assert_allclose(v, read(tmp_path / "lat" / "song" / "vocals.wav"), atol=1.5 / 32768)


def test_stream_into_a_named_pipe(tmp_path: Path, tiny_model_path: Path, capsys) -> None:
    """-o an existing FIFO: written as the audio comes, like stdout (no --force, nothing renamed)."""
    import os
    import threading

    x = synth_mixture(1.0, seed=5)
    sf.write(tmp_path / "song.wav", x, RATE)
    fifo = tmp_path / "vocals.pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    code, lines = run(
        [
            tmp_path / "song.wav",
            "--stream",
            "-i",
            "vocals",
            "-o",
            fifo,
            "--latency",
            "0.5",
            "--model",
            tiny_model_path,
        ],
        capsys,
    )
    reader.join(timeout=60)
    assert code == 0 and lines[0].startswith(
        "note: streaming vocals as f32le, 44100 Hz, 2 channels"
    )
    assert np.frombuffer(got[0], "<f4").reshape(-1, 2).shape == x.shape and fifo.exists()


def test_shifts_option(tmp_path, tiny_model_path, capsys) -> None:
    song = tmp_path / "song.wav"
    sf.write(song, synth_mixture(1.5), RATE)
    base = ["-o", tmp_path / "out", "--model", tiny_model_path, "-i", "vocals", "-q", *FAST]
    assert run([song, *base], capsys) == (0, [])
    once = read(tmp_path / "out" / "song" / "vocals.wav")
    assert run([song, *base, "--shifts", "2", "--force"], capsys) == (0, [])
    twice = read(tmp_path / "out" / "song" / "vocals.wav")
    # the random tiny model barely depends on where its pooling grid falls: close, as 16-bit files
    np.testing.assert_allclose(twice, once, atol=2e-4)
    code, lines = run([song, *base, "--shifts", "0", "--force"], capsys)
    assert code == 2 and lines == ["error: --shifts must be a whole number from 1 to 16, got 0"]


def test_ratio_power_implies_ratio_and_refuses_other_modes(
    tmp_path, tiny_model_path, capsys
) -> None:
    song = tmp_path / "song.wav"
    sf.write(song, synth_mixture(1.5), RATE)
    base = ["-o", tmp_path / "out", "--model", tiny_model_path, "-q", *FAST]
    assert run([song, *base, "--ratio-power", "0.75"], capsys) == (0, [])
    stems = [
        read(tmp_path / "out" / "song" / f"{i}.wav") for i in ("vocals", "drums", "bass", "other")
    ]
    np.testing.assert_allclose(sum(stems), read(song), atol=5e-4)  # ratio: the stems add up
    code, lines = run([song, *base, "--ratio-power", "0.75", "--postprocess", "wiener"], capsys)
    assert code == 2 and lines == [
        "error: --ratio-power applies to ratio post-processing, not 'wiener'"
    ]


@pytest.mark.parametrize("value", ["600", "30.5", "1e400", "nan"])
def test_chunks_too_long_for_bounded_memory_are_refused_before_any_work(
    tmp_path, capsys, value
) -> None:
    """A chunk costs about 26 MB a second with the shipped model (64 MB with Wiener): 600 s asked for
    14.8 GB. At most 30 s are accepted, refused before the model (which does not even exist) loads."""
    song = tmp_path / "song.wav"
    sf.write(song, synth_mixture(0.5), RATE)
    missing = tmp_path / "missing.keras"
    code, lines = run(
        [song, "-o", tmp_path / "out", "--model", missing, "--chunk-seconds", value], capsys
    )
    assert (code, lines) == (
        2,
        [
            "error: chunk length (--chunk-seconds) must be a number of seconds in (0, 30], "
            f"got {float(value)!r}"
        ],
    )
    assert not (tmp_path / "out").exists()


def test_the_longest_chunk_is_accepted(tmp_path, tiny_model_path, capsys) -> None:
    song = tmp_path / "song.wav"
    sf.write(song, synth_mixture(0.5), RATE)
    out = tmp_path / "out"
    args = [
        song,
        "-o",
        out,
        "-q",
        "--model",
        tiny_model_path,
        "--chunk-seconds",
        "30",
        "-i",
        "bass",
    ]
    assert run(args, capsys) == (0, [])
    assert read(out / "song" / "bass.wav").shape == (RATE // 2, 2)
