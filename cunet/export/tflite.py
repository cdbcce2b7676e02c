"""`.tflite` (LiteRT) export: the mask network for a fixed chunk, its record embedded (`cunet export
--format tflite`; the file layout and signatures are described in `cunet.engines.litert`).

The network is the Keras model's mask branch with its transposed convolutions rewritten as sub-pixel
convolutions (`cunet.export.subpixel`: same masks to 1e-6, several times faster under XNNPACK). Quantization:

    none       float32 weights and activations;
    float16    float16 weights (half the file), computed in float32;
    int8       dynamic range: int8 weights, activations quantized on the fly per inference;
    int8-full  full integer: int8 weights and activations, with activation ranges calibrated on
               mixtures of a training data source (`calibration`, a `--data` spec); float32 in and out.

The output is deterministic: the same source model and settings give the same bytes (no time stamps),
so the shipped `cunet/pretrained/default.tflite` can be rebuilt by `scripts/make_tflite.py` and checked.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from .. import dsp
from ..config import Config
from ..data.cache import conform_rate_and_channels
from ..data.sources import open_source, parse_data_spec
from ..engines.litert import (
    CHUNK_SIGNATURE,
    DECODE_SIGNATURE,
    ENCODE_SIGNATURE,
    MASKS_SIGNATURE,
    METADATA_NAME,
    TFLITE_FORMAT,
    buffers_digest,
    record_digest,
)
from ..errors import DataError, ExportError, literal
from ..io.atomic import write_bytes_atomic
from ..nn.models import encoder_decoder
from ..postprocess import Postprocess
from ..settings import ChunkSettings
from ..tflog import native_stderr_muted
from .shared import export_record, inference_network
from .subpixel import with_subpixel_deconvolutions

QUANTIZE_MODES: tuple[str, ...] = ("none", "float16", "int8", "int8-full")
CALIBRATION_CHUNKS = 8  # default number of chunks (each with every condition) for int8-full


def mask_functions(network: Any, config: Config, chunk_frames: int) -> dict[str, Any]:
    """{signature name: concrete function (magnitude[, condition]) -> {"mask": ...}} for the
    dynamic `masks` and fixed-shape `chunk` signatures (see `cunet.engines.litert`)."""
    a, m = config.audio, config.model
    n_inst = len(m.instruments)

    def make(name: str, batch: int | None, frames: int | None) -> Any:
        specs = [
            tf.TensorSpec([batch, a.n_bins, frames, a.n_channels], tf.float32, name="magnitude")
        ]
        if m.conditioned:
            specs.append(tf.TensorSpec([batch, n_inst], tf.float32, name="condition"))

            def fn(magnitude: tf.Tensor, condition: tf.Tensor) -> dict[str, tf.Tensor]:
                return {
                    "mask": network(
                        {"magnitude": magnitude, "condition": condition}, training=False
                    )
                }
        else:

            def fn(magnitude: tf.Tensor) -> dict[str, tf.Tensor]:  # type: ignore[misc]
                return {"mask": network({"magnitude": magnitude}, training=False)}

        fn.__name__ = name  # the converter names signatures after the functions
        return tf.function(fn, input_signature=specs, autograph=False).get_concrete_function()

    return {
        MASKS_SIGNATURE: make(MASKS_SIGNATURE, None, None),
        CHUNK_SIGNATURE: make(CHUNK_SIGNATURE, 1, chunk_frames),
    }


def shared_encoder_functions(model: Any, config: Config) -> dict[str, Any]:
    """{signature name: concrete function} for the `encode` and `decode` signatures of a model whose
    encoder does not depend on the condition (see `cunet.engines.litert`); batch and frames free."""
    a, m = config.audio, config.model
    encoder, decoder = encoder_decoder(model, config)
    decoder = with_subpixel_deconvolutions(decoder)
    magnitude = tf.TensorSpec([None, a.n_bins, None, a.n_channels], tf.float32, name="magnitude")
    skips = {
        f"skip_{i}": tf.TensorSpec(
            [None, t.shape[1], None, t.shape[3]], tf.float32, name=f"skip_{i}"
        )
        for i, t in enumerate(encoder.outputs)
    }
    condition = tf.TensorSpec([None, len(m.instruments)], tf.float32, name="condition")

    def encode(magnitude: tf.Tensor) -> dict[str, tf.Tensor]:
        return {f"skip_{i}": t for i, t in enumerate(encoder(magnitude, training=False))}

    def decode(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {"mask": decoder(inputs, training=False)}

    encode.__name__, decode.__name__ = ENCODE_SIGNATURE, DECODE_SIGNATURE
    return {
        ENCODE_SIGNATURE: tf.function(
            encode, input_signature=[magnitude], autograph=False
        ).get_concrete_function(),
        DECODE_SIGNATURE: tf.function(
            decode, input_signature=[{**skips, "condition": condition}], autograph=False
        ).get_concrete_function(),
    }


def calibration_chunks(
    spec: str, config: Config, chunk: int, n_chunks: int = CALIBRATION_CHUNKS, seed: int = 0
) -> list[np.ndarray]:
    """Magnitudes float32 [1, n_bins, frames, n_channels] of `n_chunks` chunks of `chunk` samples cut from
    the training split's mixtures of data source `spec` (tracks in a seeded order, joined end to end)."""

    tracks = list(open_source(parse_data_spec(spec))["train"])
    if not tracks:
        raise DataError(f"no training tracks for calibration in '{spec}'")
    random.Random(seed).shuffle(tracks)
    a = config.audio
    pending: list[np.ndarray] = []
    have = 0
    chunks: list[np.ndarray] = []
    for track in tracks:
        if len(chunks) >= n_chunks:
            break
        if track.mixture is not None:
            audio, rate = track.mixture()
        else:
            parts = [reader() for reader in track.stems.values()]
            rate = parts[0][1]
            audio = np.sum(
                [
                    conform_rate_and_channels(x, r, dataclasses.replace(a, sample_rate=rate))
                    for x, r in parts
                ],
                axis=0,
            )
        pending.append(conform_rate_and_channels(np.asarray(audio, np.float32), rate, a))
        have += pending[-1].shape[0]
        while have >= chunk and len(chunks) < n_chunks:
            joined = np.concatenate(pending, axis=0)
            pending, have = [joined[chunk:]], joined.shape[0] - chunk
            spec_c = dsp.stft(joined[:chunk].T[None], a.n_fft, a.hop_length)  # [1, ch, F, freq]
            chunks.append(
                np.ascontiguousarray(
                    np.transpose(np.abs(spec_c[..., : a.n_bins]), (0, 3, 2, 1)), np.float32
                )
            )
    if not chunks:
        raise DataError(
            f"the training tracks of '{spec}' hold less than one chunk ({chunk} samples) of audio"
        )
    return chunks


