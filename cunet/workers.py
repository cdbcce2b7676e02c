"""Worker pools bounded by the machine: every pool of processes or threads in cunet is sized here.

`bounded_workers` caps what a `--jobs` asks for at the CPUs this process may use and at the tasks
there are (more workers than CPUs only add memory and load; more than tasks only idle), and says so
in one line when it starts fewer than asked. `sigint_deferred` starts worker processes so that they
never see Ctrl-C: the terminal sends it to the whole process group, and a worker still importing
Python would print a traceback; the parent alone handles it and terminates its workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["bounded_workers", "cpu_count", "sigint_deferred", "terminate_workers"]


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def bounded_workers(
    requested: int, tasks: int, option: str = "jobs", unit: str = "task"
) -> tuple[int, str | None]:
    """(workers, note): `requested` workers (0: one per CPU) capped at the CPUs and at `tasks`, at least 1.

    note: one `note:` line naming `option` (e.g. "--jobs") and why, when an explicit request was
    lowered (`unit`: what a task is, singular, e.g. "song"); None otherwise.
    Raises ValueError for a negative request (callers refuse it first, in their own words).
    """
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
        raise ValueError(f"workers must be a whole number >= 0 (0: one per CPU), got {requested!r}")
    cpus = cpu_count()
    tasks = max(1, int(tasks))
    workers = max(1, min(requested or cpus, cpus, tasks))
    if not requested or workers >= requested:
        return workers, None
    why = [f"{cpus} CPU{'s' if cpus != 1 else ''}"] if requested > cpus else []
    if tasks < min(requested, cpus):
        why.append(f"{tasks} {unit}{'s' if tasks != 1 else ''}")
    return workers, f"note: {option} {requested} capped at {workers} ({' and '.join(why)})"


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Meanwhile Ctrl-C is held back: processes started here (fork or spawn) inherit SIGINT blocked
    and never receive it, and a Ctrl-C that comes meanwhile is raised here once the block ends, so
    starting a pool is never cut short halfway. Outside the main thread this does nothing."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    # multiprocessing starts its resource tracker with SIGINT blocked and then unblocks it, which would
    # end this block early: started first, it is not started again in here.
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    pending: list[int] = []
    # Another thread may take the signal (the mask is per thread): it is recorded, not raised, here.
    previous_handler = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    previous_mask = mask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, previous_mask)
        signal.signal(
            signal.SIGINT, signal.SIG_DFL if previous_handler is None else previous_handler
        )
    if pending and previous_handler is not signal.SIG_IGN:
        signal.raise_signal(signal.SIGINT)


def terminate_workers(executor: Any) -> None:
    """Stop a `concurrent.futures.ProcessPoolExecutor` now: queued tasks are cancelled and running
    workers terminated (a plain shutdown waits for their tasks, which can take minutes)."""
    stop = getattr(executor, "terminate_workers", None)  # Python 3.14
    if stop is not None:
        stop()
        return
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            process.terminate()
    executor.shutdown(wait=False, cancel_futures=True)
