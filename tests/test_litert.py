"""The LiteRT engine: parity with the Keras engine (masks and stems), the embedded record, files from
strangers refused with one line, no TensorFlow on its path, and the shipped `.tflite` twin."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import decoder_film_model, rewrite_tflite, synth_mixture

from cunet.dsp import n_frames_for
from cunet.engines.litert import (
    CHUNK_SIGNATURE,
    DECODE_SIGNATURE,
    ENCODE_SIGNATURE,
    MASKS_SIGNATURE,
    LiteRTEngine,
    load_tflite,
    read_tflite,
    record_digest,
)
from cunet.engines.loading import DEFAULT_MODEL, DEFAULT_TFLITE
from cunet.errors import ModelError
from cunet.provenance import weights_digest
from cunet.separator import Separator
from cunet.settings import ChunkSettings

ROOT = Path(__file__).resolve().parents[1]
CHUNK, OVERLAP = 1.0, 0.25  # as the tiny_tflite_path export


@pytest.fixture(scope="module")
def engines(tiny_tflite_path, tiny_model_path):
    from cunet.engines.loading import load_engine

    return load_engine(tiny_tflite_path)[0], load_engine(tiny_model_path)[0]


def counting(engine: LiteRTEngine, monkeypatch) -> dict[str, int]:
    """Count the engine's runs per signature."""
    counts = dict.fromkeys(engine._runners, 0)
    for name, runner in list(engine._runners.items()):

        def wrapped(_runner=runner, _name=name, **inputs):
            counts[_name] += 1
            return _runner(**inputs)

        monkeypatch.setitem(engine._runners, name, wrapped)
    return counts


def test_masks_match_the_keras_engine(engines, tiny_config, monkeypatch) -> None:
    litert, keras_engine = engines
    counts = counting(litert, monkeypatch)
    a, m = tiny_config.audio, tiny_config.model
    rng = np.random.default_rng(1)
    cond = np.eye(4, dtype=np.float32)[[2, 0, 3]]
    for frames in (m.time_multiple, litert.chunk_frames, 3 * m.time_multiple):
        mag = (rng.uniform(0, 1, (2, a.n_bins, frames, a.n_channels)) ** 3 * 4).astype(np.float32)
        got, want = litert.masks(mag, cond), keras_engine.masks(mag, cond)
        assert got.shape == want.shape == (3, *mag.shape) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert counts == {
        CHUNK_SIGNATURE: 6,
        MASKS_SIGNATURE: 12,
    }  # one run per (condition, group) pair


@pytest.fixture(scope="module", params=["complex", "gpocm"])
def decoder_film_engines(request, tmp_path_factory, tiny_config):
    """(LiteRT, Keras) engines of a random tiny C-U-Net with FiLM (or GPoCM) only in the decoder."""
    from cunet.engines.loading import load_engine
    from cunet.export.formats import export_model_file
    from cunet.provenance import make_provenance, save_model

    model, config = decoder_film_model(tiny_config, seed=2, film_type=request.param)
    folder = tmp_path_factory.mktemp("decoder_film")
    path = save_model(model, folder / "model.keras", make_provenance(config.to_dict()))
    tflite = export_model_file(
        path, folder / "model.tflite", chunks=ChunkSettings(CHUNK, OVERLAP), fmt="tflite"
    )
    return load_engine(tflite)[0], load_engine(path)[0]


def test_a_decoder_film_model_is_encoded_once_per_group(
    decoder_film_engines, tiny_config, monkeypatch
) -> None:
    litert, keras_engine = decoder_film_engines
    assert litert.encodes_once and keras_engine.encodes_once
    counts = counting(litert, monkeypatch)
    a, m = tiny_config.audio, tiny_config.model
    rng = np.random.default_rng(4)
    cond = np.eye(4, dtype=np.float32)
    for frames in (litert.chunk_frames, 3 * m.time_multiple):
        mag = (rng.uniform(0, 1, (2, a.n_bins, frames, a.n_channels)) ** 3 * 4).astype(np.float32)
        got, want = litert.masks(mag, cond), keras_engine.masks(mag, cond)
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert not np.allclose(got[0], got[1])
    assert counts == {
        CHUNK_SIGNATURE: 0,
        MASKS_SIGNATURE: 0,
        ENCODE_SIGNATURE: 4,
        DECODE_SIGNATURE: 16,
    }
    signatures = litert.record["export"]["signatures"]
    assert {ENCODE_SIGNATURE, DECODE_SIGNATURE} <= set(signatures)


