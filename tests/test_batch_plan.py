"""A batch's plan: `separate`'s names, the checks before any work, and which songs are already done."""

from __future__ import annotations

from pathlib import Path

import pytest

from cunet.batch.listing import BatchInput
from cunet.batch.plan import Naming, check_names, make_plan
from cunet.errors import UserError
from cunet.io.naming import FilenameTemplate
from cunet.io.naming import output_paths as separate_names

MODEL = ("vocals", "drums", "bass", "other")


def naming(outdir: Path, template: str = "{folder}/{track}/{stem}.{ext}", **kw) -> Naming:
    return Naming(
        outdir,
        FilenameTemplate(template).validate(),
        kw.get("names", ("vocals", "drums")),
        MODEL,
        kw.get("ext", "wav"),
        kw.get("residual", False),
    )


def test_names_are_those_of_separate(tmp_path: Path) -> None:
    template = "{folder}/{index:02d}-{track}-{stem}.{ext}"
    song = BatchInput("/m/disc 1/a.flac", "a", "disc 1")
    got = naming(tmp_path, template, residual=True, ext="flac").outputs(song)
    assert got == separate_names(
        FilenameTemplate(template),
        tmp_path,
        "a",
        ["vocals", "drums"],
        "flac",
        MODEL,
        True,
        "disc 1",
    )
    assert got["no_drums"] == tmp_path / "disc 1" / "02-a-no_drums.flac"


def test_collisions_and_replaced_inputs_fail_before_any_work(tmp_path: Path) -> None:
    songs = [BatchInput("/x/song.wav", "song"), BatchInput("/y/song.mp3", "song")]
    with pytest.raises(UserError, match="inputs '/x/song.wav' and '/y/song.mp3' would both be"):
        check_names(songs, naming(tmp_path))
    (tmp_path / "song").mkdir()
    victim = tmp_path / "song" / "vocals.wav"
    victim.write_bytes(b"an input")
    songs = [BatchInput(str(victim), "vocals", "song"), BatchInput("/x/song.wav", "song")]
    with pytest.raises(UserError, match="would replace the input"):
        check_names(songs, naming(tmp_path))
    remote = [BatchInput("s3://b/song.wav", "song"), BatchInput("s3://b/x/song.wav", "song", "x")]
    check_names(remote, naming(tmp_path))


def test_done_songs_are_skipped_half_done_ones_redone(tmp_path: Path) -> None:
    songs = [BatchInput(f"/m/{t}.wav", t) for t in ("done", "half", "new", "blocked")]
    n = naming(tmp_path)
    for key in ("vocals", "drums"):
        n.outputs(songs[0])[key].parent.mkdir(parents=True, exist_ok=True)
        n.outputs(songs[0])[key].write_bytes(b"complete")
    n.outputs(songs[1])["drums"].parent.mkdir(parents=True)
    n.outputs(songs[1])["drums"].write_bytes(b"complete")
    n.outputs(songs[3])["vocals"].mkdir(parents=True)  # a folder where a file goes
    plan = make_plan(songs, n, force=False)
    assert [p.song.track for p in plan.done] == ["done"]
    assert [(p.song.track, sorted(p.existing)) for p in plan.todo] == [
        ("half", ["drums"]),
        ("new", []),
    ]
    assert [(p.song.track, m) for p, m in plan.blocked] == [
        ("blocked", f"output '{tmp_path / 'blocked' / 'vocals.wav'}' exists and is not a file")
    ]
    forced = make_plan(songs, n, force=True)
    assert [p.song.track for p in forced.todo] == ["done", "half", "new"]
    assert [p.index for p in forced.todo] == [0, 1, 2]
