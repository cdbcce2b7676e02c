"""Rendering one planned song with FluidSynth: a synthesizer per stem, the same events, float output.

Every stem has its own synthesizer instance fed with all channel messages (program changes,
controllers, pitch bends) but only the notes of its own parts, so each stem carries its own reverb and
chorus and the mixture is exactly the sum of the stems. Audio is rendered in blocks into raw float32
files next to the song and encoded to FLAC (24 bit) in a second pass, so memory stays bounded by the
block size whatever the song's length. Soundfonts are loaded once per process (FluidSynth's sample
cache shares them between the synthesizers of a process).
"""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .midi import read_events
from .stems import PERCUSSION_CHANNEL, StemSpec
from .variation import SongPlan

SAMPLE_RATE = 44100
N_CHANNELS = 2
BLOCK_FRAMES = 1 << 15
SYNTH_GAIN = 0.2
SUBTYPE = "PCM_24"
# Controllers the plan sets (pan, reverb, chorus) or that would leave General MIDI (bank select).
PLAN_CCS = frozenset({0, 10, 32, 91, 93})
# Groove MIDI (Roland TD-11) notes that General MIDI kits lack: hi-hat edge hits -> closed/open hi-hat.
DRUM_NOTE_MAP = {22: 42, 26: 46}
# Event kinds: (sample, group or ALL, kind, channel, a, b)
ALL = -1
NOTE_ON, NOTE_OFF, CC, PROGRAM, BEND = range(5)


class SynthError(DataError):
    """FluidSynth is missing, or a soundfont cannot be loaded."""


