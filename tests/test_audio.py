"""Audio I/O: write/read round trips of random arrays (hypothesis), output names, ffmpeg decoding,
atomic writes and the errors raised for unreadable files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cunet.errors import AudioError
from cunet.io import audio as audio_module
from cunet.io.atomic import PARTIAL_SUFFIX, remove_stale_partials
from cunet.io.audio import AudioReader, ffmpeg_available, input_stem, load_audio
from cunet.io.writer import AtomicAudioWriter, write_audio

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
needs_ffmpeg = pytest.mark.skipif(not ffmpeg_available(), reason="ffmpeg is not installed")

RATES = st.sampled_from([8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 192000])


def _partials(directory: Path) -> list[str]:
    return [p.name for p in directory.rglob(f"*{PARTIAL_SUFFIX}*")]


@SETTINGS
@given(
    n=st.integers(1, 4000),
    n_channels=st.integers(1, 8),
    rate=RATES,
    fmt=st.sampled_from(["wav", "flac"]),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([0.5, 1.0, 3.0]),
)
def test_write_read_round_trip(
    tmp_path_factory, n: int, n_channels: int, rate: int, fmt: str, seed: int, scale: float
) -> None:
    """16-bit wav/flac: same length, rate and channels; values clipped to [-1, 1] and within one LSB."""
    tmp = tmp_path_factory.mktemp("rt")
    x = (np.random.default_rng(seed).uniform(-1, 1, (n, n_channels)) * scale).astype(np.float32)
    path = write_audio(tmp / f"x.{fmt}", x, rate)
    assert sorted(p.name for p in tmp.iterdir()) == [f"x.{fmt}"]  # no partial left behind
    y, rate_read = load_audio(path)
    assert rate_read == rate and y.shape == x.shape and y.dtype == np.float32
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, np.clip(x, -1, 1), atol=1.5 / 32768)


@SETTINGS
@given(
    n=st.integers(1, 4000),
    n_channels=st.integers(1, 6),
    rate=RATES,
    seed=st.integers(0, 2**16),
    block=st.integers(1, 1500),
)
def test_float_wav_round_trip_is_exact_and_blocks_match_read(
    tmp_path_factory, n: int, n_channels: int, rate: int, seed: int, block: int
) -> None:
    """32-bit float wav keeps values (even beyond full scale); streaming blocks add up to the whole file."""
    tmp = tmp_path_factory.mktemp("f32")
    x = np.random.default_rng(seed).normal(0, 2, (n, n_channels)).astype(np.float32)
    writer = AtomicAudioWriter(tmp / "x.wav", rate, n_channels, "wav", "32f")
    for start in range(0, n, block):
        writer.write(x[start : start + block])
    writer.commit()
    with AudioReader(tmp / "x.wav") as reader:
        assert (reader.info.sample_rate, reader.info.n_channels, reader.info.n_samples) == (
            rate,
            n_channels,
            n,
        )
        blocks = list(reader.blocks(block))
        whole = reader.read()
    assert all(b.shape[0] <= block for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), x)
    np.testing.assert_array_equal(whole, x)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    ext=st.sampled_from(["mp3", "m4a"]),
    rate=st.sampled_from([22050, 44100, 48000]),
    n_channels=st.integers(1, 2),
    seconds=st.floats(0.1, 1.5),
)
@needs_ffmpeg
def test_ffmpeg_decodes_compressed_inputs(
    tmp_path_factory, ext: str, rate: int, n_channels: int, seconds: float
) -> None:
    """mp3 / m4a are decoded through ffmpeg: rate and channels kept, length within the codec's padding."""
    tmp = tmp_path_factory.mktemp("ff")
    n = int(seconds * rate)
    t = np.arange(n) / rate
    x = np.stack(
        [0.4 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(n_channels)], 1
    ).astype(np.float32)
    sf.write(tmp / "src.wav", x, rate, subtype="FLOAT")
    codec = ["-c:a", "libmp3lame"] if ext == "mp3" else ["-c:a", "aac"]
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-i",
            str(tmp / "src.wav"),
            *codec,
            str(tmp / f"enc ñ.{ext}"),
        ],
        check=True,
    )
    with AudioReader(tmp / f"enc ñ.{ext}") as reader:
        info = reader.info
        y = reader.read()
    assert info.sample_rate == rate and info.n_channels == n_channels
    assert abs(info.n_samples - n) <= 2 * 1152 and y.shape == (info.n_samples, n_channels)
    assert np.isfinite(y).all() and 0.1 < np.abs(y).max() < 1.0
    assert not list(Path(reader.path).parent.glob("decoded*"))  # temporary decode removed


