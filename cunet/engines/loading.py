"""All model loading: `--model` paths, safe `.keras` loading, exports, and the engines over them.

A model is a `.keras` file written by cunet (`provenance.save_model`: the Keras archive plus a
`cunet.json` provenance record holding the Config), a SavedModel directory written by `cunet export`
(the same record as `assets/cunet.json`), or a `.tflite` / `.onnx` file written by `cunet export
--format tflite|onnx` (the record embedded; `cunet.engines.litert`, `cunet.engines.onnxrt`). All are checked before a
runtime sees them: archive sizes (no zip bombs), the record's JSON types, the config, the weights'
checksum; Keras then loads in safe mode (no code from the file runs) and the network must match its
config. Every failure is one `ModelError` line naming the file. TensorFlow is imported only for
`.keras` files and SavedModels, once the cheap checks passed; `.tflite` and `.onnx` models never
import it. The shipped model runs on LiteRT (`pretrained/default.tflite`, generated from
`pretrained/default.keras` by `scripts/make_tflite.py`) unless the Keras engine is asked for.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import zipfile
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError, config_from_dict
from ..errors import ModelError, UserError, missing_extra
from ..provenance import (
    MAX_RECORD_BYTES,
    PROVENANCE_ENTRY,
    parse_record,
    read_record_entry,
    weights_digest,
)
from ..tflog import import_tensorflow, tensorflow_backend
from .base import MaskEngine
from .keras import KerasEngine, SavedModelEngine
from .litert import load_tflite
from .onnxrt import load_onnx

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "pretrained" / "default.keras"
DEFAULT_TFLITE = DEFAULT_MODEL.with_suffix(".tflite")  # its LiteRT twin (scripts/make_tflite.py)
# Engines: "keras" (TensorFlow: .keras files, run directories, SavedModel exports), "litert" (.tflite),
# "onnx" (.onnx); "auto" picks by the model file, and LiteRT for the shipped model.
ENGINES: tuple[str, ...] = ("auto", "keras", "litert", "onnx")
_SUFFIX_ENGINES = {".tflite": "litert", ".onnx": "onnx"}
ASSET_DIR = "assets"  # where a SavedModel export keeps its provenance record (PROVENANCE_ENTRY)
# A .keras archive from a stranger is refused unread when its members' declared sizes add up to more
# than MAX_UNPACKED_BYTES or EXPANSION_LIMIT times the file's size (zip bombs). cunet's own archives
# are stored uncompressed (ratio 1); zipfile never inflates a member beyond its declared size.
MAX_UNPACKED_BYTES = 1 << 30
EXPANSION_LIMIT = 50


def resolve_model_path(path: str | os.PathLike | None) -> Path:
    """Map --model values to a file or SavedModel directory: None -> shipped default;
    a training run directory -> its best.keras (or last.keras)."""
    if path is None:
        if not DEFAULT_MODEL.exists():
            raise ModelError(f"the shipped default model is missing at '{DEFAULT_MODEL}'")
        return DEFAULT_MODEL
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            return path
        for name in ("best.keras", "last.keras"):
            if (path / name).exists():
                return path / name
        raise ModelError(
            f"'{path}' is neither a training run directory (best.keras) nor a SavedModel export"
        )
    if not path.exists():
        raise ModelError(f"model '{path}' does not exist")
    return path


def engine_for(path: Path) -> str:
    """The engine that runs a resolved model path: "litert" (.tflite), "onnx" (.onnx) or "keras"."""
    return "keras" if path.is_dir() else _SUFFIX_ENGINES.get(path.suffix.lower(), "keras")


def default_model(engine: str = "auto") -> Path:
    """The shipped model file for `engine`: the `.tflite` twin for "auto" and "litert" ("auto" falls back
    to the `.keras` file when the twin or ai-edge-litert is missing), the `.keras` file for "keras"."""
    if engine == "litert" or (
        engine == "auto"
        and DEFAULT_TFLITE.exists()
        and importlib.util.find_spec("ai_edge_litert") is not None
    ):
        if not DEFAULT_TFLITE.exists():
            raise ModelError(
                f"the shipped LiteRT model is missing at '{DEFAULT_TFLITE}'; "
                "generate it with `python scripts/make_tflite.py`"
            )
        return DEFAULT_TFLITE
    if engine == "onnx":
        raise UserError(
            "no ONNX model is shipped; export one with `cunet export --format onnx` and give its path"
        )
    return resolve_model_path(None)


def load_engine(
    path: str | os.PathLike | None = None, engine: str = "auto"
) -> tuple[MaskEngine, Config, dict[str, Any]]:
    """(engine, Config, provenance record) for a `.keras` file, a training run directory, a SavedModel
    export, a `.tflite` or `.onnx` export, or (None) the shipped model.

    engine: one of ENGINES. "auto" runs each file on its own engine, and the shipped model on LiteRT;
    "keras" runs the shipped model's `.keras` file with TensorFlow. UserError if a given file needs
    another engine than the one asked for.
    """
    if engine not in ENGINES:
        raise UserError(f"unknown engine '{engine}' (valid: {', '.join(ENGINES)})")
    resolved = default_model(engine) if path is None else resolve_model_path(path)
    needed = engine_for(resolved)
    if engine not in ("auto", needed):
        raise UserError(
            f"the {engine} engine cannot run '{resolved}' (it needs the {needed} engine)"
        )
    try:
        if needed == "litert":
            return load_tflite(resolved)
        if needed == "onnx":
            return load_onnx(resolved)
        if resolved.is_dir():
            return load_exported(resolved)
        model, config, provenance = load_keras_model(resolved)
        return KerasEngine(model, config), config, provenance
    except ImportError as exc:  # an optional dependency: say which extra brings it
        missing = missing_extra(exc, f"the {needed} engine")
        if missing is None:
            raise
        raise missing from None


# -- .keras ---------------------------------------------------------------------------------------------


def read_keras_provenance(path: str | os.PathLike) -> dict[str, Any]:
    """The checked provenance record of a `.keras` file, read without TensorFlow; ModelError if the file
    is missing, not a zip, a zip bomb, or carries no valid record."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file '{path}' does not exist")
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
            if declared > min(MAX_UNPACKED_BYTES, EXPANSION_LIMIT * size):
                raise ModelError(
                    f"model file '{path}' would unpack to {declared} bytes from {size} "
                    f"(limits: {MAX_UNPACKED_BYTES >> 30} GiB and {EXPANSION_LIMIT}x the file); "
                    "refusing it"
                )
            record = read_record_entry(archive, f"model file '{path}': {PROVENANCE_ENTRY}")
    except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError):
        raise ModelError(
            f"model file '{path}' is not a valid .keras archive (truncated or corrupt)"
        ) from None
    except OSError as exc:
        raise ModelError(f"cannot read model file '{path}': {exc.strerror or exc}") from None
    if record is None:
        raise ModelError(
            f"model file '{path}' carries no cunet provenance/config; was it saved by cunet?"
        )
    return record


