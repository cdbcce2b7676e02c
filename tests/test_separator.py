from __future__ import annotations

import numpy as np
import pytest
from conftest import OnesEngine, synth_mixture

from cunet.engines.loading import DEFAULT_MODEL
from cunet.separator import Separator
from cunet.settings import ChunkSettings


def _identity_separator(tiny_separator, **kwargs):
    """Same STFT/chunking path, mask of ones: output must reproduce the input."""
    return Separator(OnesEngine(tiny_separator.config), **kwargs)


@pytest.mark.parametrize("rate,n_channels", [(44100, 2), (44100, 1), (48000, 2), (22050, 1)])
def test_shapes_follow_input(tiny_separator, rate, n_channels):
    x = synth_mixture(1.5, rate, n_channels)
    out = tiny_separator.separate(x, rate, ["vocals", "bass"])
    assert set(out) == {"vocals", "bass"}
    for y in out.values():
        assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()


def test_identity_mask_reconstructs(tiny_separator):
    sep = _identity_separator(tiny_separator, chunks=ChunkSettings(0.5, 0.1))
    x = synth_mixture(2.0)
    out = sep.separate(x, 44100)
    assert len(out) == 4
    for y in out.values():
        np.testing.assert_allclose(y, x, atol=1e-4)
    mono = sep.separate(x[:, 0], 44100, ["drums"])["drums"]
    np.testing.assert_allclose(mono, x[:, 0], atol=1e-4)


def test_batch_of_conditions_equals_single_runs(tiny_separator):
    x = synth_mixture(1.0, seed=4)
    together = tiny_separator.separate(x, 44100)
    for name in tiny_separator.instruments:
        alone = tiny_separator.separate(x, 44100, [name])[name]
        np.testing.assert_allclose(alone, together[name], atol=1e-5)
    assert not np.allclose(together["vocals"], together["bass"])


def test_chunk_sizes_agree(tiny_model_path):
    x = synth_mixture(4.0, seed=2)
    a = Separator.from_pretrained(tiny_model_path, chunks=ChunkSettings(1.0, 0.3)).separate(
        x, 44100
    )
    b = Separator.from_pretrained(tiny_model_path, chunks=ChunkSettings(2.0, 0.5)).separate(
        x, 44100
    )
    for name in a:
        err = np.sqrt(np.mean((a[name] - b[name]) ** 2)) / (np.sqrt(np.mean(a[name] ** 2)) + 1e-9)
        assert err < 0.05, (name, err)
        # No click: the sample-to-sample jump never exceeds that of the signal itself by much.
        assert np.abs(np.diff(a[name], axis=0)).max() <= 2 * np.abs(np.diff(x, axis=0)).max() + 1e-3


def test_unknown_instrument_lists_valid(tiny_separator):
    with pytest.raises(ValueError, match="it separates: vocals, drums, bass, other"):
        tiny_separator.separate(synth_mixture(0.2), 44100, ["kazoo"])


@pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="shipped model not built yet")
def test_shipped_model_keeps_full_band():
    sep = Separator.from_pretrained()
    assert sep.sample_rate == 44100 and sep.audio.n_channels == 2
    rate = 44100
    t = np.arange(3 * rate) / rate
    rng = np.random.default_rng(0)
    low = 0.2 * np.sin(2 * np.pi * 220 * t)
    high = 0.05 * np.sin(2 * np.pi * 12000 * t) + 0.02 * rng.standard_normal(t.size)
    x = np.stack([low + high, low + high], axis=1).astype("float32")
    out = sep.separate(x, rate)
    total = sum(out.values())

    def band_energy(y):
        spec = np.abs(np.fft.rfft(y[:, 0]))
        freqs = np.fft.rfftfreq(y.shape[0], 1 / rate)
        return float(np.sum(spec[freqs > 8000] ** 2))

    # Content above 8 kHz survives in the sum of the four stems (no 4/11 kHz cut-off).
    assert band_energy(total) > 0.1 * band_energy(x)