@given(
    name=st.text(
        st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/.\\\x00"),
        min_size=1,
        max_size=30,
    ),
    ext=st.sampled_from(
        [".wav", ".flac", ".mp3", ".m4a", ".ogg", ".stem.mp4", ".WAV", ".Stem.MP4"]
    ),
)
@settings(max_examples=100, deadline=None)
def test_input_stem_drops_only_the_extension(name: str, ext: str) -> None:
    assert input_stem(f"/some dir/{name}{ext}") == name
    assert input_stem(name + ext) == name


@pytest.mark.parametrize(
    "name,stem",
    [
        ("song.stem.mp4", "song"),
        ("a.b.wav", "a.b"),
        (".wav", ".wav"),
        ("no_ext", "no_ext"),
        ("my song ünï 歌.flac", "my song ünï 歌"),
        (".stem.mp4", ".stem.mp4"),
        ("..wav", "..wav"),
        ("...wav", "...wav"),
        ("...stem.mp4", "...stem.mp4"),
    ],
)
def test_input_stem_examples(name: str, stem: str) -> None:
    assert input_stem(name) == stem


@given(
    name=st.text(st.sampled_from(list(". aé歌_-")), min_size=1, max_size=12),
    ext=st.sampled_from(["", ".wav", ".stem.mp4"]),
)
@example(name="..", ext="")
@example(name="...", ext=".wav")
@example(name=".", ext=".stem.mp4")
@settings(max_examples=200, deadline=None)
def test_input_stem_never_escapes_the_output_directory(name: str, ext: str) -> None:
    """The stem names a folder under OUTDIR: never empty, '.' or '..' (e.g. for '...wav')."""
    stem = input_stem(f"dir/{name}{ext}")
    assert stem and stem not in (".", "..") and "/" not in stem


def test_unreadable_files_raise_one_line_audio_errors(tmp_path: Path) -> None:
    sf.write(tmp_path / "ok.flac", np.zeros((44100, 2), np.float32) + 0.1, 44100)
    data = (tmp_path / "ok.flac").read_bytes()
    cases = {
        "missing.wav": None,
        "empty.wav": b"",
        "noise.wav": np.random.default_rng(0).bytes(3000),
        "short_header.flac": data[:20],
    }
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
    (tmp_path / "folder.wav").mkdir()
    for name in [*cases, "folder.wav"]:
        with pytest.raises(AudioError) as err:
            load_audio(tmp_path / name)
        assert "\n" not in str(err.value) and name in str(err.value)


