"""`run_batch`: a catalog through a pool of Ray actors, each with its own model, as a bounded stream.

The driver lists the songs (paths only: audio never passes through it), names every output and checks
the names before any work, skips the songs already done, then keeps each worker busy with one song
while the worker fetches the next one it will get: at most two songs per worker are in flight, so
memory is bounded whatever the catalog's size. A worker process that dies (killed, out of memory, its
machine gone) is restarted by Ray and its song goes back to the queue for another worker, up to
`retries` times; a song that fails on its own (a file that cannot be decoded) is reported and the
rest go on.
"""

from __future__ import annotations

import collections
import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ModelError, UserError, one_line
from ..io.naming import FilenameTemplate
from .cluster import Scratch, cluster_cpus, connected, start_workers, stop_workers
from .listing import BatchInput, is_uri
from .plan import Naming, Planned, check_names, make_plan
from .report import FAILURES_NAME, REPORT_NAME, Report, Totals
from .worker import ChunkHook, SongTask, WorkerSettings

WAIT_SECONDS = 0.5  # how often the driver looks for finished songs and newly started workers
STARTUP_GRACE = 5.0  # seconds the other workers get to load the model once the first has


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs. address: None (an embedded local Ray instance; or the one this process has
    joined), "auto" or "ray://HOST:PORT" (a running cluster). actors: workers (None: the cluster's
    CPUs / threads); threads: each worker's threads (None: 1). retries: how often a song whose worker
    died is tried again. ship_model: send the model file to the workers through Ray's object store
    (None: when joining a cluster). report, failures: the JSONL report and failures CSV (default: in
    the output folder). hook: see `cunet.batch.worker.ChunkHook`."""

    address: str | None = None
    actors: int | None = None
    threads: int | None = None
    retries: int = 2
    force: bool = False
    quiet: bool = False
    ship_model: bool | None = None
    report: Path | None = None
    failures: Path | None = None
    hook: ChunkHook | None = None
    num_cpus: int | None = None


@dataclass
class _Item:
    planned: Planned
    attempt: int = 1
    avoid: int | None = None  # the worker it died on


def run_batch(
    songs: Sequence[BatchInput],
    outdir: str | Path,
    settings: WorkerSettings,
    options: BatchOptions | None = None,
    note: Callable[[str], None] | None = None,
    error: Callable[[str, str], None] | None = None,
    unlisted: Sequence[tuple[str, str]] = (),
) -> Report:
    """Separate `songs` into `outdir` (names as `settings.filename` says); returns the closed `Report`
    (its `totals`, `summary()`). note(line), error(input, message): told along the way. unlisted:
    (input, message) of inputs that could not be listed, reported as failed. UserError / ModelError
    before any work for bad names or a model that does not load."""
    options = options or BatchOptions()
    outdir = Path(outdir).absolute()  # workers may run elsewhere, in another folder
    if options.retries < 0:
        raise UserError("retries must be 0 or more")
    template = FilenameTemplate(settings.filename).validate()
    created = not outdir.exists()
    scratch = Scratch(outdir)
    model = None if settings.model is None else str(Path(settings.model).absolute())
    try:
        settings = replace(settings, scratch=str(scratch.path), model=model)
        with connected(options.address, options.num_cpus) as ray:
            return _run(
                ray, songs, outdir, template, settings, options, scratch, note, error, unlisted
            )
    finally:
        scratch.close()
        if created:  # stopped before any output: leave no empty folder behind
            with contextlib.suppress(OSError):
                outdir.rmdir()


def _run(
    ray: Any,
    songs: Sequence[BatchInput],
    outdir: Path,
    template: FilenameTemplate,
    settings: WorkerSettings,
    options: BatchOptions,
    scratch: Scratch,
    note: Callable[[str], None] | None,
    error: Callable[[str, str], None] | None,
    unlisted: Sequence[tuple[str, str]],
) -> Report:
    cpus = cluster_cpus(ray)
    threads = options.threads or 1
    n_actors = max(1, min(options.actors or max(1, cpus // threads), len(songs) or 1))
    cpus_each = min(float(threads), cpus / n_actors)  # more workers than CPUs asked: they share
    settings = replace(settings, threads=threads)  # the threads each worker asks Ray CPUs for
    model_ref = None
    ship = options.ship_model if options.ship_model is not None else options.address is not None
    if ship and settings.model is not None and Path(settings.model).is_file():
        model_ref = ray.put(Path(settings.model).read_bytes())
    workers = start_workers(ray, n_actors, cpus_each, settings, model_ref, options.hook)
    running: dict[Any, tuple[int, _Item]] = {}
    try:
        starting = {w.describe.remote(): i for i, w in enumerate(workers)}
        first = _first_ready(ray, starting)
        if starting:  # the others load alike: a moment's wait lets them all share the first songs
            ray.wait(list(starting), num_returns=len(starting), timeout=STARTUP_GRACE)
        naming = Naming(
            outdir,
            template,
            tuple(first["names"]),
            tuple(first["model_instruments"]),
            settings.output.fmt,
            settings.residual,
        )
        check_names(songs, naming)
        plan = make_plan(songs, naming, options.force)
        tell = note or (lambda line: None)
        tell(
            f"{len(plan.todo)} of {len(songs)} songs to separate on {n_actors} workers of {threads} "
            f"thread(s) ({cpus} CPUs in the cluster); model loaded in {first['load_seconds']:.2f} s"
        )
        report = Report(
            options.report or outdir / REPORT_NAME,
            options.failures or outdir / FAILURES_NAME,
            len(songs) + len(unlisted),
            scratch.job,
            options.quiet,
        )
        try:
            for source, message in unlisted:
                report.song(source, "failed", error=message)
            for planned in plan.done:
                report.song(planned.song.source, "skipped", _strs(naming.outputs(planned.song)))
            for planned, message in plan.blocked:
                report.song(planned.song.source, "failed", error=message)
                if error is not None:
                    error(planned.song.source, message)
            scheduler = _Scheduler(
                ray, workers, starting, naming, options, scratch, report, running, tell, error
            )
            scheduler.run(plan.todo)
        finally:
            report.close()
        return report
    finally:
        stop_workers(ray, workers)
        with contextlib.suppress(Exception):  # let the killed workers go before the scratch goes
            ray.wait(list(running), num_returns=len(running), timeout=5)


def _first_ready(ray: Any, starting: dict[Any, int]) -> dict[str, Any]:
    """The first worker's description once it loaded the model (ModelError if it could not)."""
    ready, _ = ray.wait(list(starting), num_returns=1)
    starting.pop(ready[0])
    try:
        first = ray.get(ready[0])
    except ray.exceptions.RayError as exc:
        raise ModelError(f"a worker died while loading the model: {_last_line(exc)}") from None
    if first["error"]:
        raise UserError(first["error"])
    return dict(first)


