"""`cunet evaluate --data`: folder datasets with any stems, the training hold-out, five-instrument models,
`--map`, tracks lacking a stem, one-line errors, and train -> separate -> evaluate for a new `guitar` stem.

Synthetic data only. Most runs use the paper protocol (8192 Hz mono, whole-track BSSEval: fast); the
SiSEC protocol runs on one stem of short tracks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from conftest import make_folder_dataset, synth_stems, write_track

from cunet.cli import main
from cunet.data.sources import open_sources, parse_data_spec
from cunet.workers import cpu_count

FIVE = ("vocals", "drums", "bass", "other", "guitar")
ROOT = Path(__file__).resolve().parents[1]


def guitar_track(folder: Path, seed: int, seconds: float = 1.5, drop: str | None = None) -> None:
    """A track with vocals, drums, bass and guitar stems (synth_stems' `other` renamed), minus `drop`."""
    stems = synth_stems(seconds, 44100, seed)
    stems["guitar"] = stems.pop("other")
    write_track(folder, {k: v for k, v in stems.items() if k != drop})


@pytest.fixture(scope="module")
def guitar_data(tmp_path_factory) -> Path:
    """train/{a,b,c}; valid/d (all four stems) and valid/e (no drums)."""
    root = tmp_path_factory.mktemp("guitar-data")
    for seed, name in enumerate("abc"):
        guitar_track(root / "train" / name, seed)
    guitar_track(root / "valid" / "d", 3)
    guitar_track(root / "valid" / "e", 4, drop="drums")
    return root


def five_config(tiny_config):
    return dataclasses.replace(
        tiny_config, model=dataclasses.replace(tiny_config.model, instruments=FIVE)
    ).validate()


@pytest.fixture(scope="module")
def five_model_path(tmp_path_factory, tiny_config) -> Path:
    """A random tiny C-U-Net with a fifth `guitar` condition, saved as training saves models."""
    import keras

    from cunet.nn.models import build_model
    from cunet.provenance import make_provenance, save_model

    config = five_config(tiny_config)
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("five") / "five.keras"
    save_model(
        build_model(config), path, make_provenance(config.to_dict(), data={"synthetic": True})
    )
    return path


def evaluate(*argv: str) -> int:
    return main(["evaluate", *argv, "--no-progress"])


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def scored(out: Path) -> pd.DataFrame:
    """track_scores.csv indexed by (method, track, target)."""
    return (
        pd.read_csv(out / "track_scores.csv").set_index(["method", "track", "target"]).sort_index()
    )


# --------------------------------------------------------------------------- data, splits, stems


def test_five_instrument_model_on_a_valid_folder(guitar_data, five_model_path, tmp_path, capsys):
    """Default instruments: the model's outputs the data holds (no `other` here); track `e` lacks drums and is
    scored for the stems it has; the mixture is the sum of the stems, and settings.json says so."""
    out = tmp_path / "out"
    assert (
        evaluate(
            "--data",
            str(guitar_data),
            "--model",
            str(five_model_path),
            "--name",
            "five",
            "--baselines",
            "mixture",
            "IRM1",
            "--protocol",
            "paper",
            "--out",
            str(out),
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert (
        "| method | vocals | drums | bass | guitar |" in printed
        and "<method>/valid/*.json" in printed
    )
    for method in ("five", "mixture", "IRM1"):
        assert sorted(p.name for p in (out / method / "valid").iterdir()) == ["d.json", "e.json"]
    table = scored(out)
    assert set(table.loc[("five", "d")].index) == {"vocals", "drums", "bass", "guitar"}
    assert set(table.loc[("five", "e")].index) == {"vocals", "bass", "guitar"}
    assert np.isfinite(table.loc[("five", "d", "guitar"), "SDR"])
    aggregate = pd.read_csv(out / "aggregate.csv").set_index(["method", "target"])
    assert (
        aggregate.loc[("IRM1", "guitar"), "SDR"] > aggregate.loc[("mixture", "guitar"), "SDR"] + 3
    )
    markdown = (out / "aggregate.md").read_text()
    assert (
        "vocals 2, drums 1, bass 2, guitar 2" in markdown and "Share of the IRM1 gain" in markdown
    )
    settings = json.loads((out / "settings.json").read_text())
    assert (
        settings["data"] == [str(guitar_data)]
        and settings["split"] == "valid"
        and settings["seed"] == 42
    )
    assert settings["mixture"] == "sum of the stems (2 tracks)" and settings["instruments"] == [
        "vocals",
        "drums",
        "bass",
        "guitar",
    ]
    assert settings["tracks"][1] == {
        "name": "e",
        "split": "valid",
        "mixture": "sum of the stems",
        "stems": ["bass", "guitar", "vocals"],
    }
    assert settings["estimate_from"]["guitar"] == "guitar" and settings["failures"] == []


def test_hold_out_matches_training(tmp_path, capsys):
    """No valid/ folder: `valid=N` and `--seed` give the tracks that `cunet train` holds out."""
    root = make_folder_dataset(tmp_path / "ds", [f"song {i}" for i in range(6)], seconds=1.0)
    for seed in (42, 7):
        spec = f"{root},valid=2"
        held = sorted(t.name for t in open_sources([parse_data_spec(spec)], seed)["valid"])
        out = tmp_path / f"out{seed}"
        assert (
            evaluate(
                "--data",
                spec,
                "--seed",
                str(seed),
                "--no-model",
                "--baselines",
                "mixture",
                "--instruments",
                "bass",
                "--protocol",
                "paper",
                "--out",
                str(out),
            )
            == 0
        )
        assert sorted(p.name[:-5] for p in (out / "mixture" / "valid").iterdir()) == held
        assert json.loads((out / "settings.json").read_text())["seed"] == seed
    capsys.readouterr()
    # --split train scores the other four, --split all every track
    out = tmp_path / "all"
    assert (
        evaluate(
            "--data",
            f"{root},valid=2",
            "--split",
            "all",
            "--no-model",
            "--baselines",
            "mixture",
            "--instruments",
            "bass",
            "--protocol",
            "paper",
            "--out",
            str(out),
        )
        == 0
    )
    assert len(list((out / "mixture" / "train").iterdir())) == 4
    assert len(list((out / "mixture" / "valid").iterdir())) == 2


def test_map_scores_another_output_as_a_stem(guitar_data, tiny_model_path, tmp_path, capsys):
    """A four-instrument model's `other` scored as a guitar separator, with the SiSEC protocol."""
    out = tmp_path / "out"
    assert (
        evaluate(
            "--data",
            str(guitar_data),
            "--model",
            str(tiny_model_path),
            "--map",
            "guitar=other",
            "--instruments",
            "guitar",
            "--baselines",
            "mixture",
            "--out",
            str(out),
            "--track-limit",
            "1",
        )
        == 0
    )
    markdown = (out / "aggregate.md").read_text()
    assert "Model estimates (`--map`): cunet scores `guitar` from its `other` output." in markdown
    table = scored(out)
    assert set(table.index.get_level_values("target")) == {"guitar"}
    assert table["ISR"].notna().all()  # the musdb protocol (BSSEval v4 images)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["map"] == {"guitar": "other"} and settings["estimate_from"] == {
        "guitar": "other"
    }
    # without --map the model has no guitar output, and the default is what both hold
    capsys.readouterr()
    assert (
        evaluate(
            "--data", str(guitar_data), "--model", str(tiny_model_path), "--instruments", "guitar"
        )
        == 2
    )
    assert (
        "the model has no 'guitar' output (outputs: vocals, drums, bass, other)"
        in one_error_line(capsys)
    )


def test_a_track_without_any_scored_stem_is_skipped(guitar_data, tmp_path, capsys):
    root = tmp_path / "ds"
    guitar_track(root / "valid" / "with guitar", 0, seconds=1.0)
    guitar_track(root / "valid" / "no guitar", 1, seconds=1.0, drop="guitar")
    out = tmp_path / "out"
    assert (
        evaluate(
            "--data",
            str(root),
            "--no-model",
            "--baselines",
            "IRM1",
            "--instruments",
            "guitar",
            "--protocol",
            "paper",
            "--out",
            str(out),
        )
        == 0
    )
    assert (
        "note: 1 track(s) not scored, e.g. 'no guitar': holds none of the scored stems (guitar)"
        in capsys.readouterr().err
    )
    assert [p.name for p in (out / "IRM1" / "valid").iterdir()] == ["with guitar.json"]
    assert json.loads((out / "settings.json").read_text())["skipped"][0]["track"] == "no guitar"
    # a silent stem is not scored (museval refuses all-zero references): nothing left is exit 1, not a traceback
    silent = tmp_path / "silent"
    stems = synth_stems(1.0, 44100, 2)
    write_track(
        silent / "valid" / "quiet", {"guitar": np.zeros_like(stems["other"]), "bass": stems["bass"]}
    )
    assert (
        evaluate(
            "--data",
            str(silent),
            "--no-model",
            "--baselines",
            "IRM1",
            "--instruments",
            "guitar",
            "--protocol",
            "paper",
            "--out",
            str(tmp_path / "quiet"),
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "'quiet': its scored stems are silent (guitar)" in err
    assert "error: no track could be scored (0 failures, 1 not scored; see " in err


@pytest.mark.slow
def test_data_tracks_in_two_worker_processes(guitar_data, tiny_model_path, tmp_path, capsys):
    """--jobs 2: the folder tracks and the map travel to 'spawn' workers, each loading the model."""
    out = tmp_path / "out"
    assert (
        evaluate(
            "--data",
            str(guitar_data),
            "--model",
            str(tiny_model_path),
            "--map",
            "guitar=other",
            "--protocol",
            "paper",
            "--jobs",
            "2",
            "--out",
            str(out),
        )
        == 0
    )
    assert not capsys.readouterr().err  # no TensorFlow start-up lines from the workers
    table = scored(out)
    assert set(table.loc[("cunet", "d")].index) == {"vocals", "drums", "bass", "guitar"}
    assert set(table.loc[("cunet", "e")].index) == {"vocals", "bass", "guitar"}


# --------------------------------------------------------------------------- bad input: one line, exit 2


def test_bad_data_specs_and_names(guitar_data, tmp_path, capsys):
    lone = make_folder_dataset(tmp_path / "lone", ["x"], seconds=0.2)
    twin = make_folder_dataset(tmp_path / "twin", ["x"], ["d"], seconds=0.2)
    base = ["--no-model", "--baselines"]
    cases = [
        (
            ["--data", str(guitar_data), "--musdb-root", str(guitar_data), *base],
            "exclude each other",
        ),
        (base, "no data: give --musdb-root DIR (MUSDB18) or --data SPEC"),
        (
            ["--data", f"{guitar_data},bogus=1", *base],
            f"bad option 'bogus=1' in data spec '{guitar_data},bogus=1'",
        ),
        (["--data", f"{guitar_data},stem=vocals", *base], "is a clip folder (stem=vocals)"),
        (["--data", str(tmp_path / "nowhere"), *base], "is not a directory"),
        (
            ["--data", str(guitar_data), "--subsets", "test", *base],
            "--subsets applies to --musdb-root",
        ),
        (["--musdb-root", str(guitar_data), "--seed", "3", *base], "--seed applies to --data"),
        (["--data", str(lone), *base], "no valid tracks to evaluate"),
        (["--data", str(guitar_data), "--data", str(twin), *base], "two tracks named 'd'"),
        (["--data", f"{guitar_data},rename=guitar:drums", *base], "has two files for stem 'drums'"),
        (
            ["--data", str(guitar_data), "--map", "guitar"],
            "bad --map 'guitar' (expected REFERENCE=OUTPUT",
        ),
        (["--data", str(guitar_data), "--map", "guitar=other", *base], "--map needs a model"),
        (
            ["--data", str(guitar_data), "--instruments", "piano", *base],
            "unknown instrument 'piano': no track holds a 'piano' stem "
            "(stems in the data: vocals, drums, bass, guitar)",
        ),
    ]
    for argv, message in cases:
        assert evaluate(*argv) == 2, argv
        assert message in one_error_line(capsys), argv


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--oracle-stft", "4096", "1"], "--oracle-stft needs N_FFT in [16, 16384] and HOP in "),
        (["--oracle-stft", "100000000000", "1024"], "(samples), got 100000000000 1024"),
        (["--oracle-stft", "0", "0"], "got 0 0"),
        (["--shifts", "0"], "--shifts must be a whole number from 1 to 16, got 0"),
        (["--shifts", "1000000000000"], "from 1 to 16, got 1000000000000"),
        (["--ratio-power", "nan"], "ratio power must be in (0, 4], got nan"),
        (["--ratio-power", "1e400"], "ratio power must be in (0, 4], got inf"),
        (["--ratio-power", "-1"], "ratio power must be in (0, 4], got -1.0"),
        (["--jobs", "-1"], "--jobs must be >= 1"),
        (["--track-limit", "0"], "--track-limit must be >= 1"),
    ],
)
def test_numeric_options_are_refused_before_any_work(guitar_data, tmp_path, capsys, argv, message):
    """Even those a run without a model has no use for: a typo is not silently ignored."""
    out = tmp_path / "out"
    base = ["--data", str(guitar_data), "--no-model", "--baselines", "--out", str(out)]
    assert evaluate(*base, *argv) == 2
    assert message in one_error_line(capsys)
    assert not out.exists()


def test_jobs_are_capped_and_long_or_folder_stems_are_one_line_each(tmp_path, capsys, monkeypatch):
    from cunet.io import audio

    root = tmp_path / "ds"
    guitar_track(root / "valid" / "short", 0, seconds=1.0)
    stems = synth_stems(1.0, 44100, 1)
    long = write_track(root / "valid" / "long", {"guitar": stems["other"], "drums": stems["drums"]})
    with sf.SoundFile(long / "bass.flac", "w", 44100, 2, "PCM_16") as fh:
        for _ in range(40):  # stands for hours of silence: the bound is lowered to 30 s below
            fh.write(np.zeros((44100, 2), np.float32))
    (long / "vocals.wav").mkdir()
    argv = ["--data", str(root), "--no-model", "--baselines", "mixture", "--protocol", "paper"]
    assert evaluate(*argv, "--jobs", "1000", "--out", str(tmp_path / "many")) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    jobs = json.loads((tmp_path / "many" / "settings.json").read_text())["jobs"]
    assert jobs == min(2, cpu_count())
    assert err[:2] == [
        f"note: skipped '{long / 'vocals.wav'}': a directory, not a stem file",
        f"note: --jobs 1000 capped at {jobs} ({cpu_count()} CPU{'s' if cpu_count() > 1 else ''}"
        + (" and 2 tracks)" if cpu_count() > 2 else ")"),
    ]
    monkeypatch.setattr(audio, "MAX_WHOLE_SECONDS", 30.0)  # in this process: --jobs 1
    assert evaluate(*argv, "--out", str(tmp_path / "out")) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "long: load failed" in line]
    assert len(err) == 1 and err[0].startswith(
        f"warning: long: load failed: AudioError: {long / 'bass.flac'}: 40 s long (44100 Hz, 2 ch); "
        "a file read whole (a stem for training or evaluation) may last 30 s"
    )
    assert (tmp_path / "out" / "mixture" / "valid" / "short.json").exists()


@pytest.mark.parametrize("recorded", [True, False])
def test_bad_names_against_the_model(guitar_data, five_model_path, capsys, monkeypatch, recorded):
    """Checked against the outputs in the model's record before TensorFlow loads, else after loading it."""
    from cunet.commands import evaluate as command

    if not recorded:
        monkeypatch.setattr(command, "_recorded_outputs", lambda model: None)
    model = ["--data", str(guitar_data), "--model", str(five_model_path)]
    for argv, message in [
        (
            ["--map", "guitar=piano"],
            "--map guitar=piano: the model has no 'piano' output (outputs: vocals, drums, "
            "bass, other, guitar)",
        ),
        (["--map", "keys=other"], "--map keys=other: no track holds a 'keys' stem"),
        (["--map", "guitar=other,guitar=bass"], "--map gives two outputs for 'guitar'"),
    ]:
        assert evaluate(*model, *argv) == 2, argv
        assert message in one_error_line(capsys), argv


def test_name_errors_come_before_tensorflow(guitar_data, tiny_model_path):
    code = (
        "import sys\n"
        "from cunet.cli import main\n"
        f"rc = main(['evaluate', '--data', {str(guitar_data)!r}, '--model', {str(tiny_model_path)!r}, "
        "'--instruments', 'guitar'])\n"
        "assert rc == 2 and 'tensorflow' not in sys.modules, (rc, 'tensorflow' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: the model has no 'guitar' output (outputs: vocals, drums, "
        "bass, other); score another output as 'guitar' with "
        "--map guitar=OUTPUT"
    ]


def test_parser_is_light_and_mirrors_the_library():
    from cunet.commands import evaluate as command
    from cunet.evaluate.datasets import EVAL_SPLITS

    assert command.EVAL_SPLIT_CHOICES == EVAL_SPLITS
    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        [
            "evaluate",
            "--data",
            "a",
            "--data",
            "b,valid=2",
            "--map",
            "guitar=other",
            "--instruments",
            "guitar",
            "piano",
        ]
    )
    assert (
        args.data == ["a", "b,valid=2"]
        and args.map == ["guitar=other"]
        and args.instruments == ["guitar", "piano"]
    )
    assert (
        args.musdb_root is None
        and args.split is None
        and args.seed is None
        and args.subsets is None
    )
    assert "--map guitar=other" in command.EXAMPLES and "REFERENCE=OUTPUT" in command.MAP_HELP


