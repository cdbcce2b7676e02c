"""Seeded per-song variation and the dataset plan."""

import numpy as np
import pytest

from cunet.synth.midi import MidiInfo
from cunet.synth.stems import parse_stems
from cunet.synth.variation import (
    Collection,
    _matching_speed,
    plan_dataset,
    planned_seconds,
    substitutions,
)

SPEC = parse_stems()
SOUNDFONTS = ["a.sf2", "b.sf2"]


def _collections():
    pitched = tuple(
        MidiInfo(f"/m/song{i}.mid", 100.0 + i, 50, True, True, 140.0, (0, 29, 33)) for i in range(3)
    )
    drums = tuple(MidiInfo(f"/g/beat{i}.mid", 30.0, 80, True, False, 95.0) for i in range(2))
    return [
        Collection("songs", "/m", "BSD-3-Clause", pitched),
        Collection("grooves", "/g", "CC-BY-4.0", drums),
    ]


def test_same_seed_same_plan_and_prefix_property():
    a = plan_dataset(_collections(), 5, seed=3, soundfonts=SOUNDFONTS, stems=SPEC, song_seconds=20)
    b = plan_dataset(_collections(), 5, seed=3, soundfonts=SOUNDFONTS, stems=SPEC, song_seconds=20)
    longer = plan_dataset(
        _collections(), 9, seed=3, soundfonts=SOUNDFONTS, stems=SPEC, song_seconds=20
    )
    other = plan_dataset(
        _collections(), 5, seed=4, soundfonts=SOUNDFONTS, stems=SPEC, song_seconds=20
    )
    assert a == b and longer[: len(a)] == a and a != other
    assert planned_seconds(a) >= 300 and planned_seconds(a[:-1]) < 300
    assert len({p.name for p in longer}) == len(longer)


def test_plans_vary_within_bounds_and_collections_take_turns():
    plans = plan_dataset(
        _collections(), 30, seed=0, soundfonts=SOUNDFONTS, stems=SPEC, song_seconds=20
    )
    assert [p.collection for p in plans[:4]] == ["songs", "grooves", "songs", "grooves"]
    assert {p.soundfont for p in plans} == set(SOUNDFONTS)
    for p in plans:
        assert 0.88 <= p.tempo <= 1.12 and -3 <= p.transpose <= 3 and -6 <= p.peak_db <= -1
        assert p.seconds <= 20 and p.start >= 0
        assert len(p.pan) == len(p.reverb) == len(p.chorus) == 16 and len(p.gains_db) == 3
    layered = [p for p in plans if p.drums_from]
    assert layered and all(
        p.collection == "songs" for p in layered
    )  # only pitched songs get a groove
    assert all(0.75 <= p.drums_speed <= 1.5 for p in layered)
    assert len({p.transpose for p in plans}) > 3 and len({p.start for p in plans}) > 10


def test_substitutions_stay_in_family_and_stem():
    spec = parse_stems("guitar=25-28,rest=*")  # splits the guitar family (25-32) between two stems
    rng = np.random.default_rng(0)
    for _ in range(50):
        subs = substitutions(rng, [24, 29, 33], spec, probability=1.0)
        for old, new in subs.items():
            assert old // 8 == new // 8 and old != new
            assert spec.group_of(old) == spec.group_of(new)


@pytest.mark.parametrize(
    "song, drums, speed", [(120, 120, 1.0), (140, 70, 1.0), (90, 120, 0.75), (200, 100, 1.0)]
)
def test_drum_tempo_matched(song, drums, speed):
    assert _matching_speed(song, drums) == pytest.approx(speed)