def test_an_export_without_encode_once_runs_the_whole_network(tmp_path, tiny_config) -> None:
    from cunet.engines.loading import load_engine
    from cunet.export.formats import export_model_file
    from cunet.provenance import make_provenance, save_model

    model, config = decoder_film_model(tiny_config, seed=3)
    path = save_model(model, tmp_path / "model.keras", make_provenance(config.to_dict()))
    tflite = export_model_file(
        path,
        tmp_path / "model.tflite",
        chunks=ChunkSettings(CHUNK, OVERLAP),
        fmt="tflite",
        encode_once=False,
    )
    litert, keras_engine = load_engine(tflite)[0], load_engine(path)[0]
    assert not litert.encodes_once
    assert set(litert.record["export"]["signatures"]) == {CHUNK_SIGNATURE, MASKS_SIGNATURE}
    mag = np.random.default_rng(5).uniform(
        0, 1, (1, config.audio.n_bins, litert.chunk_frames, config.audio.n_channels)
    )
    cond = np.eye(4, dtype=np.float32)
    np.testing.assert_allclose(
        litert.masks(mag.astype(np.float32), cond),
        keras_engine.masks(mag.astype(np.float32), cond),
        atol=1e-5,
    )


def _exact_chunk_seconds(sep: Separator) -> float:
    return (sep.chunk - 2 * sep.overlap) / sep.sample_rate  # one chunk of exactly `chunk` samples


# (seconds or "exact", sample rate, channels, post-processing)
PARITY = [
    (0.3, 44100, 2, "none"),
    ("exact", 44100, 2, "none"),
    (3.3, 44100, 2, "none"),
    (3.3, 44100, 1, "none"),
    (2.0, 22050, 2, "none"),
    (1.7, 48000, 1, "ratio"),
    (3.3, 44100, 2, "ratio"),
    ("exact", 44100, 1, "ratio"),
    (1 / 8000, 8000, 1, "none"),
]


