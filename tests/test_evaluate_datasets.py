"""cunet.evaluate.datasets: evaluation tracks from training data sources (folder datasets, MUSDB18 roots).

Synthetic folder datasets only; no TensorFlow, no scoring (tests/test_commands_evaluate.py scores them).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import soundfile as sf
from conftest import VALID_NAMES, make_folder_dataset, synth_stems, write_track

from cunet.data.sources import open_sources, parse_data_spec
from cunet.errors import DataError
from cunet.evaluate.datasets import (
    OWN_MIXTURE,
    SUM_OF_STEMS,
    DataTrack,
    conform,
    describe_tracks,
    open_data_tracks,
    stem_union,
)

SONGS = [f"song {i:02d}" for i in range(12)]


def names(tracks) -> list[str]:
    return [t.name for t in tracks]


def test_valid_folder_and_splits(tmp_path):
    root = make_folder_dataset(tmp_path / "ds", ["a", "b", "c"], ["d", "e"], seconds=0.2)
    spec = [parse_data_spec(str(root))]
    valid = open_data_tracks(spec)  # the default split is valid
    assert names(valid) == ["d", "e"] and {t.subset for t in valid} == {"valid"}
    assert names(open_data_tracks(spec, "train")) == ["a", "b", "c"]
    both = open_data_tracks(spec, "all")
    assert [(t.name, t.subset) for t in both] == [
        ("a", "train"),
        ("b", "train"),
        ("c", "train"),
        ("d", "valid"),
        ("e", "valid"),
    ]
    assert names(open_data_tracks(spec, "all", track_limit=2)) == ["a", "b"]
    assert valid[0].stem_names == ("bass", "drums", "other", "vocals")


@pytest.mark.parametrize("option, seed", [(",valid=3", 42), (",valid=3", 7), ("", 42)])
def test_hold_out_is_the_one_training_uses(tmp_path, option, seed):
    """No valid/ folder: the same seeded hold-out as `cunet train` (a tenth by default)."""
    root = make_folder_dataset(tmp_path / "ds", SONGS, seconds=0.1)
    specs = [parse_data_spec(f"{root}{option}")]
    held = open_data_tracks(specs, "valid", seed)
    assert sorted(names(held)) == sorted(t.name for t in open_sources(specs, seed)["valid"])
    assert len(held) == (3 if option else 1)
    train = open_data_tracks(specs, "train", seed)
    assert sorted(names(train) + names(held)) == SONGS


def test_seed_changes_the_hold_out(tmp_path):
    root = make_folder_dataset(tmp_path / "ds", SONGS, seconds=0.1)
    specs = [parse_data_spec(f"{root},valid=4")]
    picks = {tuple(sorted(names(open_data_tracks(specs, "valid", seed)))) for seed in range(6)}
    assert len(picks) > 1


def test_musdb_root_as_data(musdb_root):
    tracks = open_data_tracks([parse_data_spec(f"{musdb_root},wav,rename=other:guitar")])
    assert sorted(names(tracks)) == sorted(VALID_NAMES)
    assert set(tracks[0].stem_names) == {"vocals", "drums", "bass", "guitar"}
    assert tracks[0].mixture_kind == OWN_MIXTURE
    audio = tracks[0].load()
    assert set(audio.stems) == {"vocals", "drums", "bass", "guitar"} and audio.rate == 44100


def test_errors(tmp_path):
    root = make_folder_dataset(tmp_path / "ds", ["a", "b"], ["c"], seconds=0.1)
    with pytest.raises(DataError, match="clip folder .*nothing to separate"):
        open_data_tracks([parse_data_spec(f"{root},stem=vocals")])
    other = make_folder_dataset(tmp_path / "other", ["x"], ["c"], seconds=0.1)
    with pytest.raises(DataError, match="two tracks named 'c'"):
        open_data_tracks([parse_data_spec(str(root)), parse_data_spec(str(other))])
    lone = make_folder_dataset(tmp_path / "lone", ["x"], seconds=0.1)
    with pytest.raises(
        DataError,
        match=r"no valid tracks to evaluate \('.*lone' has 1 train and 0 valid tracks; "
        r"hold tracks out with PATH,valid=N or choose split train\)",
    ):
        open_data_tracks([parse_data_spec(str(lone))])
    with pytest.raises(DataError, match="split must be one of train, valid, all"):
        open_data_tracks([parse_data_spec(str(root))], "test")
    with pytest.raises(DataError, match="not a directory"):
        open_data_tracks([parse_data_spec(str(tmp_path / "nowhere"))])
    with pytest.raises(DataError, match="no data given"):
        open_data_tracks([])


def test_sum_of_stems_conformed_to_the_highest_rate_and_most_channels(tmp_path):
    """No mixture file: stems of other rates, mono and lengths become one rate, channel count and length."""
    stems = synth_stems(0.5, 44100, 0)
    folder = tmp_path / "ds" / "valid" / "song"
    write_track(folder, {"vocals": stems["vocals"], "drums": stems["drums"]})
    sf.write(
        folder / "bass.wav", stems["bass"][:, 0][::2], 22050, subtype="FLOAT"
    )  # mono, half the rate
    sf.write(
        folder / "guitar.wav", stems["other"][:11025], 44100, subtype="FLOAT"
    )  # a quarter second
    (track,) = open_data_tracks([parse_data_spec(str(tmp_path / "ds"))])
    assert track.mixture_kind == SUM_OF_STEMS
    audio = track.load()
    assert audio.rate == 44100 and set(audio.stems) == {"vocals", "drums", "bass", "guitar"}
    for stem in audio.stems.values():
        assert stem.shape == audio.mixture.shape == (22050, 2) and stem.dtype == np.float32
    np.testing.assert_allclose(audio.mixture, sum(audio.stems.values()), atol=1e-6)
    np.testing.assert_array_equal(
        audio.stems["bass"][:, 0], audio.stems["bass"][:, 1]
    )  # mono on both sides
    assert not audio.stems["guitar"][11025:].any()  # padded with silence
    assert (
        np.corrcoef(audio.stems["bass"][1000:20000, 0], stems["bass"][1000:20000, 0])[0, 1] > 0.99
    )


def test_own_mixture_sets_rate_channels_and_length(tmp_path):
    stems = synth_stems(0.5, 48000, 1)
    folder = tmp_path / "ds" / "valid" / "song"
    mono_mixture = sum(stems.values()).mean(axis=1)[:20000]
    write_track(folder, stems, sample_rate=48000)
    sf.write(folder / "mixture.flac", mono_mixture, 16000)
    (track,) = open_data_tracks([parse_data_spec(str(tmp_path / "ds"))])
    assert track.mixture_kind == OWN_MIXTURE
    audio = track.load()
    assert audio.rate == 16000 and audio.mixture.shape == (20000, 1)
    assert all(s.shape == (20000, 1) for s in audio.stems.values())  # resampled, down-mixed, cut


def test_data_tracks_pickle_and_describe(tmp_path):
    root = make_folder_dataset(tmp_path / "ds", ["a"], ["b", "c"], seconds=0.1)
    write_track(root / "valid" / "c", {}, mixture=synth_stems(0.1, 44100, 0)["bass"])
    tracks = open_data_tracks([parse_data_spec(f"{root},rename=other:guitar")])
    copy = pickle.loads(pickle.dumps(tracks[1]))
    assert isinstance(copy, DataTrack) and copy.stem_names == tracks[1].stem_names
    np.testing.assert_array_equal(copy.load().mixture, tracks[1].load().mixture)
    described = describe_tracks(tracks)
    assert described["mixture"] == "own mixture (1 track), sum of the stems (1 track)"
    assert described["tracks"][0] == {
        "name": "b",
        "split": "valid",
        "mixture": SUM_OF_STEMS,
        "stems": ["bass", "drums", "guitar", "vocals"],
    }
    assert stem_union(tracks) == ["vocals", "drums", "bass", "guitar"]


def test_conform():
    stereo = np.ones((100, 2), np.float32) * [1.0, 0.0]
    assert conform(stereo, 100, 100, 1).tolist() == [[0.5]] * 100
    assert conform(np.ones(100), 100, 100, 2).shape == (100, 2)
    assert conform(np.ones((100, 1)), 100, 50, 1).shape == (50, 1)
    with pytest.raises(DataError, match="stem 'x' has 6 channels, the track 2"):
        conform(np.zeros((10, 6)), 100, 100, 2, "stem 'x'")