def test_from_keras_model_and_chunk_settings(tiny_separator):
    sep = Separator.from_keras_model(
        tiny_separator.engine.model, tiny_separator.config, chunks=ChunkSettings(0.5, 0.1)
    )
    assert sep.instruments == tiny_separator.instruments and (sep.chunk, sep.overlap) != (
        tiny_separator.chunk,
        tiny_separator.overlap,
    )
    x = synth_mixture(0.8)
    for _name, y in sep.separate(x, 44100, ["bass"]).items():
        assert y.shape == x.shape and np.isfinite(y).all()
    for bad in (float("nan"), float("inf"), 0.0, -1.0, 1e9):
        with pytest.raises(ValueError, match="chunk_seconds"):
            Separator(tiny_separator.engine, chunks=ChunkSettings(bad))
    for bad in (float("nan"), float("inf"), -1.0, 1.0):
        with pytest.raises(ValueError, match="overlap_seconds"):
            Separator(tiny_separator.engine, chunks=ChunkSettings(2.0, bad))


def test_postprocess_default_is_the_models_and_ratio_stems_add_up(tiny_separator, tiny_model_path):
    assert tiny_separator.postprocess.mode == tiny_separator.config.model.postprocess == "none"
    ratio = Separator.from_pretrained(
        tiny_model_path, chunks=ChunkSettings(1.0, 0.25), postprocess="ratio"
    )
    x = synth_mixture(2.5, seed=5)
    stems = ratio.separate(x, 44100)
    np.testing.assert_allclose(
        sum(stems.values()), x, atol=1e-4
    )  # mixture consistency, across chunks too
    alone = ratio.separate(x, 44100, ["bass"])[
        "bass"
    ]  # every mask is computed anyway: same estimate
    np.testing.assert_allclose(alone, stems["bass"], atol=1e-6)
    plain = tiny_separator.separate(x, 44100)
    assert not np.allclose(plain["bass"], stems["bass"], atol=1e-4)
    wiener = Separator.from_pretrained(
        tiny_model_path, chunks=ChunkSettings(1.0, 0.25), postprocess="wiener"
    ).separate(x[:22050], 44100, ["vocals", "drums"])
    assert set(wiener) == {"vocals", "drums"} and all(np.isfinite(v).all() for v in wiener.values())


def test_joint_postprocess_needs_a_conditioned_model(tmp_path, tiny_config):
    import dataclasses

    from cunet.errors import UserError
    from cunet.nn.models import build_model
    from cunet.provenance import make_provenance, save_model

    config = dataclasses.replace(
        tiny_config, model=dataclasses.replace(tiny_config.model, kind="standard")
    )
    path = save_model(
        build_model(config), tmp_path / "unet.keras", make_provenance(config.to_dict())
    )
    with pytest.raises(UserError, match="combines the masks of several instruments"):
        Separator.from_pretrained(path, postprocess="ratio")
    with pytest.raises(UserError, match="unknown post-processing"):
        Separator.from_pretrained(path, postprocess="loudest")


def test_ratio_power_comes_from_the_model_unless_given(tmp_path, tiny_config):
    import dataclasses

    from cunet.nn.models import build_model
    from cunet.postprocess import Postprocess
    from cunet.provenance import make_provenance, save_model

    config = dataclasses.replace(
        tiny_config,
        model=dataclasses.replace(tiny_config.model, postprocess="ratio", ratio_power=0.5),
    )
    path = save_model(
        build_model(config), tmp_path / "soft.keras", make_provenance(config.to_dict())
    )
    chunks = ChunkSettings(1.0, 0.25)
    own = Separator.from_pretrained(path, chunks=chunks)
    assert own.postprocess == Postprocess("ratio", 0.5)
    assert (
        Separator.from_pretrained(path, chunks=chunks, postprocess="ratio").postprocess.power == 0.5
    )
    assert own.chunk_separator.postprocess == Postprocess("ratio", 0.5)  # what the chunks get
    linear = Separator.from_pretrained(path, chunks=chunks, postprocess=Postprocess("ratio", 1.0))
    assert linear.postprocess.power == 1.0
    x = synth_mixture(1.5, seed=3)
    np.testing.assert_allclose(sum(own.separate(x, 44100).values()), x, atol=1e-4)  # adds up


# -- streaming, latency, instruments of other models, files with templates and excerpts ----------------------


def _blocks(x, seed: int):
    """x cut into blocks of random sizes, empty ones included, as live audio arrives."""
    rng = np.random.default_rng(seed)
    pos = 0
    while pos < x.shape[0]:
        size = int(rng.choice([0, 1, 37, 512, 4096, 20000]))
        yield x[pos : pos + size]
        pos += size


