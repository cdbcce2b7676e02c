"""Writing a synthetic multitrack dataset that `cunet train --data OUT` reads, and its manifest.

Layout: `OUT/train/<song>/<stem>.flac`, `mixture.flac` (the sum of the stems), `<stem>.silent` for a
stem the song does not play (and for `silent` names such as vocals, which MIDI never has), `song.json`
(the song's plan and levels); `OUT/manifest.json` lists every song with its seed, variation, sources
and licences.

A song is rendered in a staging folder `OUT/.staging-<pid>/` and renamed into `train/` when complete,
so a song folder is complete or absent; an interrupted run leaves only staging folders, which the next
run removes. Running the same command again resumes: songs whose `song.json` holds the same plan are
kept. Nothing the run did not create is replaced (`cunet.synth.folder`). Songs render in a pool of
processes (one per core by default, never more than the CPUs or the songs to render).
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import resource
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError, UserError
from ..io.atomic import atomic_path
from ..workers import bounded_workers, sigint_deferred
from .folder import (
    GENERATOR,
    MANIFEST,
    SONG_JSON,
    STAGING_PREFIX,
    check_manifest,
    make_staging,
    planned_songs_done,
    remove_stale_staging,
)
from .licences import collection_licence, default_soundfonts, soundfont_licence
from .midi import MidiError, MidiInfo, find_midi_files, probe
from .render import Renderer, load_fluidsynth, render_song, soundfont_problem
from .stems import DEFAULT_STEMS, StemSpec, parse_stems
from .variation import Collection, SongPlan, plan_dataset, planned_seconds

__all__ = ["MANIFEST", "STAGING_PREFIX", "SynthSettings", "remove_stale_staging", "synthesize"]

DEFAULT_SILENT = ("vocals",)
MIN_SONG_SECONDS = 5.0


@dataclass(frozen=True)
class SynthSettings:
    """One `cunet synth` run (validated by `validate`)."""

    midi: tuple[str, ...]
    out: str
    minutes: float
    seed: int = 0
    soundfonts: tuple[str, ...] = ()
    stems: str = DEFAULT_STEMS
    silent: tuple[str, ...] = DEFAULT_SILENT
    jobs: int = 0
    song_seconds: float = 60.0

    def validate(self) -> StemSpec:
        if not self.midi:
            raise UserError("no MIDI folder given (--midi DIR)")
        if not str(self.out).strip():
            raise UserError("empty output folder (--out '')")
        if not (0 < self.minutes <= 100_000) or math.isnan(self.minutes):
            raise UserError(f"--minutes must be in (0, 100000], got {self.minutes}")
        if not (MIN_SONG_SECONDS <= self.song_seconds <= 3600):
            raise UserError(
                f"--song-seconds must be in [{MIN_SONG_SECONDS:g}, 3600], got {self.song_seconds}"
            )
        if self.seed < 0:
            raise UserError(f"--seed must be a whole number >= 0, got {self.seed}")
        if self.jobs < 0:
            raise UserError(f"--jobs must be >= 0 (0: one per core), got {self.jobs}")
        spec = parse_stems(self.stems)
        clash = set(self.silent) & set(spec.names)
        if clash:
            raise UserError(f"--silent names a stem the MIDI renders: {sorted(clash)}")
        return spec


# -- worker processes --------------------------------------------------------------------------------
# A pool worker keeps its Renderer (loaded soundfonts) between songs: set by the pool initializer.
_WORKER: dict[str, object] = {}


def _probe_one(path: str) -> tuple[str, MidiInfo | None, str | None]:
    try:
        return path, probe(path), None
    except MidiError as exc:
        return path, None, str(exc)


def _init_worker(stems_text: str) -> None:
    signal.signal(
        signal.SIGINT, signal.SIG_IGN
    )  # the parent handles Ctrl-C and terminates the pool
    for sig in (
        signal.SIGTERM,
        signal.SIGHUP,
    ):  # in case a start method copies the CLI's handlers, which raise: undo them
        signal.signal(sig, signal.SIG_DFL)
    _WORKER["stems"] = stems_text


def _render_one(
    job: tuple[SongPlan, str, str, tuple[str, ...]],
) -> tuple[str, dict | None, str | None]:
    """Render one song into staging, then rename it into train/. Returns (name, record, error)."""
    plan, staging, train, silent = job
    renderer = _WORKER.get("renderer")
    if not isinstance(renderer, Renderer):
        renderer = _WORKER["renderer"] = Renderer(parse_stems(str(_WORKER["stems"])))
    folder = Path(staging) / plan.name
    try:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        record = render_song(renderer, plan, folder)
        for name in silent:
            (folder / f"{name}.silent").touch()
        record["silent"] = sorted(set(record["silent"]) | set(silent))
        song = {"plan": plan.to_json(), **record}
        (folder / SONG_JSON).write_text(json.dumps(song, indent=1))
        target = Path(train) / plan.name
        if os.path.lexists(target):  # made meanwhile, e.g. by another run: never replaced
            raise DataError(f"'{target}' appeared while the song was rendered")
        os.rename(folder, target)
        return plan.name, song, None
    except (DataError, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        reason = f"{exc.strerror} ({exc.filename})" if isinstance(exc, OSError) else str(exc)
        return plan.name, None, reason


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the workers), user + system: on a shared
    machine the real-time factor per CPU second says more than the one per wall second."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# -- the run -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def _pool(workers: int, stems_text: str) -> Iterator[Any]:
    """A pool of `workers` processes that never see Ctrl-C: the parent handles it and terminates them."""
    # spawn, not fork: FluidSynth's (GLib's) locks held in this process at fork time hang the workers
    ctx = multiprocessing.get_context("spawn")
    with sigint_deferred():
        pool = ctx.Pool(workers, initializer=_init_worker, initargs=(stems_text,))
    try:
        yield pool
        pool.close()
        pool.join()  # the workers' CPU time counts once they have exited
    except BaseException:
        pool.terminate()
        pool.join()
        raise


def _collections(
    settings: SynthSettings, stems_text: str, note: Callable[[str], None], progress: bool
) -> list[Collection]:
    from tqdm import tqdm

    roots = []
    for folder in settings.midi:
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise UserError(f"MIDI folder '{folder}' is not a directory")
        roots.append(root)
    files = {root: [str(p) for p in find_midi_files(root)] for root in roots}
    paths = [p for root in roots for p in files[root]]
    infos: dict[str, MidiInfo] = {}
    short = 0
    with tqdm(
        total=len(paths),
        desc="reading MIDI",
        unit="file",
        disable=not progress,
        file=sys.stderr,
        leave=False,
    ) as bar:
        # files go to workers 8 at a time; a few files are probed here (a pool takes seconds to start)
        workers = bounded_workers(settings.jobs, len(paths) // 8)[0]
        with contextlib.ExitStack() as stack:
            probed: Iterable[tuple[str, MidiInfo | None, str | None]] = (
                map(_probe_one, paths)
                if workers == 1
                else stack.enter_context(_pool(workers, stems_text)).imap(
                    _probe_one, paths, chunksize=8
                )
            )
            for path, info, error in probed:
                bar.update()
                if error or info is None:
                    note(f"note: skipped '{path}': {error}")
                elif info.seconds < MIN_SONG_SECONDS:
                    short += 1
                else:
                    infos[path] = info
    if short:
        note(f"note: skipped {short} MIDI file(s) shorter than {MIN_SONG_SECONDS:g} s")
    collections = []
    for root in roots:
        usable = tuple(infos[p] for p in files[root] if p in infos)
        name = root.resolve().name or "midi"
        if not files[root]:
            note(f"note: no MIDI files (*.mid, *.midi) under '{root}'")
        collections.append(Collection(name, str(root.resolve()), collection_licence(root), usable))
    return collections


def _soundfonts(settings: SynthSettings, note: Callable[[str], None]) -> list[str]:
    given = [str(Path(s).expanduser()) for s in settings.soundfonts] or default_soundfonts()
    if not given:
        raise UserError(
            "no soundfont: install one (apt-get install fluid-soundfont-gm) or give --soundfont FILE"
        )
    usable = []
    for path in given:
        problem = soundfont_problem(path)
        if problem:
            note(f"note: skipped soundfont '{path}': {problem}")
        else:
            usable.append(str(Path(path).resolve()))
    if not usable:
        raise UserError("none of the soundfonts is usable (see the notes above)")
    return usable


def synthesize(
    settings: SynthSettings, note: Callable[[str], None] | None = None, progress: bool = True
) -> dict:
    """Render the dataset `settings` describe (resuming a previous run into the same folder).

    Returns the manifest (also written to OUT/manifest.json) with a "run" entry: songs rendered now,
    audio seconds, wall seconds and the real-time factor. Raises UserError/DataError when there is
    nothing usable (no MIDI file, no soundfont) or OUT holds songs of other settings.
    """
    from tqdm import tqdm

    note = note or (lambda line: tqdm.write(line, file=sys.stderr))
    spec = settings.validate()
    out = Path(settings.out).expanduser()
    check_manifest(out)
    load_fluidsynth()  # raises a one-line error when FluidSynth is missing, before any worker starts
    soundfonts = _soundfonts(settings, note)
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    collections = _collections(settings, spec.text(), note, progress)
    if not any(c.files for c in collections):
        raise UserError(
            "no usable MIDI file under "
            + ", ".join(f"'{m}'" for m in settings.midi)
            + " (see the notes above)"
        )
    plans = plan_dataset(
        collections, settings.minutes, settings.seed, soundfonts, spec, settings.song_seconds
    )
    done = planned_songs_done(out, plans)
    train = out / "train"
    try:
        train.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write the dataset folder '{out}': {exc.strerror or exc}") from None
    remove_stale_staging(out)
    todo = [p for p in plans if p.name not in done]
    jobs, capped = (
        bounded_workers(settings.jobs, len(todo), "--jobs", "song") if todo else (0, None)
    )
    if capped:
        note(capped)
    rendered_seconds, failed = 0.0, 0
    if todo:
        staging = make_staging(out)
        try:
            jobs_args = [(p, str(staging), str(train), tuple(settings.silent)) for p in todo]
            by_name = {p.name: p for p in todo}
            with (
                tqdm(
                    total=round(planned_seconds(todo)),
                    desc="rendering",
                    unit="s",
                    disable=not progress,
                    file=sys.stderr,
                    smoothing=0.05,
                ) as bar,
                _pool(jobs, spec.text()) as pool,
            ):
                for name, song, error in pool.imap_unordered(_render_one, jobs_args):
                    bar.update(round(by_name[name].seconds))
                    if error or song is None:
                        failed += 1
                        note(f"note: skipped song '{name}' ({by_name[name].midi}): {error}")
                        continue
                    done[name] = song
                    rendered_seconds += by_name[name].seconds
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    names = [p.name for p in plans if p.name in done]
    if not names:
        raise DataError("no song could be rendered (see the notes above)")
    manifest = {
        "generator": GENERATOR,  # first key: how a later run knows the folder is ours
        "settings": {
            "midi": [c.root for c in collections],
            "minutes": settings.minutes,
            "seed": settings.seed,
            "stems": spec.text(),
            "silent": list(settings.silent),
            "song_seconds": settings.song_seconds,
            "sample_rate": 44100,
            "channels": 2,
        },
        "licences": {
            "midi": {
                c.name: {"root": c.root, "licence": c.licence, "files_used": len(c.files)}
                for c in collections
            },
            "soundfonts": {sf: soundfont_licence(sf) for sf in soundfonts},
        },
        "songs": [{"name": n, **done[n]} for n in names],
        "run": {
            "songs_rendered": len(todo) - failed,
            "songs_failed": failed,
            "songs_total": len(names),
            "audio_seconds": round(rendered_seconds, 1),
            "dataset_seconds": round(math.fsum(done[n]["plan"]["seconds"] for n in names), 1),
            "wall_seconds": round(wall, 1),
            "cpu_seconds": round(cpu, 1),
            "jobs": jobs,
            "real_time_factor": round(rendered_seconds / wall, 2) if wall > 0 else None,
            "real_time_factor_per_cpu_second": round(rendered_seconds / cpu, 2)
            if cpu > 0
            else None,
        },
    }

    check_manifest(out)  # a run takes hours: a file put there meanwhile is not replaced either
    with atomic_path(out / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return manifest
