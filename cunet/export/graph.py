"""Separation inside a TensorFlow graph: the in-graph twin of `cunet.chunk_separator` and `cunet.chunking`.

The SavedModel export runs these functions in its signatures, so a client needs only TensorFlow; training
can run `chunk_graph` to score whole chunks. Same STFT (`cunet.nn.spectral`, which `cunet.dsp` reproduces),
chunk layout, cross-fades and channel mapping as the NumPy path, so both give the same results.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from ..config import AudioConfig
from ..nn.spectral import expand_mask_bins, istft, stft
from ..postprocess import MASK_EPS

# mask_fn(magnitude [B, n_bins, F, ch], condition [B, n_instruments]) -> mask [B, n_bins, F, ch], in graph
GraphMaskFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def chunk_graph(
    waveform: tf.Tensor,
    conditions: tf.Tensor,
    audio: AudioConfig,
    time_multiple: int,
    mask_fn: GraphMaskFn,
    ratio_power: float | None = None,
) -> tf.Tensor:
    """Separate one chunk: STFT -> mask -> inverse STFT, as `cunet.chunk_separator.ChunkSeparator.separate_chunk`.

    waveform: float32 [n_groups, n_samples, n_channels] (n_channels = the model's).
    conditions: float32 [n_cond, n_instruments].
    ratio_power: None for each condition's own mask; else every instrument's mask is computed and
        ratio-normalised (`cunet.postprocess.ratio_masks`), and a condition row weighs them (a one-hot
        row picks one instrument's normalised mask).
    Returns float32 [n_cond, n_groups, n_samples, n_channels].
    """
    a = audio
    n_samples = tf.shape(waveform)[1]
    spec = stft(tf.transpose(waveform, [0, 2, 1]), a.n_fft, a.hop_length)  # [G, ch, F, bins]
    mag = tf.transpose(tf.abs(spec)[..., : a.n_bins], [0, 3, 2, 1])  # [G, n_bins, F, ch]
    n_frames = tf.shape(mag)[2]
    # The U-Net needs a whole multiple of its total time stride.
    padded = (n_frames + time_multiple - 1) // time_multiple * time_multiple
    mag = tf.pad(mag, [[0, 0], [0, 0], [0, padded - n_frames], [0, 0]])
    n_cond, n_groups = tf.shape(conditions)[0], tf.shape(mag)[0]
    if ratio_power is None:
        mask = mask_fn(tf.tile(mag, [n_cond, 1, 1, 1]), tf.repeat(conditions, n_groups, axis=0))
    else:
        n_inst = conditions.shape[-1]
        every = mask_fn(
            tf.tile(mag, [n_inst, 1, 1, 1]), tf.repeat(tf.eye(n_inst), n_groups, axis=0)
        )
        every = tf.reshape(every, tf.concat([[n_inst, n_groups], tf.shape(every)[1:]], 0))
        if ratio_power != 1.0:
            every = tf.pow(every, ratio_power)
        every = (every + MASK_EPS) / (tf.reduce_sum(every, 0, keepdims=True) + MASK_EPS * n_inst)
        mask = tf.einsum("ci,igbfk->cgbfk", conditions, every)
        mask = tf.reshape(mask, tf.concat([[n_cond * n_groups], tf.shape(mask)[2:]], 0))
    mask = tf.transpose(mask[:, :, :n_frames, :], [0, 3, 2, 1])  # [C*G, ch, F, n_bins]
    mask = expand_mask_bins(mask, a.n_fft)
    est = istft(
        tf.cast(mask, tf.complex64) * tf.tile(spec, [n_cond, 1, 1, 1]),
        n_samples,
        a.n_fft,
        a.hop_length,
    )  # [C*G, ch, n]
    est = tf.reshape(est, [n_cond, n_groups, a.n_channels, n_samples])
    return tf.transpose(est, [0, 1, 3, 2])  # [C, G, n, ch]


def crossfade_window_graph(chunk: tf.Tensor, overlap: int) -> tf.Tensor:
    """float32 [chunk]: the in-graph twin of `cunet.chunking.crossfade_window` (same float ops)."""
    ramp = (tf.range(overlap, dtype=tf.float32) + 0.5) / float(max(overlap, 1))
    return tf.concat(
        [ramp, tf.ones([chunk - 2 * overlap], tf.float32), tf.reverse(ramp, [0])], axis=0
    )


def separate_waveform(
    waveform: tf.Tensor,
    condition: tf.Tensor,
    audio: AudioConfig,
    time_multiple: int,
    chunk: int,
    overlap: int,
    mask_fn: GraphMaskFn,
    ratio_power: float | None = None,
) -> tf.Tensor:
    """Separate a whole signal in overlapping chunks, in graph; the scheme of `cunet.chunking`.

    waveform: float32 [n_samples, n_in] at audio.sample_rate, n_in 1 or 2 (mono through a
        stereo model is duplicated and the output averaged; stereo through a mono model
        runs each channel on its own, exactly as `cunet.chunk_separator.ChunkSeparator` does).
    condition: float32 [n_instruments]. chunk, overlap: samples (`ChunkSettings.samples`).
    ratio_power: as for `chunk_graph`.
    Returns float32 [n_samples, n_in]. Chunks run one at a time, so memory is bounded
    by the chunk length (plus the input and output signals).
    """
    n = tf.shape(waveform)[0]
    n_in = tf.shape(waveform)[1]
    model_ch = audio.n_channels
    checks = [
        tf.debugging.assert_all_finite(waveform, "waveform contains NaN or infinite samples"),
        tf.debugging.Assert(
            tf.logical_or(tf.equal(n_in, 1), tf.equal(n_in, 2)),
            ["waveform must be [n_samples, 1 or 2 channels]; got shape", tf.shape(waveform)],
        ),
    ]
    with tf.control_dependencies(checks):
        waveform = tf.identity(waveform)
    conditions = condition[None, :]

    # plan_chunks: short inputs are one chunk of n + 2 * overlap samples.
    chunk_eff = tf.minimum(chunk, tf.maximum(n, 1) + 2 * overlap)
    hop = chunk_eff - overlap
    rest = tf.maximum(0, n + 2 * overlap - chunk_eff)
    n_chunks = 1 + (rest + hop - 1) // hop
    padded_length = (n_chunks - 1) * hop + chunk_eff
    padded = tf.pad(waveform, [[overlap, padded_length - overlap - n], [0, 0]])
    window = crossfade_window_graph(chunk_eff, overlap)[:, None]

    def process(local: tf.Tensor) -> tf.Tensor:
        """[chunk_eff, n_in] -> [chunk_eff, n_in], mapping channels like `ChunkSeparator.__call__`."""
        if model_ch == 2:
            groups = (local * tf.ones([1, 2], tf.float32))[None]  # mono duplicated to both sides
            out = chunk_graph(groups, conditions, audio, time_multiple, mask_fn, ratio_power)[
                0, 0
            ]  # [L, 2]
            return tf.cond(
                tf.equal(n_in, 1), lambda: tf.reduce_mean(out, -1, keepdims=True), lambda: out
            )
        groups = tf.transpose(local)[:, :, None]  # channels as a batch: [n_in, L, 1]
        out = chunk_graph(groups, conditions, audio, time_multiple, mask_fn, ratio_power)[
            0
        ]  # [n_in, L, 1]
        return tf.transpose(out[..., 0])

    def body(k: tf.Tensor, outputs: tf.TensorArray) -> tuple[tf.Tensor, tf.TensorArray]:
        local = padded[k * hop : k * hop + chunk_eff]
        return k + 1, outputs.write(k, process(local) * window)

    outputs = tf.TensorArray(tf.float32, size=n_chunks, element_shape=tf.TensorShape([None, None]))
    _, outputs = tf.while_loop(
        lambda k, _: k < n_chunks, body, [tf.constant(0), outputs], parallel_iterations=1
    )
    frames = tf.transpose(outputs.stack(), [2, 0, 1])  # [n_in, n_chunks, chunk_eff]
    joined = tf.signal.overlap_and_add(frames, hop)  # [n_in, padded_length]
    return tf.transpose(joined[:, overlap : overlap + n])
