"""Model loading: paths, engines, and files from strangers refused with one line before they cost anything."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cunet.engines.loading import (
    EXPANSION_LIMIT,
    load_engine,
    read_export_provenance,
    read_keras_provenance,
    resolve_model_path,
)
from cunet.errors import ModelError


def test_model_resolution_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model_path(tmp_path / "nope.keras")
    with pytest.raises(ModelError, match="neither"):
        resolve_model_path(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.keras").write_bytes(b"")
    assert resolve_model_path(run) == run / "best.keras"


def test_load_engine_of_a_keras_file(tiny_model_path: Path, tiny_config) -> None:
    from cunet.engines.keras import KerasEngine

    engine, config, provenance = load_engine(tiny_model_path)
    assert isinstance(engine, KerasEngine) and config == tiny_config == engine.config
    assert provenance["data"] == {"synthetic": True}
    assert config.model.conditioned and config.model.outputs == config.model.instruments


def _with_record(
    src: Path, dst: Path, record: bytes | None, compress: int = zipfile.ZIP_STORED
) -> Path:
    """A copy of a .keras archive whose cunet.json is `record` (None: dropped)."""
    with zipfile.ZipFile(src) as archive, zipfile.ZipFile(dst, "w", compress) as out:
        for name in archive.namelist():
            if name != "cunet.json":
                out.writestr(name, archive.read(name))
        if record is not None:
            out.writestr("cunet.json", record)
    return dst


BAD_RECORDS = {
    "list": (b"[1, 2, 3]", "holds a JSON list, not a provenance record"),
    "string": (b'"config"', "holds a JSON str"),
    "number": (b"42", "holds a JSON int"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "deep_object": (b'{"config": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    "config_list": (b'{"config": [1, 2]}', "has a config of type list"),
    "config_string": (b'{"config": "default"}', "has a config of type str"),
    "no_config": (b'{"data": {}}', "carries no cunet config"),
    "not_json": (b"{config: yes}", "is not valid JSON"),
    "not_utf8": (b'{"config": "\xff\xfe"}', "is not valid JSON"),
}


@pytest.mark.parametrize("name", list(BAD_RECORDS))
def test_wrong_record_types_are_one_line(tiny_model_path: Path, tmp_path: Path, name: str) -> None:
    data, expected = BAD_RECORDS[name]
    path = _with_record(tiny_model_path, tmp_path / f"{name}.keras", data)
    with pytest.raises(ModelError) as info:
        read_keras_provenance(path)
    message = str(info.value)
    assert expected in message and str(path) in message and "cunet.json" in message, message
    assert "\n" not in message and len(message) < 600


def test_oversized_record_is_refused_unread(tiny_model_path: Path, tmp_path: Path) -> None:
    record = b'{"config": {}, "pad": "' + b" " * (17 << 20) + b'"}'
    path = _with_record(tiny_model_path, tmp_path / "big_record.keras", record)
    with pytest.raises(ModelError, match="more than a provenance record can be"):
        read_keras_provenance(path)


def test_zip_bomb_is_refused_before_unpacking(tiny_model_path: Path, tmp_path: Path) -> None:
    """A member of 64 MiB of zeros deflates to ~64 KiB: its declared size is far beyond EXPANSION_LIMIT x."""
    bomb = tmp_path / "bomb.keras"
    with (
        zipfile.ZipFile(tiny_model_path) as archive,
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out,
    ):
        for name in archive.namelist():
            out.writestr(name, archive.read(name))
        with out.open("padding.bin", "w", force_zip64=True) as member:
            block = bytes(1 << 20)
            for _ in range(64):
                member.write(block)
    assert bomb.stat().st_size * EXPANSION_LIMIT < 64 << 20
    with pytest.raises(ModelError, match="would unpack to") as info:
        read_keras_provenance(bomb)
    assert str(bomb) in str(info.value)


def test_rejections_happen_before_tensorflow_is_imported(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    path = _with_record(tiny_model_path, tmp_path / "list.keras", b"[]")
    code = (
        "import sys\nfrom cunet.errors import ModelError\nfrom cunet.engines.loading import load_engine\n"
        f"try:\n    load_engine({str(path)!r})\nexcept ModelError:\n    pass\nelse:\n    sys.exit('loaded')\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_export_record_types_are_checked(tmp_path: Path) -> None:
    export = tmp_path / "export"
    (export / "assets").mkdir(parents=True)
    (export / "saved_model.pb").write_bytes(b"not read before the record is checked")
    (export / "assets" / "cunet.json").write_text(json.dumps(["config"]))
    with pytest.raises(ModelError, match="holds a JSON list"):
        read_export_provenance(export)
    (export / "assets" / "cunet.json").write_text(
        json.dumps({"config": {"audio": {"n_channels": 3}}})
    )
    with pytest.raises(ModelError, match="invalid config"):
        load_engine(export)


def test_engines_follow_the_model_file(tiny_model_path: Path, tiny_tflite_path: Path) -> None:
    from cunet.engines.keras import KerasEngine
    from cunet.engines.litert import LiteRTEngine
    from cunet.engines.loading import (
        DEFAULT_MODEL,
        DEFAULT_TFLITE,
        ENGINES,
        default_model,
        engine_for,
    )
    from cunet.errors import UserError

    assert engine_for(tiny_tflite_path) == "litert" and engine_for(tiny_model_path) == "keras"
    assert engine_for(Path("m.ONNX")) == "onnx" and engine_for(tiny_model_path.parent) == "keras"
    assert isinstance(load_engine(tiny_tflite_path)[0], LiteRTEngine)
    assert isinstance(load_engine(tiny_tflite_path, engine="litert")[0], LiteRTEngine)
    assert isinstance(load_engine(tiny_model_path, engine="keras")[0], KerasEngine)
    with pytest.raises(UserError, match="the keras engine cannot run"):
        load_engine(tiny_tflite_path, engine="keras")
    with pytest.raises(UserError, match="the litert engine cannot run"):
        load_engine(tiny_model_path, engine="litert")
    with pytest.raises(UserError, match="unknown engine 'tpu'"):
        load_engine(tiny_model_path, engine="tpu")
    assert set(ENGINES) == {"auto", "keras", "litert", "onnx"}
    assert default_model("keras") == DEFAULT_MODEL
    if DEFAULT_TFLITE.exists():
        assert default_model() == default_model("litert") == DEFAULT_TFLITE
    with pytest.raises(UserError, match="no ONNX model is shipped"):
        default_model("onnx")


def test_missing_shipped_tflite_falls_back_to_keras_or_is_an_error(
    monkeypatch, tmp_path: Path
) -> None:
    import cunet.engines.loading as modelio

    monkeypatch.setattr(modelio, "DEFAULT_TFLITE", tmp_path / "gone.tflite")
    if modelio.DEFAULT_MODEL.exists():
        assert modelio.default_model() == modelio.DEFAULT_MODEL
    with pytest.raises(ModelError, match="make_tflite.py"):
        modelio.default_model("litert")
