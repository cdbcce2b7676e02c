"""Evaluation protocols and the scorer: museval BSSEval v4 (SiSEC 2018) or the original paper's protocol.

"musdb" (SiSEC 2018): every track at its own rate and channel count, BSSEval v4 on 1 s windows with
1 s hops, instruments scored jointly (as `museval.eval_mus_track`); when only some are scored, the sum
of the others is one more reference (and the method's complement its estimate).
"paper": mono at 8192 Hz, each instrument scored on its own against the sum of the others with BSSEval
v3 `bss_eval_sources` on the whole track (ISR undefined: NaN). See `cunet.evaluate` for the details.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..io.resample import conform
from .tracks import TrackAudio, as_2d

METRICS: tuple[str, ...] = ("SDR", "SIR", "ISR", "SAR")
PROTOCOLS: tuple[str, ...] = ("musdb", "paper")
PAPER_SAMPLE_RATE = 8192  # Hz, the original C-U-Net's analysis rate
WINDOW_SECONDS = 1.0  # SiSEC 2018 BSSEval v4 window and hop
HOP_SECONDS = 1.0


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r} (valid: {', '.join(PROTOCOLS)})")


def describe_protocol(protocol: str) -> str:
    check_protocol(protocol)
    if protocol == "musdb":
        return (
            f"museval BSSEval v4 (images), {WINDOW_SECONDS:g} s windows and {HOP_SECONDS:g} s hops "
            "at the tracks' own rate and channels (SiSEC 2018)"
        )
    return (
        f"original C-U-Net protocol: mono, {PAPER_SAMPLE_RATE} Hz, whole-track BSSEval v3 "
        "bss_eval_sources per instrument against the sum of the other stems (ISR undefined)"
    )


def to_paper_domain(audio: np.ndarray, rate: int) -> np.ndarray:
    """Down-mix to mono and resample to 8192 Hz, as the original C-U-Net pre-processing did.

    audio: float [n_samples, n_channels] at `rate` Hz -> float32 [n_samples', 1] at 8192 Hz.
    """
    return conform(audio, rate, PAPER_SAMPLE_RATE, 1)


def conform_to_protocol(audio: TrackAudio, protocol: str) -> TrackAudio:
    """The signals the protocol scores: unchanged for "musdb", 8192 Hz mono for "paper"."""
    check_protocol(protocol)
    if protocol == "musdb":
        return audio
    return TrackAudio(
        to_paper_domain(audio.mixture, audio.rate),
        {k: to_paper_domain(v, audio.rate) for k, v in audio.stems.items()},
        PAPER_SAMPLE_RATE,
    )


def score_track(
    mixture: np.ndarray,
    stems: Mapping[str, np.ndarray],
    estimates: Mapping[str, np.ndarray],
    rate: int,
    track_name: str,
    protocol: str = "musdb",
    instruments: Sequence[str] | None = None,
    complement: str = "residual",
) -> Any:
    """Score one track's estimates; returns a validated `museval.TrackStore`.

    mixture: float [n_samples, n_channels] at `rate` Hz (already in the protocol's domain).
    stems: every true source {name: [n_samples, n_channels]}, not only the scored ones.
    estimates: {name: [m, n_channels]} for at least `instruments` (default: all of
        `estimates`); padded/truncated to n_samples as museval does.
    complement: how the method's estimate of "everything else" is formed when the
        protocol needs one: "residual" (mixture minus the estimates, as the original
        C-U-Net code did) or "mixture" (the mixture itself, for the mixture baseline).
    """
    import museval

    check_protocol(protocol)
    if complement not in ("residual", "mixture"):
        raise ValueError(f"complement must be 'residual' or 'mixture', got {complement!r}")
    names = list(dict.fromkeys(instruments if instruments is not None else estimates))
    missing = [n for n in names if n not in estimates or n not in stems]
    if missing:
        raise ValueError(f"no estimate or reference for '{missing[0]}'")
    mixture = as_2d(mixture)
    n_samples, n_channels = mixture.shape
    refs = {k: fit_length(v, n_samples, n_channels, f"stem '{k}'") for k, v in stems.items()}
    ests = {k: fit_length(estimates[k], n_samples, n_channels, f"estimate '{k}'") for k in names}

    def complement_of(group: Sequence[str]) -> np.ndarray:
        if complement == "mixture":
            return mixture
        return mixture - np.sum([ests[k] for k in group], axis=0)

    if protocol == "musdb":
        store = museval.TrackStore(track_name=track_name, win=WINDOW_SECONDS, hop=HOP_SECONDS)
        others = [k for k in refs if k not in names]
        ref_list, est_list = [refs[k] for k in names], [ests[k] for k in names]
        if others:
            ref_list.append(np.sum([refs[k] for k in others], axis=0))
            est_list.append(complement_of(names))
        if len(ref_list) < 2:
            raise ValueError("BSSEval needs at least two sources (give every stem in `stems`)")
        sdr, isr, sir, sar = museval.evaluate(
            ref_list,
            est_list,
            win=int(WINDOW_SECONDS * rate),
            hop=int(HOP_SECONDS * rate),
            mode="v4",
        )
        for i, name in enumerate(names):
            store.add_target(
                name,
                {
                    "SDR": sdr[i].tolist(),
                    "SIR": sir[i].tolist(),
                    "ISR": isr[i].tolist(),
                    "SAR": sar[i].tolist(),
                },
            )
    else:
        from museval.metrics import bss_eval_sources

        duration = n_samples / rate
        store = museval.TrackStore(track_name=track_name, win=duration, hop=duration)
        for name in names:
            rest = [k for k in refs if k != name]
            if not rest:
                raise ValueError(
                    "the paper protocol needs the other stems to form the accompaniment"
                )
            ref_pair = np.stack([refs[name], np.sum([refs[k] for k in rest], axis=0)])
            est_pair = np.stack([ests[name], complement_of([name])])
            sdr, sir, sar, _ = bss_eval_sources(ref_pair, est_pair, compute_permutation=False)
            store.add_target(
                name,
                {
                    "SDR": [float(sdr[0, 0])],
                    "SIR": [float(sir[0, 0])],
                    "ISR": [math.nan],
                    "SAR": [float(sar[0, 0])],
                },
            )
    store.validate()
    return store


def fit_length(audio: np.ndarray, n_samples: int, n_channels: int, what: str) -> np.ndarray:
    """Pad with zeros / truncate to n_samples (as museval does); channels must match."""
    audio = as_2d(audio)
    if audio.ndim != 2 or audio.shape[1] != n_channels:
        raise ValueError(f"{what} has shape {audio.shape}, expected [n_samples, {n_channels}]")
    if audio.shape[0] > n_samples:
        return audio[:n_samples]
    if audio.shape[0] < n_samples:
        return np.pad(audio, [(0, n_samples - audio.shape[0]), (0, 0)])
    return audio