def test_corrupt_data_mid_stream_raises_audio_error(tmp_path: Path) -> None:
    """A flac whose header is fine but whose data is cut off fails while streaming with AudioError
    (not soundfile's LibsndfileError, which used to escape as a traceback from the CLI)."""
    rng = np.random.default_rng(1)
    sf.write(tmp_path / "x.flac", rng.uniform(-0.5, 0.5, (88200, 2)).astype(np.float32), 44100)
    data = (tmp_path / "x.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    with AudioReader(tmp_path / "cut.flac") as reader, pytest.raises(AudioError, match="cut.flac"):
        for _ in reader.blocks(4096):
            pass


def test_abort_and_failed_commit_leave_nothing(tmp_path: Path) -> None:
    writer = AtomicAudioWriter(tmp_path / "a.wav", 8000, 1)
    writer.write(np.zeros((100, 1), np.float32))
    assert _partials(tmp_path)  # staged under a hidden partial name...
    assert not (tmp_path / "a.wav").exists()  # ...never under the final one
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(AudioError, match="unknown output format"):
        AtomicAudioWriter(tmp_path / "b.ogg", 8000, 1, "ogg")
    assert list(tmp_path.iterdir()) == []


def test_remove_stale_partials_keeps_live_writers(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = {
        "dead": f".vocals.wav.{dead.pid}.7f00ab{PARTIAL_SUFFIX}",
        "dead_mp3": f".drums.mp3.{dead.pid}.7f00ac{PARTIAL_SUFFIX}.mp3",
        "mine": f".bass.wav.{os.getpid()}.7f00ad{PARTIAL_SUFFIX}",
        "live": f".other.wav.{os.getppid()}.7f00ae{PARTIAL_SUFFIX}",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "keep.wav").write_bytes(b"y")
    remove_stale_partials(tmp_path)
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {names["mine"], names["live"], "keep.wav"}


# -- excerpts and output sample formats ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "start,duration,message",
    [
        (-1.0, None, "--start"),
        (float("nan"), None, "--start"),
        (0.0, 0.0, "--duration"),
        (0.0, -2.0, "--duration"),
        (0.0, float("inf"), "--duration"),
    ],
)
def test_bad_excerpts(start: float, duration: float | None, message: str) -> None:
    from cunet.commands import message as message_of
    from cunet.errors import UserError
    from cunet.io.audio import Excerpt

    with pytest.raises(UserError, match=f"^{message[2:]} must be") as err:  # the API's name
        Excerpt(start, duration).validate()
    assert message_of(err.value).startswith(f"{message} must be")  # the CLI's option


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_excerpt_seeks_and_reads_only_its_part(tmp_path: Path, fmt: str, monkeypatch) -> None:
    from cunet.io.audio import Excerpt

    x = np.random.default_rng(4).uniform(-0.5, 0.5, (48000, 2)).astype(np.float32)
    sf.write(tmp_path / f"x.{fmt}", x, 16000, subtype="PCM_24")
    full, _ = load_audio(tmp_path / f"x.{fmt}")
    frames_read = []
    real_read = sf.SoundFile.read

    def counting_read(self, frames=-1, *args, **kwargs):
        out = real_read(self, frames, *args, **kwargs)
        frames_read.append(len(out))
        return out

    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    with AudioReader(tmp_path / f"x.{fmt}", Excerpt(2.0, 0.5)) as reader:
        assert reader.info.n_samples == 8000
        blocks = list(reader.blocks(3000))
        whole = reader.read()
    np.testing.assert_array_equal(np.concatenate(blocks), full[32000:40000])
    np.testing.assert_array_equal(whole, full[32000:40000])
    assert sum(frames_read) == 16000  # the excerpt twice, nothing before it
    with AudioReader(tmp_path / f"x.{fmt}", Excerpt(2.9)) as reader:
        assert reader.info.n_samples == 1600  # to the end
    with pytest.raises(
        AudioError, match=r"start 3 s is at or past the end of the audio \(3.000 s\)"
    ):
        AudioReader(tmp_path / f"x.{fmt}", Excerpt(3.0))


@needs_ffmpeg
def test_ffmpeg_excerpt_seeks_before_decoding(tmp_path: Path, monkeypatch) -> None:
    from cunet.io.audio import Excerpt

    t = np.arange(3 * 44100) / 44100
    sf.write(tmp_path / "src.wav", 0.3 * np.sin(2 * np.pi * 440 * t), 44100)
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(tmp_path / "src.wav"),
            str(tmp_path / "x.mp3"),
        ],
        check=True,
    )
    calls = []
    real_run = subprocess.run

    def spy(cmd, *args, **kwargs):
        calls.append(list(cmd))
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    with AudioReader(tmp_path / "x.mp3", Excerpt(1.25, 0.5)) as reader:
        assert abs(reader.info.n_samples - 22050) <= 2
    cmd = calls[-1]
    assert cmd.index("-ss") < cmd.index("-i") and cmd.index("-t") < cmd.index("-i")  # input seeking
    with pytest.raises(AudioError, match="start 10 s is at or past the end of the audio"):
        AudioReader(tmp_path / "x.mp3", Excerpt(10.0))


