"""How the web app reports failures (`cunet.ui.failures`): statuses, one-line messages, quiet logs."""

from __future__ import annotations

import errno
import logging

import pytest

from cunet.errors import AudioError
from cunet.ui.failures import DISK_FULL, NoSpace, QuietLog, classify, describe, disk_full


def _raised_from(cause: BaseException) -> AudioError:
    """An AudioError raised `from None` while handling `cause`, as cunet's writers raise theirs."""
    try:
        try:
            raise cause
        except type(cause):
            raise AudioError("cannot write 'x.flac' (disk full?): System error.") from None
    except AudioError as exc:
        return exc


@pytest.mark.parametrize(
    "exc, status, message",
    [
        (OSError(errno.ENOSPC, "No space left on device"), 507, DISK_FULL),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), 507, DISK_FULL),
        (NoSpace("full"), 507, DISK_FULL),
        (_raised_from(OSError(errno.ENOSPC, "No space left on device")), 507, DISK_FULL),
        (
            OSError(errno.EFBIG, "File too large"),
            413,
            "larger than the server's file system allows",
        ),
        (OSError(errno.EIO, "Input/output error"), 500, "cannot read or write the session's files"),
        (ZeroDivisionError("division by zero"), 500, "internal error (ZeroDivisionError)"),
    ],
)
def test_errors_get_a_fitting_status_and_one_line(exc, status, message):
    got_status, got_message = classify(exc)
    assert got_status == status and message in got_message and "\n" not in got_message


def test_a_write_error_without_an_error_number_is_a_full_disk_only_when_the_disk_is_full(
    tmp_path, monkeypatch
):
    exc = _raised_from(RuntimeError("System error."))
    assert not disk_full(exc, tmp_path)  # this disk has room
    import cunet.ui.failures as failures  # the module object: other tests re-import cunet.ui

    monkeypatch.setattr(failures.shutil, "disk_usage", lambda path: type("U", (), {"free": 4096})())
    assert disk_full(exc, tmp_path) and classify(exc, tmp_path)[0] == 507
    assert not disk_full(OSError(errno.EACCES, "Permission denied"), tmp_path)  # it says why
    monkeypatch.undo()
    # more than is free was to be written (the partial files are gone when the error arrives)
    assert disk_full(exc, tmp_path, needed=1 << 60) and not disk_full(exc, tmp_path, needed=1000)
    assert classify(ValueError("bug"), tmp_path)[0] == 500  # a bug is not a full disk


def test_describe_is_one_line_with_where_it_was_raised():
    try:
        {}["missing\nkey"]
    except KeyError as exc:
        line = describe(exc)
    assert (
        line.startswith("KeyError: 'missing\\nkey' (at test_ui_failures.py:") and "\n" not in line
    )


def _record(message: str, *args, exc: BaseException | None = None) -> logging.LogRecord:
    return logging.LogRecord(
        "uvicorn.error",
        logging.ERROR,
        __file__,
        1,
        message,
        args,
        (type(exc), exc, exc.__traceback__) if exc else None,
    )


def test_quiet_log_lets_each_message_through_once_a_minute_as_one_line():
    now = [0.0]
    quiet = QuietLog(60.0, clock=lambda: now[0])
    flood = OSError(errno.EMFILE, "Too many open files")
    first = _record("socket.accept() out of system resource\nsocket: <fd=3>", exc=flood)
    assert quiet.filter(first)
    assert first.getMessage() == (
        "socket.accept() out of system resource (OSError: [Errno 24] Too many open files)"
    )
    assert first.exc_info is None and first.exc_text is None  # no traceback
    for _ in range(1000):
        now[0] += 0.01
        assert not quiet.filter(_record("socket.accept() out of system resource\nsocket: <fd=3>"))
    assert quiet.filter(_record("another message %s", "x"))  # others still pass
    now[0] = 61.0
    later = _record("socket.accept() out of system resource\nsocket: <fd=3>")
    assert quiet.filter(later)
    assert later.getMessage() == (
        "socket.accept() out of system resource (and 1000 more like it in the last 61 s)"
    )


def test_a_message_with_percent_signs_is_kept_as_it_is():
    record = _record("cunet ui: %s", "100% done")
    assert QuietLog().filter(record) and record.getMessage() == "cunet ui: 100% done"