def convert(
    functions: Mapping[str, Any],
    config: Config,
    quantize: str,
    calibration: Sequence[np.ndarray] = (),
) -> bytes:
    """The TFLite flatbuffer of the signature functions, quantized as `quantize` says."""
    holder = tf.Module()  # the converter freezes the variables of the object it is given
    holder.weights = list({id(v): v for f in functions.values() for v in f.variables}.values())
    converter = tf.lite.TFLiteConverter.from_concrete_functions(list(functions.values()), holder)
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8-full":
        n_inst = len(config.model.instruments)

        def representative() -> Iterator[tuple[str, dict[str, np.ndarray]]]:
            for magnitude in calibration:
                for c in range(n_inst if config.model.conditioned else 1):
                    inputs = {"magnitude": magnitude}
                    if config.model.conditioned:
                        inputs["condition"] = np.eye(n_inst, dtype=np.float32)[c : c + 1]
                    for name in functions:
                        yield name, inputs

        converter.representative_dataset = representative
    try:
        with (
            warnings.catch_warnings(),
            native_stderr_muted(),
        ):  # the calibrator's deprecation warning, C++ lines
            warnings.simplefilter("ignore")
            return bytes(converter.convert())
    except Exception as exc:  # noqa: BLE001 - the converter raises many kinds
        text = str(exc).strip().splitlines()
        raise ExportError(
            f"the TFLite converter failed: {(text[0] if text else type(exc).__name__)[:300]}"
        ) from None


