"""Worker pools are bounded by the CPUs and the tasks, and their processes never see Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, wait

import pytest

from cunet import workers
from cunet.workers import bounded_workers, cpu_count, sigint_deferred, terminate_workers


def test_workers_are_capped_at_the_cpus_and_the_tasks(monkeypatch):
    monkeypatch.setattr(workers, "cpu_count", lambda: 2)
    assert bounded_workers(1000, 50, "--jobs", "song") == (
        2,
        "note: --jobs 1000 capped at 2 (2 CPUs)",
    )
    assert bounded_workers(1000, 1, "--jobs", "song") == (
        1,
        "note: --jobs 1000 capped at 1 (2 CPUs and 1 song)",
    )
    monkeypatch.setattr(workers, "cpu_count", lambda: 8)
    assert bounded_workers(6, 3, "--jobs", "track") == (
        3,
        "note: --jobs 6 capped at 3 (3 tracks)",
    )
    # what was asked for, or the default (0: one per CPU), needs no note
    assert bounded_workers(4, 10) == (4, None)
    assert bounded_workers(0, 10) == (8, None)
    assert bounded_workers(0, 3) == (3, None)
    assert bounded_workers(1, 0) == (1, None)  # never fewer than one
    for bad in (-1, True, 2.0):
        with pytest.raises(ValueError, match="workers must be"):
            bounded_workers(bad, 5)


def test_cpu_count_is_the_affinity_mask():
    assert cpu_count() == len(os.sched_getaffinity(0))


def test_processes_started_while_sigint_is_blocked_ignore_it():
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    with sigint_deferred():
        child = subprocess.Popen(sleeper)
    plain = subprocess.Popen(sleeper)
    try:
        time.sleep(1.0)  # both interpreters started
        child.send_signal(signal.SIGINT)
        plain.send_signal(signal.SIGINT)
        assert plain.wait(timeout=30) != 0  # KeyboardInterrupt: the case sigint_deferred prevents
        time.sleep(0.5)
        assert child.poll() is None
    finally:
        child.kill()
        plain.kill()
        child.wait()


def test_a_ctrl_c_while_blocked_arrives_when_the_block_ends():
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            reached.append("still running")
    assert reached == ["still running"]


def test_terminate_workers_does_not_wait_for_running_tasks():
    pool = ProcessPoolExecutor(1)
    future = pool.submit(time.sleep, 60)
    time.sleep(1.0)
    t0 = time.perf_counter()
    terminate_workers(pool)
    done, _ = wait([future], timeout=30)
    assert done and time.perf_counter() - t0 < 30  # the worker died: not 60 s of sleep
