"""cunet.jobs: files to outputs (layout, residuals, templates, excerpts, clipping) on a Separator."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from conftest import synth_mixture

from cunet.io.audio import Excerpt
from cunet.io.output import OutputSettings
from cunet.jobs import separate_file


def test_separate_file_layout_and_residual(tiny_separator, tmp_path):
    x = synth_mixture(1.2, 48000)
    song = tmp_path / "my song.stem.wav"
    sf.write(song, x, 48000, subtype="FLOAT")
    written = separate_file(
        tiny_separator,
        song,
        tmp_path / "out",
        ["vocals"],
        OutputSettings(bits="32f"),
        residual=True,
        progress=False,
    )
    folder = tmp_path / "out" / "my song.stem"
    assert written["vocals"] == folder / "vocals.wav"
    vocals, rate = sf.read(written["vocals"], dtype="float32")
    rest, _ = sf.read(written["no_vocals"], dtype="float32")
    assert rate == 48000 and vocals.shape == x.shape
    np.testing.assert_allclose(vocals + rest, x, atol=1e-5)
    with pytest.raises(ValueError, match="force=True"):
        separate_file(tiny_separator, song, tmp_path / "out", ["vocals"], progress=False)
    separate_file(tiny_separator, song, tmp_path / "out", ["vocals"], progress=False, force=True)
    assert sorted(p.name for p in folder.iterdir()) == ["no_vocals.wav", "vocals.wav"]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_separate_file_with_template_excerpt_and_rescale(tiny_separator, tmp_path):
    x = 3 * synth_mixture(2.0)  # far beyond full scale, in a float wav
    sf.write(tmp_path / "loud.wav", x, 44100, subtype="FLOAT")
    notes = []
    written = separate_file(
        tiny_separator,
        tmp_path / "loud.wav",
        tmp_path / "out",
        ["vocals", "bass"],
        residual=True,
        progress=False,
        output=OutputSettings("wav", "24", "rescale"),
        filename="{index:02d}/{track}-{stem}.{ext}",
        excerpt=Excerpt(0.5, 1.0),
        notes=notes.append,
    )
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in written.values()) == [
        "01/loud-no_vocals.wav",
        "01/loud-vocals.wav",
        "03/loud-bass.wav",
        "03/loud-no_bass.wav",
    ]
    ys = {k: sf.read(p, dtype="float64")[0] for k, p in written.items()}
    assert all(y.shape == (44100, 2) for y in ys.values())
    peak = max(np.abs(y).max() for y in ys.values())
    assert peak == pytest.approx(1.0, abs=1e-6)
    # one gain: stem + residual is the same scaled excerpt for every instrument
    np.testing.assert_allclose(
        ys["vocals"] + ys["no_vocals"], ys["bass"] + ys["no_bass"], atol=4e-7
    )
    gain = np.abs(ys["vocals"] + ys["no_vocals"]).max() / np.abs(x[22050:66150]).max()
    np.testing.assert_allclose(ys["vocals"] + ys["no_vocals"], gain * x[22050:66150], atol=1e-5)
    assert len(notes) == 1 and "scaled by" in notes[0] and "loud.wav" in notes[0]


def test_on_chunk_counts_chunks_and_can_stop_the_work(tiny_separator, tmp_path):
    x = synth_mixture(3.0)
    sf.write(tmp_path / "song.wav", x, 44100)
    n_chunks = tiny_separator.plan(x.shape[0], 44100).n_chunks
    assert n_chunks > 1
    calls = []
    separate_file(
        tiny_separator,
        tmp_path / "song.wav",
        tmp_path / "out",
        ["vocals"],
        progress=False,
        on_chunk=lambda: calls.append(1),
    )
    assert len(calls) == n_chunks

    class Stop(Exception):
        pass

    def stop() -> None:
        raise Stop

    with pytest.raises(Stop):
        separate_file(
            tiny_separator,
            tmp_path / "song.wav",
            tmp_path / "stopped",
            ["vocals"],
            progress=False,
            on_chunk=stop,
        )
    assert not [p for p in (tmp_path / "stopped").rglob("*") if p.is_file()]  # nothing written
