"""SavedModel export for TF Serving and plain TensorFlow, and its loader.

An export is a SavedModel directory whose graphs do everything: STFT, the
Separator's chunking (same chunk/overlap sizes, zero padding, linear
cross-fades and chunk count, see `cunet.chunking`), masking and inverse STFT,
so a client needs only TensorFlow and sends only audio. Signatures:

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
the asset `assets/cunet.json`, which `load_exported` reads back so
`Separator.from_pretrained(DIR)` works on an export.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import tensorflow as tf

from . import chunking
from .config import AudioConfig, Config, ConfigError, config_from_dict
from .provenance import PROVENANCE_ENTRY

EXPORT_FORMAT = "cunet-savedmodel/1"
ASSET_DIR = "assets"
SIGNATURES = ("serving_default", "separate_condition", "spectrogram")

# mask_fn(magnitude [B, n_bins, F, ch], condition [B, n_instruments]) -> mask [B, n_bins, F, ch]
MaskFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


class ExportError(ValueError):
    """The export cannot be written (bad settings, output in the way); one user-facing line."""


# -- in-graph separation ------------------------------------------------------------------------------


def chunk_graph(waveform: tf.Tensor, conditions: tf.Tensor, audio: AudioConfig, time_multiple: int,
                mask_fn: MaskFn) -> tf.Tensor:
    """Separate one chunk: STFT -> mask -> inverse STFT, as `Separator` does per chunk.

    waveform: float32 [n_groups, n_samples, n_channels] (n_channels = the model's).
    conditions: float32 [n_cond, n_instruments].
    Returns float32 [n_cond, n_groups, n_samples, n_channels].
    """
    from .spectral import expand_mask_bins, istft, stft

    a = audio
    n_samples = tf.shape(waveform)[1]
    spec = stft(tf.transpose(waveform, [0, 2, 1]), a.n_fft, a.hop_length)  # [G, ch, F, bins]
    mag = tf.transpose(tf.abs(spec)[..., :a.n_bins], [0, 3, 2, 1])       # [G, n_bins, F, ch]
    n_frames = tf.shape(mag)[2]
    # The U-Net needs a whole multiple of its total time stride.
    padded = (n_frames + time_multiple - 1) // time_multiple * time_multiple
    mag = tf.pad(mag, [[0, 0], [0, 0], [0, padded - n_frames], [0, 0]])
    n_cond, n_groups = tf.shape(conditions)[0], tf.shape(mag)[0]
    mask = mask_fn(tf.tile(mag, [n_cond, 1, 1, 1]), tf.repeat(conditions, n_groups, axis=0))
    mask = tf.transpose(mask[:, :, :n_frames, :], [0, 3, 2, 1])            # [C*G, ch, F, n_bins]
    mask = expand_mask_bins(mask, a.n_fft)
    est = istft(tf.cast(mask, tf.complex64) * tf.tile(spec, [n_cond, 1, 1, 1]), n_samples,
                a.n_fft, a.hop_length)                                     # [C*G, ch, n]
    est = tf.reshape(est, [n_cond, n_groups, a.n_channels, n_samples])
    return tf.transpose(est, [0, 1, 3, 2])                                 # [C, G, n, ch]


def crossfade_window(chunk: tf.Tensor, overlap: int) -> tf.Tensor:
    """float32 [chunk]: the in-graph twin of `cunet.chunking.crossfade_window` (same float ops)."""
    ramp = (tf.range(overlap, dtype=tf.float32) + 0.5) / float(max(overlap, 1))
    return tf.concat([ramp, tf.ones([chunk - 2 * overlap], tf.float32), tf.reverse(ramp, [0])], axis=0)


def separate_waveform(waveform: tf.Tensor, condition: tf.Tensor, audio: AudioConfig, time_multiple: int,
                      chunk: int, overlap: int, mask_fn: MaskFn) -> tf.Tensor:
    """Separate a whole signal in overlapping chunks, in graph; the scheme of `cunet.chunking`.

    waveform: float32 [n_samples, n_in] at audio.sample_rate, n_in 1 or 2 (mono through a
        stereo model is duplicated and the output averaged; stereo through a mono model
        runs each channel on its own, exactly as `Separator` does).
    condition: float32 [n_instruments]. chunk, overlap: samples (cunet.chunking.chunk_sizes).
    Returns float32 [n_samples, n_in]. Chunks run one at a time, so memory is bounded
    by the chunk length (plus the input and output signals).
    """
    n = tf.shape(waveform)[0]
    n_in = tf.shape(waveform)[1]
    model_ch = audio.n_channels
    checks = [
        tf.debugging.assert_all_finite(waveform, "waveform contains NaN or infinite samples"),
        tf.debugging.Assert(tf.logical_or(tf.equal(n_in, 1), tf.equal(n_in, 2)),
                            ["waveform must be [n_samples, 1 or 2 channels]; got shape", tf.shape(waveform)]),
    ]
    with tf.control_dependencies(checks):
        waveform = tf.identity(waveform)
    conditions = condition[None, :]

    # plan_chunks: short inputs are one chunk of n + 2 * overlap samples.
    chunk_eff = tf.minimum(chunk, tf.maximum(n, 1) + 2 * overlap)
    hop = chunk_eff - overlap
    rest = tf.maximum(0, n + 2 * overlap - chunk_eff)
    n_chunks = 1 + (rest + hop - 1) // hop
    padded_length = (n_chunks - 1) * hop + chunk_eff
    padded = tf.pad(waveform, [[overlap, padded_length - overlap - n], [0, 0]])
    window = crossfade_window(chunk_eff, overlap)[:, None]

    def process(local: tf.Tensor) -> tf.Tensor:
        """[chunk_eff, n_in] -> [chunk_eff, n_in], mapping channels like Separator._process_chunk."""
        if model_ch == 2:
            groups = (local * tf.ones([1, 2], tf.float32))[None]       # mono duplicated to both sides
            out = chunk_graph(groups, conditions, audio, time_multiple, mask_fn)[0, 0]   # [L, 2]
            return tf.cond(tf.equal(n_in, 1), lambda: tf.reduce_mean(out, -1, keepdims=True), lambda: out)
        groups = tf.transpose(local)[:, :, None]                        # channels as a batch: [n_in, L, 1]
        out = chunk_graph(groups, conditions, audio, time_multiple, mask_fn)[0]         # [n_in, L, 1]
        return tf.transpose(out[..., 0])

    def body(k: tf.Tensor, outputs: tf.TensorArray) -> tuple[tf.Tensor, tf.TensorArray]:
        local = padded[k * hop:k * hop + chunk_eff]
        return k + 1, outputs.write(k, process(local) * window)

    outputs = tf.TensorArray(tf.float32, size=n_chunks, element_shape=tf.TensorShape([None, None]))
    _, outputs = tf.while_loop(lambda k, _: k < n_chunks, body, [tf.constant(0), outputs],
                               parallel_iterations=1)
    frames = tf.transpose(outputs.stack(), [2, 0, 1])                   # [n_in, n_chunks, chunk_eff]
    joined = tf.signal.overlap_and_add(frames, hop)                     # [n_in, padded_length]
    return tf.transpose(joined[:, overlap:overlap + n])


# -- export -------------------------------------------------------------------------------------------


def _mask_and_magnitude_model(model: Any, conditioned: bool) -> Callable[[tf.Tensor, tf.Tensor], list]:
    """(magnitude, condition) -> [mask, masked magnitude] with one network pass."""
    import keras

    both = keras.Model(model.inputs, [model.get_layer("mask").output, model.output],
                       name=f"{model.name}_mask_and_magnitude")
    if conditioned:
        return lambda mag, cond: both({"magnitude": mag, "condition": cond}, training=False)
    return lambda mag, cond: both({"magnitude": mag}, training=False)


class _ExportModule(tf.Module):
    """The object graph that is saved: three tf.functions, the weights they use, the provenance asset."""

    def __init__(self, model: Any, config: Config, chunk: int, overlap: int, provenance_file: str) -> None:
        super().__init__(name="cunet_export")
        a, m = config.audio, config.model
        conditioned = m.kind == "conditioned"
        net = _mask_and_magnitude_model(model, conditioned)
        instruments = m.instruments
        # A standard U-Net separates its target only; its condition input is ignored.
        valid = instruments if conditioned else (m.target,)
        n_inst = len(instruments)
        multiple = m.time_multiple

        def mask_fn(mag: tf.Tensor, cond: tf.Tensor) -> tf.Tensor:
            return net(mag, cond)[0]

        def separate_condition(waveform: tf.Tensor, condition: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"waveform": separate_waveform(waveform, condition, a, multiple, chunk, overlap, mask_fn)}

        def separate(waveform: tf.Tensor, instrument: tf.Tensor) -> dict[str, tf.Tensor]:
            name = tf.strings.lower(tf.strings.strip(instrument))
            hits = tf.equal(tf.constant(list(instruments)), name)
            known = tf.reduce_any(tf.equal(tf.constant(list(valid)), name))
            check = tf.debugging.Assert(known, ["unknown instrument", instrument, "valid:", ", ".join(valid)])
            with tf.control_dependencies([check]):
                condition = tf.cast(hits, tf.float32)
            return separate_condition(waveform, condition)

        def spectrogram(magnitude: tf.Tensor, condition: tf.Tensor) -> dict[str, tf.Tensor]:
            check = tf.debugging.Assert(tf.equal(tf.shape(magnitude)[2] % multiple, 0),
                                        [f"n_frames must be a multiple of {multiple}; got magnitude shape",
                                         tf.shape(magnitude)])
            with tf.control_dependencies([check]):
                mask, masked = net(magnitude, condition)
            return {"magnitude": masked, "mask": mask}

        wave_spec = tf.TensorSpec([None, None], tf.float32, name="waveform")
        cond_spec = tf.TensorSpec([n_inst], tf.float32, name="condition")
        self.separate = tf.function(separate, input_signature=[
            wave_spec, tf.TensorSpec([], tf.string, name="instrument")])
        self.separate_condition = tf.function(separate_condition, input_signature=[wave_spec, cond_spec])
        self.spectrogram = tf.function(spectrogram, input_signature=[
            tf.TensorSpec([None, a.n_bins, None, a.n_channels], tf.float32, name="magnitude"),
            tf.TensorSpec([None, n_inst], tf.float32, name="condition")])
        self.provenance_file = tf.saved_model.Asset(provenance_file)

    def signatures(self) -> dict[str, Any]:
        """Concrete functions by signature name; tracing them also tracks the weights they use."""
        fns = {"serving_default": self.separate.get_concrete_function(),
               "separate_condition": self.separate_condition.get_concrete_function(),
               "spectrogram": self.spectrogram.get_concrete_function()}
        seen: dict[int, tf.Variable] = {}
        for fn in fns.values():
            for v in fn.variables:
                seen.setdefault(id(v), v)
        # tf.saved_model.save needs every captured variable reachable from the saved object.
        self.weights = list(seen.values())
        return fns


def chunk_sizes(config: Config, chunk_seconds: float, overlap_seconds: float) -> tuple[int, int]:
    """(chunk, overlap) in samples, exactly as a `Separator` with these settings uses them."""
    if not chunk_seconds > 0 or not overlap_seconds >= 0 or overlap_seconds * 2 >= chunk_seconds:
        raise ExportError("need chunk_seconds > 0 and 0 <= overlap_seconds < chunk_seconds / 2")
    return chunking.chunk_sizes(config.audio, config.model.time_multiple, chunk_seconds, overlap_seconds)


def export_saved_model(model: Any, config: Config, provenance: Mapping[str, Any] | None,
                       out_dir: str | os.PathLike, chunk_seconds: float = 12.0, overlap_seconds: float = 1.0,
                       overwrite: bool = False, source: str | None = None) -> Path:
    """Write `model` as a SavedModel directory `out_dir` (atomically: staged, then renamed).

    chunk_seconds / overlap_seconds: the in-graph chunking, as for `Separator`.
    overwrite: replace `out_dir` if it is an earlier export (never any other directory).
    source: where the model came from, recorded in the provenance. Returns out_dir.
    """
    out = Path(out_dir)
    chunk, overlap = chunk_sizes(config, chunk_seconds, overlap_seconds)
    if out.exists():
        if not overwrite:
            raise ExportError(f"output '{out}' exists; use --force to replace an earlier export")
        if not (out / "saved_model.pb").is_file():
            raise ExportError(f"output '{out}' exists and is not a SavedModel export; refusing to replace it")
    record = dict(provenance or {})
    record["config"] = config.to_dict()
    record["export"] = {
        "format": EXPORT_FORMAT,
        "source": source,
        "signatures": list(SIGNATURES),
        "chunk_seconds": chunk_seconds,
        "overlap_seconds": overlap_seconds,
        "chunk_samples": chunk,
        "overlap_samples": overlap,
        "sample_rate": config.audio.sample_rate,
        "n_channels": config.audio.n_channels,
        "instruments": list(config.model.instruments if config.model.kind == "conditioned"
                            else (config.model.target,)),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    old = out.with_name(f".{out.name}.{os.getpid()}.old")
    try:
        with tempfile.TemporaryDirectory(prefix="cunet-export-") as tmp:
            asset = Path(tmp) / PROVENANCE_ENTRY
            asset.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
            module = _ExportModule(model, config, chunk, overlap, str(asset))
            tf.saved_model.save(module, str(staging), signatures=module.signatures())
        if out.exists():
            os.replace(out, old)
        os.replace(staging, out)
    finally:
        for leftover in (staging, old):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
    return out


def export_model_file(model_path: str | os.PathLike | None, out_dir: str | os.PathLike,
                      chunk_seconds: float = 12.0, overlap_seconds: float = 1.0, overwrite: bool = False) -> Path:
    """Export a `.keras` file, a training run directory or (None) the shipped model.

    Raises `cunet.separator.ModelError` for a bad model, ExportError for bad settings/output.
    """
    from .separator import ModelError, load_keras_model, resolve_model_path

    resolved = resolve_model_path(model_path)
    if resolved.is_dir():
        raise ModelError(f"'{resolved}' is already a SavedModel export; give a .keras file or a run directory")
    model, config, provenance = load_keras_model(resolved)
    return export_saved_model(model, config, provenance, out_dir, chunk_seconds, overlap_seconds,
                              overwrite=overwrite, source=str(resolved))


# -- loading ------------------------------------------------------------------------------------------


class ExportedMasker:
    """mask_fn over a loaded export's `spectrogram` signature; holds the loaded object so its
    variables stay alive. Callable inside tf.function: (magnitude, condition) -> mask."""

    def __init__(self, loaded: Any) -> None:
        self.loaded = loaded
        self._signature = loaded.signatures["spectrogram"]

    def __call__(self, magnitude: tf.Tensor, condition: tf.Tensor) -> tf.Tensor:
        return self._signature(magnitude=magnitude, condition=condition)["mask"]


def read_export_provenance(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance record stored in an export (assets/cunet.json); ModelError if absent or invalid."""
    from .separator import ModelError

    path = Path(path)
    if not (path / "saved_model.pb").is_file():
        raise ModelError(f"'{path}' is not a SavedModel export (no saved_model.pb)")
    asset = path / ASSET_DIR / PROVENANCE_ENTRY
    try:
        record = json.loads(asset.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"SavedModel '{path}' has no {ASSET_DIR}/{PROVENANCE_ENTRY}; "
                         "was it written by `cunet export`?") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"SavedModel '{path}' has an unreadable {ASSET_DIR}/{PROVENANCE_ENTRY}: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not isinstance(record, dict) or "config" not in record:
        raise ModelError(f"SavedModel '{path}' has no config in {ASSET_DIR}/{PROVENANCE_ENTRY}")
    return record


def load_exported(path: str | os.PathLike) -> tuple[ExportedMasker, Config, dict[str, Any]]:
    """Load an export for `Separator`: (mask_fn, Config, provenance record).

    mask_fn(magnitude float32 [B, n_bins, F, ch], condition float32 [B, n_instruments])
    -> mask float32 [B, n_bins, F, ch]; F must be a multiple of 2**n_layers.
    Raises `cunet.separator.ModelError` (one line) for a missing or corrupt export.
    """
    from .separator import ModelError

    path = Path(path)
    record = read_export_provenance(path)
    try:
        config = config_from_dict(record["config"])
    except ConfigError as exc:
        raise ModelError(f"SavedModel '{path}' has an invalid config: {exc}") from None
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any failure here means a bad export
        text = str(exc).strip()
        message = text.splitlines()[0] if text else type(exc).__name__
        raise ModelError(f"cannot load SavedModel '{path}': {message[:300]}") from None
    if "spectrogram" not in loaded.signatures:
        raise ModelError(f"SavedModel '{path}' has no 'spectrogram' signature; re-export it with `cunet export`")
    # The stored config must describe the exported network, or the Separator's STFT would not fit it.
    specs = loaded.signatures["spectrogram"].structured_input_signature[1]
    mag, cond = specs.get("magnitude"), specs.get("condition")
    if mag is None or cond is None or mag.shape.as_list() != [None, config.audio.n_bins, None,
                                                             config.audio.n_channels] \
            or cond.shape.as_list() != [None, len(config.model.instruments)]:
        raise ModelError(f"SavedModel '{path}': its {ASSET_DIR}/{PROVENANCE_ENTRY} config does not match "
                         "the exported network; it was modified or not written by `cunet export`")
    return ExportedMasker(loaded), config, record
