"""On-disk cache of every stem's complex STFT, written once and memory-mapped afterwards.

Layout under `cache_dir`:

    stft-sr{sr}-ch{ch}-fft{n_fft}-hop{hop}-bins{n_bins}/{source id}/{track}/{stem}.npy
        complex64 [n_channels_stored, n_frames, n_bins_stored]
    .../{track}/meta.json     written last: the track is complete

A mono recording is stored with one channel (the sampler copies it to both sides of a stereo
model), and audio recorded below the model's rate keeps only the bins below its own Nyquist
frequency (the sampler fills the rest with zeros), so a large band-limited corpus costs little
disk. All stems of a track are padded to the same length. The STFT is linear, so stems drawn
from different tracks are remixed directly in the STFT domain.
"""

from __future__ import annotations

import errno
import json
import math
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import AudioConfig
from ..dsp import stft
from ..errors import DataError
from ..io.atomic import atomic_path, write_json_atomic
from ..io.resample import conform
from ..workers import bounded_workers
from .sources import Track, track_key

CACHE_VERSION = 2
RESIDUAL_BLOCK = 1 << 18  # samples compared at a time by `mixture_residual_db`
MIXTURE_MISMATCH_DB = (
    -30.0
)  # a track's own mixture "differs" from its stems' sum above this residual energy


def stft_key(audio: AudioConfig) -> str:
    return (
        f"stft-sr{audio.sample_rate}-ch{audio.n_channels}-fft{audio.n_fft}"
        f"-hop{audio.hop_length}-bins{audio.n_bins}"
    )


@dataclass(frozen=True)
class CachedTrack:
    """One track's cached stems.

    stems: instruments with a cached STFT; silent: instruments the dataset marks silent;
    n_frames: STFT frames of every stem; weight: the source's sampling weight.
    """

    name: str
    folder: Path
    stems: tuple[str, ...]
    silent: frozenset[str]
    n_frames: int
    weight: float = 1.0

    def load(self, instrument: str) -> np.ndarray:
        """complex64 [n_channels_stored, n_frames, n_bins_stored], memory-mapped."""
        return np.load(self.folder / f"{track_key(instrument)}.npy", mmap_mode="r")

    def has(self, instrument: str) -> bool:
        """True when the track holds the instrument (or the dataset marks it silent)."""
        return instrument in self.stems or instrument in self.silent

    def mixture(self, n_bins: int, n_channels: int) -> np.ndarray:
        """Sum of all stems: complex64 [n_channels, n_frames, n_bins] (read fully)."""
        total = np.zeros((n_channels, self.n_frames, n_bins), np.complex64)
        for stem in self.stems:
            spec = self.load(stem)
            total[:, :, : spec.shape[2]] += spec
        return total


