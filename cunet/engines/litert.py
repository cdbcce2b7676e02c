"""LiteRT (TensorFlow Lite) models: `.tflite` files written by `cunet export --format tflite`, and
`LiteRTEngine`, which computes a chunk's masks with the `ai-edge-litert` interpreter. NumPy only: no
TensorFlow or Keras is imported on this path (`cunet separate` with the shipped model starts in
well under a second).

A cunet `.tflite` file holds the mask network (its transposed convolutions rewritten as sub-pixel
convolutions, `cunet.export.subpixel`) with two signatures, both mask = sigmoid mask of the magnitude's
shape, float32 in and out whatever the quantization:

    masks   magnitude [batch, n_bins, n_frames, n_channels], condition [batch, n_instruments] with
            batch and n_frames free (n_frames a multiple of 2**n_layers): any chunk length;
    chunk   the same with fixed shapes [1, n_bins, chunk_frames, n_channels] and [1, n_instruments],
            chunk_frames those of the export's chunk length, for runtimes that want static shapes.

(a plain U-Net has no condition input.) A model whose encoder does not depend on the condition (FiLM only
in the decoder, `model.shares_encoder`) also has, except in int8-full exports:

    encode  magnitude [batch, n_bins, n_frames, n_channels] -> skip_0 ... skip_{n_layers-1}, the
            encoder's block outputs;
    decode  skip_0 ... skip_{n_layers-1}, condition [batch, n_instruments] -> mask,

so the engine runs the encoder once per chunk and the decoder once per instrument.

Its provenance record is embedded as the flatbuffer metadata entry "cunet.json" (the same record as
a `.keras` file's, plus an "export" section: STFT, chunk and overlap, instruments, post-processing,
quantization, the source weights' SHA-256, a SHA-256 of the file's own buffers and one of the record
itself, both checked on load so modified weights or a modified record are refused). Every failure to
read one is a one-line `ModelError`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config, ConfigError, config_from_dict
from ..errors import ModelError
from ..provenance import MAX_RECORD_BYTES, PROVENANCE_ENTRY, parse_record
from ..tflog import native_stderr_muted
from .base import MaskEngine, cpu_count

TFLITE_FORMAT = "cunet-tflite/1"
MASKS_SIGNATURE = "masks"
CHUNK_SIGNATURE = "chunk"
ENCODE_SIGNATURE = "encode"
DECODE_SIGNATURE = "decode"
METADATA_NAME = PROVENANCE_ENTRY  # the flatbuffer metadata entry holding the record
MAX_TFLITE_BYTES = 1 << 31  # flatbuffers cannot address more
IDENTIFIER = b"TFL3"  # bytes 4..8 of every TFLite flatbuffer


def buffers_digest(data: bytes | bytearray | memoryview, skip: int | None = None) -> str:
    """SHA-256 over a TFLite model's buffers (weights and constants) in order, except buffer `skip`
    (the one holding the record). Raises (anything) for a buffer that is not a valid flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    digest = hashlib.sha256()
    for i in range(model.BuffersLength()):
        if i == skip:
            continue
        buffer = model.Buffers(i)
        if buffer.DataLength():
            chunk = buffer.DataAsNumpy().tobytes()
        elif buffer.Offset() > 1:  # large models keep buffers after the flatbuffer, at an offset
            chunk = bytes(data[buffer.Offset() : buffer.Offset() + buffer.Size()])
        else:
            chunk = b""
        digest.update(len(chunk).to_bytes(8, "little"))
        digest.update(chunk)
    return digest.hexdigest()


