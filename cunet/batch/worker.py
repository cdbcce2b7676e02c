"""One batch worker: a model loaded once, then one song at a time through `cunet.jobs.separate_file`.

Plain Python (no Ray here): `cunet.batch.runner` makes it a Ray actor, and tests can run it alone.
Each song is separated into its own scratch folder (`SongTask.scratch`, on the output's file
system), then its files are renamed to their final names. So `separate_file` writes exactly what
`cunet separate` writes, and the partial files it leaves when its process dies lie in that scratch
folder: never under a final name, and never where another machine's worker would judge them by a
process id that is only meaningful on the machine that wrote them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..chunk_separator import ChunkSeparator
from ..engines.base import MaskEngine
from ..engines.litert import load_tflite
from ..engines.loading import default_model, engine_for, load_engine, resolve_model_path
from ..errors import AudioError, CunetError, UserError, missing_extra
from ..io.atomic import make_dirs
from ..io.audio import Excerpt
from ..io.output import OutputSettings
from ..jobs import separate_file
from ..postprocess import Postprocess
from ..separator import Separator
from ..settings import ChunkSettings
from .listing import fetch_remote, is_uri

# An optional hook run in the worker after each chunk: (input, chunks done so far). For monitoring and
# fault-injection tests; an exception it raises fails the song like any other error.
ChunkHook = Callable[[str, int], None]


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker of a job shares. model: a path the worker reads (None: the shipped model; a
    shipped model file's original path). threads: threads of the model's engine (LiteRT) and of the
    inverse transforms (None: the CPUs the worker may run on). options: how error messages name
    settings ({API name: option}, `CunetError.render`). scratch: the job's scratch folder (on the
    outputs' file system), where songs are worked on and a shipped model is kept."""

    scratch: str
    model: str | None = None
    instruments: tuple[str, ...] | None = None
    output: OutputSettings = field(default_factory=OutputSettings)
    residual: bool = False
    filename: str = "{folder}/{track}/{stem}.{ext}"
    excerpt: Excerpt = field(default_factory=Excerpt)
    chunks: ChunkSettings | None = None
    postprocess: str | Postprocess | None = None
    shifts: int = 1
    threads: int | None = None
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SongTask:
    """One song to separate. source: an absolute local path or a URI; label: how messages name it
    (as the user gave it; "": the source); outputs: {output key: final path};
    replace: keys whose final file may be replaced (left by an interrupted run, or --force); scratch:
    this song's own folder for the work, removed afterwards (on the outputs' file system)."""

    index: int
    source: str
    track: str
    folder: str
    outputs: Mapping[str, str]
    replace: frozenset[str]
    scratch: str
    label: str = ""


def _where() -> str:
    """host:pid, and @ the Ray node's id when Ray runs this worker (simulated nodes share a host)."""
    label = f"{socket.gethostname()}:{os.getpid()}"
    ray = sys.modules.get("ray")  # not imported here: a worker run without Ray has no node
    if ray is not None and ray.is_initialized():  # get_runtime_context would start Ray otherwise
        with contextlib.suppress(Exception):
            return f"{label}@{ray.get_runtime_context().get_node_id()[:8]}"
    return label


def _memory() -> dict[str, float]:
    """This process's resident memory now and at its peak, MiB (Linux /proc; empty elsewhere)."""
    found: dict[str, float] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    found["rss_mib" if key == "VmRSS" else "peak_rss_mib"] = (
                        int(value.split()[0]) / 1024
                    )
    except OSError:
        pass
    return found


