"""SavedModel export for TF Serving and plain TensorFlow (`cunet export`; every format's entry is
`cunet.export.formats.export_model_file`).

An export is a SavedModel directory whose graphs do everything: STFT, the
Separator's chunking (same chunk/overlap sizes, zero padding, linear
cross-fades and chunk count, see `cunet.export.graph` and `cunet.chunking`), masking
and inverse STFT, so a client needs only TensorFlow and sends only audio.
Signatures:

  serving_default     waveform float32 [n_samples, n_channels] at the model's
                      sample rate (1 or 2 channels, whatever the model's), and
                      instrument tf.string scalar (e.g. "vocals")
                      -> {"waveform": float32 [n_samples, n_channels]}
  separate_condition  waveform as above, condition float32 [n_instruments]
                      (one-hot, or any mix for a multi-hot trained model)
                      -> {"waveform": float32 [n_samples, n_channels]}
  spectrogram         magnitude float32 [batch, n_bins, n_frames, model channels]
                      (n_frames a multiple of 2**n_layers), condition float32
                      [batch, n_instruments] -> {"magnitude": masked magnitude,
                      "mask": sigmoid mask}, both of the magnitude's shape

The provenance record (with the config and an "export" section) is stored as
the asset `assets/cunet.json`, which `cunet.engines.loading.load_exported` reads back so
`Separator.from_pretrained(DIR)` works on an export.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tensorflow as tf

from ..config import Config
from ..errors import ExportError, literal
from ..postprocess import Postprocess, model_postprocess, with_postprocess
from ..provenance import PROVENANCE_ENTRY
from ..settings import ChunkSettings
from .graph import separate_waveform

__all__ = ["EXPORT_FORMAT", "SIGNATURES", "export_saved_model"]

EXPORT_FORMAT = "cunet-savedmodel/1"
SIGNATURES = ("serving_default", "separate_condition", "spectrogram")


def _mask_and_magnitude_model(
    model: Any, conditioned: bool
) -> Callable[[tf.Tensor, tf.Tensor], list]:
    """(magnitude, condition) -> [mask, masked magnitude] with one network pass."""
    import keras

    both = keras.Model(
        model.inputs,
        [model.get_layer("mask").output, model.output],
        name=f"{model.name}_mask_and_magnitude",
    )
    if conditioned:
        return lambda mag, cond: both({"magnitude": mag, "condition": cond}, training=False)
    return lambda mag, cond: both({"magnitude": mag}, training=False)


class _ExportModule(tf.Module):
    """The object graph that is saved: three tf.functions, the weights they use, the provenance asset."""

    def __init__(
        self,
        model: Any,
        config: Config,
        chunk: int,
        overlap: int,
        provenance_file: str,
        ratio_power: float | None,
    ) -> None:
        super().__init__(name="cunet_export")
        a, m = config.audio, config.model
        net = _mask_and_magnitude_model(model, m.conditioned)
        instruments = m.instruments
        valid = (
            m.outputs
        )  # a standard U-Net separates its target only; its condition input is ignored
        n_inst = len(instruments)
        multiple = m.time_multiple

        def mask_fn(mag: tf.Tensor, cond: tf.Tensor) -> tf.Tensor:
            return net(mag, cond)[0]

        def separate_condition(waveform: tf.Tensor, condition: tf.Tensor) -> dict[str, tf.Tensor]:
            return {
                "waveform": separate_waveform(
                    waveform, condition, a, multiple, chunk, overlap, mask_fn, ratio_power
                )
            }

        def separate(waveform: tf.Tensor, instrument: tf.Tensor) -> dict[str, tf.Tensor]:
            name = tf.strings.lower(tf.strings.strip(instrument))
            hits = tf.equal(tf.constant(list(instruments)), name)
            known = tf.reduce_any(tf.equal(tf.constant(list(valid)), name))
            check = tf.debugging.Assert(
                known, ["unknown instrument", instrument, "valid:", ", ".join(valid)]
            )
            with tf.control_dependencies([check]):
                condition = tf.cast(hits, tf.float32)
            return separate_condition(waveform, condition)

        def spectrogram(magnitude: tf.Tensor, condition: tf.Tensor) -> dict[str, tf.Tensor]:
            check = tf.debugging.Assert(
                tf.equal(tf.shape(magnitude)[2] % multiple, 0),
                [
                    f"n_frames must be a multiple of {multiple}; got magnitude shape",
                    tf.shape(magnitude),
                ],
            )
            with tf.control_dependencies([check]):
                mask, masked = net(magnitude, condition)
            return {"magnitude": masked, "mask": mask}

        wave_spec = tf.TensorSpec([None, None], tf.float32, name="waveform")
        cond_spec = tf.TensorSpec([n_inst], tf.float32, name="condition")
        self.separate = tf.function(
            separate, input_signature=[wave_spec, tf.TensorSpec([], tf.string, name="instrument")]
        )
        self.separate_condition = tf.function(
            separate_condition, input_signature=[wave_spec, cond_spec]
        )
        self.spectrogram = tf.function(
            spectrogram,
            input_signature=[
                tf.TensorSpec([None, a.n_bins, None, a.n_channels], tf.float32, name="magnitude"),
                tf.TensorSpec([None, n_inst], tf.float32, name="condition"),
            ],
        )
        self.provenance_file = tf.saved_model.Asset(provenance_file)

    def signatures(self) -> dict[str, Any]:
        """Concrete functions by signature name; tracing them also tracks the weights they use."""
        fns = {
            "serving_default": self.separate.get_concrete_function(),
            "separate_condition": self.separate_condition.get_concrete_function(),
            "spectrogram": self.spectrogram.get_concrete_function(),
        }
        seen: dict[int, tf.Variable] = {}
        for fn in fns.values():
            for v in fn.variables:
                seen.setdefault(id(v), v)
        # tf.saved_model.save needs every captured variable reachable from the saved object.
        self.weights = list(seen.values())
        return fns


def export_saved_model(
    model: Any,
    config: Config,
    provenance: Mapping[str, Any] | None,
    out_dir: str | os.PathLike,
    chunks: ChunkSettings | None = None,
    overwrite: bool = False,
    source: str | None = None,
    postprocess: str | Postprocess | None = None,
) -> Path:
    """Write `model` as a SavedModel directory `out_dir` (atomically: staged, then renamed).

    chunks: the in-graph chunking, as for `Separator` (default: `ChunkSettings()`).
    postprocess: "none" or "ratio" (None: the model's own `model.postprocess`), in the waveform signatures;
        the `spectrogram` signature returns each condition's own mask.
    overwrite: replace `out_dir` if it is an earlier export (never any other directory).
    source: where the model came from, recorded in the provenance. Returns out_dir.
    """
    if not str(out_dir):
        raise ExportError("empty output directory; give one, e.g. models/cunet/1")
    out = Path(out_dir)
    postprocess = model_postprocess(postprocess, config.model)
    if postprocess.mode == "wiener":
        raise ExportError(
            "the SavedModel export supports post-processing 'none' and 'ratio', not 'wiener'"
        )
    if postprocess.joint and not config.model.conditioned:
        raise ExportError("post-processing 'ratio' needs a conditioned model")
    ratio_power = postprocess.power if postprocess.mode == "ratio" else None
    chunks = chunks or ChunkSettings()
    chunk, overlap = chunks.samples(config.audio, config.model.time_multiple)
    if out.exists():
        if not overwrite:
            raise ExportError(
                f"output '{literal(out)}' exists; use {{force}} to replace an earlier export",
                names={"force": "overwrite=True"},
            )
        if not (out / "saved_model.pb").is_file():
            raise ExportError(
                f"output '{out}' exists and is not a SavedModel export; refusing to replace it"
            )
    record = dict(provenance or {})
    # The export's config says how it combines masks, so a Separator over the export does the same.
    record["config"] = with_postprocess(config, postprocess).to_dict()
    record["export"] = {
        "format": EXPORT_FORMAT,
        "source": source,
        "signatures": list(SIGNATURES),
        "chunk_seconds": chunks.chunk_seconds,
        "overlap_seconds": chunks.overlap_seconds,
        "chunk_samples": chunk,
        "overlap_samples": overlap,
        "sample_rate": config.audio.sample_rate,
        "n_channels": config.audio.n_channels,
        "instruments": list(config.model.outputs),
        "postprocess": postprocess.mode,
        "ratio_power": ratio_power,
    }
    # A directory cannot be renamed over an existing one: the earlier export is moved aside first.
    staging = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    old = out.with_name(f".{out.name}.{os.getpid()}.old")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="cunet-export-") as tmp:
            asset = Path(tmp) / PROVENANCE_ENTRY
            asset.write_text(
                json.dumps(record, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
            )
            module = _ExportModule(model, config, chunk, overlap, str(asset), ratio_power)
            tf.saved_model.save(module, str(staging), signatures=module.signatures())
        if out.exists():
            os.replace(out, old)
        os.replace(staging, out)
    except OSError as exc:
        raise ExportError(f"cannot write '{out}': {exc.strerror or exc}") from None
    finally:
        for leftover in (staging, old):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
    return out
