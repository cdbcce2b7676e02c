"""`cunet export --format tflite`: repeatable files, quantized variants that still run close to float32,
calibration audio from a training source, plain U-Nets, and refused settings and outputs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from cunet.cli import main
from cunet.dsp import n_frames_for
from cunet.engines.litert import load_tflite
from cunet.errors import DataError, ExportError
from cunet.export.formats import export_model_file
from cunet.export.shared import export_record
from cunet.export.tflite import QUANTIZE_MODES, calibration_chunks
from cunet.settings import ChunkSettings


def test_export_is_repeatable(
    tiny_model_path: Path, tiny_tflite_path: Path, tmp_path: Path
) -> None:
    again = export_model_file(
        tiny_model_path,
        tmp_path / "again.tflite",
        chunks=ChunkSettings(1.0, 0.25),
        fmt="tflite",
    )
    assert (
        again.read_bytes() == tiny_tflite_path.read_bytes()
    )  # no time stamps: scripts/make_tflite.py --check


@pytest.fixture(scope="module")
def variants(tiny_model_path: Path, musdb_root: Path, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("variants")
    return {
        q: export_model_file(
            tiny_model_path,
            folder / f"tiny-{q}.tflite",
            chunks=ChunkSettings(1.0, 0.25),
            fmt="tflite",
            quantize=q,
            calibration=f"{musdb_root},wav" if q == "int8-full" else None,
            calibration_chunks=2,
        )
        for q in QUANTIZE_MODES
    }


def test_quantized_variants_are_smaller_and_close_to_float32(
    variants: dict[str, Path], tiny_config
) -> None:
    a = tiny_config.audio
    rng = np.random.default_rng(0)
    mag = (rng.uniform(0, 1, (1, a.n_bins, 128, a.n_channels)) ** 3 * 4).astype(np.float32)
    cond = np.eye(4, dtype=np.float32)
    reference = load_tflite(variants["none"])[0].masks(mag, cond)
    tolerance = {"none": 0.0, "float16": 1e-3, "int8": 0.05, "int8-full": 0.1}
    sizes = {q: p.stat().st_size for q, p in variants.items()}
    for q, path in variants.items():
        engine, _, record = load_tflite(path)
        assert record["export"]["quantize"] == q
        np.testing.assert_allclose(engine.masks(mag, cond), reference, atol=tolerance[q], err_msg=q)
    assert (
        sizes["int8"] < sizes["float16"] < sizes["none"] and sizes["int8-full"] < sizes["float16"]
    )
    _, _, record = load_tflite(variants["int8-full"])
    assert record["export"]["calibration"]["chunks"] == 2


def test_calibration_chunks_come_from_the_training_split(
    musdb_root: Path, tiny_config, tmp_path: Path
) -> None:
    chunks = calibration_chunks(f"{musdb_root},wav", tiny_config, 44100, n_chunks=3)
    a = tiny_config.audio
    frames = n_frames_for(44100, a.n_fft, a.hop_length)
    assert len(chunks) == 3 and all(c.shape == (1, a.n_bins, frames, a.n_channels) for c in chunks)
    assert all(c.dtype == np.float32 and c.max() > 0 for c in chunks)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError):
        calibration_chunks(str(tmp_path / "empty"), tiny_config, 44100)


def test_a_plain_unet_exports_without_condition_input(tmp_path: Path, tiny_config) -> None:
    import keras

    from cunet.engines.keras import KerasEngine
    from cunet.nn.models import build_model
    from cunet.provenance import make_provenance, save_model

    config = dataclasses.replace(
        tiny_config, model=dataclasses.replace(tiny_config.model, kind="standard", target="bass")
    )
    keras.utils.set_random_seed(1)
    model = build_model(config)
    path = save_model(model, tmp_path / "unet.keras", make_provenance(config.to_dict()))
    engine, loaded, record = load_tflite(
        export_model_file(path, tmp_path / "unet.tflite", fmt="tflite")
    )
    assert (
        loaded == config
        and record["export"]["instruments"] == ["bass"]
        and record["export"]["conditions"] == []
    )
    mag = np.random.default_rng(2).uniform(0, 1, (2, 128, 64, 2)).astype(np.float32)
    cond = np.eye(4, dtype=np.float32)[2:3]
    np.testing.assert_allclose(
        engine.masks(mag, cond), KerasEngine(model, config).masks(mag, cond), atol=1e-5
    )


def test_postprocess_is_recorded_as_the_default(
    tiny_model_path: Path, tmp_path: Path, tiny_config
) -> None:
    path = export_model_file(
        tiny_model_path, tmp_path / "ratio.tflite", fmt="tflite", postprocess="ratio"
    )
    _, config, record = load_tflite(path)
    assert config.model.postprocess == record["export"]["postprocess"] == "ratio"
    assert record["export"]["ratio_power"] == 1.0
    with pytest.raises(ExportError, match="'none' or 'ratio'"):
        export_record(tiny_config, {}, ChunkSettings(12.0, 1.0), None, "wiener")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--format", "tflite", "-o", "model.tfl"], "give -o NAME.tflite"),
        (["--format", "onnx", "-o", "model.tflite"], "give -o NAME.onnx"),
        (["-o", "exported", "--quantize", "int8"], "--quantize is for --format tflite"),
        (["-o", "m.onnx", "--format", "onnx", "--no-encode-once"], "is for --format tflite"),
        (
            ["--format", "tflite", "-o", "m.tflite", "--quantize", "int8-full"],
            "needs --calibration-data",
        ),
        (
            ["--format", "tflite", "-o", "m.tflite", "--calibration-chunks", "0"],
            "--calibration-chunks",
        ),
    ],
)
def test_bad_export_settings_are_refused_before_loading(
    args: list[str], message: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["export", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force(
    tiny_model_path: Path, tiny_tflite_path: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "m.tflite"
    out.write_bytes(b"keep me")
    assert main(["export", "-m", str(tiny_model_path), "-o", str(out), "--format", "tflite"]) == 2
    assert "exists; use --force" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert (
        main(
            [
                "export",
                "-m",
                str(tiny_model_path),
                "-o",
                str(out),
                "--format",
                "tflite",
                "--force",
                "-q",
                "--chunk-seconds",
                "1",
                "--overlap-seconds",
                "0.25",
            ]
        )
        == 0
    )
    assert out.read_bytes() == tiny_tflite_path.read_bytes() and capsys.readouterr().err == ""
    assert (
        main(
            [
                "export",
                "-m",
                str(tiny_tflite_path),
                "-o",
                str(tmp_path / "x.tflite"),
                "--format",
                "tflite",
            ]
        )
        == 2
    )
    assert "already an export" in capsys.readouterr().err