class SongWorker:
    """Loads the model once (its failure is kept and reported by `describe`, not raised, so a bad model
    ends the job with one message instead of actors restarting), then separates songs one at a time.

    model_bytes: the model file's content when it was shipped through Ray's object store (written to a
    copy in the job's scratch folder); hook: see `ChunkHook`."""

    def __init__(
        self,
        settings: WorkerSettings,
        model_bytes: bytes | None = None,
        hook: ChunkHook | None = None,
    ) -> None:
        self.settings = settings
        self.hook = hook
        self.where = _where()
        self.token = secrets.token_hex(4)
        self.error: str | None = None
        self.names: list[str] = []
        self.model_instruments: list[str] = []
        self.prefetched: dict[int, threading.Thread] = {}
        self.copy: Path | None = None  # a shipped model's file here
        started = time.monotonic()
        try:
            self.separator = self._load(model_bytes)
            self.names = self.separator.check_instruments(settings.instruments)
            self.model_instruments = list(self.separator.config.model.instruments)
        except CunetError as exc:
            self.error = exc.render(settings.options)
        except ImportError as exc:
            missing = missing_extra(exc, "the model")
            self.error = str(missing) if missing else f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - reported to the driver as one line
            self.error = f"cannot load the model: {type(exc).__name__}: {exc}"
        if self.error and self.copy is not None and settings.model:  # the name the user gave
            self.error = self.error.replace(str(self.copy), settings.model)
        self.load_seconds = time.monotonic() - started

    def _load(self, model_bytes: bytes | None) -> Any:
        s = self.settings
        path: Path | None = None if s.model is None else Path(s.model)
        if model_bytes is not None and path is not None:  # shipped: a copy, removed with the job
            folder = Path(s.scratch) / f"model-{os.getpid()}-{self.token}"
            make_dirs(folder)
            path = self.copy = folder / path.name
            path.write_bytes(model_bytes)
        resolved = default_model() if path is None else resolve_model_path(path)
        engine: MaskEngine
        if engine_for(resolved) == "litert":
            engine, config, record = load_tflite(resolved, s.threads)
        else:
            engine, config, record = load_engine(resolved)
        separator = Separator(engine, config, record, s.chunks, s.postprocess, shifts=s.shifts)
        if s.threads is not None:  # the inverse transforms' pool, like the engine's threads
            separator.chunk_separator = ChunkSeparator(
                engine, separator.postprocess, threads=s.threads, shifts=s.shifts
            )
        return separator

    def describe(self) -> dict[str, Any]:
        """The model's state: error (None when loaded), the instruments a song gets (checked), the
        model's own list (for {index}), the load time in seconds, where this worker runs, memory."""
        return {
            "error": self.error,
            "names": self.names,
            "model_instruments": self.model_instruments,
            "load_seconds": self.load_seconds,
            "worker": self.where,
            **_memory(),
        }

    def separate(self, task: SongTask, upcoming: SongTask | None = None) -> dict[str, Any]:
        """Separate `task` and publish its outputs; meanwhile fetch `upcoming`'s input (remote inputs are
        downloaded, local ones read once so a network disk is not waited on). Never raises for a song's
        own failure: returns {index, status "ok" or "failed", outputs, error, seconds, audio_seconds,
        notes, worker}."""
        started = time.monotonic()
        notes: list[str] = []
        result: dict[str, Any] = {"index": task.index, "worker": self.where, "notes": notes}
        if upcoming is not None and upcoming.index not in self.prefetched:
            self._prefetch(upcoming)
        try:
            if self.error is not None:
                raise UserError(self.error)
            local = self._input(task)
            written = self._separate(task, local, notes.append)
            result["audio_seconds"] = _seconds(next(iter(written.values())))
            result["outputs"] = {k: str(p) for k, p in _publish(task, written).items()}
            result["status"], result["error"] = "ok", None
        except CunetError as exc:
            result["status"], result["error"] = "failed", exc.render(self.settings.options)
        except OSError as exc:
            result["status"], result["error"] = "failed", f"{task.source}: {exc.strerror or exc}"
        except Exception as exc:  # noqa: BLE001 - one bad input must not stop the others
            result["status"], result["error"] = "failed", f"unexpected {type(exc).__name__}: {exc}"
        finally:
            shutil.rmtree(task.scratch, ignore_errors=True)
        local = str(self._local_name(task)) if is_uri(task.source) else task.source
        label = task.label or task.source
        if result["error"]:
            result["error"] = result["error"].replace(local, label)
        result["notes"] = [n.replace(local, label) for n in notes]
        result["seconds"] = time.monotonic() - started
        return result

    def memory(self) -> dict[str, float]:
        """This worker's resident memory, MiB: rss_mib now, peak_rss_mib since it started."""
        return _memory()

    def _separate(self, task: SongTask, local: str, note: Callable[[str], None]) -> dict[str, Path]:

        s = self.settings
        chunks = [0]

        def on_chunk() -> None:
            chunks[0] += 1
            if self.hook is not None:
                self.hook(task.source, chunks[0])

        return separate_file(
            self.separator,
            local,
            Path(task.scratch) / "out",
            self.names,
            s.output,
            residual=s.residual,
            progress=False,
            filename=s.filename,
            track=task.track,
            folder=task.folder,
            excerpt=s.excerpt,
            notes=note,
            on_chunk=on_chunk,
        )

    def _local_name(self, task: SongTask) -> Path:
        return Path(task.scratch) / "in" / Path(task.source.rstrip("/")).name

    def _input(self, task: SongTask) -> str:
        """The local file to read: the source itself, or the remote input downloaded into the scratch
        folder (by the prefetch thread, when it ran ahead)."""
        pending = self.prefetched.pop(task.index, None)
        if pending is not None:
            pending.join()
        if not is_uri(task.source):
            return task.source
        target = self._local_name(task)
        if not target.is_file():  # not fetched ahead, or that failed: fetched here, errors raised
            fetch_remote(task.source, target)
        return str(target)

    def _prefetch(self, task: SongTask) -> None:
        """Start fetching `task`'s input in a thread; only the next song is ever ahead."""

        def run() -> None:
            try:
                if is_uri(task.source):
                    fetch_remote(task.source, self._local_name(task))
                else:
                    with open(task.source, "rb") as file:  # warm the page cache
                        while file.read(1 << 20):
                            pass
            except Exception:  # noqa: BLE001, S110 - fetched again (and reported) when the song runs
                pass

        thread = threading.Thread(target=run, name="cunet-prefetch", daemon=True)
        thread.start()
        self.prefetched = {task.index: thread}


def _seconds(path: Path) -> float | None:
    """Duration of an audio file in seconds (None if soundfile cannot tell, e.g. mp3 on old libsndfile)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - only the throughput figure needs it
        return None
    return info.frames / info.samplerate if info.samplerate else None


def _publish(task: SongTask, written: Mapping[str, Path]) -> dict[str, Path]:
    """Rename each output from the scratch folder to its final name (same file system: atomic). A final
    file is replaced only if the task allows it; one that appeared meanwhile (another process) is kept,
    and the song fails with a message."""
    for key in written:  # checked for all first, so such a song publishes nothing
        if key not in task.replace and os.path.lexists(task.outputs[key]):
            raise AudioError(
                f"output '{task.outputs[key]}' appeared while this job ran (another process?); kept it"
            )
    done: dict[str, Path] = {}
    for key, path in written.items():
        final = Path(task.outputs[key])
        make_dirs(final.parent)
        if key in task.replace:
            os.replace(path, final)
        else:
            try:
                os.link(path, final)  # never replaces: fails if final exists, atomically
            except FileExistsError:
                raise AudioError(
                    f"output '{final}' appeared while this job ran (another process?); kept it"
                ) from None
            except OSError:  # no hard links here (some FUSE/FAT mounts): best effort
                if os.path.lexists(final):
                    raise AudioError(
                        f"output '{final}' appeared while this job ran; kept it"
                    ) from None
                os.replace(path, final)
        done[key] = final
    return done
