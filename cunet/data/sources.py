"""Where training audio comes from: MUSDB18 roots, folder datasets and folders of one-stem clips.

A data source is named by a spec string (the CLI's `--data`), a path with comma-separated options:

    ../musdb18                                   MUSDB18 (.stem.mp4; add `wav` for the wav layout)
    ~/stems                                      folder dataset: train/<track>/<stem>.<ext>, valid/... optional
    ../mir1k,stem=vocals,weight=0.3              every audio file under the folder is one `vocals` clip
    ../musicdelta,rename=other:guitar,valid=3    stems renamed; 3 tracks held out for validation

Options: `stem=NAME` (clip folder), `rename=OLD:NEW` (repeatable), `weight=W` (sampling weight per
second of audio, default 1), `valid=N` (hold out N tracks, seeded, when the source has no valid split
of its own), `wav` (MUSDB18 in the wav layout).

Tracks expose the stems they hold; a stem a track lacks is unknown, not silent, unless the dataset
marks it silent with an empty file `<stem>.silent` in the track folder.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..io.audio import SOUNDFILE_EXTENSIONS, AudioInfo, check_whole_length, load_audio

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    SOUNDFILE_EXTENSIONS | {".mp3", ".m4a", ".aac", ".opus", ".mp4"}
)
MIXTURE = "mixture"
SILENT_SUFFIX = ".silent"
TEACHER_RECORD = "teacher.json"  # labels made by a model (scripts/spleeter_teacher.py)
SPLITS = ("train", "valid")
MAX_WEIGHT = 1e6
Note = Callable[[str], None]


def track_key(name: str) -> str:
    """A file-system-safe cache name for a track."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "track"


@dataclass(frozen=True)
class DataSpec:
    """One data source: its path and options (see the module docstring)."""

    path: Path
    stem: str | None = None
    rename: tuple[tuple[str, str], ...] = ()
    weight: float = 1.0
    valid_tracks: int | None = None
    is_wav: bool = False

    @property
    def source_id(self) -> str:
        """Cache folder name: the folder's name and a hash of its absolute path, clip stem and renames."""
        text = f"{self.path.expanduser().resolve()}|{self.stem or ''}|{sorted(self.rename)}"
        return f"{track_key(self.path.name)}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"

    def renamed(self, stem: str) -> str:
        return dict(self.rename).get(stem, stem)


def parse_data_spec(text: str, is_wav: bool = False) -> DataSpec:
    """Parse `PATH[,option...]`; raises DataError naming the bad option."""
    path, *options = str(text).split(",")
    if not path.strip():
        raise DataError(f"data spec '{text}' has no path")
    kwargs: dict[str, Any] = {"is_wav": is_wav}
    renames: list[tuple[str, str]] = []
    for option in options:
        key, sep, value = option.strip().partition("=")
        try:
            if key == "wav" and not sep:
                kwargs["is_wav"] = True
            elif key == "stem" and value:
                kwargs["stem"] = value.strip().lower()
            elif key == "rename" and value.count(":") == 1 and all(value.split(":")):
                old, new = value.split(":")
                renames.append((old.strip().lower(), new.strip().lower()))
            elif key == "weight":
                kwargs["weight"] = float(value)
                if (
                    not 0 < kwargs["weight"] <= MAX_WEIGHT
                ):  # NaN too; huge ones overflow the sampler
                    raise ValueError
            elif key == "valid":
                kwargs["valid_tracks"] = int(value)
                if kwargs["valid_tracks"] < 0:
                    raise ValueError
            else:
                raise ValueError
        except ValueError:
            raise DataError(
                f"bad option '{option}' in data spec '{text}' (valid: stem=NAME, "
                f"rename=OLD:NEW, weight=W in (0, {MAX_WEIGHT:g}], valid=N >= 0, wav)"
            ) from None
    return DataSpec(Path(path).expanduser(), rename=tuple(renames), **kwargs)


@dataclass(frozen=True)
class Track:
    """A multitrack (or a one-stem clip) of one source.

    stems: {instrument name (after renaming): reader} where reader() returns
        (float32 [n_samples, n_channels], sample_rate in Hz).
    silent: instruments the dataset marks silent in this track.
    mixture: reader of the track's own mixture, when it has one.
    check_mixture: compare `mixture` with the sum of the stems when the track is cached (folder
        datasets: training always uses the sum of the stems, so a different mixture is worth a note).
    origin: the source's folder, for messages.
    """

    name: str
    source_id: str
    stems: dict[str, Callable[[], tuple[np.ndarray, int]]]
    silent: frozenset[str] = frozenset()
    weight: float = 1.0
    mixture: Callable[[], tuple[np.ndarray, int]] | None = field(default=None, compare=False)
    check_mixture: bool = field(default=False, compare=False)
    origin: str = field(default="", compare=False)
    fingerprint: str = field(default="", compare=False)


def fingerprint(paths: Sequence[Path]) -> str:
    """Sizes and modification times of a track's files: the cache decodes again when they change."""
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(paths)]
    return hashlib.sha1(repr(stats).encode()).hexdigest()[:16]


