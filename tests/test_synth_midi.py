"""Probing and reading MIDI files, and the bad files a dataset run skips."""

import mido
import pytest
from synth_midi import BASS, band_song, drum_song, write_midi

from cunet.synth.midi import MidiError, find_midi_files, probe, read_events


def test_probe_reports_length_parts_and_tempo(tmp_path):
    info = probe(band_song(tmp_path / "band.mid"))
    assert info.seconds == pytest.approx(6.0, abs=0.01)
    assert info.has_drums and info.has_pitched and info.n_notes == 5
    assert info.bpm == pytest.approx(120.0)
    assert info.programs == (0, BASS)
    drums = probe(drum_song(tmp_path / "drums.mid", 4.0))
    assert drums.has_drums and not drums.has_pitched


def test_read_events_applies_the_tempo(tmp_path):
    path = write_midi(
        tmp_path / "slow.mid", [(1.0, 2.0, 0, 0, 60, 90)], bpm=60
    )  # written at 60 bpm
    onsets = [t for t, m in read_events(path) if m.type == "note_on"]
    assert onsets == [pytest.approx(1.0, abs=1e-3)]


def test_trailing_controllers_do_not_lengthen(tmp_path):
    path = write_midi(tmp_path / "cc.mid", [(0.0, 6.0, 0, 0, 60, 90)])
    midi = mido.MidiFile(str(path))
    midi.tracks[1].insert(-1, mido.Message("control_change", control=4, value=10, time=0))
    midi.tracks[1].append(mido.Message("control_change", control=4, value=20, time=960 * 60))
    midi.save(str(path))
    assert probe(path).seconds == pytest.approx(6.0, abs=0.01)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty"),
        (b"this is not MIDI\n", "not a readable MIDI"),
        (
            b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x01\x00\x90",
            "not a readable MIDI",
        ),  # truncated
    ],
)
def test_corrupt_and_empty_files(tmp_path, content, reason):
    path = tmp_path / "bad.mid"
    path.write_bytes(content)
    with pytest.raises(MidiError, match=reason):
        probe(path)


def test_noteless_file(tmp_path):
    midi = mido.MidiFile()
    midi.tracks.append(
        mido.MidiTrack(
            [mido.Message("program_change", program=5), mido.MetaMessage("end_of_track")]
        )
    )
    midi.save(str(tmp_path / "quiet.mid"))
    with pytest.raises(MidiError, match="no notes"):
        probe(tmp_path / "quiet.mid")


def test_huge_files(tmp_path):
    # a note held for 20 hours: tiny on disk, but far too long to render
    path = write_midi(tmp_path / "long.mid", [(0.0, 72000.0, 0, 0, 60, 90)])
    with pytest.raises(MidiError, match="too long"):
        probe(path)
    with pytest.raises(MidiError, match="too large"):
        probe(band_song(tmp_path / "band.mid"), max_bytes=16)
    with pytest.raises(MidiError, match="too many events"):
        probe(drum_song(tmp_path / "drums.mid"), max_messages=10)


def test_find_midi_files_recurses(tmp_path):
    band_song(tmp_path / "a" / "one.mid")
    drum_song(tmp_path / "b" / "c" / "two.MIDI", 2.0)
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in find_midi_files(tmp_path)] == ["one.mid", "two.MIDI"]
