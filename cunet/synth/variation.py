"""Per-song variation: which MIDI a song plays and how, drawn from a seed and recorded in the manifest.

A `SongPlan` is everything the renderer needs and nothing it draws itself, so the same plan gives the
same audio. Song `i` of a dataset is drawn from `numpy.random.default_rng([seed, i])` and from the
inputs' file lists (shuffled by the seed), so the plan of a shorter run is a prefix of a longer one's:
growing `--minutes` adds songs and keeps the ones already rendered.

Variation per song: the soundfont; GM program substitutions within the program's family of eight,
never across stems; transposition of pitched parts; tempo; velocity scale; a gain per stem and the
mixture's peak; pan, reverb and chorus sends per channel; reverb room; the drum kit; the excerpt's
position. A drum-only file (e.g. a Groove MIDI performance) either stands alone as a drums-only song or
replaces a pitched song's drums (tempo matched, looped).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .midi import MidiInfo
from .stems import StemSpec

N_CHANNELS = 16
DRUM_KITS = (
    0,
    8,
    16,
    24,
    25,
    32,
    40,
    48,
)  # GM2/GS kits: standard, room, power, electronic, TR-808, jazz, brush, orchestra
LAYER_PROBABILITY = 0.5  # a pitched song gets a drum-only file's drums this often
MIN_LAYER_SECONDS = 8.0  # drum files shorter than this (fills) are not looped under songs


@dataclass(frozen=True)
class Collection:
    """One `--midi` folder: its name, licence and usable files."""

    name: str
    root: str
    licence: str
    files: tuple[MidiInfo, ...]


@dataclass(frozen=True)
class SongPlan:
    """One song of the dataset. Times in seconds of the rendered song (after the tempo change).

    midi: the main file; drums_from: a drum-only file whose drums replace the main file's (or None);
    drums_speed: its playback speed so its tempo matches; start: excerpt start in the main file
    (seconds, after tempo); tempo: playback speed factor; transpose: semitones for pitched parts;
    programs: {0-based GM program: substitute}; pan/reverb/chorus: CC values per channel (0-127);
    gains_db: per stem (spec order); peak_db: the mixture's peak in dBFS.
    """

    name: str
    index: int
    collection: str
    midi: str
    soundfont: str
    seconds: float
    start: float
    tempo: float
    transpose: int
    velocity: float
    programs: dict[int, int]
    drum_kit: int
    pan: tuple[int, ...]
    reverb: tuple[int, ...]
    chorus: tuple[int, ...]
    reverb_room: float
    gains_db: tuple[float, ...]
    peak_db: float
    drums_from: str | None = None
    drums_speed: float = 1.0
    seed: list[int] = field(default_factory=list)

    def to_json(self) -> dict:
        out = asdict(self)
        out["programs"] = {str(k): v for k, v in sorted(self.programs.items())}
        for key in ("pan", "reverb", "chorus", "gains_db"):
            out[key] = list(out[key])
        return out


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "song"


def substitutions(
    rng: np.random.Generator, programs: Sequence[int], stems: StemSpec, probability: float = 0.5
) -> dict[int, int]:
    """{program: substitute} for some of `programs`: a program of the same GM family of eight that the
    stems put in the same group (so a substitution never moves a part to another stem)."""
    out = {}
    for p in sorted(programs):
        if rng.random() >= probability:
            continue
        family = range(p - p % 8, p - p % 8 + 8)
        options = [q for q in family if q != p and stems.group_of(q) == stems.group_of(p)]
        if options:
            out[int(p)] = int(options[int(rng.integers(len(options)))])
    return out


def _matching_speed(song_bpm: float, drums_bpm: float) -> float:
    """Playback speed for the drum file so its tempo equals the song's, doubled or halved into range."""
    speed = song_bpm / drums_bpm
    while speed > 1.5:
        speed /= 2
    while speed < 0.75:
        speed *= 2
    return speed


