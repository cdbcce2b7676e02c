"""Pure STFT functions in TensorFlow (tf.signal), shared by training, the
Separator and the exported SavedModel so all three see identical spectra.

Layout: waveforms are [..., n_samples]; spectrograms are [..., n_frames, n_fft // 2 + 1].
The signal is padded by (n_fft - hop_length) zeros at both ends so every
sample is covered by the same number of frames and the inverse is exact
(up to float error) from the first sample to the last.
"""

from __future__ import annotations

import tensorflow as tf


def _pad_amounts(n_samples: tf.Tensor, n_fft: int, hop_length: int) -> tuple[tf.Tensor, tf.Tensor]:
    left = n_fft - hop_length
    # Right pad: at least `left`, rounded so that frames tile the padded signal exactly.
    total = n_samples + 2 * left
    rest = tf.math.floormod(total - n_fft, hop_length)
    extra = tf.math.floormod(hop_length - rest, hop_length)
    return tf.constant(left), left + extra


def n_frames_for(n_samples: int, n_fft: int, hop_length: int) -> int:
    """Number of STFT frames `stft` returns for `n_samples` samples."""
    left = n_fft - hop_length
    total = n_samples + 2 * left
    total += (-(total - n_fft)) % hop_length
    return (total - n_fft) // hop_length + 1


def stft(waveform: tf.Tensor, n_fft: int, hop_length: int) -> tf.Tensor:
    """Complex STFT (periodic Hann window, no normalisation).

    waveform: float32 [..., n_samples]. Returns complex64 [..., n_frames, n_fft // 2 + 1].
    """
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    n_samples = tf.shape(waveform)[-1]
    left, right = _pad_amounts(n_samples, n_fft, hop_length)
    rank = tf.rank(waveform)
    paddings = tf.concat(
        [tf.zeros([rank - 1, 2], tf.int32), tf.reshape(tf.stack([left, right]), [1, 2])], 0
    )
    padded = tf.pad(waveform, paddings)
    return tf.signal.stft(
        padded,
        frame_length=n_fft,
        frame_step=hop_length,
        fft_length=n_fft,
        window_fn=tf.signal.hann_window,
        pad_end=False,
    )


def istft(
    spectrogram: tf.Tensor, n_samples: tf.Tensor | int, n_fft: int, hop_length: int
) -> tf.Tensor:
    """Inverse of `stft`: complex64 [..., n_frames, n_fft // 2 + 1] -> float32 [..., n_samples]."""
    window_fn = tf.signal.inverse_stft_window_fn(
        hop_length, forward_window_fn=tf.signal.hann_window
    )
    waveform = tf.signal.inverse_stft(
        spectrogram,
        frame_length=n_fft,
        frame_step=hop_length,
        fft_length=n_fft,
        window_fn=window_fn,
    )
    left = n_fft - hop_length
    return waveform[..., left : left + n_samples]


def expand_mask_bins(mask: tf.Tensor, n_fft: int) -> tf.Tensor:
    """Extend a mask [..., n_bins] to all n_fft // 2 + 1 bins by repeating its top bin.

    The network sees bins 0..n_bins-1; the remaining top bins (at most up to
    Nyquist) reuse the highest estimated mask so nothing is cut off.
    """
    n_bins = mask.shape[-1]
    n_missing = n_fft // 2 + 1 - n_bins
    if n_missing <= 0:
        return mask
    top = mask[..., -1:]
    return tf.concat([mask, tf.repeat(top, n_missing, axis=-1)], axis=-1)
