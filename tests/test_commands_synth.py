"""`cunet synth` on the command line: one-line errors with exit 2, notes, the summary."""

import time

from synth_midi import band_song
from test_synth_render import _soundfont

from cunet.cli import build_parser, main


def test_help_lists_synth(capsys):
    t0 = time.perf_counter()
    try:
        build_parser().parse_args(["synth", "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "--stems" in capsys.readouterr().out and time.perf_counter() - t0 < 5


def test_render_prints_notes_and_summary(tmp_path, capsys):
    band_song(tmp_path / "midi" / "band.mid")
    (tmp_path / "midi" / "broken.mid").write_bytes(b"\x00" * 10)
    rc = main(
        [
            "synth",
            "--midi",
            str(tmp_path / "midi"),
            "--out",
            str(tmp_path / "ds"),
            "--minutes",
            "0.1",
            "--soundfont",
            _soundfont(),
            "--jobs",
            "1",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0
    assert "note: skipped" in err and "broken.mid" in err and "real-time factor" in err
    assert (tmp_path / "ds" / "manifest.json").is_file()


def test_nothing_usable_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "midi").mkdir()
    (tmp_path / "midi" / "broken.mid").write_bytes(b"")
    rc = main(
        [
            "synth",
            "--midi",
            str(tmp_path / "midi"),
            "--out",
            str(tmp_path / "ds"),
            "--minutes",
            "1",
            "--soundfont",
            _soundfont(),
            "-q",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        rc == 2
        and err[-1].startswith("error: no usable MIDI")
        and "Traceback" not in "\n".join(err)
    )
    rc = main(
        [
            "synth",
            "--midi",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "ds"),
            "--minutes",
            "1",
            "-q",
        ]
    )
    assert rc == 2 and "is not a directory" in capsys.readouterr().err
    notsf = tmp_path / "x.sf2"
    notsf.write_text("x")
    rc = main(
        [
            "synth",
            "--midi",
            str(tmp_path / "midi"),
            "--out",
            str(tmp_path / "ds"),
            "--minutes",
            "1",
            "--soundfont",
            str(notsf),
            "-q",
        ]
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert (
        rc == 2
        and lines[0].startswith("note: skipped soundfont")
        and lines[-1].startswith("error: none of")
    )


def test_out_is_a_file_exits_2(tmp_path, capsys):
    band_song(tmp_path / "midi" / "band.mid")
    (tmp_path / "taken").write_text("x")
    rc = main(
        [
            "synth",
            "--midi",
            str(tmp_path / "midi"),
            "--out",
            str(tmp_path / "taken"),
            "--minutes",
            "0.1",
            "--soundfont",
            _soundfont(),
            "-q",
            "--jobs",
            "1",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: cannot write the dataset folder")
    assert (tmp_path / "taken").read_text() == "x"