# Readers are functools.partial objects over module-level functions, not lambdas, so tracks can be
# pickled (evaluation sends them to worker processes).
def _file_reader(path: Path) -> Callable[[], tuple[np.ndarray, int]]:
    return functools.partial(load_audio, path)


def check_musdb_length(track: Any) -> None:
    """AudioError when a `musdb` track is longer than a file read whole may be, from ffprobe's
    length (listed with the track), before musdb decodes it whole."""
    samples, rate = getattr(track, "samples", None), getattr(track, "rate", None)
    if samples and rate:
        check_whole_length(track.path, AudioInfo(int(rate), 2, int(samples)))


def _read_musdb(track: Any, stem: str | None) -> tuple[np.ndarray, int]:
    """One source of a `musdb` track (or its mixture when stem is None): (float32 [n, ch], rate)."""
    check_musdb_length(track)
    audio = track.audio if stem is None else track.sources[stem].audio
    return np.asarray(audio, np.float32), int(track.rate)


def _musdb_reader(track: Any, stem: str | None) -> Callable[[], tuple[np.ndarray, int]]:
    return functools.partial(_read_musdb, track, stem)


def open_musdb(
    root: str | os.PathLike[str],
    subsets: str = "train",
    split: str | None = "train",
    is_wav: bool = False,
) -> list:
    """The `musdb` Track objects of one subset ("train"/"test") and split ("train"/"valid"/None)."""
    import musdb

    if not Path(root).is_dir():
        raise FileNotFoundError(f"MUSDB18 root '{root}' is not a directory")
    kwargs: dict[str, Any] = {"root": str(root), "subsets": subsets, "is_wav": is_wav}
    if subsets == "train" and split is not None:
        kwargs["split"] = split
    return list(musdb.DB(**kwargs))


def _musdb_tracks(spec: DataSpec, split: str) -> list[Track]:
    try:
        listed = open_musdb(spec.path, "train", split, spec.is_wav)
    except Exception as exc:  # noqa: BLE001 - musdb probes every file while listing: one bad file stops it
        raise DataError(
            f"cannot list MUSDB18 tracks under '{spec.path}': {str(exc).strip()[:200]}"
        ) from None
    tracks = []
    for t in listed:
        stems = {spec.renamed(s): _musdb_reader(t, s) for s in t.sources}
        mixture = _musdb_reader(t, None)
        files = (
            [Path(t.path)]
            if not spec.is_wav
            else [p for p in Path(t.path).parent.iterdir() if p.is_file()]
        )
        tracks.append(
            Track(
                t.name,
                spec.source_id,
                stems,
                weight=spec.weight,
                mixture=mixture,
                origin=str(spec.path),
                fingerprint=fingerprint(files),
            )
        )
    return tracks


def _folder_track(folder: Path, spec: DataSpec, note: Note) -> Track | None:
    stems: dict[str, Callable[[], tuple[np.ndarray, int]]] = {}
    silent: set[str] = set()
    mixture = None
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            if path.suffix.lower() in AUDIO_EXTENSIONS | {SILENT_SUFFIX}:
                why = "a directory" if path.is_dir() else "a broken link, pipe or device"
                note(f"note: skipped '{path}': {why}, not a stem file")
            continue
        name = path.stem.lower()
        if path.suffix.lower() == SILENT_SUFFIX:
            silent.add(spec.renamed(name))
            continue
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        if name == MIXTURE:
            mixture = _file_reader(path)
            continue
        instrument = spec.renamed(name)
        if instrument in stems:
            raise DataError(f"track '{folder}' has two files for stem '{instrument}'")
        stems[instrument] = _file_reader(path)
    if not stems:
        return None
    return Track(
        folder.name,
        spec.source_id,
        stems,
        frozenset(silent - set(stems)),
        spec.weight,
        mixture,
        check_mixture=mixture is not None,
        origin=str(spec.path),
        fingerprint=fingerprint([p for p in folder.iterdir() if p.is_file()]),
    )


def _folder_tracks(spec: DataSpec, folder: Path, note: Note) -> list[Track]:
    if not folder.is_dir():
        return []
    tracks = []
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            tracks.append(_folder_track(path, spec, note))
        elif path.suffix.lower() in AUDIO_EXTENSIONS:
            note(
                f"note: skipped '{path}': a file where a track folder (<track>/<stem>.wav) is "
                "expected; a folder of one-stem clips takes stem=NAME"
            )
    return [t for t in tracks if t is not None]


def _clip_tracks(spec: DataSpec) -> list[Track]:
    files = sorted(
        p for p in spec.path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )
    stem = spec.renamed(spec.stem or "")
    return [
        Track(
            str(p.relative_to(spec.path)),
            spec.source_id,
            {stem: _file_reader(p)},
            weight=spec.weight,
            origin=str(spec.path),
            fingerprint=fingerprint([p]),
        )
        for p in files
    ]


