"""SavedModel export: in-graph separation equals `Separator`, and needs no cunet to run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import synth_mixture

from cunet.settings import ChunkSettings

# Small chunks so a couple of seconds span several chunks (0.5 s -> 24448 samples, 0.1 s -> 4410).
CHUNK_SECONDS, OVERLAP_SECONDS = 0.5, 0.1
# A tolerance of 1e-4 is too loose: the randomly initialised tiny model's outputs move by only ~1e-4 when the
# chunk layout changes, so 1e-4 could not catch a wrong layout. The export reproduces the
# Separator's float ops, so a much tighter bound holds (in practice the difference is 0).
TOLERANCE = 1e-5

# Runs in a fresh, isolated interpreter with cunet made unimportable: only TensorFlow and NumPy.
CLIENT = textwrap.dedent("""
    import importlib.abc, json, sys
    from pathlib import Path

    class NoCunet(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "cunet" or name.startswith("cunet."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, NoCunet())
    try:
        import cunet
    except ImportError:
        pass
    else:
        sys.exit("cunet is importable in the client")

    import numpy as np
    import tensorflow as tf

    export, mixture, result = sys.argv[1:4]
    meta = json.loads((Path(export) / "assets" / "cunet.json").read_text())
    instruments = meta["config"]["model"]["instruments"]
    loaded = tf.saved_model.load(export)
    x = np.load(mixture)
    serve = loaded.signatures["serving_default"]
    vocals = serve(waveform=tf.constant(x), instrument=tf.constant("vocals"))["waveform"].numpy()
    bass = loaded.signatures["separate_condition"](
        waveform=tf.constant(x),
        condition=tf.constant([float(n == "bass") for n in instruments]))["waveform"].numpy()
    mono = serve(waveform=tf.constant(x[:, :1]), instrument=tf.constant("drums"))["waveform"].numpy()
    assert not [m for m in sys.modules if m == "cunet" or m.startswith("cunet.")]
    np.savez(result, vocals=vocals, bass=bass, mono=mono, sample_rate=meta["export"]["sample_rate"])
""")


def _quiet_env() -> dict[str, str]:
    """Environment for child interpreters: no PYTHONPATH, few threads (a model may be training)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(
        TF_CPP_MIN_LOG_LEVEL="2",
        TF_NUM_INTRAOP_THREADS="1",
        TF_NUM_INTEROP_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
    )
    return env


@pytest.fixture(scope="module")
def export_dir(tiny_model_path, tmp_path_factory) -> Path:
    """The tiny model exported through the CLI, laid out as TF Serving wants (base/1/)."""
    from cunet.cli import main

    out = tmp_path_factory.mktemp("serving") / "cunet" / "1"
    code = main(
        [
            "export",
            "--model",
            str(tiny_model_path),
            "--out",
            str(out),
            "-q",
            "--chunk-seconds",
            str(CHUNK_SECONDS),
            "--overlap-seconds",
            str(OVERLAP_SECONDS),
        ]
    )
    assert code == 0
    return out


@pytest.fixture(scope="module")
def reference(tiny_model_path):
    """The Keras-model Separator with the export's chunk settings."""
    from cunet.separator import Separator

    return Separator.from_pretrained(
        tiny_model_path, chunks=ChunkSettings(CHUNK_SECONDS, OVERLAP_SECONDS)
    )


@pytest.fixture(scope="module")
def loaded(export_dir):
    import tensorflow as tf

    return tf.saved_model.load(str(export_dir))


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())


def test_client_without_cunet_matches_separator(export_dir, reference, tmp_path):
    from cunet.separator import Separator

    x = synth_mixture(2.5, seed=3)
    assert reference.plan(x.shape[0], 44100).n_chunks >= 4
    np.save(tmp_path / "mix.npy", x)
    script = tmp_path / "client.py"
    script.write_text(CLIENT, encoding="utf-8")
    work = tmp_path / "elsewhere"
    work.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            str(script),
            str(export_dir),
            str(tmp_path / "mix.npy"),
            str(tmp_path / "result.npz"),
        ],
        cwd=work,
        env=_quiet_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(tmp_path / "result.npz")
    assert int(got["sample_rate"]) == reference.sample_rate
    want = reference.separate(x, 44100, ["vocals", "bass"])
    assert _max_diff(got["vocals"], want["vocals"]) < TOLERANCE
    assert _max_diff(got["bass"], want["bass"]) < TOLERANCE
    # Mono through the stereo model: duplicated in, averaged out, as Separator does.
    mono = reference.separate(x[:, 0], 44100, ["drums"])["drums"]
    assert _max_diff(got["mono"][:, 0], mono) < TOLERANCE
    assert np.abs(got["vocals"]).max() > 1e-3 and not np.allclose(got["vocals"], got["bass"])
    # The comparison can tell chunk layouts apart: a slightly different overlap fails it.
    other = Separator(reference.engine, chunks=ChunkSettings(CHUNK_SECONDS, OVERLAP_SECONDS * 1.2))
    assert _max_diff(got["vocals"], other.separate(x, 44100, ["vocals"])["vocals"]) > TOLERANCE


