"""Ray for a batch: joining or starting an instance, the worker actors, and the job's scratch folder.

Ray is imported inside these functions (`cunet batch --help` and `import cunet.batch` stay instant and
work without the `ray` extra). An ImportError of Ray becomes one line naming `pip install "cunet[ray]"`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import signal
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import MissingExtra, UserError, missing_extra
from ..io.atomic import make_dirs
from .plan import SCRATCH
from .worker import ChunkHook, SongWorker, WorkerSettings

# The embedded instance's shared-memory object store: songs never pass through it (workers read and
# write files), only a shipped model and small results do.
EMBEDDED_OBJECT_STORE = 128 * 1024 * 1024


def import_ray() -> Any:
    """The `ray` module, or MissingExtra naming the extra that brings it."""
    try:
        import ray
    except ImportError as exc:
        if (exc.name or "").split(".")[0] != "ray":
            raise
        # cunet.errors.EXTRAS does not list Ray yet: the same line, spelt here until it does
        raise missing_extra(exc, "cunet batch") or MissingExtra(
            'Ray is not installed (cunet batch needs it); pip install "cunet[ray]"'
        ) from None
    return ray


@contextlib.contextmanager
def connected(address: str | None, num_cpus: int | None = None) -> Iterator[Any]:
    """Ray, joined for the duration: `address` None starts an embedded local instance in this process
    (`num_cpus`: None, all this machine's CPUs), "auto" or "ray://HOST:PORT" (or HOST:PORT) joins a
    running cluster. A connection this process already has is used as it is, and left open. The
    signal handlers cunet set (SIGTERM, SIGHUP and Ctrl-C unwind the job) are kept: `ray.init`
    would replace SIGTERM's with an immediate exit."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,  # workers report through results; their stray prints would break the bar
        "logging_level": logging.ERROR,
    }
    if address is None:
        kwargs.update(num_cpus=num_cpus, object_store_memory=EMBEDDED_OBJECT_STORE)
    else:
        _check_reachable(address)
        kwargs["address"] = address
    try:
        with warnings.catch_warnings():  # Ray's own warnings repeat what the error line says
            warnings.simplefilter("ignore")
            ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = (
            "start a local Ray instance"
            if address is None
            else f"join the Ray cluster at '{address}'"
        )
        raise UserError(f"cannot {where}: {str(exc).strip().splitlines()[0][:300]}") from None
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)
    try:
        yield ray
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()


def _check_reachable(address: str) -> None:
    """UserError at once when nothing listens at a HOST:PORT address (Ray would retry for minutes, deaf
    to Ctrl-C); "auto" and ray:// addresses are left to Ray, which times out by itself."""
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise UserError(
            f"cannot join the Ray cluster at '{address}': {exc.strerror or exc} (is `ray start` "
            "running there? use auto on a node of the cluster, or ray://HOST:10001)"
        ) from None


def cluster_cpus(ray: Any) -> int:
    """The CPUs of the whole cluster (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def start_workers(
    ray: Any,
    n: int,
    cpus_each: float,
    settings: WorkerSettings,
    model: Any = None,
    hook: ChunkHook | None = None,
) -> list[Any]:
    """`n` SongWorker actors of `cpus_each` CPUs, each loading the model once. A worker process that
    dies is restarted by Ray (the model loaded again) as often as needed; its task is not retried by
    Ray, so the driver decides where the song goes next. model: an object reference to the model file's
    bytes (shipped to the workers) or None (they read `settings.model`)."""
    actor = ray.remote(SongWorker).options(
        num_cpus=cpus_each, max_restarts=-1, max_task_retries=0, max_concurrency=1
    )
    return [actor.remote(settings, model, hook) for _ in range(n)]


def stop_workers(ray: Any, workers: list[Any]) -> None:
    """Kill the workers (no restart): a song in the making leaves only files in the scratch folder."""
    for handle in workers:
        with contextlib.suppress(Exception):
            ray.kill(handle, no_restart=True)


class Scratch:
    """OUTDIR/.cunet-batch/<job>/: where this job's songs are made, locked while the job runs. Opening
    one removes the scratch folders of jobs that no longer run (their lock is free): what a killed job
    left. Closing removes this job's."""

    def __init__(self, outdir: Path) -> None:
        self.root = outdir / SCRATCH
        self.job = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        self.path = self.root / self.job
        make_dirs(self.path)
        self.lock: IO[bytes] | None = open(self.root / f"{self.job}.lock", "wb")  # noqa: SIM115
        fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._remove_stale()

    def _remove_stale(self) -> None:
        for lock_path in self.root.glob("*.lock"):
            job = lock_path.name[: -len(".lock")]
            if job == self.job:
                continue
            try:
                with open(lock_path, "rb") as other:
                    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: that job is gone
                    shutil.rmtree(self.root / job, ignore_errors=True)
                    lock_path.unlink()
            except OSError:  # held: that job still runs
                continue

    def song(self, index: int, attempt: int) -> str:
        """The scratch folder of one attempt at one song."""
        return str(self.path / f"{index}-{attempt}")

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self.lock is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.root / f"{self.job}.lock")
            self.lock.close()
            self.lock = None
        with contextlib.suppress(OSError):
            self.root.rmdir()  # only if no other job uses it
