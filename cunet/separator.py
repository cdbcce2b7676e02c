"""`Separator`: load a model once, separate many arrays or files.

Audio is float32 [n_samples, n_channels] at any sample rate: it is resampled
to the model's rate (soxr, streaming), processed in overlapping chunks with
linear cross-fades (`cunet.chunking`), each chunk by `cunet.engine.ChunkSeparator`
over the model's `MaskEngine`, and resampled back, so outputs have the input's
rate, channel count and length. Several instruments are separated as one batch
of conditions over the same STFT.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .audio import AtomicAudioWriter, AudioReader, input_stem
from .atomic import remove_stale_partials
from .chunking import ChunkPlan, overlap_add_stream, plan_chunks
from .config import AudioConfig, ChunkSettings, Config
from .engine import ChunkSeparator, KerasEngine, MaskEngine, check_channels
from .errors import AudioError, UserError
from .modelio import load_engine
from .postprocess import Postprocess

__all__ = ["Separator"]

_DEFAULT = ChunkSettings()


class Separator:
    """Separates instruments from mixtures with a (C-)U-Net behind any `MaskEngine`.

    Construct with `Separator.from_pretrained(path)` (None: the model shipped in the package, run on
    LiteRT; `engine="keras"` runs its `.keras` twin on TensorFlow),
    `Separator.from_keras_model(model, config)` (e.g. during training), or directly from an engine.
    chunk_seconds / overlap_seconds: the chunked processing (`ChunkSettings`; memory is bounded by the
    chunk length, not the song length). postprocess: how the instruments' masks are combined
    ("none", "ratio", "wiener", or a `cunet.postprocess.Postprocess`; None: the model's own
    `model.postprocess`, chosen when it was trained). "ratio" and "wiener" compute every instrument's
    mask even when fewer are asked for.
    """

    def __init__(self, engine: MaskEngine, config: Config | None = None, provenance: Mapping[str, Any] | None = None,
                 chunk_seconds: float = _DEFAULT.chunk_seconds, overlap_seconds: float = _DEFAULT.overlap_seconds,
                 postprocess: str | Postprocess | None = None) -> None:
        if config is not None and config != engine.config:
            raise ValueError("config differs from the engine's config")
        self.engine = engine
        self.config: Config = engine.config
        self.audio: AudioConfig = self.config.audio
        self.provenance = dict(provenance or {})
        self.instruments: tuple[str, ...] = self.config.model.outputs
        self.chunks = ChunkSettings(chunk_seconds, overlap_seconds)
        self.chunk, self.overlap = self.chunks.samples(self.audio, self.config.model.time_multiple)
        if not isinstance(postprocess, Postprocess):
            postprocess = Postprocess(postprocess or self.config.model.postprocess)
        if postprocess.validate().joint and not self.config.model.conditioned:
            raise UserError(f"post-processing '{postprocess.mode}' combines the masks of several instruments; "
                            "this model separates one")
        self.postprocess = postprocess
        self.chunk_separator = ChunkSeparator(engine, postprocess)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None, engine: str = "auto", **kwargs: Any
                        ) -> "Separator":
        """Load a `.keras` file, a training run directory, a SavedModel, `.tflite` or `.onnx` export, or
        (None) the shipped model. engine: "auto" (each file on its own engine; the shipped model on LiteRT,
        without TensorFlow), "keras" (the shipped model's `.keras` file on TensorFlow), "litert", "onnx"
        (`cunet.modelio.ENGINES`)."""
        ChunkSettings(kwargs.get("chunk_seconds", _DEFAULT.chunk_seconds),
                      kwargs.get("overlap_seconds", _DEFAULT.overlap_seconds)).validate()  # before loading
        model_engine, config, provenance = load_engine(path, engine)
        return cls(model_engine, config, provenance, **kwargs)

    @classmethod
    def from_keras_model(cls, model: Any, config: Config, provenance: Mapping[str, Any] | None = None,
                         **kwargs: Any) -> "Separator":
        """A Separator over an in-memory cunet Keras model built from `config` (e.g. while training)."""
        return cls(KerasEngine(model, config), config, provenance, **kwargs)

    @property
    def sample_rate(self) -> int:
        """The model's sample rate in Hz (inputs at other rates are resampled)."""
        return self.audio.sample_rate

    def conditions_for(self, instruments: Sequence[str]) -> np.ndarray:
        """One-hot condition rows [len(instruments), n_instruments] (float32)."""
        all_inst = self.config.model.instruments
        cond = np.zeros((len(instruments), len(all_inst)), np.float32)
        for i, name in enumerate(instruments):
            cond[i, all_inst.index(name)] = 1.0
        return cond

    def check_instruments(self, instruments: Sequence[str] | None) -> list[str]:
        """The requested instruments without duplicates (None: all the model separates); UserError for
        names the model does not separate."""
        if instruments is None:
            return list(self.instruments)
        names = list(dict.fromkeys(instruments))
        bad = [n for n in names if n not in self.instruments]
        if bad:
            raise UserError(f"unknown instrument '{bad[0]}' (valid: {', '.join(self.instruments)})")
        if not names:
            raise UserError("no instrument requested")
        return names

    def plan(self, n_samples: int, sample_rate: int) -> ChunkPlan:
        """Chunk layout, at the model's rate, of an input of n_samples at sample_rate."""
        rate = self.audio.sample_rate
        n_model = int(math.ceil(n_samples * rate / sample_rate)) if sample_rate != rate else n_samples
        return plan_chunks(n_model, self.chunk, self.overlap)

    def stream(self, blocks: Iterable[np.ndarray], n_samples: int, sample_rate: int, n_channels: int,
               instruments: Sequence[str] | None = None, on_chunk: Callable[[], None] | None = None
               ) -> Iterator[np.ndarray]:
        """Separate a stream of input blocks [m, n_channels] (total n_samples at sample_rate).

        Yields blocks [len(instruments), m, n_channels] at the input rate whose
        lengths sum to n_samples. Memory is bounded by the chunk size.
        """
        names = self.check_instruments(instruments)
        check_channels(n_channels)
        return self._stream(blocks, self.plan(n_samples, sample_rate), n_samples, sample_rate, n_channels,
                            names, on_chunk)

    def _stream(self, blocks: Iterable[np.ndarray], plan: ChunkPlan, n_samples: int, sample_rate: int,
                n_channels: int, names: Sequence[str], on_chunk: Callable[[], None] | None) -> Iterator[np.ndarray]:
        """`stream` with checked arguments and its plan."""
        outputs = None
        if self.postprocess.joint:  # every instrument's mask, then the requested ones
            everything = self.config.model.instruments
            cond, outputs = self.conditions_for(everything), [everything.index(n) for n in names]
        else:
            cond = self.conditions_for(names)
        rate = self.audio.sample_rate
        resample = sample_rate != rate
        source = _checked(blocks)
        if resample:
            source = _resample_stream(source, sample_rate, rate, n_channels)
        out = overlap_add_stream(source, plan, n_channels, lambda c: self.chunk_separator(c, cond, outputs),
                                 on_chunk=on_chunk)
        if resample:
            out = _resample_outputs(out, rate, sample_rate, n_channels, len(names))
        yield from _exact_length(out, n_samples, len(names), n_channels)

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
        check_channels(x.shape[1])
        plan = self.plan(x.shape[0], sample_rate)
        bar = _progress(plan.n_chunks, not progress, "separating")
        blocks = self._stream([x], plan, x.shape[0], sample_rate, x.shape[1], names, on_chunk=bar.update)
        result = np.concatenate(list(blocks), axis=1)
        bar.close()
        return {name: (result[i, :, 0] if squeeze else result[i]) for i, name in enumerate(names)}

    def separate_file(self, path: str | os.PathLike, outdir: str | os.PathLike = "separated",
                      instruments: Sequence[str] | None = None, fmt: str = "wav", residual: bool = False,
                      force: bool = False, progress: bool = True, float32: bool = False) -> dict[str, Path]:
        """Separate one file into `outdir/<input name>/<instrument>.<fmt>` (and `no_<instrument>` with residual).

        Streams the file in bounded memory; outputs appear atomically only when complete. Without
        `force`, no existing file is replaced, not even one another process wrote meanwhile.
        Raises AudioError / UserError / ModelError with a one-line message on bad input.
        """
        names = self.check_instruments(instruments)
        if not str(outdir):
            raise UserError("empty output directory; give a folder, e.g. 'separated'")
        path = Path(path)
        outdir = Path(outdir)
        target_dir = outdir / input_stem(path)
        outputs = {n: target_dir / f"{n}.{fmt}" for n in names}
        if residual:
            outputs.update({f"no_{n}": target_dir / f"no_{n}.{fmt}" for n in names})
        _check_outputs(path, outputs.values(), force)
        with AudioReader(path) as reader:
            info = reader.info
            check_channels(info.n_channels, f"{path}: ")
            _prepare_outdir(outdir, target_dir)
            remove_stale_partials(outdir)
            writers: dict[str, AtomicAudioWriter] = {}
            plan = self.plan(info.n_samples, info.sample_rate)
            bar = _progress(plan.n_chunks, not progress, path.name)
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
                for est in self._stream(tee(reader.blocks(block_size)), plan, info.n_samples, info.sample_rate,
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
                return {key: w.commit(overwrite=force) for key, w in writers.items()}
            except BaseException:
                for w in writers.values():
                    w.abort()
                raise
            finally:
                bar.close()


def _check_outputs(path: Path, outputs: Iterable[Path], force: bool) -> None:
    """Refuse before any work: an output that is the input itself, is not a file, or exists without force."""
    outputs = list(outputs)
    if path.is_file():
        clobber = [str(p) for p in outputs if p.is_file() and os.path.samefile(p, path)]
        if clobber:
            raise AudioError(f"output '{clobber[0]}' is the input file itself; choose another output directory")
    not_files = [str(p) for p in outputs if p.exists() and not p.is_file()]
    if not_files:
        raise AudioError(f"output '{not_files[0]}' exists and is not a file")
    if not force:
        existing = [str(p) for p in outputs if p.exists()]
        if existing:
            raise AudioError(f"output '{existing[0]}' exists; use --force to overwrite")


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

    def drain() -> Iterator[np.ndarray]:
        n = min(sum(p.shape[0] for p in q) for q in pending)
        if n:
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


class _NoProgress:
    """The progress bar when none is shown (importing tqdm costs start-up time)."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, disable: bool, desc: str) -> Any:
    if disable:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="chunk", leave=False, dynamic_ncols=True)