@pytest.mark.parametrize(
    "fmt,bits,subtype",
    [
        ("wav", "24", "PCM_24"),
        ("flac", "24", "PCM_24"),
        ("wav", "16", "PCM_16"),
        ("wav", "32f", "FLOAT"),
    ],
)
def test_writer_bits_and_clamp_count(tmp_path: Path, fmt: str, bits: str, subtype: str) -> None:
    x = np.random.default_rng(5).uniform(-1.5, 1.5, (4000, 2)).astype(np.float32)
    writer = AtomicAudioWriter(tmp_path / f"x.{fmt}", 44100, 2, fmt, bits=bits)
    writer.write(x)
    path = writer.commit()
    y, _ = sf.read(path, dtype="float32")
    assert sf.info(path).subtype == subtype
    if bits == "32f":
        assert writer.n_clipped == 0
        np.testing.assert_array_equal(y, x)
    else:
        assert writer.n_clipped == int(np.count_nonzero(np.abs(x) > 1))
        np.testing.assert_allclose(y, np.clip(x, -1, 1), atol=2.0 ** (1 - int(bits)))
    with pytest.raises(AudioError, match="cannot write 32f-bit samples to flac"):
        AtomicAudioWriter(tmp_path / "y.flac", 44100, 2, "flac", bits="32f")


@needs_ffmpeg
def test_mp3_bitrate(tmp_path: Path) -> None:
    x = np.random.default_rng(6).uniform(-0.5, 0.5, (44100 * 2, 2)).astype(np.float32)
    sizes = {}
    for kbps in (64, 192):
        writer = AtomicAudioWriter(tmp_path / f"{kbps}.mp3", 44100, 2, "mp3", mp3_bitrate=kbps)
        writer.write(x)
        sizes[kbps] = writer.commit().stat().st_size
    assert 2.5 < sizes[192] / sizes[64] < 3.5


def _silence(path: Path, seconds: int, rate: int = 44100, channels: int = 2) -> Path:
    """A long file of silence, written a second at a time: small on disk (flac), no big array."""
    with sf.SoundFile(path, "w", rate, channels, "PCM_16") as fh:
        for _ in range(seconds):
            fh.write(np.zeros((rate, channels), np.float32))
    return path


def test_a_file_too_long_to_read_whole_is_refused_before_decoding(tmp_path: Path, monkeypatch):
    long = _silence(tmp_path / "long.flac", 40)
    monkeypatch.setattr(AudioReader, "read", lambda self: pytest.fail("decoded"))
    with pytest.raises(AudioError) as exc:
        load_audio(long, max_seconds=30)
    assert str(exc.value) == (
        f"{long}: 40 s long (44100 Hz, 2 ch); a file read whole (a stem for training or evaluation) "
        "may last 30 s (0.5 min; less above 96 kHz stereo); cut it into shorter tracks"
    )
    # the default bound, as training and evaluation use it
    monkeypatch.setattr(audio_module, "MAX_WHOLE_SECONDS", 30.0)
    with pytest.raises(AudioError, match="40 s long .* may last 30 s"):
        load_audio(long)
    # high sample rates hold more samples per second: bounded as 96 kHz stereo
    hires = _silence(tmp_path / "hires.wav", 20, rate=192000)
    with pytest.raises(AudioError, match=r"20 s long \(192000 Hz, 2 ch\)"):
        load_audio(hires)


@needs_ffmpeg
def test_ffmpeg_decodes_a_long_file_only_past_the_bound(tmp_path: Path, monkeypatch):
    wav = _silence(tmp_path / "long.wav", 40, channels=1)
    mp3 = tmp_path / "long.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-b:a", "32k", str(mp3)], check=True)
    decoded = []
    real = AudioReader._decode_with_ffmpeg

    def spy(self):
        out = real(self)
        decoded.append(sf.info(str(out)).duration)
        return out

    monkeypatch.setattr(AudioReader, "_decode_with_ffmpeg", spy)
    with pytest.raises(AudioError, match=r"long.mp3: longer than 10 s \(44100 Hz, 1 ch\)"):
        load_audio(mp3, max_seconds=10)
    assert decoded and decoded[0] < 12  # not the whole 40 s
    audio, rate = load_audio(mp3, max_seconds=60)
    assert rate == 44100 and audio.shape[0] >= 40 * 44100
