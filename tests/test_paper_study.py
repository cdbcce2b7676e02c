"""scripts/paper_study.py: every variant of the C-U-Net paper's study trains (tiny versions, a few steps
on synthesized audio, so none of the paper's configs rots), and the study's evaluation and table steps
run on what they wrote."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import load_script, make_synthetic_musdb

from cunet.config import load_config
from cunet.data import parse_data_spec
from cunet.training.loop import train

ROOT = Path(__file__).resolve().parents[1]


study = load_script("paper_study")


def tiny(config):
    """The paper's config at its own rate, channels and STFT, with a narrow network and 2 steps."""
    model = dataclasses.replace(config.model, n_frames=64, first_filters=2, control_units=(4, 8))
    train_cfg = dataclasses.replace(config.train, batch_size=4, steps_per_epoch=2, epochs=1)
    return dataclasses.replace(config, model=model, train=train_cfg).validate()


def test_study_configs_change_only_length_and_seed():
    for variant, (file, target) in study.VARIANTS.items():
        base = load_config(ROOT / "configs" / file)
        cfg = study.study_config(variant, steps_per_epoch=7, epochs=3, seed=5)
        assert cfg.audio == base.audio and cfg.audio.sample_rate == 8192
        assert cfg.audio.n_channels == 1 and (cfg.audio.n_fft, cfg.audio.hop_length) == (1024, 256)
        assert cfg.model == (
            base.model if target is None else dataclasses.replace(base.model, target=target)
        )
        assert (cfg.train.steps_per_epoch, cfg.train.epochs, cfg.train.seed) == (7, 3, 5)
        # Every run takes every step at the config's own rate: no early stop, no plateau cut.
        assert cfg.train.early_stopping_patience > 3 and cfg.train.reduce_lr_patience > 3
        assert cfg.train.learning_rate == base.train.learning_rate
        assert cfg.train.batch_size == base.train.batch_size
    assert study.study_config("simple_cnn", 7, 3, 5, batch_size=8).train.batch_size == 8
    assert sorted(study.VARIANTS) == sorted(
        [*study.CONDITIONED, *(f"standard_{i}" for i in study.INSTRUMENTS)]
    )


@pytest.fixture(scope="module")
def study_runs(tmp_path_factory):
    """Every variant trained tiny on a synthetic MUSDB18 root: (musdb root, runs folder)."""
    base = tmp_path_factory.mktemp("paper")
    root = make_synthetic_musdb(base / "musdb")
    spec = parse_data_spec(f"{root},wav")
    runs = base / "runs"
    for variant in study.VARIANTS:
        cfg = tiny(study.study_config(variant, 2, 1, seed=3))
        train(cfg, [spec], runs / variant, cache_dir=base / "cache", verbose=0)
    return root, runs


@pytest.mark.parametrize("variant", list(study.VARIANTS))
def test_every_variant_trains(study_runs, variant):
    _, runs = study_runs
    file, target = study.VARIANTS[variant]
    record = json.loads((runs / variant / "provenance.json").read_text())
    assert record["status"] == "complete"
    assert np.isfinite(record["metrics"]["history"][0]["loss"])
    model_cfg = record["config"]["model"]
    assert model_cfg["kind"] == ("standard" if target else "conditioned")
    if target is None:
        film, control = variant.split("_")
        assert (model_cfg["film_type"], model_cfg["control_type"]) == (film, control)
    else:
        assert model_cfg["target"] == target
    network = keras.models.load_model(runs / variant / "best.keras")
    names = {layer.name for layer in network.layers}
    assert ("condition" in names) == (target is None)
    assert record["n_parameters"] == network.count_params()


def test_evaluate_and_table(study_runs, tmp_path, capsys):
    root, runs = study_runs
    variants = ["standard_vocals", "simple_dense"]
    out = tmp_path / "eval"
    args = ["--runs", str(runs), "--out", str(out), "--variants", *variants]
    assert (
        study.main(["evaluate", *args, "--musdb-root", str(root), "--is-wav", "--jobs", "1"]) == 0
    )
    for variant in variants:
        for protocol in study.PROTOCOLS:
            assert (out / variant / protocol / "aggregate.csv").exists()
    capsys.readouterr()
    assert study.main(["table", *args]) == 0
    printed = capsys.readouterr().out
    paper, musdb = printed.split("### musdb protocol")
    params = json.loads((runs / variants[0] / "provenance.json").read_text())["n_parameters"]
    for section, n_metrics in ((paper, 3), (musdb, 1)):
        lines = section.splitlines()
        dedicated = next(row for row in lines if row.startswith("| U-Net")).split(" | ")
        conditioned = next(row for row in lines if row.startswith("| C-U-Net")).split(" | ")
        assert dedicated[1] == f"{params / 1e6:.2f} M"
        cells = [c.strip(" |") for c in dedicated[3:]]
        assert len(cells) == 4 * n_metrics
        # A dedicated U-Net fills the columns of its own instrument only; the C-U-Net fills all.
        assert "—" not in cells[:n_metrics] and set(cells[n_metrics:]) == {"—"}
        assert all(re.fullmatch(r"-?\d+\.\d\d|nan", c.strip(" |")) for c in conditioned[3:])
        paired = next(row for row in lines if row.startswith("| simple dense")).split(" | ")
        assert re.fullmatch(r"[+-]\d+\.\d\d \(\d+/2\)", paired[1])
        assert [c.strip(" |") for c in paired[2:]] == ["—"] * 3


def test_masks_say_how_loud_the_estimates_are(study_runs, tmp_path, capsys):
    root, runs = study_runs
    variants = ["standard_drums", "complex_cnn"]
    args = ["masks", "--runs", str(runs), "--variants", *variants, "--musdb-root", str(root)]
    capsys.readouterr()
    assert study.main([*args, "--is-wav", "--cache-dir", str(tmp_path / "cache")]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [r[0] for r in rows] == [f"| {v}" for v in variants]
    level = r"[+-]\d+\.\d"
    assert rows[0][1] == "—" and re.fullmatch(level, rows[0][2])  # the drums U-Net: drums only
    assert all(re.fullmatch(level, c.strip(" |")) for c in rows[1][1:])