# --------------------------------------------------------------------------- train -> separate -> evaluate


def test_finetune_a_guitar_condition_then_separate_and_evaluate(
    guitar_data, tiny_config, tiny_model_path, tmp_path, capsys
):
    """`cunet train --init-from` a four-instrument model with a five-instrument config on guitar stems, one
    short epoch; the run separates `guitar` and `cunet evaluate --data` scores it."""
    from cunet.separator import Separator

    config = dataclasses.replace(
        five_config(tiny_config),
        train=dataclasses.replace(tiny_config.train, epochs=1, steps_per_epoch=2),
    )
    config_path = tmp_path / "five.yaml"
    config_path.write_text(yaml.safe_dump(config.to_dict()))
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--config",
                str(config_path),
                "--data",
                str(guitar_data),
                "--init-from",
                str(tiny_model_path),
                "--out",
                str(run),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--verbose",
                "0",
            ]
        )
        == 0
    )
    separator = Separator.from_pretrained(run)
    assert separator.instruments == FIVE
    x = synth_stems(1.0, 44100, 7)["other"]
    (guitar,) = separator.separate(x, 44100, ["guitar"]).values()
    assert guitar.shape == x.shape and np.isfinite(guitar).all() and np.abs(guitar).max() > 0
    out = tmp_path / "eval"
    capsys.readouterr()
    assert (
        evaluate(
            "--data",
            str(guitar_data),
            "--model",
            str(run),
            "--instruments",
            "guitar",
            "--baselines",
            "mixture",
            "--out",
            str(out),
        )
        == 0
    )
    assert "| method | guitar |" in capsys.readouterr().out
    table = pd.read_csv(out / "aggregate.csv").set_index(["method", "target"])
    assert np.isfinite(table.loc[("cunet", "guitar"), "SDR"]) and np.isfinite(
        table.loc[("mixture", "guitar"), "SDR"]
    )
    assert json.loads((out / "settings.json").read_text())["model"] == str(run / "best.keras")
