"""`Separator`: load a model once, separate many arrays or files.

Audio is float32 [n_samples, n_channels] at any sample rate: it is resampled
to the model's rate (soxr, streaming), processed in overlapping chunks with
linear cross-fades (see `cunet.chunking`), and resampled back, so outputs
have the input's rate, channel count and length. Several instruments are
separated as one batch of conditions over the same STFT.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .audio import AtomicAudioWriter, AudioError, AudioReader, input_stem, remove_stale_partials
from .chunking import ChunkPlan, chunk_sizes, overlap_add_stream, plan_chunks
from .config import AudioConfig, Config, ConfigError, config_from_dict

DEFAULT_MODEL = Path(__file__).resolve().parent / "pretrained" / "default.keras"
MaskFn = Callable[[Any, Any], Any]


class ModelError(ValueError):
    """A model file or directory is missing, corrupt or not a cunet model (one user-facing line)."""


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def load_keras_model(path: str | os.PathLike) -> tuple[Any, Config, dict[str, Any]]:
    """Load a `.keras` model written by cunet, safely (no code from the file is run).

    Returns (keras model, its Config, its provenance record).
    """
    import zipfile

    from .provenance import read_provenance, weights_digest

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file '{path}' does not exist")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"model file '{path}' is not a valid .keras archive (truncated or corrupt)")
    provenance = read_provenance(path)
    if not provenance or "config" not in provenance:
        raise ModelError(f"model file '{path}' carries no cunet provenance/config; was it saved by cunet?")
    expected = provenance.get("weights_sha256")
    if expected is not None and weights_digest(path) != expected:
        raise ModelError(f"model file '{path}' has been modified: its weights do not match their recorded checksum")
    try:
        config = config_from_dict(provenance["config"])
    except ConfigError as exc:
        raise ModelError(f"model file '{path}' has an invalid config: {exc}") from None
    _tf()
    import keras

    from . import layers  # noqa: F401  (registers the custom layers)

    try:
        # keras' safe_mode argument is overridden by a process-wide keras.config.enable_unsafe_deserialization();
        # the explicit scope keeps cunet's loads safe whatever other code in the process did.
        with _safe_mode_scope():
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means a bad file
        root: BaseException = exc  # keras wraps the real cause ("Could not locate class ...") in generic errors
        for _ in range(20):
            inner = root.__cause__ or root.__context__
            if inner is None:
                break
            root = inner
        text = str(root).strip() or str(exc).strip()
        message = text.splitlines()[0] if text else type(exc).__name__
        if "safe_mode" in message or "arbitrary code" in message:
            message = "it contains Python code (e.g. a Lambda layer), which cunet never runs"
        elif message.startswith("Could not locate"):
            message = message.split(". Make sure")[0] + " (not a layer cunet knows; modified or foreign file)"
        raise ModelError(f"cannot load model '{path}': {message[:300]}") from None
    _check_model_matches(model, config, path)
    return model, config, provenance


def _safe_mode_scope() -> Any:
    """A keras scope forcing safe deserialization (no lambdas / pickled code), if this keras has one."""
    import contextlib

    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # pragma: no cover - other keras layouts: rely on safe_mode=True alone
        return contextlib.nullcontext()
    return SafeModeScope(True)


def _check_model_matches(model: Any, config: Config, path: Path) -> None:
    """Raise ModelError unless the model has cunet's inputs (as its config says) and a "mask" layer."""
    shapes = {getattr(t, "name", ""): tuple(t.shape) for t in model.inputs}
    mag = shapes.get("magnitude")
    ok = mag is not None and len(mag) == 4 and mag[1] == config.audio.n_bins and mag[3] == config.audio.n_channels
    if config.model.kind == "conditioned":
        cond = shapes.get("condition")
        ok = ok and cond is not None and cond[-1] == len(config.model.instruments)
    ok = ok and any(layer.name == "mask" for layer in model.layers)
    if not ok:
        raise ModelError(f"model file '{path}' is not the cunet network its embedded config describes "
                         f"(inputs {shapes}); it was modified or not saved by cunet")


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
        raise ModelError(f"'{path}' is neither a training run directory (best.keras) nor a SavedModel export")
    if not path.exists():
        raise ModelError(f"model '{path}' does not exist")
    return path


