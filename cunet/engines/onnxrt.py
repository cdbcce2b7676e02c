"""ONNX models written by `cunet export --format onnx`, and `OnnxEngine`, which computes a chunk's masks
with `onnxruntime` (an optional extra: `pip install "cunet[onnx]"`). NumPy only, no TensorFlow.

The file holds the same mask network as the `.tflite` export (`cunet.engines.litert`): inputs "magnitude"
float32 [batch, n_bins, n_frames, n_channels] and (conditioned models) "condition" float32
[batch, n_instruments], batch and n_frames free; output "mask" of the magnitude's shape. The
provenance record (config and "export" section, as for `.tflite`) is the model metadata property
"cunet.json". onnxruntime checks the graph; cunet checks the record and the input shapes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config, ConfigError, config_from_dict
from ..errors import MissingExtra, ModelError
from ..provenance import PROVENANCE_ENTRY, parse_record
from .base import MaskEngine, cpu_count

ONNX_FORMAT = "cunet-onnx/1"
MAX_ONNX_BYTES = 1 << 31


class OnnxEngine(MaskEngine):
    """Masks from a cunet `.onnx` model run by an onnxruntime CPU session (all conditions as one batch)."""

    def __init__(self, session: Any, config: Config, record: dict[str, Any]) -> None:
        self.session = session
        self.config = config
        self.record = record
        self._conditioned = config.model.conditioned

    def masks(self, magnitude: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        n_cond, n_groups = conditions.shape[0], magnitude.shape[0]
        feeds = {
            "magnitude": np.ascontiguousarray(np.tile(magnitude, (n_cond, 1, 1, 1)), np.float32)
        }
        if self._conditioned:
            feeds["condition"] = np.ascontiguousarray(
                np.repeat(conditions, n_groups, axis=0), np.float32
            )
        mask = self.session.run(["mask"], feeds)[0]
        return mask.reshape(n_cond, n_groups, *magnitude.shape[1:])


def load_onnx(
    path: str | os.PathLike, num_threads: int | None = None
) -> tuple[OnnxEngine, Config, dict[str, Any]]:
    """(engine, Config, provenance record) of a cunet `.onnx` file; ModelError (one line) if it is bad,
    or if onnxruntime is not installed."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file '{path}' does not exist")
    if path.stat().st_size > MAX_ONNX_BYTES:
        raise ModelError(f"model file '{path}' is larger than an .onnx model can be")
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingExtra(
            'ONNX Runtime is not installed (.onnx models need it); pip install "cunet[onnx]"'
        ) from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads or cpu_count()
    options.log_severity_level = 3  # errors only
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        text = str(exc).strip().splitlines()
        raise ModelError(
            f"model file '{path}' is not a valid .onnx model "
            f"({(text[0] if text else type(exc).__name__)[:200]})"
        ) from None
    if PROVENANCE_ENTRY not in meta:
        raise ModelError(
            f"model file '{path}' carries no cunet provenance/config; was it written by "
            "`cunet export --format onnx`?"
        )
    source = f"model file '{path}': {PROVENANCE_ENTRY}"
    record = parse_record(meta[PROVENANCE_ENTRY].encode("utf-8", "surrogatepass"), source)
    export = record.get("export")
    if not isinstance(export, dict) or export.get("format") != ONNX_FORMAT:
        raise ModelError(
            f"{source} has no '{ONNX_FORMAT}' export section; re-export it with `cunet export --format onnx`"
        )
    try:
        config = config_from_dict(record["config"])
    except ConfigError as exc:
        raise ModelError(f"model file '{path}' has an invalid config: {exc}") from None
    a, m = config.audio, config.model
    wanted = {"magnitude": [a.n_bins, a.n_channels]}
    if m.conditioned:
        wanted["condition"] = [len(m.instruments)]
    inputs = {i.name: i.shape for i in session.get_inputs()}
    fixed = {name: [d for d in shape if isinstance(d, int)] for name, shape in inputs.items()}
    if fixed != wanted or [o.name for o in session.get_outputs()] != ["mask"]:
        raise ModelError(
            f"model file '{path}': its {PROVENANCE_ENTRY} config does not match the network "
            f"(inputs {inputs}); it was modified or not written by `cunet export --format onnx`"
        )
    return OnnxEngine(session, config, record), config, record
