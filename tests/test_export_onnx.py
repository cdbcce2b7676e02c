"""`cunet export --format onnx`: the mask network and its record in one `.onnx` file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cunet.cli import main

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("tf2onnx")


def test_cli_writes_onnx_with_its_record(tiny_model_path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.onnx"
    assert (
        main(
            [
                "export",
                "-m",
                str(tiny_model_path),
                "-o",
                str(out),
                "--format",
                "onnx",
                "--postprocess",
                "ratio",
            ]
        )
        == 0
    )
    assert "exported" in capsys.readouterr().err
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    record = json.loads({p.key: p.value for p in model.metadata_props}["cunet.json"])
    assert (
        record["export"]["format"] == "cunet-onnx/1" and record["export"]["postprocess"] == "ratio"
    )
    assert record["config"]["model"]["postprocess"] == "ratio" and record["export"]["opset"] >= 13
    assert [i.name for i in model.graph.input] == ["magnitude", "condition"]
    assert main(["export", "-m", str(tiny_model_path), "-o", str(out), "--format", "onnx"]) == 2
    assert "exists; use --force" in capsys.readouterr().err
