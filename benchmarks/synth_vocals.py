"""Should synthetic songs mark vocals silent or leave them unknown? The two figures behind the choice.

1. How much of the MIDI is voice-like: the share of notes on General MIDI's voice programs (53 Choir
   Aahs, 54 Voice Oohs, 55 Synth Voice, 86 Lead 6 (voice)), which would sound in "other" yet resemble
   singing; a large share would make "silent" a wrong label.
2. How much "vocals" the shipped model hears in music without singing: the energy of its vocals estimate
   relative to the mixture (dB), on rendered songs (pitched parts, from a `cunet synth` dataset) and on
   real instrumentals (MUSDB18-7 valid tracks' drums + bass + other, no vocals). A high figure on the
   rendered songs means silent labels teach the vocals condition something it gets wrong today.

    python benchmarks/synth_vocals.py --midi ../shared/data/midi/freedoom --synth ~/.cache/cunet-synth/full \
        --musdb ../shared/data/musdb18-7 --songs 8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

VOICE_PROGRAMS = (52, 53, 54, 85)  # 0-based


def voice_share(folder: Path) -> tuple[int, int, int]:
    """(notes on voice programs, all pitched notes, files with any voice program notes)."""
    import mido

    from cunet.synth.midi import find_midi_files

    voice = total = files = 0
    for path in find_midi_files(folder):
        try:
            midi = mido.MidiFile(str(path), clip=True)
        except Exception:  # noqa: BLE001 - unreadable files do not count
            continue
        hit = 0
        for track in midi.tracks:
            program = {}
            for msg in track:
                if msg.type == "program_change":
                    program[msg.channel] = msg.program
                elif msg.type == "note_on" and msg.velocity > 0 and msg.channel != 9:
                    total += 1
                    if program.get(msg.channel, 0) in VOICE_PROGRAMS:
                        voice += 1
                        hit = 1
        files += hit
    return voice, total, files


def vocals_db(separator, audio: np.ndarray, rate: int) -> float:
    est = separator.separate(audio, rate, ["vocals"])["vocals"]
    return float(
        10
        * np.log10(
            np.sum(est.astype(np.float64) ** 2) / max(np.sum(audio.astype(np.float64) ** 2), 1e-12)
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--midi", type=Path, required=True)
    parser.add_argument("--synth", type=Path, required=True, help="a `cunet synth` dataset")
    parser.add_argument("--musdb", type=Path, required=True)
    parser.add_argument("--songs", type=int, default=8)
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="seconds of each rendered song used"
    )
    args = parser.parse_args()

    voice, total, files = voice_share(args.midi)
    print(
        f"voice-program notes: {voice} of {total} pitched notes ({100 * voice / max(total, 1):.2f}%), "
        f"in {files} files of {args.midi}"
    )

    import soundfile as sf

    from cunet.data.sources import open_musdb
    from cunet.separator import Separator

    separator = Separator.from_pretrained(None)
    songs = [d for d in sorted((args.synth / "train").iterdir()) if (d / "other.flac").is_file()][
        : args.songs
    ]
    synth = []
    for d in songs:
        audio, rate = sf.read(d / "mixture.flac", dtype="float32", frames=int(args.seconds * 44100))
        synth.append(vocals_db(separator, audio, rate))
    real = []
    for track in open_musdb(args.musdb, "train", "valid")[: args.songs]:
        acc = sum(
            np.asarray(track.sources[s].audio, np.float32) for s in ("drums", "bass", "other")
        )
        real.append(vocals_db(separator, acc, int(track.rate)))
    print(
        "shipped model's vocals estimate / mixture energy, median (min..max) over songs without singing:"
    )
    print(
        f"  rendered songs ({len(synth)}): {np.median(synth):.1f} dB ({min(synth):.1f} .. {max(synth):.1f})"
    )
    print(
        f"  MUSDB18-7 valid accompaniments ({len(real)}): {np.median(real):.1f} dB ({min(real):.1f} .. {max(real):.1f})"
    )
    print(
        json.dumps(
            {
                "voice_notes": voice,
                "pitched_notes": total,
                "voice_files": files,
                "synth_vocals_db": [round(x, 2) for x in synth],
                "musdb_acc_vocals_db": [round(x, 2) for x in real],
            }
        )
    )


if __name__ == "__main__":
    main()