@pytest.mark.parametrize(
    "seconds,rate,n_channels,postprocess",
    PARITY,
    ids=[f"{s if isinstance(s, str) else round(s, 4)}s-{r}-{c}ch-{p}" for s, r, c, p in PARITY],
)
def test_stems_match_the_keras_engine(
    engines, seconds, rate: int, n_channels: int, postprocess: str, monkeypatch
) -> None:
    litert, keras_engine = engines
    counts = counting(litert, monkeypatch)
    seps = [
        Separator(e, chunks=ChunkSettings(CHUNK, OVERLAP), postprocess=postprocess)
        for e in (litert, keras_engine)
    ]
    if seconds == "exact":
        seconds = _exact_chunk_seconds(seps[0])
    x = synth_mixture(max(seconds, 1 / rate), rate, n_channels, seed=3)[
        : max(1, int(round(seconds * rate)))
    ]
    lite, ref = (s.separate(x, rate) for s in seps)
    for name in ref:
        assert lite[name].shape == x.shape and np.isfinite(lite[name]).all()
        np.testing.assert_allclose(lite[name], ref[name], atol=1e-4, err_msg=name)
    a, multiple = litert.config.audio, litert.config.model.time_multiple
    frames = n_frames_for(seps[0].plan(x.shape[0], rate).chunk, a.n_fft, a.hop_length)
    used = (
        CHUNK_SIGNATURE
        if -(-frames // multiple) * multiple == litert.chunk_frames
        else MASKS_SIGNATURE
    )
    assert (
        counts[used] > 0 and sum(counts.values()) == counts[used]
    )  # full chunks: the fixed-shape signature


def test_record_says_what_a_caller_needs(tiny_tflite_path, tiny_model_path, tiny_config) -> None:
    engine, config, record = load_tflite(tiny_tflite_path)
    assert config == tiny_config and record["data"] == {"synthetic": True}
    export = record["export"]
    sep = Separator(engine, chunks=ChunkSettings(CHUNK, OVERLAP))
    assert (
        export["source_weights_sha256"]
        == weights_digest(tiny_model_path)
        == record["weights_sha256"]
    )
    assert (export["chunk_samples"], export["overlap_samples"]) == (sep.chunk, sep.overlap)
    assert export["chunk_frames"] == n_frames_for(
        sep.chunk, config.audio.n_fft, config.audio.hop_length
    )
    assert (
        export["sample_rate"],
        export["n_fft"],
        export["hop_length"],
        export["n_bins"],
        export["n_channels"],
    ) == (44100, 256, 128, 128, 2)
    assert export["instruments"] == export["conditions"] == list(config.model.instruments)
    assert export["postprocess"] == "none" and export["quantize"] == "none"
    assert set(export["signatures"]) == {CHUNK_SIGNATURE, MASKS_SIGNATURE}
    assert export["converter"]["tensorflow"] and engine.num_threads >= 1


def _json(obj) -> bytes:
    return json.dumps(obj).encode()


def bad_tflite_files(src: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """{case: (file, expected message part)} for files that must be refused."""
    data = src.read_bytes()
    _, record = read_tflite(src)
    wrong_bins = json.loads(json.dumps(record))
    wrong_bins["config"]["audio"]["n_bins"] = 64
    no_export = {k: v for k, v in record.items() if k != "export"}
    bad_frames = json.loads(json.dumps(record))
    bad_frames["export"]["chunk_frames"] = "many"
    cases = {
        "truncated": (data[: len(data) * 6 // 10], "not a valid .tflite model"),
        "random": (np.random.default_rng(0).bytes(64 << 10), "not a valid .tflite model"),
        "empty": (b"", "not a valid .tflite model"),
        "header_only": (data[:64], "not a valid .tflite model"),
    }
    files = {name: (folder / f"{name}.tflite", msg) for name, (_, msg) in cases.items()}
    for name, (content, _) in cases.items():
        files[name][0].write_bytes(content)
    rewrites = {
        "no_record": (None, 0.0, "carries no cunet provenance"),
        "not_json": (b"{config: yes", 0.0, "is not valid JSON"),
        "record_list": (b"[1, 2]", 0.0, "holds a JSON list"),
        "no_export_section": (_json(no_export), 0.0, "has no 'cunet-tflite/1' export section"),
        "bad_chunk_frames": (_json(bad_frames), 0.0, "no valid export.chunk_frames"),
        "weights_modified": ("keep", 0.25, "has been modified"),
    }
    for name, (rec, delta, msg) in rewrites.items():
        files[name] = (rewrite_tflite(src, folder / f"{name}.tflite", rec, delta), msg)
    # A record whose config does not describe the network: the buffers are intact, the shapes are not
    # (its checksum recomputed, as a forger would).
    wrong_bins["export"]["record_sha256"] = record_digest(wrong_bins)
    files["wrong_shapes"] = (
        rewrite_tflite(src, folder / "wrong_shapes.tflite", _json(wrong_bins)),
        "does not match the network's",
    )
    # The record edited in place, same length, weights untouched: the record's checksum catches it.
    edited = data.replace(b'"hop_length": 128', b'"hop_length": 1  ')
    assert edited != data
    files["record_edited"] = (folder / "record_edited.tflite", "record does not match")
    files["record_edited"][0].write_bytes(edited)
    # Rebuilt records (checksum recomputed) asking for huge buffers: bounded, refused before any work.
    for name, key, value in (("huge_rate", "sample_rate", 10**9), ("huge_fft", "n_fft", 2**20)):
        huge = json.loads(json.dumps(record))
        huge["config"]["audio"][key] = value
        huge["export"]["record_sha256"] = record_digest(huge)
        files[name] = (
            rewrite_tflite(src, folder / f"{name}.tflite", _json(huge)),
            f"invalid config: invalid value for 'audio.{key}'",
        )
    return files


def test_bad_files_are_one_line_model_errors(tiny_tflite_path, tmp_path) -> None:
    for name, (path, message) in bad_tflite_files(tiny_tflite_path, tmp_path).items():
        with pytest.raises(ModelError, match=message) as info:
            Separator.from_pretrained(path)
        assert "\n" not in str(info.value) and path.name in str(info.value), name
    with pytest.raises(ModelError, match="does not exist"):
        load_tflite(tmp_path / "missing.tflite")


NO_TF_RUN = textwrap.dedent("""
    import runpy, sys
    model, shipped = sys.argv[1:3]
    def cli(*args):
        sys.argv = ["cunet", *args]
        try:
            runpy.run_module("cunet.cli", run_name="__main__")
        except SystemExit as exc:
            return exc.code
    assert cli("separate", "--help") == 0
    assert cli("separate", "missing.wav", "-q", "--model", model) == 2
    assert cli("separate", "song.wav", "-q", "-o", "out", "--model", model, "--chunk-seconds", "1",
               "--overlap-seconds", "0.25") == 0
    if shipped == "shipped":
        assert cli("separate", "song.wav", "-q", "-o", "shipped", "-i", "vocals,bass") == 0
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras", "scipy"))
    print("HEAVY", heavy)
    """)


def test_litert_path_never_imports_tensorflow(tiny_tflite_path, tmp_path) -> None:
    """`separate --help`, an error and 3-second files through LiteRT (the tiny model, and the shipped one when
    it is built) leave TensorFlow, Keras and SciPy unimported: checked in sys.modules after the runs."""
    import soundfile as sf

    sf.write(tmp_path / "song.wav", synth_mixture(3.0), 44100)
    shipped = "shipped" if DEFAULT_TFLITE.exists() else "-"
    proc = subprocess.run(
        [sys.executable, "-c", NO_TF_RUN, str(tiny_tflite_path), shipped],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "HEAVY []" in proc.stdout, proc.stdout
    stems = sorted(p.name for p in (tmp_path / "out" / "song").iterdir())
    assert stems == ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]
    if shipped == "shipped":
        assert sorted(p.name for p in (tmp_path / "shipped" / "song").iterdir()) == [
            "bass.wav",
            "vocals.wav",
        ]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["error: missing.wav: no such file"], proc.stderr  # no LiteRT/XNNPACK chatter


@pytest.mark.skipif(
    not DEFAULT_TFLITE.exists(), reason="shipped .tflite not generated (scripts/make_tflite.py)"
)
def test_shipped_tflite_is_the_twin_of_the_shipped_keras() -> None:
    """Whatever model is shipped: the .tflite records the .keras weights' checksum and config, and computes
    the same masks (rerun scripts/make_tflite.py when default.keras changes)."""
    from cunet.engines.loading import default_model, load_engine, read_keras_provenance
    from cunet.settings import ChunkSettings

    lite, config, record = load_engine()
    assert isinstance(lite, LiteRTEngine) and default_model() == DEFAULT_TFLITE
    assert record["export"]["source_weights_sha256"] == weights_digest(DEFAULT_MODEL), (
        "cunet/pretrained/default.tflite is stale: run python scripts/make_tflite.py"
    )
    keras_record = read_keras_provenance(DEFAULT_MODEL)
    for key in ("git_commit", "data", "metrics", "packages"):
        assert record.get(key) == keras_record.get(key)
    defaults = ChunkSettings()
    assert (record["export"]["chunk_seconds"], record["export"]["overlap_seconds"]) == (
        defaults.chunk_seconds,
        defaults.overlap_seconds,
    )
    assert record["export"]["source"] == "cunet/pretrained/default.keras"
    # scripts/make_tflite.py adds encode/decode: the shipped model's FiLM is in the decoder only
    assert lite.encodes_once == config.model.shares_encoder
    keras_engine, keras_config, _ = load_engine(None, engine="keras")
    assert keras_config == config  # the same settings, post-processing default included
    rng = np.random.default_rng(0)
    a = config.audio
    for frames in (128, lite.chunk_frames):
        mag = (rng.uniform(0, 1, (1, a.n_bins, frames, a.n_channels)) ** 4 * 20).astype(np.float32)
        cond = np.eye(len(config.model.instruments), dtype=np.float32)
        np.testing.assert_allclose(lite.masks(mag, cond), keras_engine.masks(mag, cond), atol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_TFLITE.exists(), reason="shipped .tflite not generated")
def test_make_tflite_check_finds_the_shipped_file_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_tflite.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0 and "up to date" in proc.stdout, proc.stdout + proc.stderr[-2000:]
