"""cunet.training.finetune: starting from a trained model (same instruments, or more)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import make_folder_dataset, synth_stems, write_track

from cunet.errors import DataError


def with_model(config, **changes):
    return dataclasses.replace(
        config, model=dataclasses.replace(config.model, **changes)
    ).validate()


def masks(model, magnitude, n_instruments):
    from cunet.nn.models import mask_model

    cond = np.eye(n_instruments, dtype=np.float32)
    return mask_model(model)(
        {"magnitude": np.repeat(magnitude, n_instruments, 0), "condition": cond}
    ).numpy()


@pytest.fixture(scope="module")
def parent(tiny_config):
    import keras

    from cunet.nn.models import build_model

    keras.utils.set_random_seed(1)
    return build_model(tiny_config)


def test_same_instruments_copy_every_weight(parent, tiny_config):
    import keras

    from cunet.nn.models import build_model
    from cunet.training.finetune import copy_weights

    child = build_model(tiny_config)
    copy_weights(parent, child, tiny_config, tiny_config)
    for a, b in zip(parent.weights, child.weights, strict=False):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_added_instrument_keeps_the_old_ones_and_starts_as_other(parent, tiny_config):
    from cunet.nn.models import build_model
    from cunet.training.finetune import check_compatible, copy_weights

    five = with_model(tiny_config, instruments=(*tiny_config.model.instruments, "guitar"))
    assert check_compatible(tiny_config, five) == ["guitar"]
    child = build_model(five)
    copy_weights(parent, child, tiny_config, five)
    x = np.random.default_rng(0).random((1, 128, 64, 2), dtype=np.float32) * 3
    old, new = masks(parent, x, 4), masks(child, x, 5)
    np.testing.assert_allclose(new[:4], old, atol=1e-5)
    np.testing.assert_allclose(new[4], old[3], atol=1e-5)  # guitar starts where "other" is


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(instruments=("vocals", "drums", "bass")), "must come first"),
        (dict(instruments=("vocals", "drums", "bass", "guitar")), "must come first"),
        (dict(instruments=("drums", "vocals", "bass", "other")), "must come first"),
        (dict(first_filters=4), "differs in model.first_filters"),
        (dict(film_type="simple"), "differs in model.film_type"),
    ],
)
def test_incompatible_children_are_refused(tiny_config, change, message):
    from cunet.training.finetune import check_compatible

    with pytest.raises(DataError, match=message):
        check_compatible(tiny_config, with_model(tiny_config, **change))


@pytest.mark.parametrize(
    "change",
    [
        dict(n_frames=128),
        dict(ratio_power=0.75),  # the shipped model's inference setting; training uses 1
        dict(postprocess="none"),
        dict(batchnorm_momentum=0.5),
        dict(decoder_dropout=0.1, control_dropout=0.1),
    ],
)
def test_settings_that_leave_the_weights_alone_are_accepted(tiny_config, change):
    from cunet.training.finetune import check_compatible

    assert check_compatible(with_model(tiny_config, **change), tiny_config) == []
    assert check_compatible(tiny_config, with_model(tiny_config, **change)) == []


def test_same_weights_ignores_patch_and_inference_settings_only(tiny_config):
    from cunet.training.finetune import same_weights

    assert same_weights(tiny_config, with_model(tiny_config, n_frames=128, ratio_power=0.75))
    assert not same_weights(tiny_config, with_model(tiny_config, first_filters=4))
    assert not same_weights(tiny_config, with_model(tiny_config, tdf="encoder"))
    four = tiny_config.model.instruments
    assert not same_weights(tiny_config, with_model(tiny_config, instruments=(*four, "guitar")))


def test_other_audio_settings_and_cnn_control_are_refused(tiny_config):
    from cunet.training.finetune import check_compatible

    other_audio = dataclasses.replace(
        tiny_config, audio=dataclasses.replace(tiny_config.audio, hop_length=64)
    )
    with pytest.raises(DataError, match="audio.hop_length"):
        check_compatible(tiny_config, other_audio)
    cnn = with_model(tiny_config, control_type="cnn", control_units=(8, 16))
    with pytest.raises(DataError, match="control_type: dense"):
        check_compatible(cnn, with_model(cnn, instruments=(*cnn.model.instruments, "guitar")))


def test_loss_falls_on_the_new_instrument(parent, tiny_config, tmp_path):
    """Fine-tuning a five-instrument child on guitar examples lowers its guitar loss."""
    import keras

    from cunet.data import PatchSampler, build_cache, open_source, parse_data_spec
    from cunet.data.pipeline import split_inputs_targets
    from cunet.nn.models import build_model
    from cunet.training.finetune import copy_weights
    from cunet.training.trainer import SeparationTrainer

    for seed in range(2):
        stems = synth_stems(1.0, 44100, seed)
        stems["guitar"] = np.roll(stems.pop("other"), 5000, axis=0)
        write_track(tmp_path / "ds" / "train" / f"song{seed}", stems)
    five = with_model(tiny_config, instruments=(*tiny_config.model.instruments, "guitar"))
    tracks = build_cache(
        open_source(parse_data_spec(str(tmp_path / "ds") + ",valid=0"))["train"],
        tmp_path / "cache",
        five.audio,
        progress=False,
    )
    guitar = five.model.instruments.index("guitar")
    sampler = PatchSampler(
        tracks, 64, five.train, five.model.instruments, five.audio.n_bins, 2, 0, fixed_target=guitar
    )
    x, y = split_inputs_targets(sampler.batch(0, 4))
    keras.utils.set_random_seed(0)
    child = build_model(five)
    copy_weights(parent, child, tiny_config, five)
    trainer = SeparationTrainer(child, five)
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3))
    losses = [float(trainer.train_on_batch(x, y)) for _ in range(40)]
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5]), losses


def test_train_init_from_records_the_parent(tmp_path, tiny_config, tiny_model_path):
    """`train(init_from=...)` starts from the parent (identical outputs at step 0 for the old instruments is
    covered above) and writes the parent's path and checksum into the provenance."""
    from cunet.data import parse_data_spec
    from cunet.provenance import weights_digest
    from cunet.training.loop import train

    root = make_folder_dataset(tmp_path / "ds", ["a", "b", "c"], ["d"], seconds=1.0)
    cfg = dataclasses.replace(
        tiny_config, train=dataclasses.replace(tiny_config.train, epochs=1, steps_per_epoch=2)
    )
    provenance = train(
        cfg,
        [parse_data_spec(str(root))],
        tmp_path / "run",
        cache_dir=tmp_path / "cache",
        verbose=0,
        init_from=tiny_model_path,
    )
    assert provenance["parent"]["weights_sha256"] == weights_digest(tiny_model_path)
    assert json.loads((tmp_path / "run" / "provenance.json").read_text())["parent"]["path"] == str(
        tiny_model_path
    )
    with pytest.raises(DataError, match="must come first"):
        fewer = with_model(tiny_config, instruments=("vocals", "drums"))
        train(
            fewer,
            [parse_data_spec(str(root))],
            tmp_path / "run2",
            cache_dir=tmp_path / "cache",
            verbose=0,
            init_from=tiny_model_path,
        )


