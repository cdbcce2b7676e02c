"""Evaluation: museval scoring, oracle baselines, SiSEC aggregation, parallel workers, the CLI.

Fast tests use the 6 s MUSDB excerpt that stempeg ships (paper protocol, or
down-mixed to mono, where BSSEval's filter fits are cheap) and short synthetic
arrays; the stereo SiSEC run of the CLI and the model runs are marked slow.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import museval
import numpy as np
import pandas as pd
import pytest

from cunet.cli import main
from cunet.config import INSTRUMENTS
from cunet.evaluate import (
    BASELINES,
    PAPER_SAMPLE_RATE,
    PROTOCOLS,
    ArrayTrack,
    EvaluationSettings,
    aggregate_scores,
    evaluate_tracks,
    open_musdb_tracks,
    oracle_estimates,
    read_aggregate,
    read_track_scores,
    score_track,
    to_paper_domain,
    track_scores,
    write_reports,
)

stempeg = pytest.importorskip("stempeg")
jsonschema = pytest.importorskip("jsonschema")

SCHEMA = json.loads((Path(museval.__file__).parent / "musdb.schema.json").read_text())
EXAMPLE = Path(stempeg.example_stem_path())
EXAMPLE_NAME = EXAMPLE.name[: -len(".stem.mp4")]
ROOT = Path(__file__).resolve().parents[1]


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        dst.symlink_to(src)
    except OSError:
        shutil.copy(src, dst)


@pytest.fixture(scope="module")
def musdb_root(tmp_path_factory) -> Path:
    """A MUSDB18 root holding the stempeg example as the only test track."""
    root = tmp_path_factory.mktemp("musdb")
    _link(EXAMPLE, root / "test" / EXAMPLE.name)
    return root


@pytest.fixture(scope="module")
def example_audio(musdb_root):
    tracks = open_musdb_tracks(musdb_root, "test")
    assert [t.name for t in tracks] == [EXAMPLE_NAME]
    return tracks[0].load()


def _validate_json(path: Path) -> dict:
    """Parse a per-track JSON (NaN allowed, as museval writes it) and check it against museval's schema."""
    data = json.loads(path.read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["museval_version"] and data["targets"]
    return data


def _synthetic_stems(
    seconds: float = 3.0, rate: int = 8000, seed: int = 0
) -> dict[str, np.ndarray]:
    """Four mono sources with different spectra and envelopes: float32 [n_samples, 1] each."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    noise = rng.standard_normal(n)
    stems = {
        "vocals": 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 0.7 * t)),
        "drums": 0.5 * noise * (np.sin(2 * np.pi * 2 * t) > 0.6),
        "bass": 0.4 * np.sin(2 * np.pi * 55 * t + 0.3),
        "other": 0.1 * np.convolve(rng.standard_normal(n), np.ones(8) / 8, mode="same"),
    }
    return {k: v.astype(np.float32)[:, None] for k, v in stems.items()}


def _synthetic_track(name: str, seconds: float = 3.0, seed: int = 0) -> ArrayTrack:
    stems = _synthetic_stems(seconds, seed=seed)
    return ArrayTrack(name, np.sum(list(stems.values()), axis=0), stems, 8000)


# -- module-level (picklable) helpers for the worker-process test ---------------------------------------------


@dataclass
class BrokenTrack:
    """A track whose audio cannot be read."""

    name: str
    subset: str = "test"

    def load(self):
        raise OSError("cannot decode this file")


FAILING_LENGTH = 8000 * 2  # the fake model fails on tracks of exactly this many samples


def quarter_mixture_factory():
    """A fake model: every instrument is a quarter of the mixture; raises on FAILING_LENGTH samples."""

    def separate(mixture: np.ndarray, rate: int) -> dict[str, np.ndarray]:
        if mixture.shape[0] == FAILING_LENGTH:
            raise RuntimeError("model exploded")
        return {name: mixture / 4 for name in INSTRUMENTS}

    return separate


# -- oracle baselines -----------------------------------------------------------------------------------------


def test_oracle_masks_shapes_and_sums():
    stems = _synthetic_stems(1.0)
    stereo = {k: np.concatenate([v, 0.5 * v], axis=1) for k, v in stems.items()}
    mixture = np.sum(list(stereo.values()), axis=0)
    out = oracle_estimates(mixture, stereo, ("IRM1", "IRM2", "IBM"), n_fft=512, hop=128)
    assert set(out) == {"IRM1", "IRM2", "IBM"}
    for estimates in out.values():
        assert list(estimates) == list(INSTRUMENTS)
        for est in estimates.values():
            assert est.shape == mixture.shape and est.dtype == np.float32 and np.isfinite(est).all()
    for method in (
        "IRM1",
        "IRM2",
    ):  # ratio masks sum to one, so the estimates add up to the mixture
        np.testing.assert_allclose(np.sum(list(out[method].values()), axis=0), mixture, atol=1e-4)
    # a source that is alone in the mixture gets all of it, from every oracle
    alone = {
        "vocals": stereo["vocals"],
        **{k: np.zeros_like(v) for k, v in stereo.items() if k != "vocals"},
    }
    single = oracle_estimates(
        stereo["vocals"], alone, ("IRM1", "IRM2", "IBM"), ["vocals", "bass"], 512, 128
    )
    for method in single:
        np.testing.assert_allclose(single[method]["vocals"], stereo["vocals"], atol=1e-4)
        np.testing.assert_allclose(single[method]["bass"], 0.0, atol=1e-6)


def test_oracle_rejects_unknown_method():
    stems = _synthetic_stems(0.5)
    with pytest.raises(ValueError, match="unknown oracle"):
        oracle_estimates(stems["bass"], stems, ("IRM3",))


def test_oracles_for_any_set_of_stems():
    """Five stems with a guitar, or just two: ratio masks still add up to the mixture."""
    stems = _synthetic_stems(1.0)
    stems["guitar"] = 0.2 * np.roll(stems["vocals"], 300, axis=0) + 0.05 * stems["other"]
    mixture = np.sum(list(stems.values()), axis=0)
    for subset in (list(stems), ["guitar", "bass"]):
        chosen = {k: stems[k] for k in subset}
        mix = np.sum(list(chosen.values()), axis=0)
        out = oracle_estimates(mix, chosen, ("IRM1", "IBM"), ["guitar"], n_fft=512, hop=128)
        assert list(out["IRM1"]) == ["guitar"] and out["IBM"]["guitar"].shape == mix.shape
        full = oracle_estimates(mix, chosen, ("IRM1",), n_fft=512, hop=128)["IRM1"]
        np.testing.assert_allclose(np.sum(list(full.values()), axis=0), mix, atol=1e-4)
    with pytest.raises(ValueError, match="no reference stem 'piano' for the oracle masks"):
        oracle_estimates(mixture, stems, ("IRM1",), ["piano"])


# -- scoring ---------------------------------------------------------------------------------------------------


def test_score_track_matches_museval_eval_mus_track(tmp_path):
    """Every source scored: identical JSON to museval's own eval_mus_track (two sources keep it fast)."""
    rng = np.random.default_rng(1)
    stems = {k: v for k, v in _synthetic_stems(3.0).items() if k in ("vocals", "bass")}
    mixture = np.sum(list(stems.values()), axis=0)
    estimates = {
        k: v + 0.05 * rng.standard_normal(v.shape).astype(np.float32) for k, v in stems.items()
    }
    track = SimpleNamespace(
        name="synthetic",
        subset="test",
        rate=8000,
        targets={k: SimpleNamespace(audio=v) for k, v in stems.items()},
    )
    reference = museval.eval_mus_track(track, estimates, output_dir=str(tmp_path))
    ours = score_track(mixture, stems, estimates, 8000, "synthetic")
    assert json.loads(ours.json) == json.loads(reference.json)
    written = _validate_json(tmp_path / "test" / "synthetic.json")
    assert [t["name"] for t in written["targets"]] == ["vocals", "bass"]
    assert len(written["targets"][0]["frames"]) == 3  # 1 s windows and hops over 3 s


def test_score_track_subset_adds_rest_of_mixture():
    stems = _synthetic_stems(2.0)
    mixture = np.sum(list(stems.values()), axis=0)
    store = score_track(
        mixture, stems, {"vocals": stems["vocals"] * 0.9}, 8000, "one", instruments=["vocals"]
    )
    assert [t["name"] for t in store.scores["targets"]] == ["vocals"]
    sdr = [float(f["metrics"]["SDR"]) for f in store.scores["targets"][0]["frames"]]
    assert np.nanmedian(sdr) > 15  # the residual is then a near-perfect estimate of the rest


def test_score_track_paper_protocol():
    rng = np.random.default_rng(2)
    stems = _synthetic_stems(2.0)
    mixture = np.sum(list(stems.values()), axis=0)
    noisy = {
        k: v + 0.01 * v.std() * rng.standard_normal(v.shape).astype(np.float32)
        for k, v in stems.items()
    }
    store = score_track(
        mixture, stems, noisy, 8000, "paper", protocol="paper", instruments=["vocals", "other"]
    )
    data = json.loads(store.json)
    jsonschema.validate(data, SCHEMA)
    assert [t["name"] for t in data["targets"]] == ["vocals", "other"]
    for target in data["targets"]:
        (frame,) = target["frames"]  # the whole track is one frame
        assert frame["duration"] == pytest.approx(2.0) and math.isnan(frame["metrics"]["ISR"])
        assert frame["metrics"]["SDR"] > 30  # 1 % noise: about 40 dB
    # the mixture baseline's complement is the mixture itself, so nothing is silent or NaN
    mixed = score_track(
        mixture,
        stems,
        {k: mixture for k in stems},
        8000,
        "mix",
        protocol="paper",
        instruments=["bass"],
        complement="mixture",
    )
    assert all(
        np.isfinite(float(t["frames"][0]["metrics"]["SDR"])) for t in mixed.scores["targets"]
    )


def test_to_paper_domain():
    x = np.stack([np.ones(44100), np.zeros(44100)], axis=1).astype(np.float32)
    y = to_paper_domain(x, 44100)
    assert y.shape == (PAPER_SAMPLE_RATE, 1) and y.dtype == np.float32
    assert np.median(y) == pytest.approx(0.5, abs=1e-3)


def test_irm1_beats_mixture_on_musdb_example(example_audio, tmp_path):
    """SiSEC scorer (BSSEval v4, 1 s frames) on the MUSDB excerpt, down-mixed to mono to keep it fast."""
    a = example_audio
    assert a.rate == 44100 and a.mixture.shape[1] == 2 and set(a.stems) == set(INSTRUMENTS)
    track = ArrayTrack(
        EXAMPLE_NAME,
        a.mixture.mean(1, keepdims=True),
        {k: v.mean(1, keepdims=True) for k, v in a.stems.items()},
        a.rate,
    )
    settings = EvaluationSettings(out_dir=tmp_path, baselines=("mixture", "IRM1"))
    evaluation = evaluate_tracks([track], settings)
    assert not evaluation.failures
    table = aggregate_scores(evaluation.scores)
    for name in INSTRUMENTS:
        assert table.loc[("IRM1", name), "SDR"] > table.loc[("mixture", name), "SDR"] + 3
    for method in ("mixture", "IRM1"):
        data = _validate_json(tmp_path / method / "test" / f"{EXAMPLE_NAME}.json")
        assert len(data["targets"][0]["frames"]) == 6  # 6.08 s -> six whole 1 s windows


# -- aggregation -----------------------------------------------------------------------------------------------


def test_aggregation_median_frames_then_tracks():
    """Median over frames (NaN frames skipped), then median over tracks, per method/target/metric."""
    frames = {  # (method, track, target) -> SDR per frame; other metrics are SDR + 1, + 2, + 3
        ("A", "t1", "vocals"): [1.0, 2.0, 9.0],  # median 2
        ("A", "t2", "vocals"): [4.0, math.nan, 6.0, 100.0],  # NaN skipped: median of 4, 6, 100 = 6
        ("A", "t3", "vocals"): [math.nan, math.nan],  # no valid frame: the track is skipped
        ("A", "t1", "bass"): [0.0, 1.0],  # 0.5
        ("A", "t2", "bass"): [3.0],  # 3
        ("A", "t3", "bass"): [-1.0, -3.0, -2.0],  # -2
        ("B", "t1", "vocals"): [7.0],
    }
    rows = []
    for (method, track, target), values in frames.items():
        for i, value in enumerate(values):
            for k, metric in enumerate(("SDR", "SIR", "ISR", "SAR")):
                rows.append(
                    {
                        "time": float(i),
                        "target": target,
                        "metric": metric,
                        "score": value + k,
                        "track": track,
                        "method": method,
                    }
                )
    scores = pd.DataFrame(rows)
    expected_sdr = {("A", "vocals"): (2.0 + 6.0) / 2, ("A", "bass"): 0.5, ("B", "vocals"): 7.0}
    table = aggregate_scores(scores, methods=["A", "B"], targets=["vocals", "bass"])
    assert list(table.index) == [("A", "vocals"), ("A", "bass"), ("B", "vocals")]
    assert list(table.columns) == ["SDR", "SIR", "ISR", "SAR"]
    for key, sdr in expected_sdr.items():
        for k, metric in enumerate(("SDR", "SIR", "ISR", "SAR")):
            assert table.loc[key, metric] == pytest.approx(sdr + k)
    per_track = track_scores(scores)
    assert per_track.loc[("A", "t2", "vocals"), "SDR"] == pytest.approx(6.0)
    assert math.isnan(per_track.loc[("A", "t3", "vocals"), "SDR"])
    means = aggregate_scores(scores, tracks_agg="mean")
    assert means.loc[("A", "bass"), "SDR"] == pytest.approx((0.5 + 3.0 - 2.0) / 3)


def test_share_of_the_oracle_gain_over_the_mixture():
    """(method - mixture) / (IRM1 - mixture) of the aggregate SDR, as `cunet evaluate --baselines` prints it."""
    from cunet.evaluate.reports import oracle_share, oracle_share_section

    rows = [
        {"time": 0.0, "target": t, "metric": "SDR", "score": v, "track": "t1", "method": m}
        for (m, t), v in {
            ("cunet", "vocals"): 4.0,
            ("mixture", "vocals"): -4.0,
            ("IRM1", "vocals"): 8.0,
            ("cunet", "bass"): 1.0,
            ("mixture", "bass"): -5.0,
        }.items()
    ]
    table = aggregate_scores(pd.DataFrame(rows))
    assert oracle_share(table, "cunet", "vocals") == pytest.approx(8.0 / 12.0)
    assert math.isnan(oracle_share(table, "cunet", "bass"))  # no IRM1 score for bass
    lines = oracle_share_section(table, ["cunet", "mixture", "IRM1"], ["vocals", "bass"])
    assert "| cunet | 67% | – |" in lines
    assert (
        oracle_share_section(aggregate_scores(pd.DataFrame(rows[:1])), ["cunet"], ["vocals"]) == []
    )


# -- parallel workers and failures ---------------------------------------------------------------------------


def test_failing_track_is_reported_and_others_scored(tmp_path):
    tracks = [
        _synthetic_track("good", 3.0, seed=3),
        BrokenTrack("broken"),
        _synthetic_track("model-fails", FAILING_LENGTH / 8000, seed=4),
    ]
    settings = EvaluationSettings(out_dir=tmp_path, baselines=("mixture",), model_name="fake")
    messages: list[str] = []
    evaluation = evaluate_tracks(
        tracks, settings, quarter_mixture_factory, jobs=2, log=messages.append
    )
    failures = {(f.track, f.method): f.message for f in evaluation.failures}
    assert set(failures) == {("broken", "load"), ("model-fails", "fake")}
    assert "cannot decode" in failures[("broken", "load")]
    assert "model exploded" in failures[("model-fails", "fake")]
    assert len(messages) == 2
    scored = set(zip(evaluation.scores["track"], evaluation.scores["method"], strict=False))
    assert scored == {("good", "fake"), ("good", "mixture"), ("model-fails", "mixture")}
    assert (tmp_path / "fake" / "test" / "good.json").exists()
    assert (tmp_path / "mixture" / "test" / "model-fails.json").exists()
    assert not (tmp_path / "fake" / "test" / "model-fails.json").exists()
    assert not list(tmp_path.glob("*/test/broken.json"))


def test_worker_processes_are_at_most_one_per_cpu_and_track(tmp_path, monkeypatch):
    from concurrent.futures import ProcessPoolExecutor

    from cunet import workers
    from cunet.evaluate import pool

    sizes: list[int] = []

    def recording_pool(max_workers: int, **kwargs) -> ProcessPoolExecutor:
        sizes.append(max_workers)
        return ProcessPoolExecutor(max_workers, **kwargs)

    monkeypatch.setattr(pool, "ProcessPoolExecutor", recording_pool)
    monkeypatch.setattr(workers, "cpu_count", lambda: 2)  # whatever this machine has
    tracks = [_synthetic_track(name, 1.0, seed=i) for i, name in enumerate("abc")]
    settings = EvaluationSettings(out_dir=tmp_path, baselines=("mixture",))
    evaluation = evaluate_tracks(tracks, settings, jobs=1000)
    assert sizes == [2] and not evaluation.failures
    assert set(evaluation.scores["track"]) == {"a", "b", "c"}


def guitar_from_other_factory():
    """A fake four-instrument model (vocals, drums, bass, other; no guitar): each output a quarter of the mixture."""

    def separate(mixture: np.ndarray, rate: int) -> dict[str, np.ndarray]:
        return {
            "vocals": mixture / 4,
            "drums": mixture / 4,
            "bass": mixture / 4,
            "other": mixture / 4,
        }

    return separate


def test_tracks_scored_for_the_stems_they_hold(tmp_path):
    """Any stem names; a track lacking a stem, or with a silent one, is scored for the others; a track with
    none of the scored stems is skipped without being decoded; --map's estimate_from picks the output."""
    base = _synthetic_stems(3.0, seed=5)
    full = dict(base, guitar=base.pop("other"))  # vocals, drums, bass, guitar
    lacking = {k: v for k, v in full.items() if k != "drums"}
    silent = dict(full, vocals=np.zeros_like(full["vocals"]))
    tracks = [
        ArrayTrack("full", np.sum(list(full.values()), axis=0), full, 8000),
        ArrayTrack("no drums", np.sum(list(lacking.values()), axis=0), lacking, 8000),
        ArrayTrack("silent vocals", np.sum(list(silent.values()), axis=0), silent, 8000),
        BrokenTrack("piano only"),
    ]
    tracks[-1].stem_names = ("piano",)  # known without decoding: never loaded
    settings = EvaluationSettings(
        out_dir=tmp_path,
        protocol="paper",
        instruments=("vocals", "drums", "guitar"),
        baselines=("mixture", "IRM1"),
        model_name="fake",
        estimate_from=(("guitar", "other"),),
    )
    evaluation = evaluate_tracks(tracks, settings, guitar_from_other_factory)
    assert not evaluation.failures
    assert evaluation.skipped == [
        ("piano only", "holds none of the scored stems (vocals, drums, guitar)")
    ]
    scored = evaluation.scores.groupby("track")["target"].unique()
    assert sorted(scored["full"]) == ["drums", "guitar", "vocals"]
    assert sorted(scored["no drums"]) == ["guitar", "vocals"]
    assert sorted(scored["silent vocals"]) == ["drums", "guitar"]
    table = aggregate_scores(evaluation.scores)
    assert table.loc[("IRM1", "guitar"), "SDR"] > table.loc[("mixture", "guitar"), "SDR"] + 3
    assert np.isfinite(table.loc[("fake", "guitar"), "SDR"])
    written = write_reports(evaluation)
    markdown = Path(written["aggregate_md"]).read_text()
    assert "Model estimates (`--map`): fake scores `guitar` from its `other` output." in markdown
    assert "Tracks scored per instrument" in markdown and "vocals 2, drums 2, guitar 3." in markdown
    assert "Not scored: 1 track(s)" in markdown
    record = json.loads(Path(written["settings"]).read_text())
    assert record["estimate_from"] == {"vocals": "vocals", "drums": "drums", "guitar": "other"}
    assert record["skipped"] == [{"track": "piano only", "reason": evaluation.skipped[0][1]}]
    # a model that lacks the mapped output is a failure of that method, not of the track
    missing = evaluate_tracks(
        tracks[:1],
        EvaluationSettings(
            out_dir=tmp_path / "m",
            protocol="paper",
            instruments=("guitar",),
            model_name="fake",
            estimate_from=(("guitar", "piano"),),
        ),
        guitar_from_other_factory,
    )
    (failure,) = missing.failures
    assert failure.method == "fake" and "the model returned no 'piano' estimate" in failure.message


def test_settings_validation(tmp_path):
    with pytest.raises(ValueError, match="baseline"):
        EvaluationSettings(out_dir=tmp_path, baselines=("IRM3",))
    for bad in ((), ("vocals", "vocals"), ("",)):  # any names, but distinct and not empty
        with pytest.raises(ValueError, match="instruments"):
            EvaluationSettings(out_dir=tmp_path, instruments=bad)
    with pytest.raises(ValueError, match="estimate_from"):
        EvaluationSettings(
            out_dir=tmp_path, estimate_from=(("guitar", "other"), ("guitar", "bass"))
        )
    piano = EvaluationSettings(
        out_dir=tmp_path,
        instruments=("piano", "guitar", "bass"),
        estimate_from=(("piano", "other"), ("guitar", "other")),
    )
    assert piano.output_for("piano") == "other" and piano.output_for("bass") == "bass"
    assert piano.model_outputs == ("other", "bass")
    with pytest.raises(ValueError, match="protocol"):
        EvaluationSettings(out_dir=tmp_path, protocol="sisec08")
    with pytest.raises(ValueError, match="method name"):
        EvaluationSettings(out_dir=tmp_path, model_name="IBM")
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_tracks([], EvaluationSettings(out_dir=tmp_path))


# -- CLI ----------------------------------------------------------------------------------------------------------


def _check_outputs(out: Path, methods: list[str]) -> pd.DataFrame:
    for name in (
        "aggregate.md",
        "aggregate.csv",
        "track_scores.csv",
        "settings.json",
        "methodstore.pandas",
    ):
        assert (out / name).is_file(), name
    assert (out / "boxplot_sdr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for method in methods:
        _validate_json(out / method / "test" / f"{EXAMPLE_NAME}.json")
    table = pd.read_csv(out / "aggregate.csv").set_index(["method", "target"])
    assert list(table.columns) == ["SDR", "SIR", "ISR", "SAR"]
    assert sorted(set(table.index.get_level_values(0))) == sorted(methods)
    for name in INSTRUMENTS:
        assert table.loc[("IRM1", name), "SDR"] > table.loc[("mixture", name), "SDR"]
    markdown = (out / "aggregate.md").read_text()
    assert "## SDR" in markdown and "| IRM1 |" in markdown
    if "mixture" in methods:
        assert "Share of the IRM1 gain over the mixture" in markdown
    # the readers the study and ablation scripts use give the same figures
    per_track = pd.read_csv(out / "track_scores.csv")
    for method in methods:
        read = read_aggregate(out, method)
        for name in INSTRUMENTS:
            assert read[name] == pytest.approx(dict(table.loc[(method, name)]), nan_ok=True)
        rows = per_track[per_track["method"] == method]
        assert read_track_scores(out, method, "SAR") == pytest.approx(
            {(r.track, r.target): r.SAR for r in rows.itertuples()}, nan_ok=True
        )
    # museval's own tools read the results folder back
    store = museval.MethodStore()
    for method in methods:
        store.add_eval_dir(str(out / method))
    again = store.agg_frames_tracks_scores().unstack("metric")
    for method in methods:
        for name in INSTRUMENTS:
            assert again.loc[(method, name), "SDR"] == pytest.approx(
                table.loc[(method, name), "SDR"], abs=1e-4
            )
    return table


def test_cli_paper_protocol_baselines(musdb_root, tmp_path, capsys):
    out = tmp_path / "paper"
    rc = main(
        [
            "evaluate",
            "--musdb-root",
            str(musdb_root),
            "--no-model",
            "--baselines",
            "mixture",
            "IRM1",
            "--protocol",
            "paper",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    table = _check_outputs(out, ["mixture", "IRM1"])
    assert table["ISR"].isna().all()  # undefined for bss_eval_sources
    assert (out / "aggregate_mean.csv").is_file()
    settings = json.loads((out / "settings.json").read_text())
    assert (
        settings["protocol"] == "paper"
        and settings["n_tracks_scored"] == 1
        and settings["failures"] == []
    )
    assert "| IRM1 |" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_musdb_protocol_stereo(musdb_root, tmp_path):
    """The SiSEC run as users do it, on the stereo excerpt (BSSEval v4 on stereo is slow)."""
    out = tmp_path / "musdb"
    rc = main(
        [
            "evaluate",
            "--musdb-root",
            str(musdb_root),
            "--no-model",
            "--baselines",
            "mixture",
            "IRM1",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    table = _check_outputs(out, ["mixture", "IRM1"])
    assert table["ISR"].notna().all()
    # EvalStore (one method) agrees too
    store = museval.EvalStore()
    store.add_eval_dir(str(out / "IRM1"))
    agg = store.agg_frames_tracks_scores().unstack("metric")
    assert agg.loc["vocals", "SDR"] == pytest.approx(table.loc[("IRM1", "vocals"), "SDR"], abs=1e-4)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--no-model"], "needs --baselines"),
        (["--subsets", "test", "--split", "valid", "--baselines"], "--split only applies"),
        (["--jobs", "0", "--baselines"], "--jobs"),
        (["--no-model", "--model", "x.keras", "--baselines"], "exclude"),
        (["--name", "IBM", "--baselines"], "--name"),
    ],
)
def test_cli_argument_errors(musdb_root, argv, message, capsys):
    assert main(["evaluate", "--musdb-root", str(musdb_root), *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_missing_data_and_model(tmp_path, musdb_root, capsys):
    assert (
        main(["evaluate", "--musdb-root", str(tmp_path / "nope"), "--no-model", "--baselines"]) == 2
    )
    assert "not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert (
        main(["evaluate", "--musdb-root", str(tmp_path / "empty"), "--no-model", "--baselines"])
        == 2
    )
    assert "no MUSDB18 tracks" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                "--musdb-root",
                str(musdb_root),
                "--model",
                str(tmp_path / "missing.keras"),
            ]
        )
        == 2
    )
    assert "missing.keras" in capsys.readouterr().err
    # musdb probes every file while listing; a corrupt one is named instead of a traceback
    bad_root = tmp_path / "bad"
    _link(EXAMPLE, bad_root / "test" / EXAMPLE.name)
    (bad_root / "test" / "Broken - File.stem.mp4").write_bytes(b"not an mp4")
    assert main(["evaluate", "--musdb-root", str(bad_root), "--no-model", "--baselines"]) == 2
    assert "Broken - File.stem.mp4" in capsys.readouterr().err


def test_cli_module_is_light_and_consistent():
    """Building the parser imports no numpy/museval/tensorflow; the CLI choices mirror the library's."""
    code = (
        "import argparse, sys\n"
        "from cunet.commands import evaluate\n"
        "p = argparse.ArgumentParser(); evaluate.add_parser(p.add_subparsers())\n"
        "heavy = [m for m in ('numpy', 'museval', 'tensorflow', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    from cunet.commands import evaluate as command

    assert command.BASELINE_CHOICES == BASELINES and command.PROTOCOL_CHOICES == PROTOCOLS
    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers())
    args = parser.parse_args(["evaluate", "--musdb-root", "x", "--baselines"])
    assert (
        args.baselines == []
        and args.handler is command.run
        and args.jobs == 1
        and args.model is None
    )


# -- with a model (slow: TensorFlow) --------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_with_model_in_two_workers(tiny_model_path, tmp_path):
    """A (random) model loaded once per worker process; two tracks scored in parallel."""
    root = tmp_path / "musdb"
    for name in ("A - one", "B - two"):
        _link(EXAMPLE, root / "test" / f"{name}.stem.mp4")
    out = tmp_path / "out"
    rc = main(
        [
            "evaluate",
            "--musdb-root",
            str(root),
            "--model",
            str(tiny_model_path),
            "--name",
            "tiny",
            "--baselines",
            "mixture",
            "--protocol",
            "paper",
            "--jobs",
            "2",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    for name in ("A - one", "B - two"):
        _validate_json(out / "tiny" / "test" / f"{name}.json")
    table = pd.read_csv(out / "aggregate.csv").set_index(["method", "target"])
    assert set(table.index.get_level_values(0)) == {"tiny", "mixture"}
    assert np.isfinite(table.loc["tiny", "SDR"]).all()


def test_musdb_missing_names_the_extra(monkeypatch, tmp_path):
    import cunet.evaluate.tracks
    from cunet.errors import MissingExtra

    def no_musdb(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'musdb'", name="musdb")

    monkeypatch.setattr(cunet.evaluate.tracks, "open_musdb", no_musdb)
    with pytest.raises(MissingExtra, match=r'pip install "cunet\[train\]"'):
        open_musdb_tracks(tmp_path, "train")
