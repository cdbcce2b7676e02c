"""Downloads of a separated song (`cunet.ui.results`): stems re-encoded as `separate` writes them, and zips."""

from __future__ import annotations

import threading
import zipfile

import numpy as np
import pytest
import soundfile as sf
from conftest import synth_mixture

from cunet.errors import UserError
from cunet.io.audio import ffmpeg_available, load_audio
from cunet.io.naming import clip_utf8
from cunet.ui.jobs import Song
from cunet.ui.results import FORMATS, MAX_FILE_NAME, Downloads, download_name, song_stem_name


@pytest.fixture
def song(tmp_path):
    folder = tmp_path / "abc"
    (folder / "stems").mkdir(parents=True)
    stems = {}
    for i, key in enumerate(("vocals", "no_vocals")):
        stems[key] = folder / "stems" / f"{key}.wav"
        sf.write(stems[key], synth_mixture(1.0, 44100, 2, seed=i), 44100, subtype="PCM_16")
    return Song(
        id="abc",
        name="Band - Tune.stem.mp4",
        folder=folder,
        input=folder / "input.stem.mp4",
        instruments=("vocals",),
        residual=True,
        duration=1.0,
        sample_rate=44100,
        n_channels=2,
        n_chunks=1,
        state="done",
        stems=stems,
    )


def test_names(song):
    assert song_stem_name(song) == "Band - Tune"
    assert download_name(song, "no_vocals", "flac") == "Band - Tune - no_vocals.flac"
    assert download_name(song, None, "mp3") == "Band - Tune - stems (mp3).zip"


@pytest.mark.parametrize(
    "text, limit, clipped",
    [
        ("abc", 3, "abc"),
        ("abcd", 3, "abc"),
        ("\u00e9\u00e9", 3, "\u00e9"),  # never half a character
        ("\U0001f3b5x", 3, ""),
        ("", 0, ""),
    ],
)
def test_clip_utf8_cuts_on_a_character_boundary(text, limit, clipped):
    assert clip_utf8(text, limit) == clipped


def test_every_download_name_of_a_long_non_ascii_song_fits_in_255_bytes(song, tmp_path):
    song.name = "\u00e9" * 100 + ".wav"  # 200 bytes: the most `display_name` keeps
    names = [download_name(song, key, fmt) for key in (*song.stems, None) for fmt in FORMATS]
    assert all(len(n.encode()) <= MAX_FILE_NAME <= 255 for n in names)
    assert download_name(song, "no_vocals", "flac").endswith("\u00e9 - no_vocals.flac")
    for name in names:  # this file system takes each
        (tmp_path / name).write_bytes(b"")
    with zipfile.ZipFile(Downloads().zip(song, "wav")) as z:
        z.extractall(tmp_path / "unzipped")
        folders = {n.split("/")[0] for n in z.namelist()}
    assert folders == {"\u00e9" * 100}


def test_wav_is_the_stem_itself_and_flac_is_made_once_losslessly(song):
    downloads = Downloads()
    assert downloads.stem(song, "vocals", "wav") == song.stems["vocals"]
    flac = downloads.stem(song, "vocals", "flac")
    assert flac == song.folder / "downloads" / "vocals.flac"
    info = sf.info(flac)
    assert info.format == "FLAC" and info.subtype == "PCM_16"
    np.testing.assert_array_equal(sf.read(flac)[0], sf.read(song.stems["vocals"])[0])
    mtime = flac.stat().st_mtime_ns
    assert (
        downloads.stem(song, "vocals", "flac").stat().st_mtime_ns == mtime
    )  # kept, not made again
    assert [p.name for p in flac.parent.iterdir()] == ["vocals.flac"]  # no partial files left


@pytest.mark.skipif(not ffmpeg_available(), reason="mp3 needs ffmpeg")
def test_mp3_is_encoded_by_the_writer_separate_uses(song):
    mp3 = Downloads().stem(song, "no_vocals", "mp3")
    audio, rate = load_audio(mp3)
    assert rate == 44100 and audio.shape[1] == 2 and abs(audio.shape[0] - 44100) < 2000


def test_concurrent_requests_build_a_file_once(song):
    downloads = Downloads()
    paths = []
    threads = [
        threading.Thread(target=lambda: paths.append(downloads.zip(song, "flac"))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 1
    with zipfile.ZipFile(paths[0]) as z:
        assert sorted(z.namelist()) == ["Band - Tune/no_vocals.flac", "Band - Tune/vocals.flac"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    assert sorted(p.name for p in (song.folder / "downloads").iterdir()) == [
        "no_vocals.flac",
        "stems-flac.zip",
        "vocals.flac",
    ]


@pytest.mark.parametrize(
    "key, fmt, message",
    [
        ("drums", "wav", "has no stem 'drums'"),
        ("../stems/vocals", "wav", "has no stem"),
        ("vocals", "ogg", "unknown format 'ogg'"),
        ("vocals", "../../x", "unknown format"),
    ],
)
def test_unknown_stems_and_formats_are_refused(song, key, fmt, message):
    with pytest.raises(UserError, match=message):
        Downloads().stem(song, key, fmt)
    assert not (song.folder / "downloads").exists()
