"""A batch's plan: every song's final output names, checked before any work, and which songs are done.

Names come from the same `--filename` templates as `cunet separate`'s, so a song gets the files
`cunet separate` would write. Before any work: UserError if two outputs share a path or an output
would replace an input file. A song whose every output exists is done (outputs are only ever renamed
into place once complete, so an existing file is a complete file) and is skipped unless `force`; a
song with some outputs is separated again and those replaced (a job stopped while it renamed them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..io.inputs import InputItem
from ..io.naming import FilenameTemplate, check_collisions, output_paths
from ..jobs import check_inputs_kept
from .listing import BatchInput, is_uri

SCRATCH = ".cunet-batch"  # OUTDIR/.cunet-batch/<job>/: songs in the making (hidden: never an input)


@dataclass(frozen=True)
class Naming:
    """How a job names outputs: the template, the stems each song gets (`names`, checked against the
    model), the model's own instrument list (for {index}), format extension and residuals."""

    outdir: Path
    template: FilenameTemplate
    names: tuple[str, ...]
    model_instruments: tuple[str, ...]
    ext: str
    residual: bool

    def outputs(self, song: BatchInput) -> dict[str, Path]:
        """{output key: final path} of one song."""
        return output_paths(
            self.template,
            self.outdir,
            song.track,
            self.names,
            self.ext,
            self.model_instruments,
            self.residual,
            song.folder,
        )


@dataclass(frozen=True)
class Planned:
    """One song of the plan: its place in the listing, and the keys of outputs that exist already."""

    index: int
    song: BatchInput
    existing: frozenset[str]


@dataclass
class Plan:
    """todo: songs to separate; done: songs skipped (all their outputs exist); blocked: (song, message)
    for songs that cannot be written (an output that is a folder)."""

    todo: list[Planned]
    done: list[Planned]
    blocked: list[tuple[Planned, str]]


def check_names(songs: Sequence[BatchInput], naming: Naming) -> None:
    """UserError before any work: two outputs with one path, or an output replacing an input file."""
    check_collisions((song.source, naming.outputs(song)) for song in songs)
    local = [InputItem(s.source, s.track, s.folder) for s in songs if not is_uri(s.source)]
    check_inputs_kept(local, list(_local_plans(local, naming)))


def _local_plans(
    items: Sequence[InputItem], naming: Naming
) -> Iterator[tuple[str, dict[str, Path]]]:
    for item in items:
        yield item.path, naming.outputs(BatchInput(item.path, item.track, item.folder))


def make_plan(songs: Sequence[BatchInput], naming: Naming, force: bool) -> Plan:
    """Sort the songs into todo, done (skipped) and blocked; see the module docstring."""
    plan = Plan([], [], [])
    for index, song in enumerate(songs):
        outputs = naming.outputs(song)
        not_files = [p for p in outputs.values() if os.path.lexists(p) and not p.is_file()]
        existing = frozenset(k for k, p in outputs.items() if p.is_file())
        planned = Planned(index, song, existing)
        if not_files:
            plan.blocked.append((planned, f"output '{not_files[0]}' exists and is not a file"))
        elif existing and len(existing) == len(outputs) and not force:
            plan.done.append(planned)
        else:
            plan.todo.append(planned)
    return plan
