"""`Separator`: load a model once, separate many arrays or streams of blocks (files: `cunet.jobs`).

Audio is float32 [n_samples, n_channels] at any sample rate: it is resampled
to the model's rate (soxr, streaming), processed in overlapping chunks with
linear cross-fades (`cunet.chunking`), each chunk by `cunet.chunk_separator.ChunkSeparator`
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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .chunk_separator import ChunkSeparator, check_channels, check_shifts
from .chunking import (
    ChunkPlan,
    check_latency,
    chunks_for_latency,
    latency_bound,
    overlap_add_stream,
    plan_chunks,
    stream_plan,
)
from .config import AudioConfig, Config
from .engines.base import MaskEngine
from .engines.keras import KerasEngine
from .engines.loading import load_engine
from .errors import AudioError, UserError
from .io.resample import exact_length, resample_outputs, resample_stream
from .postprocess import Postprocess, model_postprocess
from .progress import progress_bar
from .settings import ChunkSettings

__all__ = ["Separator"]


class Separator:
    """Separates instruments from mixtures with a (C-)U-Net behind any `MaskEngine`.

    Construct with `Separator.from_pretrained(path)` (None: the model shipped in the package, run on
    LiteRT; `engine="keras"` runs its `.keras` twin on TensorFlow),
    `Separator.from_keras_model(model, config)` (e.g. during training), or directly from an engine.
    chunks: the chunked processing (`cunet.settings.ChunkSettings`, default 10 s chunks with 1 s
    cross-fades; memory is bounded by the chunk length, not the song length). latency: instead, the
    longest chunking whose latency bound (`latency_seconds`) is at most this many seconds
    (`chunking.chunks_for_latency`). postprocess: how the instruments' masks are combined ("none",
    "ratio", "wiener", or a `cunet.postprocess.Postprocess`; None: the model's own
    `model.postprocess`, chosen when it was trained; a mode given by name takes the model's
    `model.ratio_power`). "ratio" and "wiener" compute every
    instrument's mask even when fewer are asked for. shifts: network passes per chunk whose masks are
    averaged, the frames rolled by fractions of the U-Net's stride each time (1 to
    `chunk_separator.MAX_SHIFTS`; test-time augmentation that costs the network's time `shifts` times).
    """

    def __init__(
        self,
        engine: MaskEngine,
        config: Config | None = None,
        provenance: Mapping[str, Any] | None = None,
        chunks: ChunkSettings | None = None,
        postprocess: str | Postprocess | None = None,
        latency: float | None = None,
        shifts: int = 1,
    ) -> None:
        check_shifts(shifts)
        if config is not None and config != engine.config:
            raise ValueError("config differs from the engine's config")
        if chunks is not None and latency is not None:
            raise UserError("latency sets the chunking; give chunks or latency, not both")
        self.engine = engine
        self.config: Config = engine.config
        self.audio: AudioConfig = self.config.audio
        self.provenance = dict(provenance or {})
        self.instruments: tuple[str, ...] = self.config.model.outputs
        self.chunks = (
            chunks_for_latency(latency, self.audio, engine.frame_multiple)
            if latency is not None
            else chunks or ChunkSettings()
        )
        self.chunk, self.overlap = self.chunks.samples(self.audio, self.config.model.time_multiple)
        postprocess = model_postprocess(postprocess, self.config.model)
        if postprocess.joint and not self.config.model.conditioned:
            raise UserError(
                f"post-processing '{postprocess.mode}' combines the masks of several instruments; "
                "this model separates one"
            )
        self.postprocess = postprocess
        self.shifts = shifts
        self.chunk_separator = ChunkSeparator(engine, postprocess, shifts=shifts)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike | None = None,
        engine: str = "auto",
        *,
        chunks: ChunkSettings | None = None,
        postprocess: str | Postprocess | None = None,
        latency: float | None = None,
        shifts: int = 1,
    ) -> Separator:
        """Load a `.keras` file, a training run directory, a SavedModel, `.tflite` or `.onnx` export, or
        (None) the shipped model. engine: "auto" (each file on its own engine; the shipped model on LiteRT,
        without TensorFlow), "keras" (the shipped model's `.keras` file on TensorFlow), "litert", "onnx"
        (`cunet.engines.loading.ENGINES`)."""
        if chunks is not None and latency is not None:
            raise UserError("latency sets the chunking; give chunks or latency, not both")
        if latency is not None:
            check_latency(latency)  # before loading
        check_shifts(shifts)
        model_engine, config, provenance = load_engine(path, engine)
        return cls(model_engine, config, provenance, chunks, postprocess, latency, shifts)

    @classmethod
    def from_keras_model(
        cls, model: Any, config: Config, provenance: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Separator:
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
        names = list(
            dict.fromkeys(
                self.instruments[self.instruments.index(n)]
                if n in self.instruments
                else folded.get(str(n).casefold(), n)
                for n in instruments
            )
        )
        bad = [n for n in names if n not in self.instruments]
        if bad:
            raise UserError(
                f"unknown instrument '{bad[0]}' for this model (it separates: "
                f"{', '.join(self.instruments)})"
            )
        if not names:
            raise UserError("no instrument requested")
        return names

    def plan(self, n_samples: int, sample_rate: int) -> ChunkPlan:
        """Chunk layout, at the model's rate, of an input of n_samples at sample_rate."""
        rate = self.audio.sample_rate
        n_model = (
            int(math.ceil(n_samples * rate / sample_rate)) if sample_rate != rate else n_samples
        )
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
        return (
            stream_plan(self.chunk, self.overlap)
            if n_samples is None
            else self.plan(n_samples, sample_rate)
        )

    def stream(
        self,
        blocks: Iterable[np.ndarray],
        sample_rate: int,
        instruments: Sequence[str] | None = None,
        *,
        n_channels: int | None = None,
        n_samples: int | None = None,
        on_chunk: Callable[[], None] | None = None,
    ) -> Iterator[np.ndarray]:
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
        return self._stream(
            itertools.chain([first], source),
            plan,
            n_samples,
            sample_rate,
            n_channels,
            names,
            on_chunk,
        )

    def _stream(
        self,
        blocks: Iterable[np.ndarray],
        plan: ChunkPlan,
        n_samples: int | None,
        sample_rate: int,
        n_channels: int,
        names: Sequence[str],
        on_chunk: Callable[[], None] | None,
    ) -> Iterator[np.ndarray]:
        """`stream` with checked arguments and its plan."""
        cond, outputs = self._conditions(names)
        rate = self.audio.sample_rate
        resample = sample_rate != rate
        counted = [0]
        source = _checked(blocks, n_channels, counted)
        if resample:
            source = resample_stream(source, sample_rate, rate, n_channels)
        out = overlap_add_stream(
            source,
            plan,
            n_channels,
            lambda c: self.chunk_separator(c, cond, outputs),
            on_chunk=on_chunk,
        )
        if resample:
            out = resample_outputs(out, rate, sample_rate, n_channels, len(names))
        if n_samples is not None:
            out = exact_length(out, n_samples, len(names), n_channels)
        elif resample:
            out = exact_length(out, lambda: counted[0], len(names), n_channels)
        yield from out

    def separate(
        self,
        audio: np.ndarray,
        sample_rate: int,
        instruments: Sequence[str] | None = None,
        progress: bool = False,
    ) -> dict[str, np.ndarray]:
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
            raise AudioError(
                f"audio must be [n_samples, n_channels] with n_samples > 0, got shape {x.shape}"
            )
        if sample_rate <= 0:
            raise AudioError(f"invalid sample rate {sample_rate}")
        check_channels(x.shape[1])
        plan = self.plan(x.shape[0], sample_rate)
        bar = progress_bar(plan.n_chunks, not progress, "separating")
        blocks = self._stream(
            [x], plan, x.shape[0], sample_rate, x.shape[1], names, on_chunk=bar.update
        )
        result = np.empty((len(names), x.shape[0], x.shape[1]), np.float32)
        filled = 0
        for block in blocks:  # each block written once as it comes: no list of blocks held
            result[:, filled : filled + block.shape[1]] = block
            filled += block.shape[1]
        bar.close()
        return {name: (result[i, :, 0] if squeeze else result[i]) for i, name in enumerate(names)}


def _as_block(block: np.ndarray) -> np.ndarray:
    """float32 [m, n_channels] (a 1-D block is one channel)."""
    block = np.asarray(block, np.float32)
    if block.ndim == 1:
        block = block[:, None]
    if block.ndim != 2:
        raise AudioError(f"audio blocks must be [n_samples, n_channels], got shape {block.shape}")
    return block


def _checked(
    blocks: Iterable[np.ndarray], n_channels: int, counted: list[int]
) -> Iterator[np.ndarray]:
    """Blocks as float32 [m, n_channels], refusing NaN, infinities and a change of channel count;
    counted[0] adds up the samples."""
    for block in blocks:
        block = _as_block(block)
        if block.shape[1] != n_channels:
            raise AudioError(
                f"an audio block has {block.shape[1]} channels, the stream {n_channels}"
            )
        if not np.all(np.isfinite(block)):
            raise AudioError("input contains NaN or infinite samples")
        counted[0] += block.shape[0]
        yield block
