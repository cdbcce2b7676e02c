"""A song's separation in `cunet ui` (`cunet.ui.separation`) writes the files `cunet separate` writes, byte for
byte, whether the song is read from disk or while it uploads, and hands the same stems over block by block."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile as sf
from conftest import synth_mixture

from cunet.errors import AudioError
from cunet.io.output import OutputSettings
from cunet.jobs import separate_file
from cunet.settings import ChunkSettings
from cunet.ui.growing import Upload
from cunet.ui.separation import separate_song, warm_up


@pytest.fixture(scope="module")
def separator():
    from cunet.separator import Separator

    return Separator.from_pretrained(
        chunks=ChunkSettings(2.0, 0.5)
    )  # several chunks in a few seconds


def write(path, seconds, rate=44100, channels=2, fmt="WAV"):
    subtype = "VORBIS" if fmt == "OGG" else "PCM_16"
    sf.write(path, synth_mixture(seconds, rate, channels), rate, format=fmt, subtype=subtype)
    return path


def cli_stems(separator, path, tmp_path, instruments, residual):
    """What `cunet separate PATH -i ... [--residual]` writes: {key: bytes}."""
    written = separate_file(
        separator,
        path,
        tmp_path / "cli",
        instruments,
        OutputSettings("wav"),
        residual=residual,
        progress=False,
    )
    return {key: p.read_bytes() for key, p in written.items()}


@pytest.mark.parametrize(
    "rate, channels, fmt, residual",
    [(44100, 2, "WAV", True), (44100, 1, "WAV", False), (48000, 2, "FLAC", True)],
)
def test_the_stems_are_the_files_cunet_separate_writes(
    separator, tmp_path, rate, channels, fmt, residual
):
    song = write(tmp_path / f"song.{fmt.lower()}", 5.3, rate, channels, fmt)
    partials: dict = {}
    blocks: list[int] = []
    chunks = [0]

    def on_block(m: int) -> None:  # m more samples of every stem are in the files, readable
        for key, path in partials.items():
            data = path.read_bytes()[44:]
            assert len(data) == (sum(blocks) + m) * channels * 2, key
        blocks.append(m)

    written = separate_song(
        separator,
        song,
        tmp_path / "ui",
        ["vocals", "bass"],
        residual=residual,
        on_files=partials.update,
        on_block=on_block,
        on_chunk=lambda: chunks.__setitem__(0, chunks[0] + 1),
    )
    keys = ["vocals", "bass", *(["no_vocals", "no_bass"] if residual else [])]
    assert list(written) == keys and chunks[0] == separator.plan(int(5.3 * rate), rate).n_chunks
    expected = cli_stems(separator, song, tmp_path, ["vocals", "bass"], residual)
    assert {k: p.read_bytes() for k, p in written.items()} == expected
    # the files were told before any sample, block by block: the published files are those
    assert list(partials) == keys and not any(p.exists() for p in partials.values())
    assert len(blocks) > 1 and sum(blocks) == int(5.3 * rate)


def test_a_song_separated_while_it_uploads_gives_the_same_files(separator, tmp_path):
    data = write(tmp_path / "whole.wav", 6.0).read_bytes()
    upload = Upload(tmp_path / "input.wav", len(data))
    first_chunk = threading.Event()
    with open(upload.path, "xb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        upload.grew(len(data) // 2)

        def rest() -> None:
            assert first_chunk.wait(30)  # separating began before the second half arrived
            with open(upload.path, "ab") as g:
                g.write(data[len(data) // 2 :])
            upload.grew(len(data))
            upload.complete()

        sender = threading.Thread(target=rest)
        sender.start()
        written = separate_song(
            separator,
            upload.path,
            tmp_path / "ui",
            ["drums"],
            residual=True,
            upload=upload,
            on_chunk=first_chunk.set,
        )
        sender.join()
    expected = cli_stems(separator, tmp_path / "whole.wav", tmp_path, ["drums"], True)
    assert {k: p.read_bytes() for k, p in written.items()} == expected


def test_an_upload_that_fails_publishes_nothing(separator, tmp_path):
    data = write(tmp_path / "whole.wav", 4.0).read_bytes()
    upload = Upload(tmp_path / "input.wav", len(data))
    upload.path.write_bytes(data[: len(data) // 3])
    upload.grew(len(data) // 3)
    threading.Timer(0.2, upload.fail, [AudioError("the upload was interrupted")]).start()
    with pytest.raises(AudioError, match="the upload was interrupted"):
        separate_song(separator, upload.path, tmp_path / "ui", ["vocals"], upload=upload)
    assert not any((tmp_path / "ui").iterdir())  # no stem, no partial file


def test_a_format_that_cannot_be_read_while_arriving_waits_for_its_end(separator, tmp_path):
    data = write(tmp_path / "whole.ogg", 3.0, fmt="OGG").read_bytes()
    upload = Upload(tmp_path / "input.ogg", len(data))
    upload.path.write_bytes(data[:100])
    upload.grew(100)

    def rest() -> None:
        with open(upload.path, "ab") as f:
            f.write(data[100:])
        upload.grew(len(data))
        upload.complete()

    threading.Timer(0.3, rest).start()
    written = separate_song(separator, upload.path, tmp_path / "ui", ["vocals"], upload=upload)
    expected = cli_stems(separator, tmp_path / "whole.ogg", tmp_path, ["vocals"], False)
    assert {k: p.read_bytes() for k, p in written.items()} == expected


def test_warming_up_starts_every_signature_a_song_runs():
    from cunet.separator import Separator

    separator = Separator.from_pretrained()  # the shipped model on LiteRT, its default chunks
    assert separator.engine._started == set()
    warm_up(separator)
    started = set(separator.engine._started)
    assert started
    # neither a song's full chunks nor its shorter last one pays the engine's set-up (nor mutes stderr)
    separator.separate(np.zeros((separator.chunk + separator.chunk // 2, 2), np.float32), 44100)
    assert separator.engine._started == started
