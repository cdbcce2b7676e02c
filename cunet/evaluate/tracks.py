"""Tracks to evaluate: decoded mixture and stems, from memory (`ArrayTrack`) or MUSDB18 (`MusdbTrack`).

Tracks of any training data source (folder datasets, any stems) are `cunet.evaluate.datasets.DataTrack`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..config import INSTRUMENTS
from ..data.sources import check_musdb_length, open_musdb
from ..errors import DataError, missing_extra


@dataclass
class TrackAudio:
    """Decoded audio of one track.

    mixture: float32 [n_samples, n_channels] at `rate` Hz.
    stems: {instrument: float32 [n_samples, n_channels]}: every true source the track holds
        (any names, whichever are scored), summing to about the mixture.
    """

    mixture: np.ndarray
    stems: dict[str, np.ndarray]
    rate: int

    def without_silent_stems(self) -> TrackAudio:
        """The same track without its all-zero stems: BSSEval's scores are undefined for a silent
        reference (museval refuses the whole track), and a silent stem adds nothing to the others."""
        return TrackAudio(
            self.mixture, {k: v for k, v in self.stems.items() if np.any(v)}, self.rate
        )


class EvalTrack(Protocol):
    """What the evaluation needs from a track: a name, a subset (the folder of its JSON files), the
    names of the stems it holds (known without decoding) and its decoded audio."""

    name: str
    subset: str

    @property
    def stem_names(self) -> tuple[str, ...]: ...

    def load(self) -> TrackAudio: ...


@dataclass
class ArrayTrack:
    """A track held in memory (tests, custom data). Arrays as in `TrackAudio`."""

    name: str
    mixture: np.ndarray
    stems: dict[str, np.ndarray]
    rate: int
    subset: str = "test"

    @property
    def stem_names(self) -> tuple[str, ...]:
        return tuple(self.stems)

    def load(self) -> TrackAudio:
        return TrackAudio(
            as_2d(self.mixture), {k: as_2d(v) for k, v in self.stems.items()}, int(self.rate)
        )


class MusdbTrack:
    """A `musdb` track, decoded on `load()` (in the worker that scores it).

    The musdb Track object is picklable; decoding happens once per track: all
    streams of a .stem.mp4 with a single ffmpeg call.
    """

    def __init__(self, track: Any) -> None:
        self.track = track
        self.name: str = track.name
        self.subset: str = track.subset

    @property
    def stem_names(self) -> tuple[str, ...]:
        """MUSDB18's four stems (`load` refuses a track that lacks one)."""
        return INSTRUMENTS

    def load(self) -> TrackAudio:
        t = self.track
        missing = [name for name in INSTRUMENTS if name not in t.targets]
        if missing:
            raise DataError(f"track has no '{missing[0]}' stem")
        check_musdb_length(t)  # decoded whole below: refused first when too long
        if t.is_wav:
            mixture = np.asarray(t.audio, np.float32)
            stems = {name: np.asarray(t.targets[name].audio, np.float32) for name in INSTRUMENTS}
        else:
            streams = t.stems  # [n_streams, n_samples, n_channels], indexed by stem id
            mixture = np.asarray(streams[t.stem_id], np.float32)
            stems = {
                name: np.asarray(
                    sum(src.gain * streams[src.stem_id] for src in t.targets[name].sources),
                    np.float32,
                )
                for name in INSTRUMENTS
            }
        return TrackAudio(mixture, stems, int(t.rate))

    def __repr__(self) -> str:
        return f"MusdbTrack({self.name!r}, subset={self.subset!r})"


def open_musdb_tracks(
    root: str | os.PathLike,
    subsets: str = "test",
    split: str | None = None,
    is_wav: bool = False,
    track_limit: int | None = None,
) -> list[MusdbTrack]:
    """The MUSDB18 tracks of one subset ("train" or "test"); `split` ("train"/"valid") only with "train".

    Raises DataError when `root` is not a directory, a file cannot be read, or on bad arguments.
    """
    if subsets not in ("train", "test"):
        raise DataError(f"subsets must be 'train' or 'test', got {subsets!r}")
    if split is not None and subsets != "train":
        raise DataError("a split (train/valid) only applies to the train subset")
    try:
        listed = open_musdb(root, subsets=subsets, split=split, is_wav=is_wav)
    except FileNotFoundError as exc:
        raise DataError(str(exc)) from None
    except ImportError as exc:  # musdb (an optional dependency) is not installed
        missing = missing_extra(exc, "reading MUSDB18", "train")
        if missing is None:
            raise
        raise missing from None
    except Exception as exc:  # musdb probes every file while listing: one bad file stops it
        bad = _unreadable_files(Path(root) / subsets, is_wav)
        if bad:
            raise DataError(
                f"cannot read {len(bad)} MUSDB18 file(s), e.g. '{bad[0]}' "
                "(ffprobe failed); fix or remove them"
            ) from None
        text = str(exc).strip().splitlines()
        raise DataError(
            f"cannot list MUSDB18 tracks under '{root}': {type(exc).__name__}: "
            f"{text[0] if text else ''}"
        ) from None
    tracks = [MusdbTrack(t) for t in listed]
    return tracks[:track_limit] if track_limit is not None else tracks


def _unreadable_files(folder: Path, is_wav: bool) -> list[str]:
    """Files musdb would probe under one subset folder that ffprobe cannot read."""
    import stempeg

    paths = sorted(folder.glob("*/mixture.wav") if is_wav else folder.glob("*.stem.mp4"))
    bad = []
    for path in paths:
        try:
            stempeg.Info(str(path))
        except Exception:  # noqa: BLE001 - whatever ffprobe's wrapper raises
            bad.append(str(path))
    return bad


def as_2d(audio: np.ndarray) -> np.ndarray:
    """float32 [n_samples, n_channels] (a 1-D signal becomes one channel)."""
    audio = np.asarray(audio, np.float32)
    return audio[:, None] if audio.ndim == 1 else audio
