"""`cunet synth`: render MIDI files into a multitrack training dataset (stems + mixture, FLAC)."""

from __future__ import annotations

import argparse
import sys

DEFAULT_STEMS = (
    "drums=drums,bass=33-40,other=*"  # cunet.synth.stems.DEFAULT_STEMS, here so --help is instant
)
EPILOG = (
    "Writes OUT/train/<song>/<stem>.flac + mixture.flac (44.1 kHz stereo, the mixture is the sum of the "
    "stems), <stem>.silent for stems a song does not play (vocals in every song: MIDI has none), and "
    "OUT/manifest.json (seed, variation and licences per song). Train on it with `cunet train --data OUT`. "
    "Run the same command again to resume an interrupted run, or with more --minutes to add songs."
)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "synth",
        help="render MIDI files into a multitrack training dataset",
        description="Render General MIDI files into stems and mixtures with FluidSynth, with "
        "seeded variation per song (soundfont, programs, transposition, tempo, "
        "velocities, gains, pan, reverb, chorus, drum kit, excerpt).",
        epilog=EPILOG,
    )
    p.add_argument(
        "--midi",
        action="append",
        required=True,
        metavar="DIR",
        help="folder of MIDI files (searched recursively); repeatable: the folders take turns. "
        "Drum-only files also play under other folders' songs half the time",
    )
    p.add_argument("-o", "--out", required=True, help="dataset folder to write (or resume)")
    p.add_argument("--minutes", type=float, required=True, help="minutes of audio to render")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the song order and every variation (default: 0)",
    )
    p.add_argument(
        "--soundfont",
        action="append",
        default=None,
        metavar="FILE",
        help="SoundFont (.sf2/.sf3); repeatable, one drawn per song (default: the General MIDI "
        "soundfonts installed: FluidR3_GM, MuseScore_General, TimGM6mb)",
    )
    p.add_argument(
        "--stems",
        default=DEFAULT_STEMS,
        metavar="SPEC",
        help="stems as NAME=SELECTION groups: GM programs 1-128 or ranges, 'drums' (channel 10), '*' "
        f"(the rest), joined with '+', e.g. guitar=25-32,drums=drums,bass=33-40,rest=* "
        f"(default: {DEFAULT_STEMS})",
    )
    p.add_argument(
        "--silent",
        default="vocals",
        metavar="NAMES",
        help="comma-separated stems marked silent in every song (default: vocals; '' for none)",
    )
    p.add_argument(
        "--song-seconds",
        type=float,
        default=60.0,
        help="longest song: longer files give an excerpt at a seeded position (default: 60)",
    )
    p.add_argument(
        "-j", "--jobs", type=int, default=0, help="rendering processes (default: one per core)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars and no summary")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..synth import SynthSettings, synthesize

    silent = tuple(s.strip().lower() for s in args.silent.split(",") if s.strip())
    settings = SynthSettings(
        midi=tuple(args.midi),
        out=args.out,
        minutes=args.minutes,
        seed=args.seed,
        soundfonts=tuple(args.soundfont or ()),
        stems=args.stems,
        silent=silent,
        jobs=args.jobs,
        song_seconds=args.song_seconds,
    )
    manifest = synthesize(settings, progress=not args.quiet)
    run_ = manifest["run"]
    if not args.quiet:
        print(
            f"rendered {run_['songs_rendered']} songs, {run_['audio_seconds'] / 60:.1f} min of audio in "
            f"{run_['wall_seconds'] / 60:.1f} min ({run_['jobs']} processes): real-time factor "
            f"{run_['real_time_factor']} ({run_['real_time_factor_per_cpu_second']} per CPU second); "
            f"the dataset holds {run_['songs_total']} songs, "
            f"{run_['dataset_seconds'] / 60:.1f} min -> {args.out}",
            file=sys.stderr,
        )
    return 0
