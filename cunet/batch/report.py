"""A batch's record: the job report (JSONL, one line per song and run), the failures file (CSV, one line
per failed song, itself a manifest to retry them), the progress bar and the closing summary line.

The report is appended to and flushed line by line, so a job stopped at any point has reported every
song it finished; the failures file is written atomically at the end of each run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import one_line
from ..io.atomic import make_dirs, write_text_atomic
from .listing import is_uri

REPORT_NAME = "batch-report.jsonl"
FAILURES_NAME = "batch-failures.csv"


@dataclass
class Totals:
    """Counts of one run: songs separated, skipped (already done) and failed; audio seconds separated."""

    ok: int = 0
    skipped: int = 0
    failed: int = 0
    audio_seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)


class Report:
    """Writes the JSONL report, keeps the totals, shows the progress bar (tqdm on stderr, unless quiet).

    report: the JSONL file (appended to); failures: the CSV file of this run's failures (replaced at
    `close`; removed when nothing failed); total: songs in the job (done ones included); job: an id
    written on every line, to tell runs apart."""

    def __init__(self, report: Path, failures: Path, total: int, job: str, quiet: bool) -> None:
        self.path, self.failures_path, self.job, self.quiet = report, failures, job, quiet
        self.totals = Totals()
        self.started = time.monotonic()
        make_dirs(report.parent)
        self.file: IO[str] = open(report, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self.bar: Any = None
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, desc="songs", unit="song", file=sys.stderr, dynamic_ncols=True
            )

    def song(
        self,
        source: str,
        status: str,
        outputs: Mapping[str, str] | None = None,
        seconds: float = 0.0,
        error: str | None = None,
        **extra: Any,
    ) -> None:
        """One song's line: input, outputs {key: path}, seconds (wall time of its last attempt),
        status ("ok", "skipped" or "failed"), error; extra keys as given (audio_seconds, attempts,
        worker); finished (UTC, ISO 8601) and the job's id."""
        record = {
            "input": source,
            "outputs": dict(outputs or {}),
            "seconds": round(seconds, 3),
            "status": status,
            "error": error,
            **extra,
            "finished": _utc_now(),
            "job": self.job,
        }
        self.file.write(json.dumps(record, sort_keys=False, default=str) + "\n")
        self.file.flush()
        t = self.totals
        if status == "ok":
            t.ok += 1
            t.audio_seconds += float(extra.get("audio_seconds") or 0.0)
        elif status == "skipped":
            t.skipped += 1
        else:
            t.failed += 1
            t.failures.append((source, error or ""))
        if self.bar is not None:
            self.bar.update(1)
            rate = self.audio_hours_per_hour()
            self.bar.set_postfix_str(f"{rate:.1f} audio-h/h, {t.failed} failed", refresh=False)

    def audio_hours_per_hour(self) -> float:
        """Audio separated per wall-clock time so far (hours per hour = seconds per second)."""
        return self.totals.audio_seconds / max(time.monotonic() - self.started, 1e-9)

    def write(self, line: str) -> None:
        """A line on stderr that does not break the bar."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        """Close the bar and the report; write (or remove) the failures file."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.file.close()
        if self.totals.failures:
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(["input", "error"])
            writer.writerows(  # absolute: the file is a manifest, read relative to its folder
                (source if is_uri(source) else os.path.abspath(source), message)
                for source, message in self.totals.failures
            )
            write_text_atomic(self.failures_path, text.getvalue())
        elif self.failures_path.is_file():
            os.unlink(self.failures_path)

    def summary(self) -> str:
        """One line: what was done, how fast, and where the report is."""
        t = self.totals
        wall = time.monotonic() - self.started
        failed = f", {t.failed} failed (listed in {self.failures_path})" if t.failed else ""
        return one_line(
            f"batch: {t.ok} separated, {t.skipped} skipped (done before){failed}; "
            f"{_clock(t.audio_seconds)} of audio in {_clock(wall)} ({self.audio_hours_per_hour():.1f} "
            f"audio-hours per hour); report: {self.path}"
        )


def _utc_now() -> str:
    """Now in UTC, ISO 8601 to the millisecond (e.g. 2026-12-07T16:05:20.123Z)."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
