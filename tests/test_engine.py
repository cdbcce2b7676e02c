"""The per-chunk computation: any MaskEngine through ChunkSeparator; the Keras engine's masks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import OnesEngine, decoder_film_model, synth_mixture

from cunet import dsp
from cunet.chunk_separator import ChunkSeparator
from cunet.engines.base import MaskEngine, batch_conditions
from cunet.engines.keras import KerasEngine
from cunet.errors import ModelError
from cunet.postprocess import Postprocess, ratio_masks


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


def test_keras_engine_encodes_once_for_a_decoder_film_model(tiny_config) -> None:
    from cunet.nn.models import build_model, mask_model

    model, cfg = decoder_film_model(tiny_config, seed=7)
    rng = np.random.default_rng(7)
    engine = KerasEngine(model, cfg)
    assert (
        engine.encodes_once and not KerasEngine(build_model(tiny_config), tiny_config).encodes_once
    )
    a = cfg.audio
    mag = rng.uniform(0, 1, (2, a.n_bins, 128, a.n_channels)).astype(np.float32)
    cond = np.eye(4, dtype=np.float32)[[2, 0, 3]]
    masks = engine.masks(mag, cond)
    batch_mag, batch_cond = batch_conditions(mag, cond)
    want = mask_model(model)({"magnitude": batch_mag, "condition": batch_cond}, training=False)
    np.testing.assert_allclose(masks.reshape(want.shape), want.numpy(), atol=1e-6)
    assert not np.allclose(masks[0], masks[1])


class SmoothEngine(MaskEngine):
    """Masks that depend on the magnitude, the condition and the position (so every step matters)."""

    def __init__(self, config) -> None:
        self.config = config

    def masks(self, magnitude: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        weights = conditions @ np.arange(1, conditions.shape[1] + 1, dtype=np.float32)
        bins = np.linspace(-2, 2, magnitude.shape[1], dtype=np.float32)[:, None, None]
        logit = (
            np.log1p(magnitude)[None] * weights[:, None, None, None, None]
            - bins
            - weights[:, None, None, None, None] * np.float32(0.5)
        )
        return (1 / (1 + np.exp(-logit))).astype(np.float32)


def reference_separate_chunk(
    engine: MaskEngine, post, waveform: np.ndarray, conditions: np.ndarray
) -> np.ndarray:
    """The chunk computation written plainly, full-size arrays at every step (the fused, blockwise path
    must give the same stems): [G, n, ch] -> [C, G, n, ch]."""
    a = engine.config.audio
    n_fft, hop, n = a.n_fft, a.hop_length, waveform.shape[1]
    left = n_fft - hop
    extra = (-(n + 2 * left - n_fft)) % hop
    x = np.pad(np.transpose(waveform, (0, 2, 1)), [(0, 0), (0, 0), (left, left + extra)])
    n_frames = (x.shape[-1] - n_fft) // hop + 1
    frames = np.stack([x[..., f * hop : f * hop + n_fft] for f in range(n_frames)], axis=-2)
    spec = np.fft.rfft(frames * dsp.hann_window(n_fft), axis=-1)  # [G, ch, F, freq]
    multiple = engine.frame_multiple
    padded = -(-n_frames // multiple) * multiple
    magnitude = np.transpose(np.abs(spec[..., : a.n_bins]), (0, 3, 2, 1)).astype(np.float32)
    magnitude = np.pad(magnitude, [(0, 0), (0, 0), (0, padded - n_frames), (0, 0)])
    masks = engine.masks(magnitude, conditions)[:, :, :, :n_frames]  # [C, G, bins, F, ch]
    if post.mode == "ratio":
        masks = ratio_masks(masks, axis=0, power=post.power)
    full = dsp.expand_mask_bins(np.transpose(masks, (0, 1, 4, 3, 2)), n_fft)  # [C, G, ch, F, freq]
    frames_out = np.fft.irfft(full * spec[None], n_fft, axis=-1) * dsp.inverse_window(n_fft, hop)
    out = np.zeros((*frames_out.shape[:-2], (n_frames - 1) * hop + n_fft))
    for f in range(n_frames):
        out[..., f * hop : f * hop + n_fft] += frames_out[..., f, :]
    return np.transpose(out[..., left : left + n], (0, 1, 3, 2)).astype(np.float32)


@pytest.mark.parametrize("mode", ["none", "ratio"])
@pytest.mark.parametrize("n_samples", [300, 128 * (dsp.BLOCK_FRAMES + 5)])
def test_chunk_stems_equal_the_plain_computation(tiny_config, mode: str, n_samples: int) -> None:
    x = synth_mixture(n_samples / 44100)[None]  # [1, n, 2]
    engine = SmoothEngine(tiny_config)
    post = Postprocess(mode, power=2.0 if mode == "ratio" else 1.0)
    conditions = np.eye(4, dtype=np.float32)
    got = ChunkSeparator(engine, post).separate_chunk(x, conditions)
    want = reference_separate_chunk(engine, post, x, conditions)
    assert got.shape == want.shape == (4, 1, n_samples, 2)
    np.testing.assert_allclose(got, want, atol=1e-5)
    kept = ChunkSeparator(engine, post).separate_chunk(x, conditions, outputs=[2, 0])
    np.testing.assert_array_equal(kept, got[[2, 0]])


@pytest.mark.parametrize("mode", ["ratio", "wiener"])
def test_threads_do_not_change_the_stems(tiny_config, mode: str) -> None:
    """The outputs' inverse transforms run on a thread pool; the stems are the same bits on one thread."""
    x = synth_mixture(128 * (dsp.BLOCK_FRAMES + 5) / 44100)[None]
    engine = SmoothEngine(tiny_config)
    conditions = np.eye(4, dtype=np.float32)
    one = ChunkSeparator(engine, Postprocess(mode), threads=1)
    pooled = ChunkSeparator(engine, Postprocess(mode), threads=3)
    assert one._pool is None  # no thread is started before it is needed, nor on one thread
    want = one.separate_chunk(x, conditions, outputs=[3, 1, 0])
    got = pooled.separate_chunk(x, conditions, outputs=[3, 1, 0])
    assert pooled._pool is not None and one._pool is None
    np.testing.assert_array_equal(got, want)


