#!/usr/bin/env python
"""Render pitch- and tempo-shifted copies of a source's training tracks into a folder dataset.

    python scripts/augment_stems.py ../shared/data/musdb18-7 --out ~/.cache/cunet-aug/musdb --variants 3
    cunet train ... --data ../shared/data/musdb18-7 --data ~/.cache/cunet-aug/musdb,weight=0.15,valid=0

Every training track gets `--variants` copies, each with one random pitch shift (whole semitones
within +-`--semitones`, never 0) and tempo factor (within 1 +- `--tempo`), applied alike to its stems
(librosa's phase vocoder; see cunet.data.augment). Validation tracks are never copied. Copies already
in `--out` are kept, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cunet.data.augment import render_augmented
from cunet.data.sources import open_source, parse_data_spec
from cunet.errors import CunetError
from cunet.workers import bounded_workers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="a data spec, as `cunet train --data` takes it")
    parser.add_argument("--out", type=Path, required=True, help="folder dataset to write")
    parser.add_argument("--variants", type=int, default=2, help="copies per track (default 2)")
    parser.add_argument("--semitones", type=int, default=2, help="largest pitch shift (default 2)")
    parser.add_argument("--tempo", type=float, default=0.12, help="largest tempo change (0.12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--jobs", type=int, default=1, help="tracks rendered at once, one process each (default 1)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.jobs < 1:
        print(f"error: --jobs must be >= 1, got {args.jobs}", file=sys.stderr)
        return 2
    try:
        tracks = open_source(parse_data_spec(args.data))["train"]
        jobs, capped = bounded_workers(args.jobs, len(tracks), "--jobs", "track")
        if capped:
            print(capped, file=sys.stderr)
        folders = render_augmented(
            tracks,
            args.out.expanduser(),
            args.variants,
            args.seed,
            args.semitones,
            args.tempo,
            jobs=jobs,
        )
    except CunetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(folders)} copies of {len(tracks)} tracks in {args.out / 'train'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
