"""scripts/spleeter_teacher.py: songs without stems become vocals-only training tracks whose stems add
up to the song, with the teacher and licences recorded; run against a stand-in Spleeter package."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import load_script

from cunet.data import parse_data_spec
from cunet.data.sources import open_source

teacher = load_script("spleeter_teacher")


@pytest.fixture
def songs(tmp_path: Path) -> Path:
    folder = tmp_path / "songs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    sf.write(folder / "One song.wav", rng.uniform(-0.3, 0.3, (22050, 1)), 22050)  # mono, 22 kHz
    sf.write(folder / "Two.flac", rng.uniform(-0.3, 0.3, (44100, 2)), 44100)
    (folder / "notes.txt").write_text("not audio")
    (folder / "songs.csv").write_text(
        'file,seconds,licence,source\n"One song.wav",1.0,CC BY-NC 3.0,here\n'
    )
    return folder


def test_tracks_hold_the_teachers_vocals_and_the_rest_of_the_song(
    tmp_path: Path, songs: Path, spleeter_stand_in: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "teacher"
    argv = [str(songs), "--out", str(out), "--spleeter-python", str(spleeter_stand_in)]
    assert teacher.main(argv) == 0
    for name, rate, channels in (("One_song", 22050, 1), ("Two", 44100, 2)):
        vocals, out_rate = sf.read(out / "train" / name / "vocals.wav", dtype="float32")
        rest = sf.read(out / "train" / name / "accompaniment.wav", dtype="float32")[0]
        assert out_rate == 44100 and vocals.shape == (44100, 2)
        np.testing.assert_allclose(rest, 3 * vocals, atol=1e-6)  # the stand-in's 1/4 : 3/4 split
        song = sf.read(songs / ("One song.wav" if channels == 1 else "Two.flac"))[0]
        if rate == 44100:
            np.testing.assert_allclose(vocals + rest, song, atol=1e-6)
    record = json.loads((out / "teacher.json").read_text())
    assert record["teacher"].startswith("Spleeter 2stems")
    assert record["songs"] == [
        {"file": "One song.wav", "track": "One_song", "licence": "CC BY-NC 3.0", "source": "here"},
        {"file": "Two.flac", "track": "Two"},
    ]
    # training reads them as a folder dataset with two stems
    tracks = open_source(parse_data_spec(f"{out},valid=0"))["train"]
    assert sorted(t.name for t in tracks) == ["One_song", "Two"]
    assert all(sorted(t.stems) == ["accompaniment", "vocals"] for t in tracks)
    # a second run keeps what is there
    stamp = (out / "train" / "Two" / "vocals.wav").stat().st_mtime_ns
    capsys.readouterr()
    assert teacher.main(argv) == 0
    assert "2 songs, 0 to separate" in capsys.readouterr().err
    assert (out / "train" / "Two" / "vocals.wav").stat().st_mtime_ns == stamp


def test_bad_input_is_one_line_and_writes_no_track(
    tmp_path: Path, songs: Path, spleeter_stand_in: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (songs / "Broken.mp3").write_bytes(b"not an mp3 at all")
    out = tmp_path / "teacher"
    argv = [str(songs), "--out", str(out), "--spleeter-python", str(spleeter_stand_in)]
    assert teacher.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "Broken.mp3" in err[-1]
    assert not (out / "train").exists()
    assert teacher.main([str(tmp_path / "none"), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'none'}: no such folder\n"
    (songs / "Broken.mp3").unlink()
    sf.write(songs / "Two.wav", np.zeros((10, 2)), 44100)  # the same track name as Two.flac
    assert teacher.main(argv) == 2
    assert capsys.readouterr().err == "error: Two.flac and Two.wav would be one track; rename one\n"
    assert not (out / "train").exists()
    missing = ["--spleeter-python", str(tmp_path / "no-python")]
    assert teacher.main([str(songs), "--out", str(out), *missing]) == 2
    assert capsys.readouterr().err.count("\n") == 1