@pytest.mark.parametrize("rate", [44100, 48000])
def test_stream_of_unknown_length_equals_separate(tiny_model_path, rate):
    sep = Separator.from_pretrained(tiny_model_path, chunks=ChunkSettings(0.5, 0.1))
    x = synth_mixture(2.2, rate, seed=6)
    offline = sep.separate(x, rate, ["drums", "vocals"])
    live = np.concatenate(list(sep.stream(_blocks(x, 1), rate, ["drums", "vocals"])), axis=1)
    assert live.shape == (2, *x.shape)
    np.testing.assert_allclose(live[0], offline["drums"], atol=1e-4)
    np.testing.assert_allclose(live[1], offline["vocals"], atol=1e-4)
    known = np.concatenate(
        list(sep.stream(_blocks(x, 2), rate, ["drums"], n_samples=x.shape[0])), axis=1
    )
    np.testing.assert_allclose(known[0], offline["drums"], atol=1e-6)


def test_stream_checks_its_blocks(tiny_separator):
    x = synth_mixture(0.5)
    with pytest.raises(ValueError, match="1 channels, the stream 2"):
        list(tiny_separator.stream([x, x[:, :1]], 44100))
    bad = x.copy()
    bad[100, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        list(tiny_separator.stream([bad], 44100))
    assert list(tiny_separator.stream([], 44100)) == []
    mono = np.concatenate(
        list(tiny_separator.stream([x[:, 0]], 44100, ["bass"])), axis=1
    )  # 1-D: one channel
    assert mono.shape == (1, x.shape[0], 1)


def test_latency_sets_the_chunking(tiny_model_path):
    from cunet.errors import ConfigError

    sep = Separator.from_pretrained(tiny_model_path, latency=0.5)
    assert sep.latency_seconds <= 0.5 and sep.overlap == sep.chunk // 4
    assert (sep.chunk + sep.audio.n_fft - sep.audio.hop_length) % (64 * sep.audio.hop_length) == 0
    with pytest.raises(ConfigError, match="below this model's smallest"):
        Separator(sep.engine, latency=0.2)
    with pytest.raises(ConfigError, match="latency"):
        Separator.from_pretrained(tiny_model_path, latency=float("nan"))


def test_instruments_come_from_the_model(five_instrument_model_path):
    sep = Separator.from_pretrained(five_instrument_model_path, chunks=ChunkSettings(0.5, 0.1))
    assert sep.instruments[-1] == "guitar"
    assert sep.check_instruments(["Guitar", "vocals", "guitar"]) == ["guitar", "vocals"]
    with pytest.raises(
        ValueError,
        match="unknown instrument 'piano' for this model "
        r"\(it separates: vocals, drums, bass, other, guitar\)",
    ):
        sep.check_instruments(["piano"])
    out = sep.separate(synth_mixture(0.6), 44100, ["guitar"])
    assert out["guitar"].shape == (26460, 2) and np.isfinite(out["guitar"]).all()


def test_shifts_are_an_option_checked_before_loading(tiny_model_path, tiny_config, tmp_path):
    from cunet.errors import UserError

    class Counting(OnesEngine):
        calls = 0

        def masks(self, magnitude, conditions):
            self.calls += 1
            return super().masks(magnitude, conditions)

    x = synth_mixture(1.2)
    plain, counted = Counting(tiny_config), Counting(tiny_config)
    a = Separator(plain, chunks=ChunkSettings(1.0, 0.25)).separate(x, 44100, ["drums"])
    shifted = Separator(counted, chunks=ChunkSettings(1.0, 0.25), shifts=4)
    b = shifted.separate(x, 44100, ["drums"])
    assert shifted.shifts == 4 and counted.calls == 4 * plain.calls > 0
    np.testing.assert_allclose(b["drums"], a["drums"], atol=1e-6)  # masks of ones, however rolled
    loaded = Separator.from_pretrained(tiny_model_path, shifts=3)
    assert loaded.chunk_separator.shifts == 3
    with pytest.raises(UserError, match="shifts"):  # a missing model is not even looked at
        Separator.from_pretrained(tmp_path / "missing.keras", shifts=0)