class Separator:
    """Separates instruments from mixtures with a (C-)U-Net.

    Construct with `Separator.from_pretrained(path)` (None: the model shipped
    in the package), or directly from a Keras model and its Config.
    chunk_seconds / overlap_seconds set the chunked processing (memory is
    bounded by the chunk length, not the song length).
    """

    def __init__(self, model: Any, config: Config, provenance: Mapping[str, Any] | None = None,
                 chunk_seconds: float = 12.0, overlap_seconds: float = 1.0,
                 mask_fn: MaskFn | None = None) -> None:
        tf = _tf()
        self.config = config
        self.audio: AudioConfig = config.audio
        self.provenance = dict(provenance or {})
        self.model = model
        self.conditioned = config.model.kind == "conditioned"
        self.instruments: tuple[str, ...] = config.model.instruments if self.conditioned \
            else (config.model.target,)
        if mask_fn is None:
            from .models import mask_model

            masker = mask_model(model)
            mask_fn = (lambda mag, cond: masker({"magnitude": mag, "condition": cond}, training=False)) \
                if self.conditioned else (lambda mag, cond: masker({"magnitude": mag}, training=False))
        self._mask_fn = mask_fn
        self.chunk, self.overlap = chunk_sizes(self.audio, config.model.time_multiple, chunk_seconds,
                                               overlap_seconds)
        self._run_chunk = self._build_chunk_function(tf)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None, **kwargs: Any) -> "Separator":
        """Load a `.keras` file, a training run directory, a SavedModel export, or (None) the shipped model."""
        resolved = resolve_model_path(path)
        if resolved.is_dir():
            from .export import load_exported

            mask_fn, config, provenance = load_exported(resolved)
            return cls(None, config, provenance, mask_fn=mask_fn, **kwargs)
        model, config, provenance = load_keras_model(resolved)
        return cls(model, config, provenance, **kwargs)

    @property
    def sample_rate(self) -> int:
        return self.audio.sample_rate

    # -- core -------------------------------------------------------------------------------------

    def _build_chunk_function(self, tf: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        # The same graph the SavedModel export runs per chunk, so both give identical results.
        from .export import chunk_graph

        a = self.audio
        multiple = self.config.model.time_multiple
        mask_fn = self._mask_fn
        n_inst = len(self.config.model.instruments)

        @tf.function(input_signature=[tf.TensorSpec([None, None, a.n_channels], tf.float32),
                                      tf.TensorSpec([None, n_inst], tf.float32)], reduce_retracing=True)
        def run(waveform, conditions):
            # waveform [n_groups, n_samples, n_channels]; conditions [n_cond, n_instruments]
            return chunk_graph(waveform, conditions, a, multiple, mask_fn)   # [C, G, n, ch]

        return lambda w, c: run(tf.constant(w), tf.constant(c)).numpy()

    def conditions_for(self, instruments: Sequence[str]) -> np.ndarray:
        """One-hot condition rows [len(instruments), n_instruments] (float32)."""
        all_inst = self.config.model.instruments
        cond = np.zeros((len(instruments), len(all_inst)), np.float32)
        for i, name in enumerate(instruments):
            cond[i, all_inst.index(name)] = 1.0
        return cond

    def check_instruments(self, instruments: Sequence[str] | None) -> list[str]:
        if instruments is None:
            return list(self.instruments)
        names = list(dict.fromkeys(instruments))
        bad = [n for n in names if n not in self.instruments]
        if bad:
            raise ValueError(f"unknown instrument '{bad[0]}' (valid: {', '.join(self.instruments)})")
        if not names:
            raise ValueError("no instrument requested")
        return names

    def _process_chunk(self, chunk: np.ndarray, cond: np.ndarray, n_in_channels: int) -> np.ndarray:
        """chunk [n, n_in_channels] at the model rate -> [n_cond, n, n_in_channels]."""
        model_ch = self.audio.n_channels
        if model_ch == n_in_channels:
            groups = chunk[None]
        elif model_ch == 2:                      # mono input through a stereo model
            groups = np.repeat(chunk, 2, axis=1)[None]
        else:                                    # stereo input through a mono model: channels as a batch
            groups = np.transpose(chunk)[:, :, None]
        out = self._run_chunk(np.ascontiguousarray(groups, np.float32), cond)  # [C, G, n, model_ch]
        if not np.isfinite(out).all():  # input was checked finite, so the weights are bad (corrupt file?)
            raise ModelError("the model produced NaN or infinite values; its weights may be corrupt")
        if model_ch == n_in_channels:
            return out[:, 0]
        if model_ch == 2:
            return out[:, 0].mean(axis=-1, keepdims=True)
        return np.transpose(out[..., 0], (0, 2, 1))

    def stream(self, blocks: Iterable[np.ndarray], n_samples: int, sample_rate: int, n_channels: int,
               instruments: Sequence[str], on_chunk: Callable[[], None] | None = None
               ) -> Iterator[np.ndarray]:
        """Separate a stream of input blocks [m, n_channels] (total n_samples at sample_rate).

        Yields blocks [len(instruments), m, n_channels] at the input rate whose
        lengths sum to n_samples. Memory is bounded by the chunk size.
        """
        if n_channels not in (1, 2):
            raise AudioError(f"{n_channels} channels are not supported; only mono and stereo "
                             "(downmix first, e.g. ffmpeg -i in.wav -ac 2 out.wav)")
        cond = self.conditions_for(instruments)
        rate = self.audio.sample_rate
        resample = sample_rate != rate
        plan = self.plan(n_samples, sample_rate)
        source = _checked(blocks)
        if resample:
            source = _resample_stream(source, sample_rate, rate, n_channels)
        out = overlap_add_stream(source, plan, n_channels, lambda c: self._process_chunk(c, cond, n_channels),
                                 on_chunk=on_chunk)
        if resample:
            out = _resample_outputs(out, rate, sample_rate, n_channels, len(instruments))
        yield from _exact_length(out, n_samples, len(instruments), n_channels)

    def plan(self, n_samples: int, sample_rate: int) -> ChunkPlan:
        """Chunk layout, at the model's rate, of an input of n_samples at sample_rate."""
        rate = self.audio.sample_rate
        n_model = int(math.ceil(n_samples * rate / sample_rate)) if sample_rate != rate else n_samples
        return plan_chunks(n_model, self.chunk, self.overlap)

    # -- public API -----------------------------------------------------------------------------------

    def separate(self, audio: np.ndarray, sample_rate: int, instruments: Sequence[str] | None = None,
                 progress: bool = False) -> dict[str, np.ndarray]:
        """Separate an in-memory signal.

        audio: float [n_samples] or [n_samples, n_channels] at `sample_rate` Hz.
        Returns {instrument: float32 array of audio's shape}.
        """
        names = self.check_instruments(instruments)
        x = np.asarray(audio, np.float32)
        squeeze = x.ndim == 1
        if squeeze:
            x = x[:, None]
        if x.ndim != 2 or x.shape[0] == 0:
            raise AudioError(f"audio must be [n_samples, n_channels] with n_samples > 0, got shape {x.shape}")
        if sample_rate <= 0:
            raise AudioError(f"invalid sample rate {sample_rate}")
        bar = _progress(self.plan(x.shape[0], sample_rate).n_chunks, not progress, "separating")
        blocks = self.stream([x], x.shape[0], sample_rate, x.shape[1], names, on_chunk=bar.update)
        result = np.concatenate(list(blocks), axis=1)
        bar.close()
        return {name: (result[i, :, 0] if squeeze else result[i]) for i, name in enumerate(names)}

    def separate_file(self, path: str | os.PathLike, outdir: str | os.PathLike = "separated",
                      instruments: Sequence[str] | None = None, fmt: str = "wav", residual: bool = False,
                      force: bool = False, progress: bool = True, float32: bool = False) -> dict[str, Path]:
        """Separate one file into `outdir/<input name>/<instrument>.<fmt>` (and `no_<instrument>` with residual).

        Streams the file in bounded memory; outputs appear atomically only when complete.
        Raises AudioError / ValueError with a one-line message on bad input.
        """
        names = self.check_instruments(instruments)
        path = Path(path)
        outdir = Path(outdir)
        target_dir = outdir / input_stem(path)
        outputs = {n: target_dir / f"{n}.{fmt}" for n in names}
        if residual:
            outputs.update({f"no_{n}": target_dir / f"no_{n}.{fmt}" for n in names})
        if path.is_file():
            clobber = [str(p) for p in outputs.values() if p.is_file() and os.path.samefile(p, path)]
            if clobber:
                raise AudioError(f"output '{clobber[0]}' is the input file itself; choose another output directory")
        not_files = [str(p) for p in outputs.values() if p.exists() and not p.is_file()]
        if not_files:
            raise AudioError(f"output '{not_files[0]}' exists and is not a file")
        if not force:
            existing = [str(p) for p in outputs.values() if p.exists()]
            if existing:
                raise AudioError(f"output '{existing[0]}' exists; use --force to overwrite")
        with AudioReader(path) as reader:
            info = reader.info
            if info.n_channels not in (1, 2):
                raise AudioError(f"{path}: {info.n_channels} channels are not supported; only mono and stereo "
                                 "(downmix first, e.g. ffmpeg -i in.wav -ac 2 out.wav)")
            _prepare_outdir(outdir, target_dir)
            remove_stale_partials(outdir)
            writers: dict[str, AtomicAudioWriter] = {}
            bar = _progress(self.plan(info.n_samples, info.sample_rate).n_chunks, not progress, path.name)
            try:
                for key, p in outputs.items():  # inside try: a failure here must remove the partials made so far
                    writers[key] = AtomicAudioWriter(p, info.sample_rate, info.n_channels, fmt, float32=float32,
                                                     staging_dir=outdir)
                mixture_blocks: list[np.ndarray] = []

                def tee(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
                    for block in blocks:
                        if residual:
                            mixture_blocks.append(block)
                        yield block

                block_size = max(4096, self.chunk // 4)
                for est in self.stream(tee(reader.blocks(block_size)), info.n_samples, info.sample_rate,
                                       info.n_channels, names, on_chunk=bar.update):
                    for i, n in enumerate(names):
                        writers[n].write(est[i])
                    if residual:
                        mix = _take(mixture_blocks, est.shape[1], info.n_channels)
                        for i, n in enumerate(names):
                            writers[f"no_{n}"].write(mix - est[i])
                total = {key: w.n_written for key, w in writers.items()}
                if any(v != info.n_samples for v in total.values()):
                    raise AudioError(f"{path}: internal length mismatch {total} != {info.n_samples}")
                target_dir.mkdir(parents=True, exist_ok=True)
                for w in writers.values():  # finish (encode) all first, so a failure leaves no partial set
                    w.finish()
                return {key: w.commit() for key, w in writers.items()}
            except BaseException:
                for w in writers.values():
                    w.abort()
                raise
            finally:
                bar.close()


def _prepare_outdir(outdir: Path, target_dir: Path) -> None:
    for d in (outdir, target_dir):
        if d.exists() and not d.is_dir():
            raise AudioError(f"output path '{d}' exists and is not a directory")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AudioError(f"cannot create output directory '{outdir}': {exc.strerror}") from None
    if not os.access(outdir, os.W_OK | os.X_OK):
        raise AudioError(f"output directory '{outdir}' is not writable")
    if target_dir.exists() and not os.access(target_dir, os.W_OK | os.X_OK):
        raise AudioError(f"output directory '{target_dir}' is not writable")


def _take(blocks: list[np.ndarray], n: int, n_channels: int) -> np.ndarray:
    """Pop the first n samples from a queue of blocks (zeros if it runs short)."""
    parts, have = [], 0
    while have < n and blocks:
        b = blocks[0]
        need = n - have
        if b.shape[0] <= need:
            parts.append(blocks.pop(0))
            have += b.shape[0]
        else:
            parts.append(b[:need])
            blocks[0] = b[need:]
            have = n
    if have < n:
        parts.append(np.zeros((n - have, n_channels), np.float32))
    return np.concatenate(parts, axis=0) if parts else np.zeros((0, n_channels), np.float32)


def _checked(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for block in blocks:
        block = np.asarray(block, np.float32)
        if not np.all(np.isfinite(block)):
            raise AudioError("input contains NaN or infinite samples")
        yield block


def _resample_stream(blocks: Iterable[np.ndarray], rate_in: int, rate_out: int, n_channels: int
                     ) -> Iterator[np.ndarray]:
    import soxr

    stream = soxr.ResampleStream(rate_in, rate_out, n_channels, dtype="float32", quality="HQ")
    for block in blocks:
        out = stream.resample_chunk(np.ascontiguousarray(block, np.float32))
        if out.shape[0]:
            yield out.reshape(-1, n_channels)
    out = stream.resample_chunk(np.zeros((0, n_channels), np.float32), last=True)
    if out.shape[0]:
        yield out.reshape(-1, n_channels)


def _resample_outputs(blocks: Iterable[np.ndarray], rate_in: int, rate_out: int, n_channels: int,
                      n_outputs: int) -> Iterator[np.ndarray]:
    import soxr

    streams = [soxr.ResampleStream(rate_in, rate_out, n_channels, dtype="float32", quality="HQ")
               for _ in range(n_outputs)]
    pending: list[list[np.ndarray]] = [[] for _ in range(n_outputs)]

    def drain(final: bool = False) -> Iterator[np.ndarray]:
        n = min(sum(p.shape[0] for p in q) for q in pending)
        if n or final:
            yield np.stack([_take(q, n, n_channels) for q in pending])

    for block in blocks:
        for i, s in enumerate(streams):
            pending[i].append(s.resample_chunk(np.ascontiguousarray(block[i])).reshape(-1, n_channels))
        yield from drain()
    for i, s in enumerate(streams):
        pending[i].append(s.resample_chunk(np.zeros((0, n_channels), np.float32), last=True)
                          .reshape(-1, n_channels))
    n = max(sum(p.shape[0] for p in q) for q in pending)
    yield np.stack([_take(q, n, n_channels) for q in pending])


def _exact_length(blocks: Iterable[np.ndarray], n_samples: int, n_outputs: int, n_channels: int
                  ) -> Iterator[np.ndarray]:
    """Trim or zero-pad a block stream to exactly n_samples (resampling may be off by a sample)."""
    done = 0
    for block in blocks:
        block = block[:, : max(0, n_samples - done)]
        done += block.shape[1]
        if block.shape[1]:
            yield block
    if done < n_samples:
        yield np.zeros((n_outputs, n_samples - done, n_channels), np.float32)


def _progress(total: int, disable: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, disable=disable, desc=desc, unit="chunk", leave=False, dynamic_ncols=True)