def test_short_and_exact_chunk_lengths(loaded, reference):
    import tensorflow as tf

    serve = loaded.signatures["serving_default"]
    # Shorter than a chunk, exactly one chunk, one hop past it.
    for n in (1000, reference.chunk, reference.chunk + reference.chunk - reference.overlap + 1):
        x = synth_mixture(1.2, seed=n)[:n]
        got = serve(waveform=tf.constant(x), instrument=tf.constant(" Vocals "))["waveform"].numpy()
        assert _max_diff(got, reference.separate(x, 44100, ["vocals"])["vocals"]) < TOLERANCE


def test_unknown_instrument_is_an_error(loaded):
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match="unknown instrument"):
        loaded.signatures["serving_default"](
            waveform=tf.zeros([4000, 2]), instrument=tf.constant("kazoo")
        )


def test_spectrogram_signature_matches_keras(loaded, reference, tiny_config):
    import tensorflow as tf

    from cunet.nn.models import mask_model

    rng = np.random.default_rng(0)
    mag = rng.uniform(0, 1, (2, tiny_config.audio.n_bins, 128, 2)).astype(np.float32)
    cond = np.eye(len(tiny_config.model.instruments), dtype=np.float32)[[0, 2]]
    out = loaded.signatures["spectrogram"](magnitude=tf.constant(mag), condition=tf.constant(cond))
    inputs = {"magnitude": mag, "condition": cond}
    masked = reference.engine.model(inputs, training=False).numpy()
    mask = mask_model(reference.engine.model)(inputs, training=False).numpy()
    assert _max_diff(out["magnitude"].numpy(), masked) < 1e-5
    assert _max_diff(out["mask"].numpy(), mask) < 1e-5


def test_saved_model_cli_lists_signatures(export_dir, tiny_config):
    cli = Path(sys.executable).with_name("saved_model_cli")
    command = (
        [str(cli)]
        if cli.exists()
        else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    )
    proc = subprocess.run(
        [*command, "show", "--all", "--dir", str(export_dir)],
        env=_quiet_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    bins, n_inst = tiny_config.audio.n_bins, len(tiny_config.model.instruments)
    found = {}
    for name, block in re.findall(r"signature_def\['(\w+)'\]:(.*?)Method name", proc.stdout, re.S):
        tensors = re.findall(
            r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (.*)", block
        )
        found[name] = {(kind, key, dtype, shape.strip()) for kind, key, dtype, shape in tensors}
    wave = ("DT_FLOAT", "(-1, -1)")
    patch = ("DT_FLOAT", f"(-1, {bins}, -1, 2)")
    assert found["serving_default"] == {
        ("inputs", "waveform", *wave),
        ("inputs", "instrument", "DT_STRING", "()"),
        ("outputs", "waveform", *wave),
    }
    assert found["separate_condition"] == {
        ("inputs", "waveform", *wave),
        ("inputs", "condition", "DT_FLOAT", f"({n_inst})"),
        ("outputs", "waveform", *wave),
    }
    assert found["spectrogram"] == {
        ("inputs", "magnitude", *patch),
        ("inputs", "condition", "DT_FLOAT", f"(-1, {n_inst})"),
        ("outputs", "magnitude", *patch),
        ("outputs", "mask", *patch),
    }


def test_separate_cli_accepts_export(export_dir, reference, tmp_path):
    from cunet.cli import main

    x = synth_mixture(1.5, seed=5)
    song = tmp_path / "song.wav"
    sf.write(song, x, 44100, subtype="FLOAT")
    code = main(
        [
            "separate",
            str(song),
            "--model",
            str(export_dir),
            "-o",
            str(tmp_path / "out"),
            "-i",
            "vocals,bass",
            "--float32",
            "-q",
            "--chunk-seconds",
            str(CHUNK_SECONDS),
            "--overlap-seconds",
            str(OVERLAP_SECONDS),
        ]
    )
    assert code == 0
    want = reference.separate(x, 44100, ["vocals", "bass"])
    for name in ("vocals", "bass"):
        got, rate = sf.read(
            tmp_path / "out" / "song" / f"{name}.wav", dtype="float32", always_2d=True
        )
        assert rate == 44100
        assert _max_diff(got, want[name]) < TOLERANCE


def test_keras_and_saved_model_round_trips_agree(
    tiny_model_path, export_dir, reference, tiny_config, tmp_path
):
    from cunet.engines.keras import SavedModelEngine
    from cunet.engines.loading import load_exported, load_keras_model
    from cunet.provenance import read_provenance, save_model
    from cunet.separator import Separator

    model, _, provenance = load_keras_model(tiny_model_path)
    resaved = save_model(model, tmp_path / "again.keras", provenance)
    settings = {"chunks": ChunkSettings(CHUNK_SECONDS, OVERLAP_SECONDS)}
    from_keras = Separator.from_pretrained(resaved, **settings)
    from_export = Separator.from_pretrained(export_dir, **settings)
    assert (
        isinstance(from_export.engine, SavedModelEngine)
        and from_export.instruments == reference.instruments
    )
    x = synth_mixture(2.0, seed=7)
    want = reference.separate(x, 44100)
    for sep in (from_keras, from_export):
        got = sep.separate(x, 44100)
        for name in want:
            assert _max_diff(got[name], want[name]) < TOLERANCE, name

    _, config, record = load_exported(export_dir)
    assert config == tiny_config
    assert record["data"] == read_provenance(tiny_model_path)["data"]
    assert record["export"]["chunk_samples"] == reference.chunk
    assert record["export"]["overlap_samples"] == reference.overlap


def test_bad_exports_raise_model_error(export_dir, tmp_path):
    from cunet.engines.loading import load_exported
    from cunet.errors import ModelError
    from cunet.separator import Separator

    with pytest.raises(ModelError, match="no saved_model.pb"):
        load_exported(tmp_path)
    no_asset = shutil.copytree(export_dir, tmp_path / "no_asset")
    (no_asset / "assets" / "cunet.json").unlink()
    with pytest.raises(ModelError, match="cunet export"):
        Separator.from_pretrained(no_asset)
    edited = shutil.copytree(export_dir, tmp_path / "edited")
    record = json.loads((edited / "assets" / "cunet.json").read_text())
    record["config"]["audio"]["n_bins"] = 64
    (edited / "assets" / "cunet.json").write_text(json.dumps(record))
    with pytest.raises(ModelError, match="does not match"):
        load_exported(edited)
    corrupt = shutil.copytree(export_dir, tmp_path / "corrupt")
    (corrupt / "saved_model.pb").write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match="cannot load SavedModel") as info:
        load_exported(corrupt)
    assert "\n" not in str(info.value)