def load_keras_model(path: str | os.PathLike) -> tuple[Any, Config, dict[str, Any]]:
    """Load a `.keras` model written by cunet, safely (no code from the file is run).

    Returns (keras model, its Config, its provenance record).
    """
    path = Path(path)
    provenance = read_keras_provenance(path)
    expected = provenance.get("weights_sha256")
    if expected is not None and weights_digest(path) != expected:
        raise ModelError(
            f"model file '{path}' has been modified: its weights do not match their recorded checksum"
        )
    config = _config_of(provenance, f"model file '{path}'")
    if tensorflow_backend():
        import_tensorflow()
    import keras

    from ..nn import layers  # noqa: F401  (registers the custom layers)

    try:
        # keras' safe_mode argument is overridden by a process-wide keras.config.enable_unsafe_deserialization();
        # the explicit scope keeps cunet's loads safe whatever other code in the process did.
        with _safe_mode_scope():
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means a bad file
        raise ModelError(f"cannot load model '{path}': {_load_failure(exc)}") from None
    _check_model_matches(model, config, path)
    return model, config, provenance


def _load_failure(exc: BaseException) -> str:
    """Keras wraps the real cause ("Could not locate class ...") in generic errors: the innermost, one line."""
    root: BaseException = exc
    for _ in range(20):
        inner = root.__cause__ or root.__context__
        if inner is None:
            break
        root = inner
    text = str(root).strip() or str(exc).strip()
    message = text.splitlines()[0] if text else type(exc).__name__
    if "safe_mode" in message or "arbitrary code" in message:
        return "it contains Python code (e.g. a Lambda layer), which cunet never runs"
    if message.startswith("Could not locate"):
        return (
            message.split(". Make sure")[0] + " (not a layer cunet knows; modified or foreign file)"
        )
    return message[:300]


