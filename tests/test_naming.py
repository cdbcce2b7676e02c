"""Output names from --filename templates: fields, escapes refused (from the template or from values),
collisions found before any work."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cunet.commands import message as message_of
from cunet.errors import UserError
from cunet.io.naming import (
    DEFAULT_TEMPLATE,
    FIELDS,
    FilenameTemplate,
    check_collisions,
    output_paths,
)

MODEL = ("vocals", "drums", "bass", "other", "guitar")


def test_default_template_keeps_the_classic_layout_and_mirrors_folders() -> None:
    t = FilenameTemplate().validate()
    assert t.text == DEFAULT_TEMPLATE
    assert t.render("song", "vocals", "wav", 1) == PurePosixPath("song/vocals.wav")
    assert t.render("song", "no_bass", "flac", 3, "album/cd1") == PurePosixPath(
        "album/cd1/song/no_bass.flac"
    )


@pytest.mark.parametrize(
    "text,expected",
    [
        ("{track}/{stem}.{ext}", "my song/guitar.mp3"),
        ("{index:02d}-{stem}/{track}.{ext}", "05-guitar/my song.mp3"),
        ("{index}_{stem}.{ext}", "5_guitar.mp3"),
        ("{folder}/{track} - {stem}.{ext}", "live/2019/my song - guitar.mp3"),
        ("stems//{track}/{{literal}}/{stem}", "stems/my song/{literal}/guitar"),
        ("..{track}/...{stem}", "..my song/...guitar"),
    ],
)
def test_fields_render(text: str, expected: str) -> None:
    assert (
        str(FilenameTemplate(text).validate().render("my song", "guitar", "mp3", 5, "live/2019"))
        == expected
    )


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "relative path template"),
        ("/tmp/{stem}.{ext}", "not an absolute path"),
        ("../{track}/{stem}.{ext}", "'..' components"),
        ("{track}/../../{stem}", "'..' components"),
        ("./{stem}", "'.' components"),
        ("{stem.__class__}", "unknown field '{stem.__class__}'"),
        ("{stem.__class__.__init__.__globals__}", "unknown field"),
        ("{stem[0]}", "unknown field '{stem[0]}'"),
        ("{0}", "unknown field '{0}'"),
        ("{}", "unknown field '{}'"),
        (
            "{instrument}/{track}",
            "unknown field '{instrument}' (valid: {track}, {stem}, {ext}, {index}, {folder})",
        ),
        ("{track!r}/{stem}", "conversions"),
        ("{track:>99999999}/{stem}", "format spec"),
        ("{index:{stem}}", "format spec"),
        ("{index:099d}", "format spec"),
        ("{stem", "expected '}'"),
        ("{stem}}", "Single '}'"),
        ("a\x00b/{stem}", "NUL"),
        ("x" * 2000, "1 to 1024 characters"),
    ],
)
def test_bad_templates_are_refused(text: str, message: str) -> None:
    with pytest.raises(UserError, match="^filename ") as err:
        FilenameTemplate(text).validate()
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert message_of(err.value) == "--" + str(err.value)  # the CLI names its option


@pytest.mark.parametrize(
    "track,folder",
    [
        ("..", ""),
        (".", ""),
        ("a/b", ""),
        ("", ""),
        ("ok", "a/../b"),
        ("ok", "../up"),
        ("x\x00y", ""),
    ],
)
def test_values_that_would_escape_are_refused(track: str, folder: str) -> None:
    with pytest.raises(UserError, match="cannot be used in a path"):
        FilenameTemplate().render(track, "vocals", "wav", 1, folder)


def test_a_template_that_renders_to_nothing_is_refused() -> None:
    with pytest.raises(UserError, match="not a path inside OUTDIR"):
        FilenameTemplate("{folder}").validate().render("song", "vocals", "wav", 1, "")


@given(
    track=st.text(min_size=1, max_size=12),
    stem=st.text(min_size=1, max_size=8),
    folder=st.lists(st.text(min_size=1, max_size=6), max_size=3).map("/".join),
    text=st.sampled_from(
        [
            "{folder}/{track}/{stem}.{ext}",
            "{track}{stem}",
            "{stem}/{folder}/{index:03d}",
            "{track}/../{stem}",
            "{folder}{track}/{ext}",
        ]
    ),
)
@settings(max_examples=300, deadline=None)
def test_no_value_ever_leaves_outdir(track: str, stem: str, folder: str, text: str) -> None:
    """Whatever the names: either a path strictly inside OUTDIR, or UserError."""
    outdir = Path("/nonexistent/out")
    try:
        template = FilenameTemplate(text).validate()
        paths = output_paths(template, outdir, track, [stem], "wav", [stem], folder=folder)
    except UserError:
        return
    rel = paths[stem].relative_to(outdir)
    assert rel.parts and all(p not in ("", ".", "..") and "/" not in p for p in rel.parts)


def test_output_paths_index_follows_the_model_and_residuals_share_it() -> None:
    t = FilenameTemplate("{index}-{stem}.{ext}").validate()
    paths = output_paths(t, "out", "song", ["guitar", "vocals"], "wav", MODEL, residual=True)
    assert {k: str(p) for k, p in paths.items()} == {
        "guitar": "out/5-guitar.wav",
        "vocals": "out/1-vocals.wav",
        "no_guitar": "out/5-no_guitar.wav",
        "no_vocals": "out/1-no_vocals.wav",
    }


def test_collisions_within_one_input_and_between_inputs() -> None:
    no_stem = FilenameTemplate("{track}.{ext}").validate()
    assert output_paths(no_stem, "out", "song", ["vocals"], "wav", MODEL) == {
        "vocals": Path("out/song.wav")
    }
    with pytest.raises(
        UserError, match="'vocals' and 'drums' of song would both be written to 'out/song.wav'"
    ):
        output_paths(no_stem, "out", "song", ["vocals", "drums"], "wav", MODEL)
    t = FilenameTemplate().validate()
    a = output_paths(t, "out", "song", ["vocals"], "wav", MODEL, folder="")
    b = output_paths(t, "out", "song", ["vocals"], "wav", MODEL, folder="")
    c = output_paths(t, "out", "song", ["vocals"], "wav", MODEL, folder="cd2")
    check_collisions([("a/song.wav", a), ("c/song.wav", c)])
    with pytest.raises(
        UserError,
        match="inputs 'a/song.wav' and 'b/song.flac' would both be written to "
        "'out/song/vocals.wav'; make filename tell them apart",
    ):
        check_collisions([("a/song.wav", a), ("b/song.flac", b)])


def test_fields_are_documented() -> None:
    import cunet.io.naming as naming

    assert all(f"- {field}:" in (naming.__doc__ or "") for field in FIELDS)
