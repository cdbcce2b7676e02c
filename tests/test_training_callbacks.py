"""cunet.training.callbacks: checkpoints follow the selection metric, the time limit, resuming state."""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from cunet.provenance import make_provenance, read_provenance
from cunet.training.callbacks import (
    BEST_FILE,
    Backup,
    Checkpoints,
    LearningRateLog,
    learning_rate,
    monitor_of,
    resume_epoch,
    run_callbacks,
    truncate_history,
)


def with_select(config, select_by: str):
    return dataclasses.replace(
        config, train=dataclasses.replace(config.train, select_by=select_by)
    ).validate()


def test_monitor_of(tiny_config):
    assert tiny_config.train.select_by == "sdr"
    assert monitor_of(tiny_config) == ("val_sdr", "max")
    assert monitor_of(with_select(tiny_config, "loss")) == ("val_loss", "min")


@pytest.fixture(scope="module")
def network(tiny_config):
    from cunet.nn.models import build_model

    return build_model(tiny_config)


def fake_trainer(network):
    """What Checkpoints reads of the trained model: the network, the learning rate, stop_training."""
    return SimpleNamespace(
        network=network,
        optimizer=SimpleNamespace(learning_rate=np.float32(0.003)),
        stop_training=False,
    )


def run_epochs(callback, trainer, logs_per_epoch, first_epoch: int = 0) -> None:
    """Epoch ends with the given logs; the network's first weight is set to the epoch number first."""
    callback.set_model(trainer)
    for epoch, logs in enumerate(logs_per_epoch, start=first_epoch):
        weight = trainer.network.weights[0]
        weight.assign(np.full(weight.shape, float(epoch), np.float32))
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, dict(logs))


def saved_epoch(path) -> int:
    """The epoch whose weights a saved network holds (see run_epochs)."""
    model = keras.saving.load_model(path, compile=False)
    return int(keras.ops.convert_to_numpy(model.weights[0]).flat[0])


LOGS = [
    {"loss": 1.0, "val_loss": 5.0, "val_sdr": 1.0},
    {"loss": 0.9, "val_loss": 9.0, "val_sdr": 3.0},
    {"loss": 0.8, "val_loss": 1.0, "val_sdr": 2.0},
    {"loss": 0.7, "val_loss": math.nan, "val_sdr": math.nan},
]


@pytest.mark.parametrize("select_by,best_epoch,value", [("sdr", 2, 3.0), ("loss", 3, 1.0)])
def test_best_checkpoint_follows_the_selection_metric(
    tmp_path, tiny_config, network, select_by, best_epoch, value
):
    cfg = with_select(tiny_config, select_by)
    monitor, mode = monitor_of(cfg)
    provenance = make_provenance(cfg.to_dict(), data={}, metrics={})
    trainer = fake_trainer(network)
    run_epochs(Checkpoints(tmp_path, provenance, monitor, mode, max_minutes=0), trainer, LOGS)

    assert json.loads((tmp_path / BEST_FILE).read_text()) == {
        "metric": monitor,
        "value": value,
        "epoch": best_epoch,
    }
    assert saved_epoch(tmp_path / "best.keras") == best_epoch - 1
    assert saved_epoch(tmp_path / "last.keras") == len(LOGS) - 1
    metrics = read_provenance(tmp_path / "best.keras")["metrics"]
    assert (
        metrics["best_epoch"] == best_epoch
        and metrics["selected_by"] == monitor
        and metrics["best_value"] == value
    )
    on_disk = json.loads((tmp_path / "provenance.json").read_text())["metrics"]
    assert on_disk["epochs_done"] == 4 and [h["epoch"] for h in on_disk["history"]] == [1, 2, 3, 4]
    assert on_disk["history"][1] == {"epoch": 2, **LOGS[1], "seconds": pytest.approx(0, abs=60)}
    assert not trainer.stop_training

    # A resumed run remembers the best value: a worse epoch does not replace best.keras, a better one does.
    worse = {"val_sdr": value - 0.5, "val_loss": value + 0.5}
    better = {"val_sdr": value + 0.5, "val_loss": value - 0.5}
    resumed = Checkpoints(tmp_path, provenance, monitor, mode, max_minutes=0)
    assert resumed.best == value
    run_epochs(resumed, trainer, [worse], first_epoch=4)
    assert saved_epoch(tmp_path / "best.keras") == best_epoch - 1
    run_epochs(resumed, trainer, [better], first_epoch=5)
    assert saved_epoch(tmp_path / "best.keras") == 5
    assert json.loads((tmp_path / BEST_FILE).read_text())["epoch"] == 6


