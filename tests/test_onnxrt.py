"""The ONNX engine: parity with the Keras engine, and files from strangers refused with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import synth_mixture

from cunet.errors import ModelError
from cunet.separator import Separator
from cunet.settings import ChunkSettings

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")


@pytest.fixture(scope="module")
def tiny_onnx(tiny_model_path: Path, tmp_path_factory) -> Path:
    from cunet.export.formats import export_model_file

    return export_model_file(
        tiny_model_path, tmp_path_factory.mktemp("onnx") / "tiny.onnx", fmt="onnx"
    )


def test_onnxruntime_masks_and_stems_match_keras(tiny_onnx: Path, tiny_model_path: Path) -> None:
    from cunet.engines.loading import load_engine
    from cunet.engines.onnxrt import OnnxEngine

    onnx_engine, config, record = load_engine(tiny_onnx)
    keras_engine = load_engine(tiny_model_path)[0]
    assert isinstance(onnx_engine, OnnxEngine) and record["export"]["format"] == "cunet-onnx/1"
    a = config.audio
    mag = (
        np.random.default_rng(0).uniform(0, 1, (2, a.n_bins, 192, a.n_channels)) ** 3 * 4
    ).astype(np.float32)
    cond = np.eye(4, dtype=np.float32)[[3, 1]]
    np.testing.assert_allclose(
        onnx_engine.masks(mag, cond), keras_engine.masks(mag, cond), atol=1e-5
    )
    x = synth_mixture(2.7, n_channels=1, seed=4)
    got, want = (
        Separator(e, chunks=ChunkSettings(1.0, 0.25), postprocess="ratio").separate(x, 44100)
        for e in (onnx_engine, keras_engine)
    )
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-4, err_msg=name)


def test_bad_onnx_files_are_one_line_model_errors(tiny_onnx: Path, tmp_path: Path) -> None:
    import onnx

    def with_props(props: dict[str, str], name: str) -> Path:
        model = onnx.load(str(tiny_onnx))
        del model.metadata_props[:]
        onnx.helper.set_model_props(model, props)
        onnx.save(model, str(tmp_path / name))
        return tmp_path / name

    record = json.loads(onnx.load(str(tiny_onnx)).metadata_props[0].value)
    wrong = json.loads(json.dumps(record))
    wrong["config"]["audio"]["n_bins"] = 64
    cases = {
        "random": ((tmp_path / "random.onnx"), "not a valid .onnx model"),
        "no_record": (with_props({}, "no_record.onnx"), "carries no cunet provenance"),
        "not_json": (with_props({"cunet.json": "{x"}, "not_json.onnx"), "is not valid JSON"),
        "no_export": (
            with_props({"cunet.json": json.dumps({"config": record["config"]})}, "no_export.onnx"),
            "export section",
        ),
        "wrong_shapes": (
            with_props({"cunet.json": json.dumps(wrong)}, "wrong_shapes.onnx"),
            "does not match",
        ),
    }
    (tmp_path / "random.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    for name, (path, message) in cases.items():
        with pytest.raises(ModelError, match=message) as info:
            Separator.from_pretrained(path)
        assert "\n" not in str(info.value), name
