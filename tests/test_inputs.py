"""Inputs: folders expanded in a stable order, non-audio files noted and skipped, hidden files and the
output directory left out, the same file kept once."""

from __future__ import annotations

from pathlib import Path

import pytest

from cunet.errors import AudioError
from cunet.io.inputs import InputItem, expand_inputs, is_audio_name, scan_directory


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


@pytest.fixture
def library(tmp_path: Path) -> Path:
    root = tmp_path / "music"
    _touch(
        root,
        "b.wav",
        "A.flac",
        "cover.jpg",
        "notes.txt",
        ".hidden.wav",
        "._a.mp3",
        "album/02 two.mp3",
        "album/01 one.m4a",
        "album/x.stem.mp4",
        "album/readme.md",
        "album/cd2/track.OGG",
        ".git/objects.wav",
        "separated/old/vocals.wav",
    )
    return root


def test_flat_scan_sorts_skips_and_notes(library: Path) -> None:
    notes: list[str] = []
    items = scan_directory(
        library, recursive=False, exclude=[library / "separated"], note=notes.append
    )
    assert [Path(i.path).name for i in items] == ["A.flac", "b.wav"]  # case-insensitive order
    assert all(i.folder == "" for i in items) and items[0].track == "A"
    assert sorted(notes) == sorted(
        [
            f"{library / 'cover.jpg'}: skipped (not an audio file)",
            f"{library / 'notes.txt'}: skipped (not an audio file)",
            f"{library / 'album'}: skipped (a folder; -r separates subfolders too)",
        ]
    )


def test_recursive_scan_gives_folders_and_leaves_out_outdir_and_hidden(library: Path) -> None:
    notes: list[str] = []
    items = scan_directory(
        library, recursive=True, exclude=[library / "separated"], note=notes.append
    )
    assert [(i.folder, i.track) for i in items] == [
        ("", "A"),
        ("", "b"),
        ("album", "01 one"),
        ("album", "02 two"),
        ("album", "x"),
        ("album/cd2", "track"),
    ]
    assert not any(
        "separated" in i.path or "hidden" in i.path or "._a" in i.path or ".git" in i.path
        for i in items
    )
    assert any(n.endswith("readme.md: skipped (not an audio file)") for n in notes)
    # the same call again gives the same order (stable)
    assert scan_directory(library, recursive=True, exclude=[library / "separated"]) == items


def test_folder_without_audio_is_an_error(tmp_path: Path) -> None:
    _touch(tmp_path / "docs", "a.txt", "sub/b.wav")
    with pytest.raises(
        AudioError, match=r"no audio files in this folder \(-r looks in subfolders too\)"
    ):
        scan_directory(tmp_path / "docs", recursive=False)
    assert len(scan_directory(tmp_path / "docs", recursive=True)) == 1


def test_expand_inputs_keeps_order_dedupes_and_reports_empty_folders(
    library: Path, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    errors: list[str] = []
    items = expand_inputs(
        [str(library / "b.wav"), "-", str(library), str(tmp_path / "empty"), "missing.wav"],
        recursive=False,
        error=lambda arg, exc: errors.append(f"{arg}: {exc}"),
    )
    assert items[0] == InputItem(str(library / "b.wav"), "b")
    assert items[1] == InputItem("-", "stdin") and items[1].is_stdin
    assert [Path(i.path).name for i in items[2:]] == ["A.flac", "missing.wav"]  # b.wav kept once
    assert len(errors) == 1 and "no audio files" in errors[0]
    with pytest.raises(AudioError):
        expand_inputs([str(tmp_path / "empty")])


@pytest.mark.parametrize(
    "name,audio",
    [
        ("a.WAV", True),
        ("a.stem.mp4", True),
        ("a.opus", True),
        ("a.txt", False),
        ("a", False),
        ("a.jpg", False),
        ("a.mp3.part", False),
    ],
)
def test_audio_names(name: str, audio: bool) -> None:
    assert is_audio_name(name) is audio