class GridEngine(MaskEngine):
    """Masks that depend on each frame's position in the U-Net's stride, like a pooling grid does."""

    def __init__(self, config) -> None:
        self.config = config
        self.rolls: list[np.ndarray] = []

    def masks(self, magnitude: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        self.rolls.append(magnitude)
        phase = np.arange(magnitude.shape[2]) % self.config.model.time_multiple
        grid = (phase / self.config.model.time_multiple).astype(np.float32)[None, None, :, None]
        mask = np.tanh(magnitude) * np.float32(0.5) + grid * np.float32(0.5)
        return np.broadcast_to(mask, (conditions.shape[0], *mask.shape)).astype(np.float32)


def test_shifts_average_the_masks_of_rolled_frames(tiny_config) -> None:
    x = synth_mixture(0.6)[None]
    conditions = np.eye(4, dtype=np.float32)
    stride = tiny_config.model.time_multiple
    # A frame-local network gives the same masks however the frames are rolled.
    smooth = ChunkSeparator(SmoothEngine(tiny_config), Postprocess("ratio"))
    np.testing.assert_allclose(
        ChunkSeparator(SmoothEngine(tiny_config), Postprocess("ratio"), shifts=3).separate_chunk(
            x, conditions
        ),
        smooth.separate_chunk(x, conditions),
        atol=1e-6,
    )
    # A grid-dependent one runs once per shift, each on the frames rolled by a fraction of the stride;
    # the masks are rolled back and averaged.
    grid = GridEngine(tiny_config)
    shifted = ChunkSeparator(grid, Postprocess("none"), shifts=2)
    shifted._masks(np.ones((1, 8, 3 * stride, 2), np.float32), conditions)
    plain, rolled = grid.rolls
    np.testing.assert_array_equal(rolled, np.roll(plain, stride // 2, axis=2))
    magnitude = np.random.default_rng(1).random((1, 8, 2 * stride, 2), dtype=np.float32)
    got = shifted._masks(magnitude, conditions)
    one = GridEngine(tiny_config).masks
    want = (
        one(magnitude, conditions)
        + np.roll(one(np.roll(magnitude, stride // 2, axis=2), conditions), -(stride // 2), axis=3)
    ) / 2
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("shifts", [0, 17, 1.5, True])
def test_shifts_are_checked(tiny_config, shifts) -> None:
    from cunet.errors import UserError

    with pytest.raises(UserError, match="shifts must be a whole number from 1 to 16"):
        ChunkSeparator(SmoothEngine(tiny_config), shifts=shifts)
