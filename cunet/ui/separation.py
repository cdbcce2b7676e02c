"""One song's separation in `cunet ui`: the stem files `cunet separate` writes, and the same stems, block by
block, for the page to play while the rest is separated.

`separate_song` does what `cunet.jobs.separate_file(separator, input, outdir, instruments,
OutputSettings("wav"), residual=..., filename="{stem}.{ext}")` does for one file (the same reader block size,
`Separator.stream`, residuals, `StemFiles` publishing all stems together, atomically), with two differences: the
input may still be arriving (`growing.UploadReader`), and callbacks learn where the stems' (partial) files are
and how far they are written, block by block as chunks are separated: the page plays from them meanwhile
(`live.LivePcm`). tests/test_ui_separation.py checks that the files are identical to `separate_file`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AudioError
from ..io.audio import AudioReader
from ..io.output import OutputSettings
from ..jobs import output_paths, write_stems
from .growing import NotStreamable, Upload, UploadReader

__all__ = ["FILENAME", "open_input", "separate_song", "warm_up"]

FILENAME = "{stem}.{ext}"


def warm_up(separator: Any) -> None:
    """Separate silence once as a chunk shorter than a full one (a song's last), then as a full one (its
    first: last, so the engine is left set up for its shape), so that the engine's one-off set-up of each of
    its signatures (LiteRT preparing XNNPACK: 0.5-3 s on a loaded 2-core machine, with native stderr muted
    meanwhile) is paid before the server answers, not by the first song."""
    separator.separate(
        np.zeros((max(1, separator.chunk // 3), 2), np.float32), separator.sample_rate
    )
    separator.warm_up(2)


def open_input(path: Path, upload: Upload | None = None) -> Any:
    """A reader (`info`, `blocks(n)`, context manager) of the song's input: while it is still arriving, an
    `UploadReader` if its format allows (else wait for its last byte); then `AudioReader`."""
    if upload is not None and not upload.done:
        try:
            return UploadReader(upload)
        except NotStreamable:
            upload.wait(upload.size)
        if upload.error is not None:
            raise AudioError("the upload was interrupted")
    return AudioReader(path)


def separate_song(
    separator: Any,
    path: Path,
    outdir: Path,
    instruments: Sequence[str],
    *,
    residual: bool = False,
    upload: Upload | None = None,
    on_files: Callable[[dict[str, Path]], None] | None = None,
    on_block: Callable[[int], None] | None = None,
    on_chunk: Callable[[], None] | None = None,
) -> dict[str, Path]:
    """Separate the song at `path` (arriving as `upload`, if given) into 16-bit `outdir/<key>.wav` (keys:
    instruments, then `no_<instrument>` with residual); returns {key: path}. on_files(partials): {key: the
    16-bit wav file being written}, once, before any sample; on_block(m): the next m samples of every stem
    (at the input's rate) are in those files, as soon as they are separated. on_chunk(): after each chunk;
    an exception it raises stops the work. Nothing is published unless every stem is complete."""
    names = separator.check_instruments(instruments)
    output = OutputSettings("wav")
    outputs = output_paths(separator, path, outdir, names, output.fmt, residual, FILENAME)
    with open_input(path, upload) as reader:
        outdir.mkdir(parents=True, exist_ok=True)
        written, _ = write_stems(
            separator,
            reader,
            outputs,
            names,
            output,
            outdir,
            residual=residual,
            on_chunk=on_chunk,
            on_files=on_files,
            on_block=on_block,
        )
        return written
