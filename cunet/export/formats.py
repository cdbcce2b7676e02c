"""The entry of every export format (`cunet export`): a SavedModel directory
(`cunet.export.savedmodel`), a `.tflite` file (`cunet.export.tflite`) or an `.onnx` file
(`cunet.export.onnx`), from a `.keras` file, a training run or the shipped model."""

from __future__ import annotations

import os
from pathlib import Path

from ..engines.loading import load_keras_model, resolve_model_path
from ..errors import ExportError, ModelError, literal
from ..provenance import weights_digest
from ..settings import ChunkSettings
from .onnx import export_onnx
from .savedmodel import export_saved_model
from .tflite import CALIBRATION_CHUNKS, QUANTIZE_MODES, export_tflite

__all__ = ["FORMATS", "export_model_file"]

FORMATS: tuple[str, ...] = ("saved_model", "tflite", "onnx")


def export_model_file(
    model_path: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    chunks: ChunkSettings | None = None,
    overwrite: bool = False,
    postprocess: str | None = None,
    fmt: str = "saved_model",
    quantize: str = "none",
    calibration: str | None = None,
    calibration_chunks: int = CALIBRATION_CHUNKS,
    source: str | None = None,
    encode_once: bool = True,
) -> Path:
    """Export a `.keras` file, a training run directory or (None) the shipped model.

    fmt: "saved_model" (a directory `out_dir`), "tflite" or "onnx" (a file `out_dir` with that suffix).
    quantize, calibration, calibration_chunks, encode_once: the `.tflite` export's
    (`cunet.export.tflite.export_tflite`).
    source: recorded as the model's origin (default: the resolved path).
    Raises ModelError for a bad model, ConfigError for bad chunk settings, ExportError for the output.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format '{fmt}' (valid: {', '.join(FORMATS)})")
    if quantize not in QUANTIZE_MODES:
        raise ExportError(f"unknown quantization '{quantize}' (valid: {', '.join(QUANTIZE_MODES)})")
    if quantize != "none" and fmt != "tflite":
        raise ExportError(
            f"{{quantize}} is for {{format}} tflite, not {literal(fmt)}",
            names={"quantize": "quantize", "format": "fmt"},
        )
    resolved = resolve_model_path(model_path)
    if resolved.is_dir() or resolved.suffix.lower() in (".tflite", ".onnx"):
        raise ModelError(
            f"'{resolved}' is already an export; give a .keras file or a run directory"
        )
    model, config, provenance = load_keras_model(resolved)
    provenance = dict(provenance)
    provenance.setdefault("weights_sha256", weights_digest(resolved))
    source = source or str(resolved)
    if fmt == "tflite":
        return export_tflite(
            model,
            config,
            provenance,
            out_dir,
            chunks,
            overwrite=overwrite,
            source=source,
            postprocess=postprocess,
            quantize=quantize,
            calibration=calibration,
            calibration_chunks_n=calibration_chunks,
            encode_once=encode_once,
        )
    if fmt == "onnx":
        return export_onnx(
            model,
            config,
            provenance,
            out_dir,
            chunks,
            overwrite=overwrite,
            source=source,
            postprocess=postprocess,
        )
    return export_saved_model(
        model,
        config,
        provenance,
        out_dir,
        chunks,
        overwrite=overwrite,
        source=source,
        postprocess=postprocess,
    )