def record_digest(record: dict[str, Any]) -> str:
    """SHA-256 of a parsed record without its own `export.record_sha256`, in a canonical JSON form.
    The record holds `export.buffers_sha256`, so this digest binds record and weights together."""
    export = {k: v for k, v in record.get("export", {}).items() if k != "record_sha256"}
    text = json.dumps({**record, "export": export}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _record_entry(data: bytes) -> tuple[bytes | None, int | None]:
    """(the "cunet.json" metadata bytes, their buffer index), or (None, None) if the model has none."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == METADATA_NAME.encode():
            index = entry.Buffer()
            buffer = model.Buffers(index)
            if buffer.DataLength() > MAX_RECORD_BYTES:
                raise ModelError("record too large")
            return buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b"", index
    return None, None


def read_tflite(path: str | os.PathLike) -> tuple[bytes, dict[str, Any]]:
    """(the file's bytes, its checked provenance record) for a cunet `.tflite` file, without TensorFlow.

    ModelError (one line) if the file is missing, empty, too large, not a TFLite flatbuffer
    (truncated, random bytes), carries no cunet record, or its buffers differ from the recorded checksum.
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise ModelError(f"model file '{path}' does not exist")
        size = path.stat().st_size
        if size > MAX_TFLITE_BYTES:
            raise ModelError(
                f"model file '{path}' is {size} bytes, larger than a .tflite model can be"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model file '{path}': {exc.strerror or exc}") from None
    corrupt = f"model file '{path}' is not a valid .tflite model (truncated or corrupt)"
    if len(data) < 16 or data[4:8] != IDENTIFIER:
        raise ModelError(corrupt)
    try:
        entry, index = _record_entry(data)
    except ModelError:
        raise ModelError(
            f"model file '{path}': its {METADATA_NAME} is larger than a provenance record can be"
        ) from None
    except Exception:  # noqa: BLE001 - flatbuffers reads offsets from the file: anything can go wrong
        raise ModelError(corrupt) from None
    if entry is None:
        raise ModelError(
            f"model file '{path}' carries no cunet provenance/config; was it written by "
            "`cunet export --format tflite`?"
        )
    record = parse_record(entry, f"model file '{path}': {METADATA_NAME}")
    export = record.get("export")
    if not isinstance(export, dict) or export.get("format") != TFLITE_FORMAT:
        raise ModelError(
            f"model file '{path}': {METADATA_NAME} has no '{TFLITE_FORMAT}' export section; "
            "re-export it with `cunet export --format tflite`"
        )
    frames = export.get("chunk_frames")
    if not isinstance(frames, int) or isinstance(frames, bool) or frames <= 0:
        raise ModelError(
            f"model file '{path}': {METADATA_NAME} has no valid export.chunk_frames (got {frames!r})"
        )
    try:
        digest = buffers_digest(data, skip=index)
    except Exception:  # noqa: BLE001
        raise ModelError(corrupt) from None
    if digest != export.get("buffers_sha256"):
        raise ModelError(
            f"model file '{path}' has been modified: its weights do not match their recorded checksum"
        )
    if export.get("record_sha256") != record_digest(record):
        raise ModelError(
            f"model file '{path}' has been modified: its {METADATA_NAME} record does not match its "
            "recorded checksum (or it predates record checksums: re-export it)"
        )
    return data, record


class LiteRTEngine(MaskEngine):
    """Masks from a cunet `.tflite` model run by the LiteRT interpreter (XNNPACK, `num_threads` threads).

    Each (condition, group) pair runs on its own (batch 1: the least memory, and as fast per pair
    as larger batches, see benchmarks/README.md); chunks of the export's length use the fixed-shape
    `chunk` signature, others the `masks` signature resized to their frame count. When the file has
    `encode` and `decode` signatures, each group is encoded once and decoded per condition instead.
    """

    def __init__(
        self,
        model: bytes,
        config: Config,
        record: dict[str, Any],
        source: str = "the model",
        num_threads: int | None = None,
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.config = config
        self.record = record
        self.num_threads = num_threads or cpu_count()
        try:
            self.interpreter = Interpreter(model_content=model, num_threads=self.num_threads)
            signatures = self.interpreter.get_signature_list()
        except (ValueError, RuntimeError) as exc:
            text = str(exc).strip().splitlines()
            raise ModelError(
                f"cannot load {source}: {(text[0] if text else type(exc).__name__)[:300]}"
            ) from None
        a, m = config.audio, config.model
        self._conditioned = m.conditioned
        self.chunk_frames = int(record["export"]["chunk_frames"])
        n_inst = len(m.instruments)
        condition = {"condition": [-1, n_inst]} if self._conditioned else {}
        # {signature: ({input: shape signature}, outputs)}; -1 marks a free dimension
        expected: dict[str, tuple[dict[str, list[int]], list[str]]] = {
            MASKS_SIGNATURE: (
                {"magnitude": [-1, a.n_bins, -1, a.n_channels], **condition},
                ["mask"],
            ),
            CHUNK_SIGNATURE: (
                {
                    "magnitude": [1, a.n_bins, self.chunk_frames, a.n_channels],
                    **({"condition": [1, n_inst]} if self._conditioned else {}),
                },
                ["mask"],
            ),
        }
        self.encodes_once = m.shares_encoder and ENCODE_SIGNATURE in signatures
        if self.encodes_once:
            skips = {  # block i: ceil(n_bins / 2**(i+1)) bins, filters[i] channels
                f"skip_{i}": [-1, -(-a.n_bins // 2 ** (i + 1)), -1, f]
                for i, f in enumerate(m.filters)
            }
            expected[ENCODE_SIGNATURE] = (
                {"magnitude": [-1, a.n_bins, -1, a.n_channels]},
                list(skips),
            )
            expected[DECODE_SIGNATURE] = ({**skips, **condition}, ["mask"])
        self._runners: dict[str, Any] = {}
        for name, (wanted, outputs) in expected.items():
            inputs = signatures.get(name, {}).get("inputs", [])
            ok = sorted(inputs) == sorted(wanted) and sorted(
                signatures[name].get("outputs", [])
            ) == sorted(outputs)
            runner = self.interpreter.get_signature_runner(name) if ok else None
            found: Any = signatures.get(name)
            if runner is not None:
                details = runner.get_input_details()
                found = {k: d["shape_signature"].tolist() for k, d in sorted(details.items())}
                ok = all(
                    found[k] == v and details[k]["dtype"] == np.float32 for k, v in wanted.items()
                )
            if not ok:
                raise ModelError(
                    f"{source}: its {METADATA_NAME} config (inputs {dict(sorted(wanted.items()))}) does "
                    f"not match the network's '{name}' signature ({found}); it was modified or not "
                    "written by `cunet export --format tflite`"
                )
            self._runners[name] = runner
        self._started: set[str] = set()

    def _run(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        runner = self._runners[name]
        if name in self._started:
            return runner(**inputs)
        with (
            native_stderr_muted()
        ):  # LiteRT announces its XNNPACK delegate on a signature's first run
            outputs = runner(**inputs)
        self._started.add(name)
        return outputs

    def masks(self, magnitude: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        n_cond, n_groups = conditions.shape[0], magnitude.shape[0]
        name = CHUNK_SIGNATURE if magnitude.shape[2] == self.chunk_frames else MASKS_SIGNATURE
        out = np.empty((n_cond, *magnitude.shape), np.float32)
        for g in range(n_groups):
            group = np.ascontiguousarray(magnitude[g : g + 1], np.float32)
            if self.encodes_once:
                inputs = self._run(ENCODE_SIGNATURE, {"magnitude": group})
                name = DECODE_SIGNATURE
            else:
                inputs = {"magnitude": group}
            for c in range(n_cond):
                if self._conditioned:
                    inputs["condition"] = np.ascontiguousarray(conditions[c : c + 1], np.float32)
                out[c, g] = self._run(name, inputs)["mask"][0]
        return out


def load_tflite(
    path: str | os.PathLike, num_threads: int | None = None
) -> tuple[LiteRTEngine, Config, dict[str, Any]]:
    """(engine, Config, provenance record) of a cunet `.tflite` file; ModelError (one line) if it is bad."""
    data, record = read_tflite(path)
    try:
        config = config_from_dict(record["config"])
    except ConfigError as exc:
        raise ModelError(f"model file '{path}' has an invalid config: {exc}") from None
    return LiteRTEngine(data, config, record, f"model file '{path}'", num_threads), config, record