def plan_song(
    index: int,
    seed: int,
    collection: Collection,
    info: MidiInfo,
    soundfonts: Sequence[str],
    stems: StemSpec,
    song_seconds: float,
    drum_pool: Sequence[MidiInfo] = (),
) -> SongPlan:
    """Draw one song's variation (see the module docstring)."""
    rng = np.random.default_rng([seed, index])
    tempo = float(rng.uniform(0.88, 1.12))
    total = info.seconds / tempo
    seconds = min(song_seconds, total)
    start = float(rng.uniform(0, total - seconds)) if total > seconds else 0.0
    drums_from, drums_speed = None, 1.0
    if (
        info.has_pitched
        and drum_pool
        and stems.group_of(None) is not None
        and rng.random() < LAYER_PROBABILITY
    ):
        drum = drum_pool[int(rng.integers(len(drum_pool)))]
        drums_from, drums_speed = drum.path, _matching_speed(info.bpm * tempo, drum.bpm)
    n_groups = len(stems.groups)
    name = f"{index:05d}-{_safe(collection.name)}-{_safe(Path(info.path).stem)}"
    return SongPlan(
        name=name,
        index=index,
        collection=collection.name,
        midi=info.path,
        soundfont=str(soundfonts[int(rng.integers(len(soundfonts)))]),
        seconds=round(seconds, 3),
        start=round(start, 3),
        tempo=round(tempo, 4),
        transpose=int(rng.choice([-3, -2, -1, 0, 0, 0, 1, 2, 3])),
        velocity=round(float(rng.uniform(0.7, 1.1)), 3),
        programs=substitutions(rng, info.programs, stems),
        drum_kit=int(DRUM_KITS[int(rng.integers(len(DRUM_KITS)))]),
        pan=tuple(int(np.clip(round(64 + rng.normal(0, 25)), 0, 127)) for _ in range(N_CHANNELS)),
        reverb=tuple(int(rng.integers(0, 90)) for _ in range(N_CHANNELS)),
        chorus=tuple(int(rng.integers(0, 50)) for _ in range(N_CHANNELS)),
        reverb_room=round(float(rng.uniform(0.2, 0.9)), 3),
        gains_db=tuple(round(float(rng.uniform(-6, 3)), 2) for _ in range(n_groups)),
        peak_db=round(float(rng.uniform(-6, -1)), 2),
        drums_from=drums_from,
        drums_speed=round(drums_speed, 4),
        seed=[int(seed), int(index)],
    )


def plan_dataset(
    collections: Sequence[Collection],
    minutes: float,
    seed: int,
    soundfonts: Sequence[str],
    stems: StemSpec,
    song_seconds: float = 60.0,
) -> list[SongPlan]:
    """Songs until `minutes` of audio: the collections take turns; each one's files in a seeded shuffle,
    reshuffled after every pass. Drum-only files of all collections (at least MIN_LAYER_SECONDS long)
    form the pool whose drums replace a pitched song's drums half the time."""
    pools = [c for c in collections if c.files]
    if not pools:
        return []
    drum_pool = [
        f for c in pools for f in c.files if not f.has_pitched and f.seconds >= MIN_LAYER_SECONDS
    ]
    orders: list[list[MidiInfo]] = [[] for _ in pools]
    passes = [0] * len(pools)
    plans: list[SongPlan] = []
    target, total = minutes * 60.0, 0.0
    while total < target - 1e-6:
        k = len(plans) % len(pools)
        if not orders[k]:
            order = list(pools[k].files)
            np.random.default_rng([seed, 7919, k, passes[k]]).shuffle(order)
            orders[k], passes[k] = order, passes[k] + 1
        info = orders[k].pop(0)
        plan = plan_song(
            len(plans), seed, pools[k], info, soundfonts, stems, song_seconds, drum_pool
        )
        plans.append(plan)
        total += plan.seconds
        if len(plans) > 10_000_000:  # cannot happen with positive durations; guards the loop
            raise RuntimeError("plan does not converge")
    return plans


def planned_seconds(plans: Sequence[SongPlan]) -> float:
    return math.fsum(p.seconds for p in plans)
