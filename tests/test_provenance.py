from __future__ import annotations

import json
import zipfile

from cunet.provenance import (
    PROVENANCE_ENTRY,
    git_commit,
    make_provenance,
    package_versions,
    read_provenance,
    save_model,
    write_json_atomic,
)


def test_provenance_record_fields(tiny_config):
    record = make_provenance(tiny_config.to_dict(), data={"tracks": ["a"]}, metrics={"sdr": 1.0})
    for key in ("created", "git_commit", "packages", "config", "data", "metrics"):
        assert key in record
    assert record["packages"]["tensorflow"]
    assert record["config"]["audio"]["sample_rate"] == tiny_config.audio.sample_rate
    json.dumps(record)


def test_save_model_embeds_provenance(tmp_path, tiny_config):
    from cunet.nn.models import build_model

    path = save_model(
        build_model(tiny_config), tmp_path / "m.keras", make_provenance(tiny_config.to_dict())
    )
    assert path.exists()
    assert PROVENANCE_ENTRY in zipfile.ZipFile(path).namelist()
    assert read_provenance(path)["config"] == tiny_config.to_dict()
    assert not [p for p in tmp_path.iterdir() if p.name != "m.keras"]  # no temp files left


def test_read_provenance_of_bad_files(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    assert read_provenance(bad) is None
    assert read_provenance(tmp_path / "missing.keras") is None


def test_write_json_atomic(tmp_path):
    write_json_atomic(tmp_path / "x.json", {"a": 1})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}
    assert package_versions()["python"]


def test_tampered_weights_are_rejected(tmp_path, tiny_model_path):
    import zipfile

    import pytest

    from cunet.engines.loading import load_keras_model
    from cunet.errors import ModelError

    tampered = tmp_path / "tampered.keras"
    with zipfile.ZipFile(tiny_model_path) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith(".weights.h5"):
                data = data[:-64] + bytes(
                    b ^ 0xFF for b in data[-64:]
                )  # flip bits in the last weights
            dst.writestr(item, data)
    with pytest.raises(ModelError, match="modified"):
        load_keras_model(tampered)
    model, config, provenance = load_keras_model(tiny_model_path)
    assert provenance["weights_sha256"]


def test_git_commit_declared_in_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.delenv("CUNET_GIT_COMMIT", raising=False)
    assert git_commit(tmp_path) is None  # not a git checkout, nothing declared
    monkeypatch.setenv("CUNET_GIT_COMMIT", "96c8d5ba2bec")
    assert git_commit(tmp_path) == "96c8d5ba2bec"
    assert git_commit() == "96c8d5ba2bec"  # also over a checkout's own (possibly stale) metadata