@pytest.mark.parametrize(
    "film_placement,tdf", [("both", "none"), ("encoder", "decoder"), ("both", "both")]
)
def test_grown_architecture_starts_with_the_parents_masks(parent, tiny_config, film_placement, tdf):
    import keras

    from cunet.nn.models import build_model
    from cunet.training.finetune import check_compatible, copy_weights

    grown = with_model(tiny_config, film_placement=film_placement, tdf=tdf)
    assert check_compatible(tiny_config, grown) == []
    keras.utils.set_random_seed(2)
    child = build_model(grown)
    copy_weights(parent, child, tiny_config, grown)
    x = np.random.default_rng(3).random((1, 128, 64, 2), dtype=np.float32) * 3
    np.testing.assert_allclose(masks(child, x, 4), masks(parent, x, 4), atol=1e-5)
    if film_placement == "both":  # new decoder FiLM blocks start as gamma 1, beta 0
        gammas = keras.ops.convert_to_numpy(child.get_layer("control").gamma_layer.bias)
        assert np.all(gammas[-sum(grown.model.filters[:-1]) :] == 1.0)


def test_growth_that_drops_a_block_is_refused(tiny_config):
    from cunet.training.finetune import check_compatible

    with pytest.raises(DataError, match="film_placement"):
        check_compatible(with_model(tiny_config, film_placement="both"), tiny_config)
    with pytest.raises(DataError, match="TDF"):
        check_compatible(
            with_model(tiny_config, tdf="encoder"), with_model(tiny_config, tdf="decoder")
        )
    with pytest.raises(DataError, match="first_filters"):
        check_compatible(tiny_config, with_model(tiny_config, first_filters=4))


def test_growth_into_new_gpocm_blocks_is_refused(tiny_config):
    from cunet.training.finetune import check_compatible

    gpocm = with_model(tiny_config, film_type="gpocm")
    assert check_compatible(gpocm, with_model(gpocm, tdf="decoder")) == []
    with pytest.raises(DataError, match="GPoCM"):
        check_compatible(gpocm, with_model(gpocm, film_placement="both"))
    with pytest.raises(DataError, match="film_type"):
        check_compatible(tiny_config, gpocm)