def test_export_cli_refuses_bad_outputs(tiny_model_path, export_dir, tmp_path, capsys):
    from cunet.cli import main

    base = ["export", "--model", str(tiny_model_path), "-q"]
    assert main([*base, "--out", str(export_dir)]) == 2
    assert "--force" in capsys.readouterr().err
    other = tmp_path / "not_an_export"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main([*base, "--out", str(other), "--force"]) == 2
    assert "refusing" in capsys.readouterr().err and (other / "keep.txt").exists()
    assert main(["export", "--model", str(export_dir), "--out", str(tmp_path / "x")]) == 2
    assert "is already an export" in capsys.readouterr().err
    assert (
        main(
            [
                *base,
                "--out",
                str(tmp_path / "y"),
                "--chunk-seconds",
                "1",
                "--overlap-seconds",
                "0.5",
            ]
        )
        == 2
    )
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_ratio_export_matches_the_ratio_separator(tiny_model_path, tmp_path):
    """--postprocess ratio: the waveform signatures normalise every instrument's mask as the Separator does,
    and the export's config says so (a Separator over the export combines masks the same way)."""
    import tensorflow as tf

    from cunet.cli import main
    from cunet.separator import Separator

    out = tmp_path / "ratio" / "1"
    assert (
        main(
            [
                "export",
                "--model",
                str(tiny_model_path),
                "--out",
                str(out),
                "-q",
                "--postprocess",
                "ratio",
                "--chunk-seconds",
                str(CHUNK_SECONDS),
                "--overlap-seconds",
                str(OVERLAP_SECONDS),
            ]
        )
        == 0
    )
    x = synth_mixture(2.0, seed=9)
    ours = Separator.from_pretrained(
        tiny_model_path,
        chunks=ChunkSettings(CHUNK_SECONDS, OVERLAP_SECONDS),
        postprocess="ratio",
    ).separate(x, 44100)
    served = tf.saved_model.load(str(out)).signatures["serving_default"]
    for name in ("vocals", "other"):
        got = served(waveform=tf.constant(x), instrument=tf.constant(name))["waveform"].numpy()
        assert _max_diff(got, ours[name]) < 1e-5
    again = Separator.from_pretrained(out)
    assert again.postprocess.mode == "ratio"
    assert _max_diff(again.separate(x, 44100, ["bass"])["bass"], ours["bass"]) < 1e-5


def test_wiener_export_is_refused(tiny_model_path, tmp_path, capsys):
    from cunet.cli import main

    with pytest.raises(SystemExit) as exit_info:  # argparse refuses the choice
        main(
            [
                "export",
                "--model",
                str(tiny_model_path),
                "--out",
                str(tmp_path / "w"),
                "--postprocess",
                "wiener",
            ]
        )
    assert exit_info.value.code == 2 and "invalid choice: 'wiener'" in capsys.readouterr().err
    from cunet.errors import ExportError
    from cunet.export.formats import export_model_file

    with pytest.raises(ExportError, match="not 'wiener'"):
        export_model_file(tiny_model_path, tmp_path / "w2", postprocess="wiener")
    assert not (tmp_path / "w2").exists()
