"""Reading Standard MIDI Files: a cheap probe that vets a file, and its events in seconds.

`probe` refuses what cannot be rendered (not MIDI, truncated, empty, no notes, too large or too long)
with a `MidiError` whose message says why, so a dataset run can skip the file with one note.
`read_events` gives every channel message of a file in playback order with absolute times in seconds
(mido applies the file's tempo map).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from .stems import PERCUSSION_CHANNEL

MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".smf")
MAX_FILE_BYTES = 8 << 20  # the largest freedoom/groove file is far below 1 MB
MAX_MESSAGES = 2_000_000
MAX_SECONDS = 3600.0
CHANNEL_TYPES = frozenset(
    {
        "note_on",
        "note_off",
        "control_change",
        "program_change",
        "pitchwheel",
        "aftertouch",
        "polytouch",
    }
)
DEFAULT_BPM = 120.0


class MidiError(DataError):
    """A MIDI file that cannot be rendered; the message says why."""


@dataclass(frozen=True)
class MidiInfo:
    """What a dataset plan needs to know about one MIDI file.

    seconds: playing time (to the last note's end; trailing controller messages do not count);
    bpm: the first tempo (120 when the file sets none);
    programs: 0-based GM programs that play notes (on channels other than the percussion channel).
    """

    path: str
    seconds: float
    n_notes: int
    has_drums: bool
    has_pitched: bool
    bpm: float
    programs: tuple[int, ...] = ()


def find_midi_files(folder: Path) -> list[Path]:
    """MIDI files under `folder` (recursive), sorted, as absolute paths (a resumed run may start elsewhere)."""
    return sorted(
        p for p in folder.resolve().rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file()
    )


def _open(path: Path):
    import mido

    try:
        return mido.MidiFile(str(path), clip=True)
    except Exception as exc:  # noqa: BLE001 - mido raises OSError, EOFError, ValueError, KeyError, IndexError ...
        reason = str(exc).strip() or type(exc).__name__
        raise MidiError(f"not a readable MIDI file ({reason[:120]})") from None


def read_events(path: str | Path) -> list[tuple[float, Any]]:
    """[(time in seconds, mido channel message)] in playback order, tempo applied."""
    now = 0.0
    out = []
    for msg in _open(Path(path)):
        now += msg.time
        if msg.type in CHANNEL_TYPES:
            out.append((now, msg))
    return out


def probe(
    path: str | Path,
    max_bytes: int = MAX_FILE_BYTES,
    max_seconds: float = MAX_SECONDS,
    max_messages: int = MAX_MESSAGES,
) -> MidiInfo:
    """Vet one file; raises MidiError (empty, not MIDI, huge, too long, no notes)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise MidiError(f"cannot read ({exc.strerror})") from None
    if size == 0:
        raise MidiError("empty file")
    if size > max_bytes:
        raise MidiError(f"too large ({size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB)")
    midi = _open(path)
    if midi.type == 2:
        raise MidiError("type 2 MIDI files (independent sequences) are not supported")
    now, last_note, n_messages, n_notes = 0.0, 0.0, 0, 0
    bpm = None
    drums = pitched = False
    programs: dict[int, int] = {}
    used: set[int] = set()
    try:
        for msg in midi:
            now += msg.time
            n_messages += 1
            if n_messages > max_messages:
                raise MidiError(f"too many events (over {max_messages:,})")
            if now > max_seconds:
                raise MidiError(f"too long (over {max_seconds / 60:.0f} minutes)")
            if msg.type == "set_tempo" and bpm is None:
                bpm = 60e6 / msg.tempo
            elif msg.type == "program_change":
                programs[msg.channel] = msg.program
            elif msg.type == "note_off" or msg.type == "note_on" and msg.velocity == 0:
                last_note = now
            elif msg.type == "note_on" and msg.velocity > 0:
                n_notes += 1
                last_note = now
                if msg.channel == PERCUSSION_CHANNEL:
                    drums = True
                else:
                    pitched = True
                    used.add(programs.get(msg.channel, 0))
    except MidiError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt track can fail during playback too
        raise MidiError(
            f"not a readable MIDI file ({(str(exc).strip() or type(exc).__name__)[:120]})"
        ) from None
    if n_notes == 0:
        raise MidiError("no notes")
    return MidiInfo(
        str(path),
        round(last_note, 3),
        n_notes,
        drums,
        pitched,
        round(bpm or DEFAULT_BPM, 3),
        tuple(sorted(used)),
    )
