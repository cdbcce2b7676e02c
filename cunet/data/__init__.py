"""Training data: sources (MUSDB18, folder datasets, clip folders), an on-disk STFT cache,
a seeded patch sampler with augmentation, and tf.data pipelines.

`cunet.data.sources` lists tracks, `cunet.data.cache` caches their stems' STFTs,
`cunet.data.sampler` draws augmented patches, `cunet.data.pipeline` feeds Keras.
"""

from __future__ import annotations

from .cache import CachedTrack, build_cache, conform_rate_and_channels, stft_key
from .pipeline import split_inputs_targets, train_dataset
from .sampler import PatchSampler, validation_batches
from .sources import (
    DataSpec,
    Track,
    open_musdb,
    open_source,
    open_sources,
    parse_data_spec,
    track_key,
)

__all__ = [
    "CachedTrack",
    "DataSpec",
    "PatchSampler",
    "Track",
    "build_cache",
    "conform_rate_and_channels",
    "open_musdb",
    "open_source",
    "open_sources",
    "parse_data_spec",
    "split_inputs_targets",
    "stft_key",
    "track_key",
    "train_dataset",
    "validation_batches",
]
