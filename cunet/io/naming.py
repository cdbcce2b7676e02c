"""Output file names from a template (`cunet separate --filename`), kept inside the output directory.

A template is a relative path with fields in braces, e.g. the default "{folder}/{track}/{stem}.{ext}":
- track: the input's name without its extension ("song" for song.mp3; "stdin" for `-`);
- stem: the instrument ("vocals"), or "no_vocals" for a residual;
- ext: the output format's extension (wav, flac, mp3);
- index: the instrument's position in the model's instrument list, from 1 (`{index:02d}` pads it);
- folder: the input's folder relative to the directory given on the command line ("" otherwise; the
  one field that may hold "/").
Path components that come out empty are dropped, so "{folder}/{track}" is "track" for a file given
directly. Nothing else is allowed: no other field, no positional `{0}` or `{}`, no attribute or index
access (`{stem.__class__}`, `{stem[0]}`), no conversion (`{track!r}`), no format spec but a width for
`{index}`; and no absolute template, no `.` or `..` component, from the template or from a value. So a
template cannot write outside OUTDIR, whatever the inputs are called. Nor can an output be named like
a partial file (`.cunet-partial`), which a later run would remove as a dead process's leftover.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import UserError, literal
from .atomic import PARTIAL_SUFFIX

# how error messages name the template: the API's parameter (the CLI shows its option)
_NAMES = {"filename": "filename"}

DEFAULT_TEMPLATE = "{folder}/{track}/{stem}.{ext}"
FIELDS: tuple[str, ...] = ("track", "stem", "ext", "index", "folder")
_INDEX_SPEC = re.compile(r"0?[1-9]d?")  # {index:2}, {index:02d}: a width of at most 9
MAX_TEMPLATE = 1024


def clip_utf8(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` bytes of UTF-8, on a character boundary: file systems limit a
    name in bytes (255 on Linux and macOS), so 200 characters of "é" (400 bytes) are too many."""
    data = text.encode("utf-8", "surrogatepass")
    return text if len(data) <= max_bytes else data[: max(max_bytes, 0)].decode("utf-8", "ignore")


@dataclass(frozen=True)
class FilenameTemplate:
    """A checked output-name template (see the module docstring)."""

    text: str = DEFAULT_TEMPLATE

    def validate(self) -> FilenameTemplate:
        """Self, or UserError naming what is wrong (unknown field, escape, bad syntax)."""
        text = self.text
        where = "{filename} '" + literal(text) + "'"

        def error(problem: str) -> UserError:  # problem: braces doubled (`literal`)
            return UserError(f"{where}: {problem}", names=_NAMES)

        if not text or len(text) > MAX_TEMPLATE:
            raise error(f"give a relative path template of 1 to {MAX_TEMPLATE} characters")
        if "\x00" in text:
            raise error("contains a NUL character")
        if PARTIAL_SUFFIX in text:
            raise error(
                f"names containing '{PARTIAL_SUFFIX}' are cunet's partial files, which later "
                "runs remove"
            )
        if text.startswith("/"):
            raise error("must be relative to the output directory, not an absolute path")
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            hint = literal("(write a literal brace as '{{' or '}}')")
            raise error(f"{literal(exc)} {hint}") from None
        for part in text.split("/"):
            if part in (".", ".."):
                raise error(
                    f"'{literal(part)}' components are not allowed (outputs stay inside OUTDIR)"
                )
        for _, field, spec, conversion in parsed:
            if field is None:
                continue
            if field not in FIELDS:
                valid = ", ".join("{" + f + "}" for f in FIELDS)
                raise error(literal(f"unknown field '{{{field}}}' (valid: {valid})"))
            if conversion is not None:
                raise error(literal(f"conversions such as '!{conversion}' are not allowed"))
            if spec and not (field == "index" and _INDEX_SPEC.fullmatch(spec)):
                raise error(
                    literal(
                        f"format spec ':{spec}' is not allowed (only a width for {{index}}, "
                        "e.g. {index:02d})"
                    )
                )
        return self

    def render(
        self, track: str, stem: str, ext: str, index: int, folder: str = ""
    ) -> PurePosixPath:
        """The relative output path for these values; UserError if a value would leave OUTDIR."""
        for name, value in (("track", track), ("stem", stem), ("ext", ext)):
            if "/" in value or "\x00" in value or value in ("", ".", ".."):
                raise UserError(
                    "{filename}: " + literal(f"the {name} name '{value}' cannot be used in a path"),
                    names=_NAMES,
                )
        folder_parts = [p for p in folder.split("/") if p]
        if any(p in (".", "..") or "\x00" in p for p in folder_parts):
            raise UserError(
                "{filename}: " + literal(f"the folder '{folder}' cannot be used in a path"),
                names=_NAMES,
            )
        text = self.text.format(
            track=track, stem=stem, ext=ext, index=index, folder="/".join(folder_parts)
        )
        parts = [p for p in text.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise UserError(
                "{filename} "
                + literal(f"'{self.text}' gives '{text}', which is not a path inside OUTDIR"),
                names=_NAMES,
            )
        if PARTIAL_SUFFIX in parts[-1]:
            raise UserError(
                "{filename} "
                + literal(
                    f"'{self.text}' gives '{text}', a name like cunet's partial files, which "
                    "later runs remove"
                ),
                names=_NAMES,
            )
        return PurePosixPath(*parts)


def output_paths(
    template: FilenameTemplate,
    outdir: str | os.PathLike[str],
    track: str,
    stems: Sequence[str],
    ext: str,
    instruments: Sequence[str],
    residual: bool = False,
    folder: str = "",
) -> dict[str, Path]:
    """{output key: path} for one input: each stem (and `no_<stem>` with residual) under `outdir`.

    instruments: the model's instrument list (for {index}). UserError if two outputs share a path.
    """
    outdir = Path(outdir)
    keys = [(s, s) for s in stems] + ([(f"no_{s}", s) for s in stems] if residual else [])
    paths = {
        key: outdir / template.render(track, key, ext, instruments.index(inst) + 1, folder)
        for key, inst in keys
    }
    check_collisions([(track, paths)])
    return paths


def check_collisions(outputs: Iterable[tuple[str, Mapping[str, Path]]]) -> None:
    """UserError if two outputs, of one input or of two, map to the same file.

    outputs: (input label, {output key: path}) pairs.
    """
    seen: dict[Path, tuple[int, str, str]] = {}
    for i, (label, paths) in enumerate(outputs):
        for key, path in paths.items():
            other = seen.setdefault(path, (i, label, key))
            if other != (i, label, key):
                what = (
                    f"'{other[2]}' and '{key}' of {label}"
                    if other[0] == i
                    else f"inputs '{other[1]}' and '{label}'"
                )
                raise UserError(
                    literal(f"{what} would both be written to '{path}'; make ")
                    + "{filename}"
                    + literal(
                        " tell them apart (fields: {folder}, {track}, {stem}, {index}, {ext})"
                    ),
                    names=_NAMES,
                )
