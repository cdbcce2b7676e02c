"""Separation jobs on one `Separator`: files, folders and stdin to output files, or one input to a
live stream.

A `Separator` holds the model session and separates arrays and streams of blocks. A job adds what
files need: output names and their collisions (checked for every input before any work), outputs
that would replace an input, residuals (the mixture minus each estimate), stale partial files, a
progress bar, outputs published atomically once complete, and a stream written to a sink (stdout,
a named pipe or a new file) chunk by chunk. `cunet separate` parses its options into these calls.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .chunk_separator import check_channels
from .errors import AudioError, CunetError, UserError, one_line
from .io.atomic import remove_stale_partials
from .io.audio import AudioReader, Excerpt, input_stem
from .io.inputs import InputItem
from .io.naming import DEFAULT_TEMPLATE, FilenameTemplate, check_collisions
from .io.naming import output_paths as template_paths
from .io.output import OutputSettings, StemFiles, check_targets, prepare_outdir
from .io.pcm import (
    BITS_ENCODING,
    RawFormat,
    StreamReader,
    excerpt_blocks,
    stdin_bytes,
)
from .io.resample import take
from .io.sink import PcmSink, is_fifo
from .live import read_ahead, stream_separate
from .progress import progress_bar
from .separator import Separator

__all__ = [
    "STREAM_BLOCK",
    "StreamSource",
    "open_stream_source",
    "output_paths",
    "separate_file",
    "separate_inputs",
    "stream_to_sink",
]

STREAM_BLOCK = 1024  # samples read at a time for a stream (23 ms at 44.1 kHz: what input adds)

Notes = Callable[[str], None]


def output_paths(
    separator: Separator,
    path: str | os.PathLike,
    outdir: str | os.PathLike,
    instruments: Sequence[str],
    fmt: str = "wav",
    residual: bool = False,
    filename: str = DEFAULT_TEMPLATE,
    track: str | None = None,
    folder: str = "",
) -> dict[str, Path]:
    """{output key: path} that `separate_file` would write (keys: instruments, `no_<instrument>`)."""
    template = FilenameTemplate(filename).validate()
    return template_paths(
        template,
        outdir,
        track or input_stem(path),
        instruments,
        fmt,
        separator.config.model.instruments,
        residual,
        folder,
    )


def separate_file(
    separator: Separator,
    path: str | os.PathLike,
    outdir: str | os.PathLike = "separated",
    instruments: Sequence[str] | None = None,
    output: OutputSettings | None = None,
    *,
    residual: bool = False,
    force: bool = False,
    progress: bool = True,
    filename: str = DEFAULT_TEMPLATE,
    track: str | None = None,
    folder: str = "",
    excerpt: Excerpt | None = None,
    notes: Notes | None = None,
    on_chunk: Callable[[], None] | None = None,
) -> dict[str, Path]:
    """Separate one file into `outdir/<input name>/<instrument>.<ext>` (and `no_<instrument>` with
    residual); returns {output key: path written}.

    output: format, bits, clipping and mp3 bitrate (default: 16-bit wav, clamped).
    filename: a `cunet.io.naming` template (fields track, stem, ext, index, folder); track (default:
    the file's name) and folder fill it. excerpt: separate only that part (seeking, not decoding it
    all). notes(line): told about clamped samples or a rescaling gain.
    on_chunk(): called after each chunk (`separator.plan(...).n_chunks` in all); an exception it
    raises stops the work like any failure (nothing is written).
    Streams the file in bounded memory; outputs appear atomically only when complete. Without
    `force`, no existing file is replaced, not even one another process wrote meanwhile.
    Raises AudioError / UserError / ModelError with a one-line message on bad input.
    """
    names = separator.check_instruments(instruments)
    output = output or OutputSettings()
    if not str(outdir):
        raise UserError("empty output directory; give a folder, e.g. 'separated'")
    path = Path(path)
    outdir = Path(outdir)
    outputs = output_paths(
        separator, path, outdir, names, output.fmt, residual, filename, track, folder
    )
    check_targets([path], outputs.values(), outdir, force)
    with AudioReader(path, excerpt) as reader:
        info = reader.info
        check_channels(info.n_channels, f"{path}: ")
        prepare_outdir(outdir, outputs.values())
        remove_stale_partials(outdir)
        plan = separator.plan(info.n_samples, info.sample_rate)
        bar = progress_bar(plan.n_chunks, not progress, one_line(path.name))
        try:
            written, summary = write_stems(
                separator,
                reader,
                outputs,
                names,
                output,
                outdir,
                residual=residual,
                force=force,
                on_chunk=_both(bar.update, on_chunk),
            )
        finally:
            bar.close()
    if summary and notes is not None:
        notes(f"{path}: {summary}")
    return written


def write_stems(
    separator: Separator,
    reader: Any,
    outputs: Mapping[str, Path],
    names: Sequence[str],
    output: OutputSettings,
    outdir: Path,
    *,
    residual: bool = False,
    force: bool = False,
    on_chunk: Callable[[], None] | None = None,
    on_files: Callable[[dict[str, Path]], None] | None = None,
    on_block: Callable[[int], None] | None = None,
) -> tuple[dict[str, Path], str | None]:
    """Separate `reader`'s input (`info`, `blocks(n)`) into `outputs` {key: path} (`names`, then `no_<name>`
    with residual), staged in `outdir`, all published once complete; returns ({key: path}, clip summary).
    on_files(partials): {key: file being written}, before any sample; on_block(m): m more samples of every
    stem written; on_chunk(): after each chunk. Any failure removes every partial file."""
    info = reader.info
    files: StemFiles | None = None
    try:
        files = StemFiles(outputs, info.sample_rate, info.n_channels, output, staging_dir=outdir)
        if on_files is not None:
            on_files({key: writer.partial for key, writer in files.writers.items()})
        mixture_blocks: list[np.ndarray] = []

        def tee(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
            for block in blocks:
                if residual:
                    mixture_blocks.append(block)
                yield block

        block_size = max(4096, separator.chunk // 4)
        estimates = separator.stream(
            tee(reader.blocks(block_size)),
            info.sample_rate,
            names,
            n_channels=info.n_channels,
            n_samples=info.n_samples,
            on_chunk=on_chunk,
        )
        for est in estimates:
            for i, n in enumerate(names):
                files.write(n, est[i])
            if residual:
                mix = take(mixture_blocks, est.shape[1], info.n_channels)
                for i, n in enumerate(names):
                    files.write(f"no_{n}", mix - est[i])
            if on_block is not None:
                on_block(est.shape[1])
        if any(v != info.n_samples for v in files.n_written.values()):
            raise AudioError(f"internal length mismatch {files.n_written} != {info.n_samples}")
        files.finish()  # finish (encode) all first, so a failure leaves no partial set
        return files.commit(overwrite=force), files.summary()
    except BaseException:
        if files is not None:
            files.abort()
        raise


def _both(first: Callable[[], None], second: Callable[[], None] | None) -> Callable[[], None]:
    """first(), then second() if given."""
    if second is None:
        return first

    def call() -> None:
        first()
        second()

    return call


def separate_inputs(
    separator: Separator,
    items: Sequence[InputItem],
    outdir: str | os.PathLike,
    instruments: Sequence[str],
    output: OutputSettings,
    *,
    error: Callable[[str, str], None],
    residual: bool = False,
    force: bool = False,
    progress: bool = True,
    filename: str = DEFAULT_TEMPLATE,
    excerpt: Excerpt | None = None,
    stdin: Path | None = None,
    notes: Notes | None = None,
    report: Notes | None = None,
    options: Mapping[str, str] | None = None,
) -> int:
    """Separate many inputs (`cunet.io.inputs.expand_inputs`) with `separate_file`; returns how many
    failed.

    Before any work, UserError if two outputs (of one input or of two) share a path, or if an output
    would replace an input file. Then one input at a time: a failing input goes to
    error(input label, message) and the others go on. stdin: the file stdin was spooled to
    (`cunet.io.pcm.stdin_file`) for the stdin item. report(line): told each input's outputs.
    options: how the messages given to `error` name settings ({name: shown}, `CunetError.render`).
    """
    outdir = Path(outdir)
    plans = [
        (
            item.path,
            output_paths(
                separator,
                item.path,
                outdir,
                instruments,
                output.fmt,
                residual,
                filename,
                item.track,
                item.folder,
            ),
        )
        for item in items
    ]
    check_collisions(plans)
    check_inputs_kept(items, plans)
    failed = 0
    for item in items:
        label = "stdin" if item.is_stdin else item.path
        try:
            written = separate_file(
                separator,
                stdin if item.is_stdin and stdin is not None else item.path,
                outdir,
                instruments,
                output,
                residual=residual,
                force=force,
                progress=progress,
                filename=filename,
                track=item.track,
                folder=item.folder,
                excerpt=excerpt,
                notes=notes,
            )
        except (CunetError, OSError) as exc:
            if isinstance(exc, OSError):
                message = f"{item.path}: {exc.strerror or exc}"
            else:
                message = exc.render(options or {})
            failed += 1
            error(label, message.replace(str(stdin), "stdin") if item.is_stdin else message)
            continue
        except Exception as exc:  # noqa: BLE001 - one bad input must not stop the others
            failed += 1
            error(label, f"unexpected {type(exc).__name__}: {exc}")
            continue
        if report is not None:
            folders = sorted({str(p.parent) for p in written.values()})
            names = ", ".join(sorted(p.name for p in written.values()))
            report(one_line(f"{item.path} -> {', '.join(f + '/' for f in folders)} ({names})"))
    return failed


def check_inputs_kept(
    items: Sequence[InputItem], plans: Sequence[tuple[str, dict[str, Path]]]
) -> None:
    """UserError before any work if one input's output would replace another input file."""
    inputs = {
        os.path.realpath(i.path): i.path for i in items if not i.is_stdin and os.path.isfile(i.path)
    }
    for label, paths in plans:
        for path in paths.values():
            other = inputs.get(os.path.realpath(path))
            if other is not None and other != label:
                raise UserError(
                    f"output '{path}' of {label} would replace the input '{other}'; choose another "
                    "output directory or output names"
                )


