"""The per-chunk computation: any MaskEngine through ChunkSeparator; the Keras engine's masks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import OnesEngine, synth_mixture

from cunet.chunk_separator import ChunkSeparator
from cunet.engines.base import MaskEngine, batch_conditions
from cunet.engines.keras import KerasEngine
from cunet.errors import ModelError


class RecordingEngine(MaskEngine):
    """Constant masks; remembers the shapes it was asked for."""

    def __init__(self, config, value: float = 1.0, preferred_frames: int | None = None) -> None:
        self.config = config
        self.value = value
        self.preferred_frames = preferred_frames
        self.calls: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def masks(self, magnitude: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        self.calls.append((magnitude.shape, conditions.shape))
        return np.full((conditions.shape[0], *magnitude.shape), self.value, np.float32)


@pytest.mark.parametrize("n_in", [1, 2])
@pytest.mark.parametrize("n_samples", [1, 700, 9000])
def test_ones_reproduce_the_chunk_for_mono_and_stereo(
    tiny_config, n_in: int, n_samples: int
) -> None:
    chunker = ChunkSeparator(OnesEngine(tiny_config))
    x = synth_mixture(1.0, n_channels=n_in)[:n_samples]
    cond = np.eye(4, dtype=np.float32)[:3]
    out = chunker(x, cond)
    assert out.shape == (3, n_samples, n_in) and out.dtype == np.float32
    for stem in out:
        np.testing.assert_allclose(stem, x, atol=1e-5)


def test_engine_sees_the_model_layout_padded_to_its_multiple(tiny_config) -> None:
    a = tiny_config.audio
    engine = RecordingEngine(tiny_config, value=0.5)
    x = synth_mixture(0.3, n_channels=1)
    out = ChunkSeparator(engine)(x, np.eye(4, dtype=np.float32))
    ((mag_shape, cond_shape),) = engine.calls
    # mono through the stereo tiny model: one group of two (duplicated) channels
    assert mag_shape[0] == 1 and mag_shape[1] == a.n_bins and mag_shape[3] == a.n_channels == 2
    assert mag_shape[2] % tiny_config.model.time_multiple == 0 and cond_shape == (4, 4)
    np.testing.assert_allclose(out, 0.5 * np.broadcast_to(x, out.shape), atol=1e-5)
    # A fixed-shape backend's preferred frame count is honoured.
    fixed = RecordingEngine(tiny_config, preferred_frames=3 * tiny_config.model.time_multiple)
    ChunkSeparator(fixed)(x, np.eye(4, dtype=np.float32))
    assert fixed.calls[0][0][2] % (3 * tiny_config.model.time_multiple) == 0


def test_postprocess_sees_every_condition_before_the_masks_are_applied(tiny_config) -> None:
    """A joint post-processing (ratio) combines the masks of all conditions, then `outputs` picks stems."""
    from cunet.postprocess import Postprocess

    x = synth_mixture(0.2)
    ratio = ChunkSeparator(OnesEngine(tiny_config), Postprocess("ratio"))
    out = ratio(x, np.eye(4, dtype=np.float32))  # masks of ones -> a quarter each
    np.testing.assert_allclose(out, np.broadcast_to(x / 4, out.shape), atol=1e-5)
    picked = ratio(x, np.eye(4, dtype=np.float32), outputs=[2])
    assert picked.shape == (1, *x.shape)
    np.testing.assert_allclose(picked[0], out[2], atol=1e-6)
    plain = ChunkSeparator(OnesEngine(tiny_config))(x, np.eye(4, dtype=np.float32), outputs=[0, 3])
    np.testing.assert_allclose(
        plain, np.broadcast_to(x, plain.shape), atol=1e-5
    )  # each mask on its own


def test_nan_masks_are_a_model_error(tiny_config) -> None:
    with pytest.raises(ModelError, match="NaN or infinite"):
        ChunkSeparator(RecordingEngine(tiny_config, value=np.nan))(
            synth_mixture(0.1), np.eye(4, dtype=np.float32)
        )


def test_keras_engine_masks_equal_the_mask_model(tiny_separator) -> None:
    from cunet.nn.models import mask_model

    engine = tiny_separator.engine
    assert isinstance(engine, KerasEngine)
    rng = np.random.default_rng(0)
    a = tiny_separator.audio
    mag = rng.uniform(0, 1, (2, a.n_bins, 128, a.n_channels)).astype(np.float32)
    cond = np.eye(4, dtype=np.float32)[[1, 3, 0]]
    masks = engine.masks(mag, cond)
    assert (
        masks.shape == (3, 2, a.n_bins, 128, a.n_channels) and masks.min() >= 0 and masks.max() <= 1
    )
    batch_mag, batch_cond = batch_conditions(mag, cond)
    want = mask_model(engine.model)(
        {"magnitude": batch_mag, "condition": batch_cond}, training=False
    ).numpy()
    np.testing.assert_allclose(masks.reshape(want.shape), want, atol=1e-6)
    assert not np.allclose(masks[0], masks[1])