def embed_record(flatbuffer: bytes, record: dict[str, Any]) -> bytes:
    """The model with `record` (plus "export"."buffers_sha256" of its buffers and
    "export"."record_sha256" of the record) as metadata "cunet.json"."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    data = bytes(
        flatbuffer_utils.convert_object_to_bytearray(model)
    )  # canonical layout, then digest
    record = {**record, "export": {**record["export"], "buffers_sha256": buffers_digest(data)}}
    record = json.loads(json.dumps(record, default=str))  # as a reader will parse it
    record["export"]["record_sha256"] = record_digest(record)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(record, indent=2, sort_keys=True).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def export_tflite(
    model: Any,
    config: Config,
    provenance: Mapping[str, Any] | None,
    out_path: str | os.PathLike[str],
    chunks: ChunkSettings | None = None,
    overwrite: bool = False,
    source: str | None = None,
    postprocess: str | Postprocess | None = None,
    quantize: str = "none",
    calibration: str | None = None,
    calibration_chunks_n: int = CALIBRATION_CHUNKS,
    encode_once: bool = True,
) -> Path:
    """Write `model` as a cunet `.tflite` file at `out_path` (atomically).

    chunks: the chunking (default: `ChunkSettings()`) recorded for callers; the fixed `chunk` signature
    has that chunk's frames. postprocess: recorded as the model's default (None: its own).
    quantize: one of QUANTIZE_MODES; "int8-full" needs `calibration`, a data spec (e.g. a MUSDB18 root).
    source: where the model came from, recorded. encode_once: for a model with FiLM only in the decoder,
    add the `encode` and `decode` signatures (faster: the encoder runs once per chunk; more memory: the
    two signatures' buffers are not shared). Returns the path written.
    """
    out = Path(out_path)
    if out.suffix.lower() != ".tflite":
        raise ExportError(f"a tflite export is one file ending in .tflite, got '{out}'")
    if quantize not in QUANTIZE_MODES:
        raise ExportError(f"unknown quantization '{quantize}' (valid: {', '.join(QUANTIZE_MODES)})")
    if quantize == "int8-full" and not calibration:
        raise ExportError(
            "{quantize} int8-full needs calibration audio: {calibration} SPEC (e.g. a MUSDB18 root)",
            names={"quantize": "quantize", "calibration": "calibration"},
        )
    if out.exists() and not overwrite:
        raise ExportError(
            f"output '{literal(out)}' exists; use {{force}} to replace it",
            names={"force": "overwrite=True"},
        )
    if out.exists() and not out.is_file():
        raise ExportError(f"output '{out}' exists and is not a file")
    record, settings = export_record(
        config, provenance, chunks or ChunkSettings(), source, postprocess
    )
    # int8-full calibrates every signature on mixtures, which the decoder does not take
    encode_once = encode_once and config.model.shares_encoder and quantize != "int8-full"
    export = record["export"]
    export.update(
        format=TFLITE_FORMAT,
        quantize=quantize,
        signatures=signature_doc(config, export["chunk_frames"], encode_once),
    )
    calibration_set: list[np.ndarray] = []
    if quantize == "int8-full":
        calibration_set = calibration_chunks(
            str(calibration), config, export["chunk_samples"], calibration_chunks_n
        )
        export["calibration"] = {
            "data": str(calibration),
            "chunks": len(calibration_set),
            "split": "train",
        }
    network = inference_network(model)
    functions = mask_functions(network, config, export["chunk_frames"])
    if encode_once:
        functions.update(shared_encoder_functions(model, config))
    data = embed_record(convert(functions, settings, quantize, calibration_set), record)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return write_bytes_atomic(out, data)
    except OSError as exc:
        raise ExportError(f"cannot write '{out}': {exc.strerror or exc}") from None


def signature_doc(config: Config, chunk_frames: int, encode_once: bool = False) -> dict[str, str]:
    """Human-readable shapes of the signatures, recorded in the export section; `encode_once`: with
    the `encode` and `decode` signatures."""
    a, m = config.audio, config.model
    cond = f", condition [B, {len(m.instruments)}]" if m.conditioned else ""
    doc = {
        MASKS_SIGNATURE: f"magnitude [B, {a.n_bins}, F, {a.n_channels}]{cond} -> mask (F a multiple of "
        f"{m.time_multiple})",
        CHUNK_SIGNATURE: f"magnitude [1, {a.n_bins}, {chunk_frames}, {a.n_channels}]"
        f"{cond.replace('[B', '[1')} -> mask",
    }
    if encode_once:
        doc[ENCODE_SIGNATURE] = (
            f"magnitude [B, {a.n_bins}, F, {a.n_channels}] -> skip_0 ... skip_{m.n_layers - 1}"
        )
        doc[DECODE_SIGNATURE] = f"skip_0 ... skip_{m.n_layers - 1}{cond} -> mask"
    return doc