def save_array_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def conform_rate_and_channels(audio: np.ndarray, rate: int, target: AudioConfig) -> np.ndarray:
    """Resample float audio [n_samples, n_channels] to the config's rate; down-mix for a mono model.

    Mono stays mono (one channel) whatever the model: callers broadcast it.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    if audio.shape[1] > 2:
        raise DataError(
            f"{audio.shape[1]} channels are not supported in training data (mono or stereo)"
        )
    return conform(audio, rate, target.sample_rate, 1 if target.n_channels == 1 else None)


def stored_bins(rate: int, audio: AudioConfig) -> int:
    """Bins worth storing for audio recorded at `rate` Hz: those below its Nyquist frequency (+2)."""
    if rate >= audio.sample_rate:
        return audio.n_bins
    return min(audio.n_bins, int(math.ceil((rate / 2) / (audio.sample_rate / audio.n_fft))) + 2)


def _stft(waveform: np.ndarray, audio: AudioConfig) -> np.ndarray:
    """float32 [n_channels, n_samples] -> complex64 [n_channels, n_frames, n_fft // 2 + 1]."""
    return stft(np.asarray(waveform, np.float32), audio.n_fft, audio.hop_length)


def _read_meta(path: Path) -> dict | None:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("version") == CACHE_VERSION else None


def mixture_residual_db(mixture: np.ndarray, stems: Sequence[np.ndarray]) -> float:
    """Energy of (mixture - sum of stems) relative to the mixture's, in dB, within [-200, 200].

    Arrays are float [n_samples, n_channels]; shorter ones are zero-padded, mono broadcast to stereo.
    """
    arrays = [mixture, *stems]
    n = max(a.shape[0] for a in arrays)
    ch = max(a.shape[1] for a in arrays)
    energy = error = 0.0
    # in float64 a block at a time, not a float64 copy of every array
    for start in range(0, n, RESIDUAL_BLOCK):
        stop = min(n, start + RESIDUAL_BLOCK)
        residual = np.zeros((stop - start, ch))
        for i, a in enumerate(arrays):
            part = a[start:stop].astype(np.float64)
            if i == 0:
                energy += float(np.sum(np.broadcast_to(part, (part.shape[0], ch)) ** 2))
            residual[: part.shape[0]] += part if i == 0 else -part
        error += float(np.sum(residual**2))
    if error == 0 or energy == 0:
        return -200.0 if error == 0 else 200.0
    return min(200.0, max(-200.0, 10 * math.log10(error / energy)))


def _cache_track(track: Track, folder: Path, audio: AudioConfig) -> tuple[CachedTrack, dict]:
    """`cache_track` and the track's meta record."""
    meta_path = folder / "meta.json"
    meta = _read_meta(meta_path)
    if (
        meta is None
        or set(meta["stems"]) != set(track.stems)
        or meta.get("fingerprint", "") != track.fingerprint
    ):
        decoded = {}
        for stem, reader in track.stems.items():
            wave, rate = reader()
            decoded[stem] = (conform_rate_and_channels(wave, rate, audio), stored_bins(rate, audio))
        residual_db = None
        if (
            track.check_mixture and track.mixture is not None
        ):  # checked while decoding anyway: once per track
            wave, rate = track.mixture()
            residual_db = mixture_residual_db(
                conform_rate_and_channels(wave, rate, audio), [w for w, _ in decoded.values()]
            )
        n_samples = max(w.shape[0] for w, _ in decoded.values())
        n_frames = 0
        for stem in list(decoded):
            wave, bins = decoded.pop(stem)  # each wave freed once transformed
            wave = np.pad(wave, [(0, n_samples - wave.shape[0]), (0, 0)])
            # the transposed view and the bins' slice are not copied: stft copies once, np.save streams
            spec = _stft(wave.T, audio)[..., :bins]
            del wave
            n_frames = spec.shape[1]
            save_array_atomic(folder / f"{track_key(stem)}.npy", spec)
            del spec
        meta = {
            "version": CACHE_VERSION,
            "name": track.name,
            "stems": sorted(track.stems),
            "n_frames": int(n_frames),
            "mixture_residual_db": residual_db,
            "fingerprint": track.fingerprint,
        }
        write_json_atomic(meta_path, meta)
    cached = CachedTrack(
        track.name,
        folder,
        tuple(sorted(track.stems)),
        track.silent,
        int(meta["n_frames"]),
        track.weight,
    )
    return cached, meta


def cache_track(track: Track, folder: Path, audio: AudioConfig) -> CachedTrack:
    """Decode, conform and transform one track's stems into `folder` (reused when complete)."""
    return _cache_track(track, folder, audio)[0]


def mixture_notes(tracks: Sequence[Track], residuals_db: Sequence[float | None]) -> list[str]:
    """One note per source whose tracks' own mixtures differ from the sum of their stems."""
    by_source: dict[str, list[tuple[Track, float | None]]] = {}
    for track, residual in zip(tracks, residuals_db, strict=False):
        by_source.setdefault(track.source_id, []).append((track, residual))
    notes = []
    for entries in by_source.values():
        differ = [t for t, r in entries if r is not None and r > MIXTURE_MISMATCH_DB]
        if differ:
            root = entries[0][0].origin or entries[0][0].source_id
            notes.append(
                f"note: {len(differ)} of {len(entries)} tracks in '{root}' have a mixture that differs "
                f"from the sum of their stems (e.g. '{differ[0].name}'); training uses the sum of the stems"
            )
    return notes


def build_cache(
    tracks: Sequence[Track],
    cache_dir: str | os.PathLike,
    audio: AudioConfig,
    progress: bool = True,
    workers: int = 1,
) -> list[CachedTrack]:
    """Cache every track's stems (decoding each track once, ever); returns the cached tracks in order.

    workers: tracks decoded at once, by threads (decoding, resampling and the STFT release the GIL),
    at most one per CPU and per track; each holds one track's spectrograms, so memory
    grows with it.
    Prints one note on stderr per source whose tracks carry their own mixture file and it differs
    from the sum of their stems (checked when the track is decoded, remembered in its meta.json).
    """
    from tqdm import tqdm

    root = Path(cache_dir) / stft_key(audio)

    def one(track: Track) -> tuple[CachedTrack, dict]:
        folder = root / track.source_id / track_key(track.name)
        try:
            return _cache_track(track, folder, audio)
        except OSError as exc:  # disk full, quota, permissions: the partial file is already removed
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise DataError(
                f"cannot cache track '{track.name}' in '{folder}': {exc.strerror or exc}"
                + (
                    " (the cache holds every stem's spectrogram, about 5 GB per hour of stereo "
                    "audio per stem; free space or give another --cache-dir)"
                    if full
                    else ""
                )
            ) from None

    bar = tqdm(total=len(tracks), desc="caching tracks", disable=not progress, unit="track")
    with ThreadPoolExecutor(bounded_workers(max(1, workers), len(tracks))[0]) as pool:
        entries = []
        for entry in pool.map(one, tracks):
            entries.append(entry)
            bar.update()
    bar.close()
    for note in mixture_notes(tracks, [meta.get("mixture_residual_db") for _, meta in entries]):
        print(note, file=sys.stderr, flush=True)
    return [entry for entry, _ in entries]