def soundfont_problem(path: str | Path) -> str | None:
    """Why `path` is not a usable SoundFont (SF2/SF3: a RIFF file of form 'sfbk'), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError as exc:
        return f"cannot read ({exc.strerror})"
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        return "not a SoundFont (SF2/SF3) file"
    return None


def load_fluidsynth() -> Any:
    """The pyfluidsynth module with `fluid_synth_write_float` typed; SynthError when unavailable."""
    try:
        import fluidsynth
    except (ImportError, OSError) as exc:
        raise SynthError(
            f"FluidSynth is not available ({exc}); install it: apt-get install fluidsynth, "
            "pip install 'cunet[synth]'"
        ) from None
    write = fluidsynth._fl.fluid_synth_write_float
    write.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
    ]
    write.restype = ctypes.c_int
    return fluidsynth


@dataclass
class StemAudio:
    """A rendered stem before encoding: its raw float32 file, note count and peak."""

    name: str
    raw: Path | None
    n_notes: int
    peak: float


class Renderer:
    """Renders songs in this process; keeps one idle synthesizer per soundfont so its samples stay cached."""

    def __init__(self, stems: StemSpec, block_frames: int = BLOCK_FRAMES) -> None:
        self.stems = stems
        self.block_frames = int(block_frames)
        self.fs = load_fluidsynth()
        self._keepers: dict[str, Any] = {}

    def close(self) -> None:
        for synth in self._keepers.values():
            synth.delete()
        self._keepers.clear()

    def _synth(self, soundfont: str, reverb_room: float) -> tuple[Any, int]:
        if soundfont not in self._keepers:
            keeper = self.fs.Synth(gain=SYNTH_GAIN, samplerate=SAMPLE_RATE, channels=16)
            if keeper.sfload(soundfont) < 0:
                keeper.delete()
                raise SynthError(f"FluidSynth cannot load the soundfont '{soundfont}'")
            self._keepers[soundfont] = keeper
        synth = self.fs.Synth(gain=SYNTH_GAIN, samplerate=SAMPLE_RATE, channels=16)
        sfid = synth.sfload(soundfont)
        if sfid < 0:
            synth.delete()
            raise SynthError(f"FluidSynth cannot load the soundfont '{soundfont}'")
        synth.set_reverb(roomsize=reverb_room, damping=0.4, width=0.8, level=0.8)
        return synth, sfid

    # -- events -------------------------------------------------------------------------------------
    def events(self, plan: SongPlan) -> tuple[list[tuple[int, int, int, int, int, int]], list[int]]:
        """The song's events as (sample, group or ALL, kind, channel, a, b) in playback order, and the
        number of notes per group. Applies tempo, excerpt, transposition, velocity, substitutions and
        the layered drum file."""
        sr, start, end = SAMPLE_RATE, plan.start, plan.start + plan.seconds
        timed: list[tuple[float, int, Any]] = []  # (time, order, message)
        layered = plan.drums_from is not None
        for i, (t, msg) in enumerate(read_events(plan.midi)):
            if layered and msg.channel == PERCUSSION_CHANNEL:
                continue
            timed.append((t / plan.tempo, i, msg))
        if layered:
            drum_events = [
                (t, m)
                for t, m in read_events(str(plan.drums_from))
                if m.channel == PERCUSSION_CHANNEL and m.type in ("note_on", "note_off")
            ]
            period = max(t for t, _ in drum_events) / plan.drums_speed if drum_events else 0.0
            if period > 0.5:
                offset, k = 0.0, 0
                while offset < end:
                    timed.extend(
                        (offset + t / plan.drums_speed, 10_000_000 + k * len(drum_events) + j, m)
                        for j, (t, m) in enumerate(drum_events)
                    )
                    k += 1
                    offset = k * period
                timed.sort(key=lambda e: (e[0], e[1]))
        program = [0] * 16
        active: dict[tuple[int, int], tuple[int, int]] = {}
        counts = [0] * len(self.stems.groups)
        out: list[tuple[int, int, int, int, int, int]] = []
        for t, _, msg in timed:
            if t >= end:
                break
            sample = max(0, int(round((t - start) * sr)))
            ch, kind = msg.channel, msg.type
            drums = ch == PERCUSSION_CHANNEL
            if kind == "note_on" and msg.velocity > 0:
                if t < start:
                    continue
                group = self.stems.group_of(None if drums else program[ch])
                key = DRUM_NOTE_MAP.get(msg.note, msg.note) if drums else msg.note + plan.transpose
                if group is None or not 0 <= key <= 127:
                    continue
                velocity = int(np.clip(round(msg.velocity * plan.velocity), 1, 127))
                active[(ch, msg.note)] = (group, key)
                counts[group] += 1
                out.append((sample, group, NOTE_ON, ch, key, velocity))
            elif kind in ("note_off", "note_on"):
                if (ch, msg.note) in active:
                    group, key = active.pop((ch, msg.note))
                    out.append((sample, group, NOTE_OFF, ch, key, 0))
            elif kind == "program_change":
                program[ch] = msg.program
                if not drums:
                    out.append(
                        (sample, ALL, PROGRAM, ch, plan.programs.get(msg.program, msg.program), 0)
                    )
            elif kind == "control_change" and msg.control not in PLAN_CCS:
                out.append((sample, ALL, CC, ch, msg.control, msg.value))
            elif kind == "pitchwheel":
                out.append((sample, ALL, BEND, ch, msg.pitch, 0))
        return out, counts

    # -- audio --------------------------------------------------------------------------------------
    def render(self, plan: SongPlan, folder: Path) -> list[StemAudio]:
        """Render every stem of `plan` into `folder/<stem>.f32` (raw interleaved float32 stereo at
        SAMPLE_RATE, plan.seconds long); stems without notes get no file."""
        events, counts = self.events(plan)
        n_total = int(round(plan.seconds * SAMPLE_RATE))
        stems = []
        for g, group in enumerate(self.stems.groups):
            if counts[g] == 0:
                stems.append(StemAudio(group.name, None, 0, 0.0))
                continue
            raw = folder / f"{group.name}.f32"
            peak = self._render_group(plan, g, events, n_total, raw)
            stems.append(StemAudio(group.name, raw, counts[g], peak))
        return stems

    def _render_group(
        self, plan: SongPlan, g: int, events: Sequence[tuple], n_total: int, raw: Path
    ) -> float:
        synth, sfid = self._synth(plan.soundfont, plan.reverb_room)
        write = self.fs._fl.fluid_synth_write_float
        buf = np.zeros((self.block_frames, N_CHANNELS), np.float32)
        state = {"pos": 0, "fill": 0, "peak": 0.0}
        try:
            kit = plan.drum_kit if synth.sfpreset_name(sfid, 128, plan.drum_kit) else 0
            for ch in range(16):
                synth.program_change(ch, kit if ch == PERCUSSION_CHANNEL else 0)
                synth.cc(ch, 10, plan.pan[ch])
                synth.cc(ch, 91, plan.reverb[ch])
                synth.cc(ch, 93, plan.chorus[ch])
            with open(raw, "wb") as f:

                def flush() -> None:
                    block = buf[: state["fill"]]
                    state["peak"] = max(state["peak"], float(np.abs(block).max(initial=0.0)))
                    f.write(block.tobytes())
                    state["fill"] = 0

                def render_to(target: int) -> None:
                    while state["pos"] < target:
                        n = min(target - state["pos"], self.block_frames - state["fill"])
                        off = 2 * state["fill"]
                        write(synth.synth, n, buf.ctypes.data, off, 2, buf.ctypes.data, off + 1, 2)
                        state["fill"] += n
                        state["pos"] += n
                        if state["fill"] == self.block_frames:
                            flush()

                for sample, group, kind, ch, a, b in events:
                    if group != ALL and group != g:
                        continue
                    render_to(min(sample, n_total))
                    if kind == NOTE_ON:
                        synth.noteon(ch, a, b)
                    elif kind == NOTE_OFF:
                        synth.noteoff(ch, a)
                    elif kind == PROGRAM:
                        synth.program_change(ch, a)
                    elif kind == CC:
                        synth.cc(ch, a, b)
                    elif kind == BEND:
                        synth.pitch_bend(ch, a)
                render_to(n_total)
                flush()
        finally:
            synth.delete()
        return state["peak"]


def encode(
    stems: Sequence[StemAudio], plan: SongPlan, folder: Path, block_frames: int = BLOCK_FRAMES
) -> dict:
    """Scale the raw stems (plan gains, then one factor so the mixture peaks at plan.peak_db) and write
    `<stem>.flac` and `mixture.flac` (the sum of the scaled stems); removes the raw files. Returns
    {stem: {"peak_db", "rms_db"}} and the mixture's, for the manifest. A song with no sound raises."""
    import soundfile as sf

    sounding = [s for s in stems if s.raw is not None and s.peak > 0]
    gains = {s.name: 10 ** (plan.gains_db[i] / 20) for i, s in enumerate(stems)}
    maps = {
        s.name: np.memmap(str(s.raw), np.float32, "r").reshape(-1, N_CHANNELS) for s in sounding
    }
    n = min((m.shape[0] for m in maps.values()), default=0)
    mix_peak = 0.0
    for i in range(0, n, block_frames):
        mix = sum(maps[s.name][i : i + block_frames] * np.float32(gains[s.name]) for s in sounding)
        mix_peak = max(mix_peak, float(np.abs(mix).max()))
    if not sounding or mix_peak <= 0:
        raise DataError("the song renders silent (its notes have no sound in this soundfont)")
    scale = 10 ** (plan.peak_db / 20) / mix_peak
    stats: dict[str, dict[str, float]] = {}
    writers = {
        s.name: sf.SoundFile(
            str(folder / f"{s.name}.flac"), "w", SAMPLE_RATE, N_CHANNELS, SUBTYPE, format="FLAC"
        )
        for s in sounding
    }
    writers["mixture"] = sf.SoundFile(
        str(folder / "mixture.flac"), "w", SAMPLE_RATE, N_CHANNELS, SUBTYPE, format="FLAC"
    )
    energy = {name: 0.0 for name in writers}
    peaks = {name: 0.0 for name in writers}
    try:
        for i in range(0, n, block_frames):
            mix = np.zeros((min(block_frames, n - i), N_CHANNELS), np.float64)
            for s in sounding:
                x = maps[s.name][i : i + block_frames].astype(np.float64) * (gains[s.name] * scale)
                mix += x
                writers[s.name].write(x)
                energy[s.name] += float(np.sum(x**2))
                peaks[s.name] = max(peaks[s.name], float(np.abs(x).max()))
            writers["mixture"].write(mix)
            energy["mixture"] += float(np.sum(mix**2))
            peaks["mixture"] = max(peaks["mixture"], float(np.abs(mix).max()))
    finally:
        for w in writers.values():
            w.close()
        del maps
    for s in stems:
        if s.raw is not None:
            s.raw.unlink(missing_ok=True)
    for name in writers:
        rms = math.sqrt(energy[name] / max(1, n * N_CHANNELS))
        stats[name] = {
            "peak_db": round(20 * math.log10(max(peaks[name], 1e-12)), 2),
            "rms_db": round(20 * math.log10(max(rms, 1e-12)), 2),
        }
    return stats


def render_song(renderer: Renderer, plan: SongPlan, folder: Path) -> dict:
    """Render and encode one song into `folder` (which must exist); returns the song's record for the
    manifest: stems written, stems silent (no notes or no sound), levels, wall seconds."""
    t0 = time.perf_counter()
    stems = renderer.render(plan, folder)
    levels = encode(stems, plan, folder)
    silent = [s.name for s in stems if s.name not in levels]
    for name in silent:
        (folder / f"{name}.silent").touch()
    return {
        "stems": [s.name for s in stems if s.name in levels],
        "silent": silent,
        "notes": {s.name: s.n_notes for s in stems},
        "levels": levels,
        "render_seconds": round(time.perf_counter() - t0, 3),
    }
