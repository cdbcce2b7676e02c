"""ONNX export of the mask network (`cunet export --format onnx`), through tf2onnx (an optional extra:
`pip install "cunet[onnx]"`). The file layout is described in `cunet.engines.onnxrt`; the network and record
are those of the `.tflite` export (`cunet.export.tflite`)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tensorflow as tf

from ..config import Config
from ..engines.onnxrt import ONNX_FORMAT
from ..errors import ExportError, MissingExtra, literal
from ..io.atomic import write_bytes_atomic
from ..postprocess import Postprocess
from ..provenance import PROVENANCE_ENTRY
from ..settings import ChunkSettings
from .shared import export_record, inference_network

ONNX_OPSET = 17


def export_onnx(
    model: Any,
    config: Config,
    provenance: Mapping[str, Any] | None,
    out_path: str | os.PathLike[str],
    chunks: ChunkSettings | None = None,
    overwrite: bool = False,
    source: str | None = None,
    postprocess: str | Postprocess | None = None,
) -> Path:
    """Write `model`'s mask network as an `.onnx` file (opset ONNX_OPSET, dynamic batch and frames) with
    its record as metadata property "cunet.json"; atomically. Returns the path written."""
    out = Path(out_path)
    if out.suffix.lower() != ".onnx":
        raise ExportError(f"an onnx export is one file ending in .onnx, got '{out}'")
    if out.exists() and (not overwrite or not out.is_file()):
        if not out.is_file():
            raise ExportError(f"output '{out}' exists and is not a file")
        raise ExportError(
            f"output '{literal(out)}' exists; use {{force}} to replace it",
            names={"force": "overwrite=True"},
        )
    try:
        import onnx
        import tf2onnx
    except ImportError:
        raise MissingExtra(
            'tf2onnx and onnx are not installed (the ONNX export needs them); pip install "cunet[onnx]"'
        ) from None
    record, _ = export_record(config, provenance, chunks or ChunkSettings(), source, postprocess)
    record["export"].update(format=ONNX_FORMAT, opset=ONNX_OPSET, quantize="none")
    a, m = config.audio, config.model
    network = inference_network(model)
    specs = [tf.TensorSpec([None, a.n_bins, None, a.n_channels], tf.float32, name="magnitude")]
    if m.conditioned:
        specs.append(tf.TensorSpec([None, len(m.instruments)], tf.float32, name="condition"))

        def masks(magnitude: tf.Tensor, condition: tf.Tensor) -> dict[str, tf.Tensor]:
            return {
                "mask": network({"magnitude": magnitude, "condition": condition}, training=False)
            }
    else:

        def masks(magnitude: tf.Tensor) -> dict[str, tf.Tensor]:  # type: ignore[misc]
            return {"mask": network({"magnitude": magnitude}, training=False)}

    function = tf.function(masks, input_signature=specs, autograph=False)
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=specs, opset=ONNX_OPSET)
    except Exception as exc:  # noqa: BLE001 - tf2onnx raises many kinds
        text = str(exc).strip().splitlines()
        raise ExportError(
            f"tf2onnx failed: {(text[0] if text else type(exc).__name__)[:300]}"
        ) from None
    onnx.helper.set_model_props(
        proto, {PROVENANCE_ENTRY: json.dumps(record, indent=2, sort_keys=True, default=str)}
    )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return write_bytes_atomic(out, proto.SerializeToString(deterministic=True))
    except OSError as exc:
        raise ExportError(f"cannot write '{out}': {exc.strerror or exc}") from None