def test_time_limit_stops_after_the_epoch(tmp_path, tiny_config, network, capsys):
    provenance = make_provenance(tiny_config.to_dict(), data={}, metrics={})
    trainer = fake_trainer(network)
    checkpoints = Checkpoints(tmp_path, provenance, "val_sdr", "max", max_minutes=1e-6)
    assert not checkpoints.time_limited
    run_epochs(checkpoints, trainer, LOGS[:1])
    assert trainer.stop_training and checkpoints.time_limited
    assert "time limit of 1e-06 min reached after epoch 1; stopping" in capsys.readouterr().out
    assert (tmp_path / "last.keras").exists()


def test_learning_rate_log(network):
    logs: dict = {"loss": 1.0}
    log = LearningRateLog()
    log.set_model(fake_trainer(network))
    log.on_epoch_end(0, logs)  # in place: the loggers after it see the same dict
    assert logs == {"loss": 1.0, "learning_rate": pytest.approx(0.003)}


def test_learning_rate_plateau_and_cosine(tiny_config):
    t = dataclasses.replace(tiny_config.train, steps_per_epoch=10, epochs=4, learning_rate=1e-3)
    assert learning_rate(t) == 1e-3
    cosine = dataclasses.replace(t, lr_schedule="cosine", final_learning_rate=1e-5)
    schedule = learning_rate(cosine)
    rates = [float(schedule(step)) for step in (0, 20, 40, 80)]
    np.testing.assert_allclose(rates, [1e-3, 1e-5 + (1e-3 - 1e-5) / 2, 1e-5, 1e-5], rtol=1e-5)


def test_run_callbacks_order_and_monitors(tmp_path, tiny_config):
    first = keras.callbacks.Callback()
    for select_by, monitor, mode in (("sdr", "val_sdr", "max"), ("loss", "val_loss", "min")):
        cfg = with_select(tiny_config, select_by)
        callbacks = run_callbacks(
            cfg, tmp_path, make_provenance(cfg.to_dict()), 0, 0, first=[first]
        )
        kinds = [type(c).__name__ for c in callbacks]
        assert kinds == [
            "Callback",
            "ReduceLROnPlateau",
            "EarlyStopping",
            "CSVLogger",
            "TensorBoard",
            "Checkpoints",
            "Backup",
        ]
        assert callbacks[0] is first and isinstance(callbacks[-1], Backup)
        assert callbacks[1].monitor == callbacks[2].monitor == callbacks[5].monitor == monitor
        assert callbacks[5].mode == mode and callbacks[2].mode == mode
        assert not callbacks[-1].delete_checkpoint  # train() deletes it once the run is complete
    cosine = dataclasses.replace(
        tiny_config, train=dataclasses.replace(tiny_config.train, lr_schedule="cosine")
    ).validate()
    callbacks = run_callbacks(cosine, tmp_path, make_provenance(cosine.to_dict()), 0, 0, first=[])
    # No plateau rule against a schedule: the rate is logged for the CSV and the checkpoints instead.
    assert isinstance(callbacks[0], LearningRateLog)
    assert not any(isinstance(c, keras.callbacks.ReduceLROnPlateau) for c in callbacks)


# --------------------------------------------------------------------------- resume state


def test_resume_epoch(tmp_path):
    backup = tmp_path / "backup"
    assert resume_epoch(backup) == 0
    backup.mkdir()
    meta = backup / "training_metadata.json"
    meta.write_text(json.dumps({"epoch": 3, "batch": 2}))
    assert resume_epoch(backup) == 3
    # Metadata cut short by a kill: the previous (double) checkpoint is restored.
    meta.write_text('{"epo')
    (backup / "training_metadata.json.bkp").write_text(json.dumps({"epoch": 2}))
    (backup / "latest.weights.h5.bkp").write_bytes(b"previous weights")
    (backup / "latest.weights.h5").write_bytes(b"torn")
    assert resume_epoch(backup) == 2
    assert (backup / "latest.weights.h5").read_bytes() == b"previous weights"
    # Nothing usable: start over, without the backup.
    meta.write_text("garbage")
    (backup / "training_metadata.json.bkp").unlink()
    assert resume_epoch(backup) == 0 and not backup.exists()


def test_truncate_history(tmp_path):
    path = tmp_path / "history.csv"
    truncate_history(path, 1)  # no file: nothing to do
    path.write_text("epoch,loss\n0,1.0\n1,0.9\n2,0.8\n\n")
    truncate_history(path, 3)
    assert path.read_text() == "epoch,loss\n0,1.0\n1,0.9\n2,0.8\n\n"  # untouched when nothing goes
    truncate_history(path, 2)
    assert path.read_text() == "epoch,loss\n0,1.0\n1,0.9\n"
    truncate_history(path, 0)
    assert not path.exists()
