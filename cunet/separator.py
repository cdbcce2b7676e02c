"""`Separator`: load a model once, separate many arrays or files.

Audio is float32 [n_samples, n_channels] at any sample rate: it is resampled
to the model's rate (soxr, streaming), processed in overlapping chunks with
linear cross-fades (`cunet.chunking`), each chunk by `cunet.engine.ChunkSeparator`
over the model's `MaskEngine`, and resampled back, so outputs have the input's
rate, channel count and length. Several instruments are separated as one batch
of conditions over the same STFT.

`stream` separates audio that arrives in blocks of any size, of a length known in
advance (files) or not (live audio); with `latency` the chunking is chosen so that
every sample comes out at most that long after it went in (`latency_seconds`).
"""
from __future__ import annotations

import itertools
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .atomic import remove_stale_partials
from .audio import AudioReader, Excerpt, input_stem
from .chunking import (ChunkPlan, check_latency, chunks_for_latency, latency_bound, overlap_add_stream, plan_chunks,
                       stream_plan)
from .config import AudioConfig, ChunkSettings, Config
from .engine import ChunkSeparator, KerasEngine, MaskEngine, check_channels
from .errors import AudioError, UserError
from .modelio import load_engine
from .naming import DEFAULT_TEMPLATE, FilenameTemplate, output_paths
from .output import OutputSettings, StemFiles, check_targets, prepare_outdir
from .postprocess import Postprocess
from .resample import exact_length, resample_outputs, resample_stream, take

__all__ = ["Separator"]

_DEFAULT = ChunkSettings()


