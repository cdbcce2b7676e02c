"""Evaluation tracks from any training data source (`cunet.data.sources`): MUSDB18 roots and folder datasets.

The tracks and their train/valid splits are exactly those `cunet.data.sources.open_source` gives
training (the same seed gives the same hold-out). Each track becomes a `DataTrack`:

- mixture: the track's own mixture when it has one (a `mixture.<ext>` file, or MUSDB18's), else the
  sum of its stems;
- references: its stems (after renaming), conformed to one rate and channel count: the mixture's
  when the track has one, else the highest rate and the most channels among its stems (soxr HQ
  resampling; mono is copied to both channels, stereo down-mixed for a mono mixture) and padded or
  cut to the mixture's length.

A track holds only the stems it has: a missing stem is not silence, so the track is scored only
for the stems it holds (stems a dataset marks `.silent` are not scored either: nothing to score).
Clip folders (`stem=NAME`) hold one stem per clip and no mixture: nothing to separate, refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import INSTRUMENTS
from ..data.sources import SPLITS, DataSpec, Track, open_source
from ..errors import DataError, literal
from ..io.resample import conform as resample_conform
from .scoring import fit_length
from .tracks import TrackAudio, as_2d

EVAL_SPLITS: tuple[str, ...] = (*SPLITS, "all")
OWN_MIXTURE = "own mixture"
SUM_OF_STEMS = "sum of the stems"


def conform(
    audio: np.ndarray, rate: int, to_rate: int, n_channels: int, what: str = "audio"
) -> np.ndarray:
    """float32 [n_samples', n_channels] at `to_rate` Hz from float [n_samples, ch] at `rate` Hz
    (`cunet.io.resample.conform`: soxr HQ; one channel is copied to every channel, several are
    averaged to one). Raises DataError naming `what` for other channel mismatches (6 against 2)."""
    audio = as_2d(audio)
    channels = audio.shape[1]
    if channels not in (1, n_channels) and n_channels != 1:
        raise DataError(f"{what} has {channels} channels, the track {n_channels}")
    return resample_conform(audio, rate, to_rate, n_channels)


@dataclass(frozen=True)
class DataTrack:
    """One multitrack of a data source, decoded on `load()` (picklable: its readers are partials).

    name: the track's name. subset: its split ("train" or "valid"), the folder of its JSON files.
    track: the `cunet.data.sources.Track` (stems after renaming, optional own mixture).
    """

    name: str
    subset: str
    track: Track

    @property
    def stem_names(self) -> tuple[str, ...]:
        """The reference stems this track holds, without decoding anything."""
        return tuple(self.track.stems)

    @property
    def mixture_kind(self) -> str:
        """OWN_MIXTURE when the track has its own mixture, else SUM_OF_STEMS."""
        return OWN_MIXTURE if self.track.mixture is not None else SUM_OF_STEMS

    def load(self) -> TrackAudio:
        """Decode and conform (see the module docstring): mixture and stems [n_samples, n_channels]."""
        decoded = {name: reader() for name, reader in self.track.stems.items()}
        if not decoded:
            raise DataError("the track holds no stem")
        if self.track.mixture is not None:
            wave, rate = self.track.mixture()
            wave = as_2d(wave)
            n_channels = wave.shape[1]
            mixture = conform(wave, rate, rate, n_channels, "the mixture")
        else:
            rate = max(r for _, r in decoded.values())
            n_channels = max(as_2d(a).shape[1] for a, _ in decoded.values())
            mixture = None
        stems = {
            name: conform(a, r, rate, n_channels, f"stem '{name}'")
            for name, (a, r) in decoded.items()
        }
        n_samples = (
            mixture.shape[0] if mixture is not None else max(s.shape[0] for s in stems.values())
        )
        stems = {k: fit_length(v, n_samples, n_channels, f"stem '{k}'") for k, v in stems.items()}
        if mixture is None:
            mixture = np.asarray(np.sum(list(stems.values()), axis=0, dtype=np.float32))
        if mixture.shape[0] == 0:
            raise DataError("the track holds no audio samples")
        return TrackAudio(mixture, stems, int(rate))

    def __repr__(self) -> str:
        return f"DataTrack({self.name!r}, subset={self.subset!r}, stems={list(self.stem_names)})"


def open_data_tracks(
    specs: Sequence[DataSpec], split: str = "valid", seed: int = 42, track_limit: int | None = None
) -> list[DataTrack]:
    """The tracks of one split ("train", "valid", or "all": both) of every source, in listing order.

    seed: the hold-out seed, as in training (`train.seed`, 42 by default), for sources without a
    valid split of their own. track_limit: keep the first N tracks.
    Raises DataError (one line) for a clip folder, an unreadable source, two tracks with the same
    name (their JSON files would collide) or an empty selection.
    """
    if split not in EVAL_SPLITS:
        raise DataError(f"split must be one of {', '.join(EVAL_SPLITS)}, got {split!r}")
    if not specs:
        raise DataError("no data given (use {data} PATH)", names={"data": "a data spec"})
    tracks: list[DataTrack] = []
    counts: list[str] = []
    for spec in specs:
        if spec.stem:
            raise DataError(
                f"'{spec.path}' is a clip folder (stem={spec.stem}): one stem per clip and no "
                "mixture, nothing to separate; evaluate on multitracks"
            )
        splits = open_source(spec, seed)
        counts.append(
            f"'{spec.path}' has {len(splits['train'])} train and {len(splits['valid'])} valid tracks"
        )
        for name in SPLITS if split == "all" else (split,):
            tracks.extend(DataTrack(t.name, name, t) for t in splits[name])
    seen: dict[str, DataTrack] = {}
    for t in tracks:
        if t.name in seen:
            raise DataError(
                f"two tracks named '{t.name}' (in '{seen[t.name].track.origin}' and "
                f"'{t.track.origin}'): their scores would overwrite each other"
            )
        seen[t.name] = t
    if not tracks:
        hint = (
            "; hold tracks out with PATH,valid=N or choose {split} train"
            if split == "valid"
            else ""
        )
        raise DataError(
            literal(f"no {split} tracks to evaluate ({'; '.join(counts)}") + hint + ")",
            names={"split": "split"},
        )
    return tracks[:track_limit] if track_limit is not None else tracks


def stem_union(tracks: Sequence[Any]) -> list[str]:
    """Every stem name the tracks hold: MUSDB18's four first (in their usual order), then the rest by name."""
    names = {s for t in tracks for s in t.stem_names}
    return sorted(
        names, key=lambda s: (INSTRUMENTS.index(s) if s in INSTRUMENTS else len(INSTRUMENTS), s)
    )


def describe_tracks(tracks: Sequence[Any]) -> dict[str, Any]:
    """For settings.json: where each track's mixture came from, and the stems it holds."""
    kinds = [getattr(t, "mixture_kind", OWN_MIXTURE) for t in tracks]
    summary = {k: kinds.count(k) for k in (OWN_MIXTURE, SUM_OF_STEMS) if k in kinds}
    return {
        "mixture": ", ".join(f"{k} ({n} track{'s' if n != 1 else ''})" for k, n in summary.items()),
        "tracks": [
            {"name": t.name, "split": t.subset, "mixture": kind, "stems": list(t.stem_names)}
            for t, kind in zip(tracks, kinds, strict=False)
        ],
    }