def source_kind(spec: DataSpec) -> str:
    """'clips', 'musdb' or 'folder', from the spec and the folder's layout."""
    if not spec.path.is_dir():
        raise DataError(f"data folder '{spec.path}' is not a directory")
    if spec.stem:
        return "clips"
    if (
        spec.is_wav
        or any((spec.path / "train").glob("*.stem.mp4"))
        or _looks_like_musdb_wav(spec.path)
    ):
        return "musdb"
    return "folder"


def _looks_like_musdb_wav(root: Path) -> bool:
    """MUSDB18 in the wav layout (train/<track>/mixture.wav, with musdb's validation songs among the
    tracks), so its fixed validation split is kept even when `wav` was not given."""
    folder = root / "train"
    if not folder.is_dir():
        return False
    names = {d.name for d in folder.iterdir() if (d / "mixture.wav").is_file()}
    if not names:  # no mixture files: a folder dataset, whether or not musdb is installed
        return False
    import musdb
    import yaml

    setup = yaml.safe_load((Path(musdb.__file__).parent / "configs" / "mus.yaml").read_text())
    return bool(names & set(setup.get("validation_tracks", ())))


def _hold_out(tracks: list[Track], n: int, seed: int) -> tuple[list[Track], list[Track]]:
    """Split off n tracks, chosen by a seeded shuffle of the sorted names."""
    names = sorted(t.name for t in tracks)
    random.Random(f"{seed}:{len(names)}").shuffle(names)
    held = set(names[:n])
    return [t for t in tracks if t.name not in held], [t for t in tracks if t.name in held]


def open_source(spec: DataSpec, seed: int = 42, note: Note | None = None) -> dict[str, list[Track]]:
    """The tracks of one source by split: {"train": [...], "valid": [...]}.

    MUSDB18 uses musdb's own train/valid split; a folder dataset its `valid/` folder. Otherwise
    `valid=N` tracks are held out (folder datasets default to a tenth, at least one of two or more).
    note: called with one `note:` line per entry of a folder dataset that looks like a stem or a track
    but is skipped (a directory named `vocals.wav`, a broken link, ...); default: printed on stderr.
    """
    note = note or functools.partial(print, file=sys.stderr, flush=True)
    kind = source_kind(spec)
    if kind == "clips":
        splits = {"train": _clip_tracks(spec), "valid": []}
    elif kind == "musdb":
        splits = {s: _musdb_tracks(spec, s) for s in SPLITS}
    else:
        base = spec.path / "train" if (spec.path / "train").is_dir() else spec.path
        splits = {
            "train": _folder_tracks(spec, base, note),
            "valid": _folder_tracks(spec, spec.path / "valid", note),
        }
    n_hold = spec.valid_tracks
    if n_hold is None and kind == "folder" and not splits["valid"] and len(splits["train"]) >= 2:
        n_hold = max(1, len(splits["train"]) // 10)
    if n_hold and not splits["valid"]:
        if n_hold >= len(splits["train"]):
            raise DataError(
                f"cannot hold out {n_hold} of the {len(splits['train'])} tracks in '{spec.path}'"
            )
        splits["train"], splits["valid"] = _hold_out(splits["train"], n_hold, seed)
    overlap = {t.name for t in splits["train"]} & {t.name for t in splits["valid"]}
    if overlap:
        raise DataError(
            f"valid tracks found in the training split of '{spec.path}': {sorted(overlap)[:3]}"
        )
    _check_distinct_keys(spec, [t for tracks in splits.values() for t in tracks])
    return splits


def _check_distinct_keys(spec: DataSpec, tracks: Sequence[Track]) -> None:
    """DataError when two tracks, or two stems of a track, share a file name (`track_key`): the
    spectrogram cache and the augmented copies are stored under it, so one would read the other's."""
    groups = [("tracks", "", [t.name for t in tracks])]
    groups += [("stems", f" of track '{t.name}'", list(t.stems)) for t in tracks]
    for kind, owner, names in groups:
        seen: dict[str, str] = {}
        for name in names:
            key = track_key(name)
            if seen.setdefault(key, name) != name:
                raise DataError(
                    f"the {kind} '{seen[key]}' and '{name}'{owner} in '{spec.path}' have the same "
                    f"file name '{key}'; rename one of them"
                )


def open_sources(
    specs: Sequence[DataSpec], seed: int = 42, note: Note | None = None
) -> dict[str, list[Track]]:
    """All sources' tracks by split (`note` as for `open_source`). Raises DataError when there is
    nothing to train on."""
    if not specs:
        raise DataError("no training data given (use {data} PATH)", names={"data": "a data spec"})
    merged: dict[str, list[Track]] = {s: [] for s in SPLITS}
    for spec in specs:
        for split, tracks in open_source(spec, seed, note).items():
            merged[split].extend(tracks)
    leaked = {t.name for t in merged["train"]} & {t.name for t in merged["valid"]}
    if leaked:
        raise DataError(f"validation tracks also appear in the training data: {sorted(leaked)[:3]}")
    if not merged["train"]:
        raise DataError(
            "no training tracks found under "
            + ", ".join(f"'{s.path}'" for s in specs)
            + " (expected MUSDB18 train/*.stem.mp4, train/<track>/<stem>.wav folders,"
            " or a clip folder with stem=NAME)"
        )
    return merged
