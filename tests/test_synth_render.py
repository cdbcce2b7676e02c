"""Rendering with FluidSynth: notes land in their stems, stems sum to the mixture, renders repeat exactly.

Needs the FluidSynth library and a General MIDI soundfont (`.ci/run` installs fluidsynth and
fluid-soundfont-gm); skipped with the reason when they are missing.
"""

import numpy as np
import pytest
import soundfile as sf
from synth_midi import GUITAR, band_song, write_midi

from cunet.errors import DataError
from cunet.synth.licences import default_soundfonts
from cunet.synth.render import (
    SAMPLE_RATE,
    Renderer,
    SynthError,
    load_fluidsynth,
    render_song,
    soundfont_problem,
)
from cunet.synth.stems import parse_stems
from cunet.synth.variation import SongPlan


def _soundfont() -> str:
    try:
        load_fluidsynth()
    except SynthError as exc:
        pytest.skip(str(exc))
    found = default_soundfonts()
    if not found:
        pytest.skip("no General MIDI soundfont installed (apt-get install fluid-soundfont-gm)")
    return next((f for f in found if "FluidR3" in f), found[0])


def _plan(midi, soundfont, seconds=6.5, **changes) -> SongPlan:
    """A plan without variation: dry (no reverb or chorus), centred, unit gains."""
    base = dict(
        name="song",
        index=0,
        collection="test",
        midi=str(midi),
        soundfont=soundfont,
        seconds=seconds,
        start=0.0,
        tempo=1.0,
        transpose=0,
        velocity=1.0,
        programs={},
        drum_kit=0,
        pan=(64,) * 16,
        reverb=(0,) * 16,
        chorus=(0,) * 16,
        reverb_room=0.2,
        gains_db=(0.0, 0.0, 0.0),
        peak_db=-3.0,
    )
    base.update(changes)
    return SongPlan(**base)


def _onset(x: np.ndarray, threshold: float = 1e-4) -> float:
    """Seconds to the first sample above threshold (inf if none)."""
    hits = np.flatnonzero(np.abs(x).max(axis=1) > threshold)
    return hits[0] / SAMPLE_RATE if hits.size else float("inf")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    soundfont = _soundfont()
    root = tmp_path_factory.mktemp("render")
    renderer = Renderer(parse_stems())
    folder = root / "song"
    folder.mkdir()
    record = render_song(renderer, _plan(band_song(root / "band.mid"), soundfont), folder)
    renderer.close()
    return folder, record


def test_stems_sum_to_the_mixture(rendered):
    folder, record = rendered
    assert record["stems"] == ["drums", "bass", "other"] and record["silent"] == []
    stems = {name: sf.read(folder / f"{name}.flac", dtype="float64") for name in record["stems"]}
    mixture, rate = sf.read(folder / "mixture.flac", dtype="float64")
    assert rate == SAMPLE_RATE and mixture.shape == (int(6.5 * SAMPLE_RATE), 2)
    assert all(r == SAMPLE_RATE and x.shape == mixture.shape for x, r in stems.values())
    total = sum(x for x, _ in stems.values())
    assert np.abs(total - mixture).max() < 1e-5  # 24-bit rounding only
    assert 20 * np.log10(np.abs(mixture).max()) == pytest.approx(-3.0, abs=0.05)  # the plan's peak


def test_notes_land_in_their_stems(rendered):
    folder, _ = rendered
    bass, drums, other = (sf.read(folder / f"{n}.flac")[0] for n in ("bass", "drums", "other"))
    assert _onset(bass) == pytest.approx(0.5, abs=0.01)  # the bass note, nothing earlier
    assert _onset(drums) == pytest.approx(2.0, abs=0.01)  # the kick drum is in drums only
    assert _onset(other) == pytest.approx(3.0, abs=0.01)  # the piano chord
    assert np.abs(bass[int(2.6 * SAMPLE_RATE) :]).max() < 1e-4  # no drum or piano leaks into bass
    rms = lambda x: float(np.sqrt(np.mean(x**2)))  # noqa: E731
    assert rms(drums[int(2.0 * SAMPLE_RATE) : int(2.3 * SAMPLE_RATE)]) > 1e-3
    assert rms(bass[int(0.5 * SAMPLE_RATE) : int(1.5 * SAMPLE_RATE)]) > 1e-3


def test_same_plan_renders_identical_files(rendered, tmp_path):
    folder, _ = rendered
    soundfont = _soundfont()
    renderer = Renderer(parse_stems())
    again = tmp_path / "again"
    again.mkdir()
    render_song(renderer, _plan(band_song(tmp_path / "band.mid"), soundfont), again)
    for name in ("drums", "bass", "other", "mixture"):
        assert (again / f"{name}.flac").read_bytes() == (folder / f"{name}.flac").read_bytes()


def test_variation_changes_the_audio_and_empty_stems_are_silent(tmp_path):
    soundfont = _soundfont()
    midi = write_midi(tmp_path / "guitar.mid", [(0.0, 5.0, 0, GUITAR, 52, 100)])
    spec = parse_stems("guitar=25-32,drums=drums,rest=*")
    renderer = Renderer(spec)
    plain, varied = tmp_path / "plain", tmp_path / "varied"
    plain.mkdir(), varied.mkdir()
    record = render_song(renderer, _plan(midi, soundfont, 5.0), plain)
    assert record["stems"] == ["guitar"] and record["silent"] == ["drums", "rest"]
    assert sorted(p.name for p in plain.iterdir()) == [
        "drums.silent",
        "guitar.flac",
        "mixture.flac",
        "rest.silent",
    ]
    render_song(
        renderer,
        _plan(midi, soundfont, 5.0, transpose=3, pan=(10,) * 16, reverb=(100,) * 16),
        varied,
    )
    a, b = sf.read(plain / "guitar.flac")[0], sf.read(varied / "guitar.flac")[0]
    assert a.shape == b.shape and not np.allclose(a, b)
    assert np.abs(b[:, 0]).sum() > 2 * np.abs(b[:, 1]).sum()  # panned left


def test_excerpt_and_tempo(tmp_path):
    soundfont = _soundfont()
    midi = write_midi(
        tmp_path / "two.mid", [(1.0, 1.5, 0, 33, 40, 100), (8.0, 8.5, 0, 33, 40, 100)]
    )
    renderer = Renderer(parse_stems())
    folder = tmp_path / "x"
    folder.mkdir()
    # at double speed the second note is at 4.0 s; an excerpt from 3.0 s puts it at 1.0 s
    render_song(renderer, _plan(midi, soundfont, 2.0, tempo=2.0, start=3.0), folder)
    assert _onset(sf.read(folder / "bass.flac")[0]) == pytest.approx(1.0, abs=0.01)


def test_silent_song_raises(tmp_path):
    soundfont = _soundfont()
    midi = write_midi(tmp_path / "late.mid", [(9.0, 9.5, 0, 0, 60, 100)])
    folder = tmp_path / "x"
    folder.mkdir()
    with pytest.raises(DataError, match="silent"):
        render_song(
            Renderer(parse_stems()), _plan(midi, soundfont, 5.0), folder
        )  # the note is past the end


def test_soundfont_problem(tmp_path):
    (tmp_path / "x.sf2").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    assert "not a SoundFont" in soundfont_problem(tmp_path / "x.sf2")
    assert "cannot read" in soundfont_problem(tmp_path / "missing.sf2")
