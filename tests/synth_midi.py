"""Tiny General MIDI files for the `cunet synth` tests, written with mido (times in seconds at 120 bpm)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import mido

TICKS = 480  # per beat; 120 bpm -> 960 ticks a second
BASS, PIANO, GUITAR = (
    33,
    0,
    29,
)  # 0-based GM programs: Electric Bass (finger), Acoustic Grand, Overdriven Guitar

# (start s, end s, channel, program or None, key, velocity)
Note = tuple[float, float, int, "int | None", int, int]


def write_midi(path: Path, notes: Sequence[Note], bpm: float = 120.0) -> Path:
    """A type-1 file: a tempo track and one track with every note (programs set at time 0)."""
    tempo = mido.bpm2tempo(bpm)
    per_second = TICKS * 1e6 / tempo
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0)])
    track = mido.MidiTrack()
    events = []
    for start, end, ch, program, key, vel in notes:
        if program is not None:
            events.append((0.0, 0, mido.Message("program_change", channel=ch, program=program)))
        events.append((start, 2, mido.Message("note_on", channel=ch, note=key, velocity=vel)))
        events.append((end, 1, mido.Message("note_off", channel=ch, note=key, velocity=0)))
    now = 0
    for t, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        tick = int(round(t * per_second))
        track.append(msg.copy(time=tick - now))
        now = tick
    midi.tracks += [meta, track]
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.save(str(path))
    return path


def band_song(path: Path) -> Path:
    """6 s: a bass note 0.5-1.5 s, a kick drum at 2.0 s, a piano chord 3.0-5.0 s, a ride at 5.5-6 s."""
    return write_midi(
        path,
        [
            (0.5, 1.5, 0, BASS, 40, 110),
            (2.0, 2.3, 9, None, 36, 120),
            (3.0, 5.0, 1, PIANO, 60, 100),
            (3.0, 5.0, 1, None, 64, 100),
            (5.5, 6.0, 9, None, 51, 100),
        ],
    )


def drum_song(path: Path, seconds: float = 10.0) -> Path:
    """Kick and snare every half second for `seconds` (a drum-only 'performance')."""
    notes = [
        (t / 2, t / 2 + 0.1, 9, None, 36 if t % 2 == 0 else 38, 100)
        for t in range(int(seconds * 2))
    ]
    return write_midi(path, notes)