class _Scheduler:
    """Runs the songs: each idle worker gets a song and the one it fetches ahead; results go to the
    report; a song whose worker died goes back to the queue for another worker."""

    def __init__(
        self,
        ray: Any,
        workers: list[Any],
        starting: dict[Any, int],
        naming: Naming,
        options: BatchOptions,
        scratch: Scratch,
        report: Report,
        running: dict[Any, tuple[int, _Item]],
        note: Callable[[str], None],
        error: Callable[[str, str], None] | None,
    ) -> None:
        self.ray, self.workers, self.starting, self.naming = ray, workers, starting, naming
        self.options, self.scratch, self.report, self.running = options, scratch, report, running
        self.note, self.error = note, error
        self.queue: collections.deque[_Item] = collections.deque()
        self.idle = sorted(set(range(len(workers))) - set(starting.values()))
        self.ahead: dict[int, _Item] = {}  # worker -> the song it fetches ahead
        self.alive = set(range(len(workers)))

    def run(self, todo: list[Planned]) -> None:
        self.queue.extend(_Item(p) for p in todo)
        while self.queue or self.ahead or self.running:
            self.dispatch(strict=True)
            if not self.running and not self.starting:  # only songs that died on the idle workers
                self.dispatch(strict=False)
            if not self.alive:
                for item in [*self.queue, *self.ahead.values()]:
                    _failed(self.report, item, "no worker left to separate it", self.error)
                return
            pending = [*self.running, *self.starting]
            ready, _ = self.ray.wait(pending, num_returns=1, timeout=WAIT_SECONDS)
            for ref in ready:
                if ref in self.starting:
                    self.started(ref)
                else:
                    self.finished(ref)

    def task(self, item: _Item) -> SongTask:
        song = item.planned.song
        outputs = self.naming.outputs(song)
        return SongTask(
            item.planned.index,
            song.source if is_uri(song.source) else os.path.abspath(song.source),
            song.track,
            song.folder,
            _strs(outputs),
            frozenset(outputs) if self.options.force else item.planned.existing,
            self.scratch.song(item.planned.index, item.attempt),
            song.source,
        )

    def take(self, worker: int, strict: bool) -> _Item | None:
        """The song for `worker`: the one it fetched ahead, else the first queued one that did not die
        on it (strict) or any, else one another worker only fetched ahead."""
        if worker in self.ahead:
            return self.ahead.pop(worker)
        for i, item in enumerate(self.queue):
            if item.avoid != worker or not strict or self.alive == {worker}:
                del self.queue[i]
                return item
            if i >= 8:  # the few songs that died on it come first; the rest will do
                break
        for other in list(self.ahead):
            if other != worker:
                return self.ahead.pop(other)
        return None

    def dispatch(self, strict: bool) -> None:
        waiting = []
        while self.idle:
            worker = self.idle.pop()
            item = self.take(worker, strict)
            if item is None:
                waiting.append(worker)
                continue
            upcoming = self.queue.popleft() if self.queue else None
            if upcoming is not None:
                self.ahead[worker] = upcoming
            ref = self.workers[worker].separate.remote(
                self.task(item), None if upcoming is None else self.task(upcoming)
            )
            self.running[ref] = (worker, item)
        self.idle.extend(waiting)

    def started(self, ref: Any) -> None:
        """A worker that loaded the model joins the pool; one that could not is left out."""
        worker = self.starting.pop(ref)
        try:
            described = self.ray.get(ref)
        except self.ray.exceptions.RayError:  # died while loading: Ray restarts it
            described = {"error": None}
        if described["error"]:
            self.note(f"a worker left out: {described['error']}")
            self.alive.discard(worker)
        else:
            self.idle.append(worker)

    def finished(self, ref: Any) -> None:
        worker, item = self.running.pop(ref)
        ray = self.ray
        try:
            result = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # the worker's own code raised: a bug
            _failed(self.report, item, f"unexpected error: {_first_line(exc)}", self.error)
            self.idle.append(worker)
            return
        except ray.exceptions.RayError as exc:  # the worker process died
            self.died(worker, item, exc)
            return
        self.idle.append(worker)
        for line in result["notes"]:
            self.note(line)
        song = item.planned.song.source
        if result["status"] != "ok" and self.error is not None:
            self.error(song, result["error"])
        self.report.song(
            song,
            result["status"],
            result.get("outputs"),
            result["seconds"],
            result["error"],
            audio_seconds=result.get("audio_seconds"),
            attempts=item.attempt,
            worker=result["worker"],
        )

    def died(self, worker: int, item: _Item, exc: BaseException) -> None:
        if worker in self.ahead:
            self.queue.appendleft(self.ahead.pop(worker))
        if isinstance(exc, self.ray.exceptions.ActorDiedError):  # for good: no restart
            self.alive.discard(worker)
        else:
            self.idle.append(worker)  # Ray restarts it; calls wait until its model is loaded
        reason = _first_line(exc)[:160]
        if item.attempt <= self.options.retries:
            self.note(
                f"{item.planned.song.source}: its worker died ({reason}); trying again on "
                f"another (attempt {item.attempt + 1})"
            )
            self.queue.appendleft(_Item(item.planned, item.attempt + 1, worker))
        else:
            message = f"its worker died {item.attempt} times ({reason})"
            _failed(self.report, item, message, self.error)


def _failed(
    report: Report, item: _Item, message: str, error: Callable[[str, str], None] | None
) -> None:
    source = item.planned.song.source
    if error is not None:
        error(source, message)
    report.song(source, "failed", error=f"{source}: {message}", attempts=item.attempt)


def _strs(paths: dict[str, Path]) -> dict[str, str]:
    return {k: str(p) for k, p in paths.items()}


def _last_line(exc: BaseException) -> str:
    """The last line of an error whose text ends in its cause (Ray's errors of a task that raised)."""
    text = str(exc).strip().splitlines()
    return one_line(text[-1] if text else type(exc).__name__)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return one_line(text[0] if text else type(exc).__name__)


def totals_exit_code(totals: Totals) -> int:
    """0 when every song is done, 1 when some failed."""
    return 1 if totals.failed else 0