@dataclass
class StreamSource:
    """The input of a stream: its sample rate (Hz), channels and blocks float32 [m, n_channels]."""

    sample_rate: int
    n_channels: int
    blocks: Iterator[np.ndarray]


def open_stream_source(
    stack: contextlib.ExitStack,
    item: InputItem,
    excerpt: Excerpt | None = None,
    raw: RawFormat | None = None,
) -> StreamSource:
    """A stream's input: stdin's header read (WAV, or raw PCM described by `raw`), or the file opened
    (closed by `stack`). Done before the model loads, so a bad input fails fast."""
    excerpt = excerpt or Excerpt()
    if item.is_stdin:
        reader = StreamReader(stdin_bytes(), raw)
        blocks = reader.blocks(STREAM_BLOCK)
        if not excerpt.whole:
            blocks = excerpt_blocks(blocks, excerpt, reader.sample_rate)
        return StreamSource(reader.sample_rate, reader.n_channels, blocks)
    file = stack.enter_context(AudioReader(item.path, excerpt))
    return StreamSource(file.info.sample_rate, file.info.n_channels, file.blocks(STREAM_BLOCK))


def stream_to_sink(
    separator: Separator,
    source: StreamSource,
    instruments: Sequence[str],
    output: OutputSettings,
    out: str = "-",
    force: bool = False,
    notes: Notes | None = None,
) -> None:
    """Separate `source` as it arrives and write raw PCM (`output.bits`; one interleaved stream of
    len(instruments) x channels) to `out`: "-" (stdout), a named pipe, or a new file published
    atomically (replacing one only with `force`). notes(line): the format, the latency bound, and
    at the end what was measured."""
    note = notes or (lambda line: None)
    rate, channels = source.sample_rate, source.n_channels
    note(
        f"streaming {', '.join(instruments)} as {BITS_ENCODING[output.bits]}, {rate} Hz, "
        f"{len(instruments) * channels} channels; "
        f"latency bound {separator.latency_seconds:.3f} s"
    )
    with contextlib.ExitStack() as stack:
        if out == "-":
            sys.stdout.flush()
            fd: int | None = sys.stdout.fileno()
        elif is_fifo(out):  # opening waits for the pipe's reader
            fd = os.open(out, os.O_WRONLY)
            stack.callback(os.close, fd)
        else:
            fd = None
        sink = PcmSink(
            BITS_ENCODING[output.bits],
            output.clip_mode != "none",
            fd=fd,
            path=None if fd is not None else out,
            overwrite=force,
        )
        try:
            with contextlib.closing(read_ahead(source.blocks)) as stamped:
                report = stream_separate(
                    separator, stamped, rate, channels, list(instruments), sink.write
                )
            sink.commit()
        except BaseException:
            sink.abort()
            raise
    note(report.line() + (f"; {sink.n_clipped} samples clamped" if sink.n_clipped else ""))
