"""`cunet train` on the command line: numeric options and unusable stems are one line each, exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import synth_stems, write_track

from cunet.cli import main

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--max-minutes", "nan", "--max-minutes must be a number of minutes in [0, 525600]"),
        ("--max-minutes", "inf", "--max-minutes must be a number of minutes in [0, 525600]"),
        ("--max-minutes", "1e400", "(0: no limit), got inf"),
        ("--max-minutes", "-1", "(0: no limit), got -1.0"),
        ("--logical-cpus", "-1", "--logical-cpus must be in [0, 64] (0 or 1: no split), got -1"),
        ("--logical-cpus", "1000000000000", "--logical-cpus must be in [0, 64]"),
        ("--track-limit", "0", "--track-limit must be >= 1, got 0"),
        ("--track-limit", "-1", "--track-limit must be >= 1, got -1"),
        ("--epochs", "0", "--epochs must be >= 1, got 0"),
        ("--learning-rate", "nan", "invalid value for 'train.learning_rate'"),
    ],
)
def test_numeric_options_are_refused_before_any_work(tmp_path, capsys, option, value, message):
    out = tmp_path / "run"
    argv = ["train", "--config", CONFIG, "--data", str(tmp_path), "--out", str(out)]
    assert main([*argv, f"{option}={value}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()


def test_a_stem_too_long_and_a_stem_that_is_a_folder(tmp_path, capsys, monkeypatch):
    """A stem of hours (here 40 s against a bound lowered to 30 s) is one line naming it, before it is
    decoded; a folder named like a stem is a note, not silence."""
    from cunet.io import audio

    monkeypatch.setattr(audio, "MAX_WHOLE_SECONDS", 30.0)
    data = tmp_path / "ds"
    song = write_track(data / "train" / "song", {"drums": synth_stems(0.5, 44100, 0)["drums"]})
    with sf.SoundFile(song / "other.flac", "w", 44100, 2, "PCM_16") as fh:
        for _ in range(40):
            fh.write(np.zeros((44100, 2), np.float32))
    (song / "vocals.wav").mkdir()
    write_track(data / "valid" / "held", {"drums": synth_stems(0.5, 44100, 1)["drums"]})
    argv = ["train", "--config", CONFIG, "--data", str(data), "--out", str(tmp_path / "run")]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache"), "--verbose", "0"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [
        f"note: skipped '{song / 'vocals.wav'}': a directory, not a stem file",
        f"error: {song / 'other.flac'}: 40 s long (44100 Hz, 2 ch); a file read whole (a stem for "
        "training or evaluation) may last 30 s (0.5 min; less above 96 kHz stereo); cut it into "
        "shorter tracks",
    ]
