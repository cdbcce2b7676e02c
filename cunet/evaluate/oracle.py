"""Oracle baselines: ideal ratio and binary masks computed from the true stems (sigsep's oracle methods)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np

from .scoring import fit_length
from .tracks import as_2d

BASELINES: tuple[str, ...] = ("mixture", "IRM1", "IRM2", "IBM")
ORACLES: dict[str, float] = {"IRM1": 1.0, "IRM2": 2.0}  # ratio masks: exponent of |STFT|
# Oracle STFT (n_fft, hop) per protocol: sigsep-style at 44.1 kHz; the paper's own STFT at 8192 Hz.
ORACLE_STFT: dict[str, tuple[int, int]] = {"musdb": (4096, 1024), "paper": (1024, 256)}
_EPS = float(np.finfo(np.float64).eps)  # keeps masks finite where every source is silent


def oracle_estimates(
    mixture: np.ndarray,
    stems: Mapping[str, np.ndarray],
    methods: Sequence[str] = ("IRM1", "IRM2", "IBM"),
    targets: Sequence[str] | None = None,
    n_fft: int = 4096,
    hop: int = 1024,
    theta: float = 0.5,
) -> dict[str, dict[str, np.ndarray]]:
    """Oracle time-frequency masks from the true stems, applied to the mixture STFT per channel.

    mixture: float [n_samples, n_channels]; stems: every true source the track holds, any names and
    any number of them, {name: [n_samples, n_channels]}; targets: the stems to estimate (default: all).
    IRM1: |S_j| / sum_k |S_k|; IRM2: |S_j|^2 / sum_k |S_k|^2 (sums over all stems);
    IBM: 1 where |S_j| / |X| >= theta (the source makes at least half the mixture's
    magnitude, sigsep's "majority vote" with theta = 0.5), else 0.
    STFT: Hann window of n_fft samples, hop samples (scipy.signal.stft/istft).
    Returns {method: {target: float32 [n_samples, n_channels]}} (same length as the mixture).
    """
    from scipy.signal import istft, stft

    unknown = [m for m in methods if m not in ORACLES and m != "IBM"]
    if unknown:
        raise ValueError(f"unknown oracle '{unknown[0]}' (valid: IRM1, IRM2, IBM)")
    if not 0 < hop <= n_fft:
        raise ValueError("oracle STFT hop must be in (0, n_fft]")
    mixture = as_2d(mixture)
    n_samples, n_channels = mixture.shape
    targets = list(targets if targets is not None else stems)
    missing = [t for t in targets if t not in stems]
    if missing or not stems:
        raise ValueError(
            f"no reference stem '{missing[0] if missing else ''}' for the oracle masks "
            f"(stems: {', '.join(stems) or 'none'})"
        )
    out = {m: {t: np.zeros((n_samples, n_channels), np.float32) for t in targets} for m in methods}
    spec = functools.partial(stft, nperseg=n_fft, noverlap=n_fft - hop, window="hann")
    inverse = functools.partial(istft, nperseg=n_fft, noverlap=n_fft - hop, window="hann")
    # Channel by channel, so a long track needs one channel's spectrograms at a time.
    for c in range(n_channels):
        x = spec(mixture[:, c])[-1]
        mags = {
            k: np.abs(spec(fit_length(v, n_samples, n_channels, f"stem '{k}'")[:, c])[-1])
            for k, v in stems.items()
        }
        for method in methods:
            if method == "IBM":
                x_mag = np.abs(x) + _EPS
                masks = {t: (mags[t] / x_mag >= theta).astype(np.float32) for t in targets}
            else:
                alpha = ORACLES[method]
                total = _EPS + np.sum([m**alpha for m in mags.values()], axis=0)
                masks = {t: (mags[t] ** alpha / total).astype(np.float32) for t in targets}
            for t in targets:
                y = np.asarray(inverse(x * masks[t])[-1], np.float32)
                out[method][t][: min(n_samples, y.size), c] = y[:n_samples]
    return out
