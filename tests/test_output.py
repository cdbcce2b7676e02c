"""Output settings and stem file sets: bit depths, clamping counted, one shared gain when rescaling,
nothing published on failure, checks before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cunet.commands import message as message_of
from cunet.errors import AudioError, UserError
from cunet.io.atomic import PARTIAL_SUFFIX
from cunet.io.output import OutputSettings, StemFiles, check_targets, prepare_outdir


def _partials(root: Path) -> list[Path]:
    return list(root.rglob(f"*{PARTIAL_SUFFIX}*"))


@pytest.mark.parametrize(
    "args,kwargs,message,option",
    [
        (("ogg",), {}, "unknown output format", None),
        (("wav", "8"), {}, "unknown bits '8'", "unknown --bits '8'"),
        (("flac", "32f"), {}, "flac holds no float samples; use bits 16", "use --bits 16"),
        (("wav", "16", "soft"), {}, "unknown clip", "unknown --clip"),
        (("wav", "24", "none"), {}, "clip none keeps samples", "--clip none keeps samples"),
        (("mp3", "16", "none"), {}, "clip none", "--clip none"),
        (("mp3",), {"mp3_bitrate": 100}, "mp3_bitrate must be one of", "--mp3-bitrate must be"),
    ],
)
def test_bad_settings_are_refused_when_built(args, kwargs, message, option) -> None:
    """The library names its parameters; the CLI shows its options (`cunet.commands.message`)."""
    with pytest.raises(UserError, match=message) as err:
        OutputSettings(*args, **kwargs)
    if option is not None:
        assert option in message_of(err.value) and "--" not in str(err.value)


def test_default_clipping_follows_the_sample_format() -> None:
    assert OutputSettings("wav", "32f").clip_mode == "none"
    assert (
        OutputSettings("wav", "24").clip_mode == "clamp"
        and OutputSettings("mp3").clip_mode == "clamp"
    )
    assert OutputSettings("wav", "16", "rescale").clip_mode == "rescale"


def _stems(seconds: float = 0.5, rate: int = 8000) -> dict[str, np.ndarray]:
    t = np.arange(int(seconds * rate)) / rate
    a = np.stack([1.5 * np.sin(2 * np.pi * 50 * t), 0.5 * np.sin(2 * np.pi * 70 * t)], 1).astype(
        np.float32
    )
    b = (0.3 * a[::-1]).copy()
    return {"vocals": a, "drums": b}


def _write_all(files: StemFiles, stems: dict[str, np.ndarray], block: int = 777) -> None:
    n = next(iter(stems.values())).shape[0]
    for start in range(0, n, block):
        for key, x in stems.items():
            files.write(key, x[start : start + block])


@pytest.mark.parametrize(
    "fmt,bits,subtype,step",
    [
        ("wav", "24", "PCM_24", 2.0**-23),
        ("flac", "24", "PCM_24", 2.0**-23),
        ("wav", "16", "PCM_16", 2.0**-15),
    ],
)
def test_rescale_shares_one_gain_and_round_trips(
    tmp_path: Path, fmt: str, bits: str, subtype: str, step: float
) -> None:
    stems = _stems()
    peak = max(float(np.abs(x).max()) for x in stems.values())
    paths = {k: tmp_path / "out" / "song" / f"{k}.{fmt}" for k in stems}
    files = StemFiles(paths, 8000, 2, OutputSettings(fmt, bits, "rescale"), staging_dir=tmp_path)
    _write_all(files, stems)
    files.finish()
    assert files.gain == pytest.approx(1 / peak, rel=1e-6)
    assert "scaled by" in files.summary() and "dB" in files.summary()
    written = files.commit(overwrite=False)
    assert _partials(tmp_path) == []
    for key, x in stems.items():
        y, rate = sf.read(written[key], dtype="float64")
        assert sf.info(written[key]).subtype == subtype and rate == 8000
        np.testing.assert_allclose(
            y, x * files.gain, atol=1.5 * step
        )  # the same gain for every stem
    assert max(np.abs(sf.read(p)[0]).max() for p in written.values()) == pytest.approx(
        1.0, abs=2 * step
    )


def test_clamp_counts_and_none_keeps(tmp_path: Path) -> None:
    stems = _stems()
    over = {k: int(np.count_nonzero(np.abs(x) > 1)) for k, x in stems.items()}
    clamped = StemFiles(
        {k: tmp_path / "c" / f"{k}.wav" for k in stems},
        8000,
        2,
        OutputSettings(),
        staging_dir=tmp_path,
    )
    _write_all(clamped, stems)
    clamped.finish()
    assert clamped.summary() == (
        f"clamped {over['vocals']} samples beyond full scale (vocals.wav "
        f"{over['vocals']}); --clip rescale avoids it"
    )
    clamped.commit(overwrite=False)
    floats = StemFiles(
        {k: tmp_path / "f" / f"{k}.wav" for k in stems},
        8000,
        2,
        OutputSettings("wav", "32f"),
        staging_dir=tmp_path,
    )
    _write_all(floats, stems)
    floats.finish()
    assert floats.summary() is None
    y, _ = sf.read(floats.commit(overwrite=False)["vocals"], dtype="float32")
    np.testing.assert_array_equal(y, stems["vocals"])


def test_rescale_below_full_scale_keeps_the_samples(tmp_path: Path) -> None:
    x = {"bass": np.full((100, 1), 0.25, np.float32)}
    files = StemFiles(
        {"bass": tmp_path / "bass.wav"}, 8000, 1, OutputSettings("wav", "32f", "rescale")
    )
    _write_all(files, x)
    files.finish()
    assert files.gain == 1.0 and files.summary() is None
    np.testing.assert_array_equal(
        sf.read(files.commit(overwrite=False)["bass"], dtype="float32", always_2d=True)[0],
        x["bass"],
    )


def test_a_failure_publishes_nothing(tmp_path: Path) -> None:
    files = StemFiles(
        {"a": tmp_path / "a.wav", "b": tmp_path / "b.wav"},
        8000,
        1,
        OutputSettings("wav", "16", "rescale"),
    )
    files.write("a", np.ones((10, 1), np.float32) * 2)
    files.abort()
    assert list(tmp_path.iterdir()) == []


def test_checks_before_work(tmp_path: Path) -> None:
    song = tmp_path / "song.wav"
    song.write_bytes(b"x")
    with pytest.raises(AudioError, match="is the input file itself"):
        check_targets([song], [song], tmp_path, force=True)
    (tmp_path / "exists.wav").write_bytes(b"keep")
    with pytest.raises(AudioError, match="exists; use force=True"):
        check_targets([song], [tmp_path / "exists.wav"], tmp_path, force=False)
    check_targets([song], [tmp_path / "exists.wav"], tmp_path, force=True)
    (tmp_path / "dir.wav").mkdir()
    with pytest.raises(AudioError, match="exists and is not a file"):
        check_targets([song], [tmp_path / "dir.wav"], tmp_path, force=True)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "blocked").write_bytes(b"file")
    with pytest.raises(AudioError, match="output path '.*blocked' exists and is not a directory"):
        prepare_outdir(tmp_path / "out", [tmp_path / "out" / "blocked" / "deeper" / "vocals.wav"])
    prepare_outdir(tmp_path / "new", [tmp_path / "new" / "a" / "b.wav"])
    assert (tmp_path / "new").is_dir() and not (tmp_path / "new" / "a").exists()