class Separator:
    """Separates instruments from mixtures with a (C-)U-Net behind any `MaskEngine`.

    Construct with `Separator.from_pretrained(path)` (None: the model shipped in the package, run on
    LiteRT; `engine="keras"` runs its `.keras` twin on TensorFlow),
    `Separator.from_keras_model(model, config)` (e.g. during training), or directly from an engine.
    chunk_seconds / overlap_seconds: the chunked processing (`ChunkSettings`; memory is bounded by the
    chunk length, not the song length). latency: instead, the longest chunking whose latency bound
    (`latency_seconds`) is at most this many seconds (`chunking.chunks_for_latency`). postprocess: how
    the instruments' masks are combined ("none", "ratio", "wiener", or a `cunet.postprocess.Postprocess`;
    None: the model's own `model.postprocess`, chosen when it was trained). "ratio" and "wiener" compute
    every instrument's mask even when fewer are asked for.
    """

    def __init__(self, engine: MaskEngine, config: Config | None = None, provenance: Mapping[str, Any] | None = None,
                 chunk_seconds: float = _DEFAULT.chunk_seconds, overlap_seconds: float = _DEFAULT.overlap_seconds,
                 postprocess: str | Postprocess | None = None, latency: float | None = None) -> None:
        if config is not None and config != engine.config:
            raise ValueError("config differs from the engine's config")
        self.engine = engine
        self.config: Config = engine.config
        self.audio: AudioConfig = self.config.audio
        self.provenance = dict(provenance or {})
        self.instruments: tuple[str, ...] = self.config.model.outputs
        self.chunks = (ChunkSettings(chunk_seconds, overlap_seconds) if latency is None
                       else chunks_for_latency(latency, self.audio, engine.frame_multiple))
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
        if kwargs.get("latency") is not None:
            check_latency(kwargs["latency"])
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

    @property
    def latency_seconds(self) -> float:
        """The most seconds between a sample going into `stream` and coming out separated, as long as each
        chunk is separated within one hop (keeping up with real time): the chunk plus one hop, at the
        model's rate (a resampler adds its few milliseconds)."""
        return latency_bound(self.chunk, self.overlap) / self.audio.sample_rate

    def conditions_for(self, instruments: Sequence[str]) -> np.ndarray:
        """One-hot condition rows [len(instruments), n_instruments] (float32)."""
        all_inst = self.config.model.instruments
        cond = np.zeros((len(instruments), len(all_inst)), np.float32)
        for i, name in enumerate(instruments):
            cond[i, all_inst.index(name)] = 1.0
        return cond

    def check_instruments(self, instruments: Sequence[str] | None) -> list[str]:
        """The requested instruments without duplicates (None: all the model separates), as the model
        spells them (names match case-insensitively); UserError naming the model's own instruments
        for a name it does not separate."""
        if instruments is None:
            return list(self.instruments)
        folded = {n.casefold(): n for n in self.instruments}
        names = list(dict.fromkeys(self.instruments[self.instruments.index(n)] if n in self.instruments
                                   else folded.get(str(n).casefold(), n) for n in instruments))
        bad = [n for n in names if n not in self.instruments]
        if bad:
            raise UserError(f"unknown instrument '{bad[0]}' for this model (it separates: "
                            f"{', '.join(self.instruments)})")
        if not names:
            raise UserError("no instrument requested")
        return names

    def plan(self, n_samples: int, sample_rate: int) -> ChunkPlan:
        """Chunk layout, at the model's rate, of an input of n_samples at sample_rate."""
        rate = self.audio.sample_rate
        n_model = int(math.ceil(n_samples * rate / sample_rate)) if sample_rate != rate else n_samples
        return plan_chunks(n_model, self.chunk, self.overlap)

    def _conditions(self, names: Sequence[str]) -> tuple[np.ndarray, list[int] | None]:
        """The conditions a chunk is separated with, and which of their outputs are `names`."""
        if self.postprocess.joint:  # every instrument's mask, then the requested ones
            everything = self.config.model.instruments
            return self.conditions_for(everything), [everything.index(n) for n in names]
        return self.conditions_for(names), None

    def warm_up(self, n_channels: int, instruments: Sequence[str] | None = None) -> None:
        """Separate one chunk of silence, so that the engine's one-off set-up (graph tracing) is not paid
        by the first chunk of a live stream."""
        cond, outputs = self._conditions(self.check_instruments(instruments))
        self.chunk_separator(np.zeros((self.chunk, n_channels), np.float32), cond, outputs)

    def stream_plan(self, n_samples: int | None, sample_rate: int) -> ChunkPlan:
        """`plan` for a known length, `chunking.stream_plan` (fixed chunks, length unknown) for None."""
        return stream_plan(self.chunk, self.overlap) if n_samples is None else self.plan(n_samples, sample_rate)

    def stream(self, blocks: Iterable[np.ndarray], sample_rate: int, instruments: Sequence[str] | None = None, *,
               n_channels: int | None = None, n_samples: int | None = None,
               on_chunk: Callable[[], None] | None = None) -> Iterator[np.ndarray]:
        """Separate audio that arrives in blocks of any size: float32 [m, n_channels] (m >= 0) at sample_rate.

        n_samples: the total length if known in advance (a file): the chunk plan of `separate`. None
            (live audio): the length is learnt when `blocks` ends; chunks keep their full length, so for
            inputs longer than one chunk the result is that of `separate` with the same chunking.
        n_channels: checked against every block (None: taken from the first one).
        Yields float32 [len(instruments), m', n_channels] blocks at sample_rate whose lengths sum to the
        input's, each as soon as the chunk completing it is separated: at most `latency_seconds` after
        its input went in while separation keeps up with real time. Memory is bounded by the chunk size.
        """
        names = self.check_instruments(instruments)
        if sample_rate <= 0:
            raise AudioError(f"invalid sample rate {sample_rate}")
        source = iter(blocks)
        first = np.zeros((0, n_channels or 1), np.float32)
        for first in source:  # the first block that is not empty, to learn the channel count
            first = _as_block(first)
            if first.shape[0]:
                break
        n_channels = n_channels or first.shape[1]
        check_channels(n_channels)
        plan = self.stream_plan(n_samples, sample_rate)
        return self._stream(itertools.chain([first], source), plan, n_samples, sample_rate, n_channels, names,
                            on_chunk)

    def _stream(self, blocks: Iterable[np.ndarray], plan: ChunkPlan, n_samples: int | None, sample_rate: int,
                n_channels: int, names: Sequence[str], on_chunk: Callable[[], None] | None) -> Iterator[np.ndarray]:
        """`stream` with checked arguments and its plan."""
        cond, outputs = self._conditions(names)
        rate = self.audio.sample_rate
        resample = sample_rate != rate
        counted = [0]
        source = _checked(blocks, n_channels, counted)
        if resample:
            source = resample_stream(source, sample_rate, rate, n_channels)
        out = overlap_add_stream(source, plan, n_channels, lambda c: self.chunk_separator(c, cond, outputs),
                                 on_chunk=on_chunk)
        if resample:
            out = resample_outputs(out, rate, sample_rate, n_channels, len(names))
        if n_samples is not None:
            out = exact_length(out, n_samples, len(names), n_channels)
        elif resample:
            out = exact_length(out, lambda: counted[0], len(names), n_channels)
        yield from out

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

    def output_paths(self, path: str | os.PathLike, outdir: str | os.PathLike, instruments: Sequence[str],
                     fmt: str = "wav", residual: bool = False, filename: str = DEFAULT_TEMPLATE,
                     track: str | None = None, folder: str = "") -> dict[str, Path]:
        """{output key: path} that `separate_file` would write (keys: instruments, `no_<instrument>`)."""
        template = FilenameTemplate(filename).validate()
        return output_paths(template, outdir, track or input_stem(path), instruments, fmt,
                            self.config.model.instruments, residual, folder)

    def separate_file(self, path: str | os.PathLike, outdir: str | os.PathLike = "separated",
                      instruments: Sequence[str] | None = None, fmt: str = "wav", residual: bool = False,
                      force: bool = False, progress: bool = True, float32: bool = False, *,
                      output: OutputSettings | None = None, filename: str = DEFAULT_TEMPLATE,
                      track: str | None = None, folder: str = "", excerpt: Excerpt | None = None,
                      notes: Callable[[str], None] | None = None,
                      on_chunk: Callable[[], None] | None = None) -> dict[str, Path]:
        """Separate one file into `outdir/<input name>/<instrument>.<fmt>` (and `no_<instrument>` with residual).

        output: format, bits, clipping and mp3 bitrate (default: `fmt`, 16-bit or `float32`, clamped).
        filename: a `cunet.naming` template (fields track, stem, ext, index, folder); track (default: the
        file's name) and folder fill it. excerpt: separate only that part (seeking, not decoding it all).
        notes(line): told about clamped samples or a rescaling gain.
        on_chunk(): called after each chunk (`plan(...).n_chunks` in all); an exception it raises stops the
        work like any failure (nothing is written).
        Streams the file in bounded memory; outputs appear atomically only when complete. Without
        `force`, no existing file is replaced, not even one another process wrote meanwhile.
        Raises AudioError / UserError / ModelError with a one-line message on bad input.
        """
        names = self.check_instruments(instruments)
        output = (output or OutputSettings(fmt, "32f" if float32 else "16")).validate()
        if not str(outdir):
            raise UserError("empty output directory; give a folder, e.g. 'separated'")
        path = Path(path)
        outdir = Path(outdir)
        outputs = self.output_paths(path, outdir, names, output.fmt, residual, filename, track, folder)
        check_targets([path], outputs.values(), outdir, force)
        with AudioReader(path, excerpt) as reader:
            info = reader.info
            check_channels(info.n_channels, f"{path}: ")
            prepare_outdir(outdir, outputs.values())
            remove_stale_partials(outdir)
            files: StemFiles | None = None
            plan = self.plan(info.n_samples, info.sample_rate)
            bar = _progress(plan.n_chunks, not progress, path.name)
            try:
                files = StemFiles(outputs, info.sample_rate, info.n_channels, output, staging_dir=outdir)
                mixture_blocks: list[np.ndarray] = []

                def tee(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
                    for block in blocks:
                        if residual:
                            mixture_blocks.append(block)
                        yield block

                block_size = max(4096, self.chunk // 4)
                for est in self._stream(tee(reader.blocks(block_size)), plan, info.n_samples, info.sample_rate,
                                        info.n_channels, names, on_chunk=_both(bar.update, on_chunk)):
                    for i, n in enumerate(names):
                        files.write(n, est[i])
                    if residual:
                        mix = take(mixture_blocks, est.shape[1], info.n_channels)
                        for i, n in enumerate(names):
                            files.write(f"no_{n}", mix - est[i])
                total = files.n_written
                if any(v != info.n_samples for v in total.values()):
                    raise AudioError(f"{path}: internal length mismatch {total} != {info.n_samples}")
                files.finish()  # finish (encode) all first, so a failure leaves no partial set
                summary = files.summary()
                written = files.commit(overwrite=force)
            except BaseException:
                if files is not None:
                    files.abort()
                raise
            finally:
                bar.close()
        if summary and notes is not None:
            notes(f"{path}: {summary}")
        return written


def _as_block(block: np.ndarray) -> np.ndarray:
    """float32 [m, n_channels] (a 1-D block is one channel)."""
    block = np.asarray(block, np.float32)
    if block.ndim == 1:
        block = block[:, None]
    if block.ndim != 2:
        raise AudioError(f"audio blocks must be [n_samples, n_channels], got shape {block.shape}")
    return block


def _checked(blocks: Iterable[np.ndarray], n_channels: int, counted: list[int]) -> Iterator[np.ndarray]:
    """Blocks as float32 [m, n_channels], refusing NaN, infinities and a change of channel count;
    counted[0] adds up the samples."""
    for block in blocks:
        block = _as_block(block)
        if block.shape[1] != n_channels:
            raise AudioError(f"an audio block has {block.shape[1]} channels, the stream {n_channels}")
        if not np.all(np.isfinite(block)):
            raise AudioError("input contains NaN or infinite samples")
        counted[0] += block.shape[0]
        yield block


def _both(first: Callable[[], None], second: Callable[[], None] | None) -> Callable[[], None]:
    """first(), then second() if given."""
    if second is None:
        return first

    def call() -> None:
        first()
        second()

    return call


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