def _safe_mode_scope() -> Any:
    """A keras scope forcing safe deserialization (no lambdas / pickled code), if this keras has one."""
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # pragma: no cover - other keras layouts: rely on safe_mode=True alone
        return contextlib.nullcontext()
    return SafeModeScope(True)


def _check_model_matches(model: Any, config: Config, path: Path) -> None:
    """Raise ModelError unless the model has cunet's inputs (as its config says) and a "mask" layer."""
    shapes = {getattr(t, "name", ""): tuple(t.shape) for t in model.inputs}
    mag = shapes.get("magnitude")
    ok = (
        mag is not None
        and len(mag) == 4
        and mag[1] == config.audio.n_bins
        and mag[3] == config.audio.n_channels
    )
    if config.model.conditioned:
        cond = shapes.get("condition")
        ok = ok and cond is not None and cond[-1] == len(config.model.instruments)
    ok = ok and any(layer.name == "mask" for layer in model.layers)
    if not ok:
        raise ModelError(
            f"model file '{path}' is not the cunet network its embedded config describes "
            f"(inputs {shapes}); it was modified or not saved by cunet"
        )


def _config_of(record: dict[str, Any], source: str) -> Config:
    try:
        return config_from_dict(record["config"])
    except ConfigError as exc:
        raise ModelError(f"{source} has an invalid config: {exc}") from None


# -- SavedModel exports ------------------------------------------------------------------------------------


def read_export_provenance(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance record stored in an export (assets/cunet.json); ModelError if absent or invalid."""
    path = Path(path)
    if not (path / "saved_model.pb").is_file():
        raise ModelError(f"'{path}' is not a SavedModel export (no saved_model.pb)")
    asset = path / ASSET_DIR / PROVENANCE_ENTRY
    source = f"SavedModel '{path}': {ASSET_DIR}/{PROVENANCE_ENTRY}"
    try:
        if asset.stat().st_size > MAX_RECORD_BYTES:
            raise ModelError(f"{source} is larger than a provenance record can be")
        data = asset.read_bytes()
    except FileNotFoundError:
        raise ModelError(
            f"SavedModel '{path}' has no {ASSET_DIR}/{PROVENANCE_ENTRY}; "
            "was it written by `cunet export`?"
        ) from None
    except OSError as exc:
        raise ModelError(f"{source} is unreadable: {exc.strerror or exc}") from None
    return parse_record(data, source)


def load_exported(path: str | os.PathLike) -> tuple[SavedModelEngine, Config, dict[str, Any]]:
    """Load a `cunet export` SavedModel: (engine over its `spectrogram` signature, Config, provenance).

    Raises ModelError (one line) for a missing, corrupt or mismatched export.
    """
    path = Path(path)
    record = read_export_provenance(path)
    config = _config_of(record, f"SavedModel '{path}'")
    tf = import_tensorflow()
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any failure here means a bad export
        text = str(exc).strip()
        message = text.splitlines()[0] if text else type(exc).__name__
        raise ModelError(f"cannot load SavedModel '{path}': {message[:300]}") from None
    if "spectrogram" not in loaded.signatures:
        raise ModelError(
            f"SavedModel '{path}' has no 'spectrogram' signature; re-export it with `cunet export`"
        )
    # The stored config must describe the exported network, or the STFT would not fit it.
    specs = loaded.signatures["spectrogram"].structured_input_signature[1]
    mag, cond = specs.get("magnitude"), specs.get("condition")
    if (
        mag is None
        or cond is None
        or mag.shape.as_list() != [None, config.audio.n_bins, None, config.audio.n_channels]
        or cond.shape.as_list() != [None, len(config.model.instruments)]
    ):
        raise ModelError(
            f"SavedModel '{path}': its {ASSET_DIR}/{PROVENANCE_ENTRY} config does not match "
            "the exported network; it was modified or not written by `cunet export`"
        )
    return SavedModelEngine(loaded, config), config, record
