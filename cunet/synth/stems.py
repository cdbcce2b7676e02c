"""Stem groups: which parts of a General MIDI file sound in which stem, from a `--stems` spec.

A spec is comma-separated groups `NAME=SELECTION[+SELECTION...]`, where a selection is a General MIDI
program `N` or range `N-M` (1-128, as GM numbers them), `drums` (the percussion channel, MIDI channel
10) or `*` (every part no other group claims, drums included). The default,

    drums=drums,bass=33-40,other=*

gives MUSDB18's drums, bass and other. `guitar=25-32,drums=drums,bass=33-40,rest=*` makes a `guitar`
stem (GM's eight guitars) and keeps drums and bass apart. Parts that no group selects (when no group
has `*`) are not rendered at all, so they are in no stem and not in the mixture.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UserError

DEFAULT_STEMS = "drums=drums,bass=33-40,other=*"
N_PROGRAMS = 128
PERCUSSION_CHANNEL = 9  # 0-based: GM's channel 10
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
RESERVED = frozenset({"mixture"})


@dataclass(frozen=True)
class StemGroup:
    """One stem: the 0-based GM programs it holds, whether it holds the percussion channel, and
    whether it takes every part no other group claims (`*`)."""

    name: str
    programs: frozenset[int] = frozenset()
    drums: bool = False
    rest: bool = False


@dataclass(frozen=True)
class StemSpec:
    """The stems of a synthetic dataset, in spec order."""

    groups: tuple[StemGroup, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    def group_of(self, program: int | None) -> int | None:
        """Index of the group a part sounds in: `program` is 0-based (0-127), None for the percussion
        channel. None when no group takes the part."""
        rest = None
        for i, group in enumerate(self.groups):
            if group.drums if program is None else program in group.programs:
                return i
            if group.rest:
                rest = i
        return rest

    def text(self) -> str:
        """The spec in its canonical spelling (recorded in the manifest)."""
        parts = []
        for g in self.groups:
            sel = (
                (["drums"] if g.drums else [])
                + _ranges(sorted(g.programs))
                + (["*"] if g.rest else [])
            )
            parts.append(f"{g.name}={'+'.join(sel)}")
        return ",".join(parts)


def _ranges(programs: list[int]) -> list[str]:
    """0-based programs -> 1-based GM ranges, e.g. [32..39] -> ["33-40"]."""
    out: list[str] = []
    runs: list[list[int]] = []
    for p in programs:
        if runs and p == runs[-1][1] + 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    for start, last in runs:
        out.append(f"{start + 1}" if start == last else f"{start + 1}-{last + 1}")
    return out


def _selection(text: str, spec: str) -> tuple[set[int], bool, bool]:
    """(0-based programs, drums, rest) of one selection such as `25-32`, `drums` or `*`."""
    if text == "drums":
        return set(), True, False
    if text == "*":
        return set(), False, True
    match = re.fullmatch(r"(\d{1,3})(?:-(\d{1,3}))?", text)
    if match:
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if 1 <= low <= high <= N_PROGRAMS:
            return set(range(low - 1, high)), False, False
    raise UserError(
        f"bad selection '{text}' in --stems '{spec}' (use a GM program 1-128, a range such as "
        "25-32, 'drums' or '*', joined with '+')"
    )


def parse_stems(spec: str = DEFAULT_STEMS) -> StemSpec:
    """Parse a `--stems` spec (see the module docstring); raises UserError naming the fault."""
    groups: list[StemGroup] = []
    claimed: dict[int, str] = {}
    drums_in = rest_in = None
    for item in str(spec).split(","):
        name, sep, selections = item.strip().partition("=")
        name = name.strip().lower()
        if not sep or not selections.strip():
            raise UserError(
                f"bad group '{item}' in --stems '{spec}' (expected NAME=SELECTION, e.g. guitar=25-32)"
            )
        if not _NAME.fullmatch(name) or name in RESERVED:
            raise UserError(
                f"bad stem name '{name}' in --stems '{spec}' (lowercase letters, digits, '-' or '_'; "
                "not 'mixture')"
            )
        if name in (g.name for g in groups):
            raise UserError(f"stem '{name}' is defined twice in --stems '{spec}'")
        programs: set[int] = set()
        drums = rest = False
        for sel in selections.split("+"):
            p, d, r = _selection(sel.strip().lower(), spec)
            programs |= p
            drums |= d
            rest |= r
        for prog in sorted(programs):
            if prog in claimed and claimed[prog] != name:
                raise UserError(
                    f"GM program {prog + 1} is in two stems ('{claimed[prog]}' and '{name}') in "
                    f"--stems '{spec}'"
                )
            claimed[prog] = name
        if drums:
            if drums_in:
                raise UserError(
                    f"'drums' is in two stems ('{drums_in}' and '{name}') in --stems '{spec}'"
                )
            drums_in = name
        if rest:
            if rest_in:
                raise UserError(
                    f"'*' is in two stems ('{rest_in}' and '{name}') in --stems '{spec}'"
                )
            rest_in = name
        groups.append(StemGroup(name, frozenset(programs), drums, rest))
    return StemSpec(tuple(groups))
