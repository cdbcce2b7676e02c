"""Frozen configuration dataclasses and their YAML loader (only scripts and the CLI read YAML files;
everything else receives these objects)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .safeyaml import build_dataclass, read_yaml, to_plain

INSTRUMENTS: tuple[str, ...] = ("vocals", "drums", "bass", "other")
INPUT_SCALINGS: tuple[str, ...] = ("none", "log")
FILM_TYPES: tuple[str, ...] = ("simple", "complex", "gpocm")
# Which U-Net blocks a FiLM or TDF layer sits in.
PLACEMENTS: tuple[str, ...] = ("encoder", "decoder", "both")
TDF_PLACEMENTS: tuple[str, ...] = ("none", *PLACEMENTS)
POSTPROCESS_MODES: tuple[str, ...] = ("none", "ratio")
SELECTION_METRICS: tuple[str, ...] = ("sdr", "loss")
LR_SCHEDULES: tuple[str, ...] = ("plateau", "cosine")

MAX_N_FFT = 16384  # STFT size limit (0.37 s at 44.1 kHz)
# hop_length >= n_fft / 16: more frames per second than that only cost memory
MAX_FRAME_OVERLAP = 16


@dataclass(frozen=True)
class AudioConfig:
    """Signal parameters.

    sample_rate: Hz. n_channels: 1 (mono) or 2 (stereo).
    n_fft, hop_length: STFT size and hop in samples.
    n_bins: frequency bins seen by the network, counted from 0 Hz; the bins
        above (at most the Nyquist bin) reuse the mask of the highest one.
    """

    sample_rate: int = 44100
    n_channels: int = 2
    n_fft: int = 2048
    hop_length: int = 512
    n_bins: int = 1024

    def validate(self) -> None:
        # Bounded, because these sizes shape every buffer computed from a (possibly foreign) record.
        _check(
            isinstance(self.sample_rate, int) and 1000 <= self.sample_rate <= 768_000,
            "audio.sample_rate",
            "must be a whole number of Hz in [1000, 768000]",
        )
        _check(self.n_channels in (1, 2), "audio.n_channels", "must be 1 or 2")
        _check(
            isinstance(self.n_fft, int) and 16 <= self.n_fft <= MAX_N_FFT and self.n_fft % 2 == 0,
            "audio.n_fft",
            f"must be an even number in [16, {MAX_N_FFT}]",
        )
        _check(
            isinstance(self.hop_length, int)
            and self.n_fft // MAX_FRAME_OVERLAP <= self.hop_length <= self.n_fft,
            "audio.hop_length",
            f"must be in [n_fft/{MAX_FRAME_OVERLAP}, n_fft]",
        )
        _check(
            0 < self.n_bins <= self.n_fft // 2 + 1, "audio.n_bins", "must be in (0, n_fft/2 + 1]"
        )

    @property
    def max_frequency(self) -> float:
        """Centre frequency (Hz) of the highest bin the network sees."""
        return (self.n_bins - 1) * self.sample_rate / self.n_fft


@dataclass(frozen=True)
class ModelConfig:
    """Network architecture.

    kind: "conditioned" (C-U-Net, one model for every instrument) or
        "standard" (plain U-Net for `target` only).
    n_frames: patch length in STFT frames used for training; inference takes
        any multiple of 2**n_layers.
    film_type: "simple" (FiLM, one gamma/beta per block), "complex" (FiLM, per channel) or "gpocm"
        (LaSAFT's gated point-wise convolutional modulation: `x * sigmoid(x @ W + b)`, with W a
        channel-mixing matrix per block that the condition sets).
    control_type: "dense" or "cnn".
    control_units: hidden sizes of the control network (neurons or filters).
    input_scaling: "none" (linear magnitude in) or "log" (log1p, then a learned per-bin
        shift and scale initialised from training data statistics).
    postprocess: how the masks of all instruments are combined at inference by default:
        "none" (each mask on its own) or "ratio" (masks normalised to sum to one over the
        instruments, so the estimates add up to the mixture). Joint training uses the same.
    ratio_power: exponent the masks are raised to before the ratio step at inference (masks^p / sum
        of masks^p); below 1 softens the masks, above 1 sharpens them. Training always uses 1.
    batchnorm_momentum: momentum of the U-Net's batch-normalisation statistics (0.99 averages
        over ~100 steps instead of ~10: steadier inference results from one epoch to the next).
    film_placement: the blocks FiLM modulates: "encoder" (the paper's C-U-Net), "decoder" (the
        encoder no longer depends on the instrument) or "both".
    tdf: the blocks followed by a residual TDF layer (a fully connected layer across frequency,
        shared over frames): "none", "encoder", "decoder" or "both".
    tdf_bottleneck: a TDF layer's hidden width is its block's bins divided by this (at least 8).
    """

    kind: str = "conditioned"
    n_frames: int = 64
    n_layers: int = 6
    first_filters: int = 16
    kernel_size: int = 5
    film_type: str = "simple"
    control_type: str = "dense"
    control_units: tuple[int, ...] = (16, 64, 256)
    decoder_dropout: float = 0.5
    control_dropout: float = 0.5
    target: str = "vocals"
    instruments: tuple[str, ...] = INSTRUMENTS
    input_scaling: str = "none"
    postprocess: str = "none"
    ratio_power: float = 1.0
    batchnorm_momentum: float = 0.9
    film_placement: str = "encoder"
    tdf: str = "none"
    tdf_bottleneck: int = 16

    def validate(self) -> None:
        _check(
            self.kind in ("conditioned", "standard"),
            "model.kind",
            "must be 'conditioned' or 'standard'",
        )
        # Upper bounds too: these sizes come from model records, and shape the network built from them.
        _check(1 <= self.n_layers <= 12, "model.n_layers", "must be in [1, 12]")
        _check(
            0 < self.n_frames <= 4096 and self.n_frames % (2**self.n_layers) == 0,
            "model.n_frames",
            f"must be a multiple of 2**n_layers = {2**self.n_layers}, at most 4096",
        )
        _check(0 < self.first_filters <= 512, "model.first_filters", "must be in [1, 512]")
        _check(0 < self.kernel_size <= 31, "model.kernel_size", "must be in [1, 31]")
        _check(
            self.film_type in FILM_TYPES,
            "model.film_type",
            f"must be one of {', '.join(FILM_TYPES)}",
        )
        _check(
            self.control_type in ("dense", "cnn"), "model.control_type", "must be 'dense' or 'cnn'"
        )
        _check(
            1 <= len(self.control_units) <= 8 and all(0 < u <= 8192 for u in self.control_units),
            "model.control_units",
            "must be a list of 1 to 8 sizes in [1, 8192]",
        )
        _check(0.0 <= self.decoder_dropout < 1.0, "model.decoder_dropout", "must be in [0, 1)")
        _check(0.0 <= self.control_dropout < 1.0, "model.control_dropout", "must be in [0, 1)")
        _check(
            len(self.instruments) >= 1 and len(set(self.instruments)) == len(self.instruments),
            "model.instruments",
            "must be distinct names",
        )
        _check(
            self.target in self.instruments,
            "model.target",
            f"must be one of {list(self.instruments)}",
        )
        _check(
            0.0 <= self.batchnorm_momentum < 1.0, "model.batchnorm_momentum", "must be in [0, 1)"
        )
        _check(
            self.input_scaling in INPUT_SCALINGS,
            "model.input_scaling",
            f"must be one of {list(INPUT_SCALINGS)}",
        )
        _check(
            self.postprocess in POSTPROCESS_MODES,
            "model.postprocess",
            f"must be one of {list(POSTPROCESS_MODES)}",
        )
        _check(
            math.isfinite(self.ratio_power) and 0 < self.ratio_power <= 4,
            "model.ratio_power",
            "must be in (0, 4]",
        )
        _check(
            self.film_placement in PLACEMENTS,
            "model.film_placement",
            f"must be one of {list(PLACEMENTS)}",
        )
        _check(self.tdf in TDF_PLACEMENTS, "model.tdf", f"must be one of {list(TDF_PLACEMENTS)}")
        _check(self.tdf_bottleneck >= 1, "model.tdf_bottleneck", "must be >= 1")
        _check(
            self.postprocess == "none" or self.kind == "conditioned",
            "model.postprocess",
            "'ratio' needs a conditioned model (it combines the masks of all instruments)",
        )

    @property
    def filters(self) -> tuple[int, ...]:
        """Encoder filters per block, doubling from `first_filters`."""
        return tuple(self.first_filters * 2**i for i in range(self.n_layers))

    @property
    def time_multiple(self) -> int:
        """Frame counts must be a multiple of this (total stride in time)."""
        return 2**self.n_layers

    @property
    def conditioned(self) -> bool:
        """True for a C-U-Net (takes a "condition" input), False for a plain U-Net."""
        return self.kind == "conditioned"

    @property
    def shares_encoder(self) -> bool:
        """True when the encoder does not depend on the condition (FiLM only in the decoder), so one
        encoder pass can serve every instrument's mask."""
        return self.conditioned and self.film_placement == "decoder"

    @property
    def outputs(self) -> tuple[str, ...]:
        """The instruments the model separates: all of `instruments` if conditioned, else `target` only."""
        return self.instruments if self.conditioned else (self.target,)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, objective and data-augmentation settings.

    batch_size: patches per step seen by the network (in joint mode: batch_size / n_instruments
        mixtures, each with every instrument's condition).
    joint: train all conditions of the same mixture together; the masks are combined as
        `model.postprocess` says before the loss, so the loss sees estimates that sum to the mixture.
    magnitude_loss_weight, magnitude_loss_power: L1 between estimated and target magnitudes raised
        to this power (1: linear magnitudes, 0.5: compressed).
    raw_mask_loss_weight: in joint training with ratio normalisation, weight of the same loss on each
        instrument's own (not normalised) mask.
    sdr_loss_weight: weight of the negative SDR (dB) of the waveform rebuilt with the mixture's phase.
    sdr_loss_min_rms: targets quieter than this RMS in a patch (full scale 1.0; 0.00316: -50 dBFS)
        leave the SDR term, which on silence measures only leakage (the L1 term still counts them).
    freq_warp: w > 0 stretches each stem's frequency axis by a random factor in [1 - w, 1 + w] half
        the time (a pitch-like augmentation; the mixture stays the sum of the warped stems).
    ema_momentum: m > 0 keeps an exponential moving average of the weights (Polyak averaging) with this
        momentum; validation and checkpoints use the averaged weights.
    select_by: checkpoint selection and learning-rate schedule on "sdr" (mean over instruments of
        the median validation SDR over tracks, full tracks, 1 s segments) or "loss" (validation loss).
    lr_schedule: "plateau" multiplies the rate by `reduce_lr_factor` after `reduce_lr_patience`
        epochs without a better selection metric; "cosine" decays it from `learning_rate` to
        `final_learning_rate` along half a cosine over `epochs` x `steps_per_epoch` steps.
    """

    batch_size: int = 16
    steps_per_epoch: int = 500
    epochs: int = 1000
    learning_rate: float = 1e-3
    early_stopping_patience: int = 15
    reduce_lr_patience: int = 5
    reduce_lr_factor: float = 0.5
    seed: int = 42
    remix_probability: float = 1.0
    gain_range: tuple[float, float] = (0.25, 1.25)
    channel_swap_probability: float = 0.5
    progressive_probability: float = 0.25
    multi_hot_probability: float = 0.0
    zero_condition_probability: float = 0.0
    max_minutes: float = 0.0
    joint: bool = False
    magnitude_loss_weight: float = 1.0
    magnitude_loss_power: float = 1.0
    raw_mask_loss_weight: float = 0.5
    sdr_loss_weight: float = 0.0
    sdr_loss_min_rms: float = 0.0
    freq_warp: float = 0.0
    ema_momentum: float = 0.0
    select_by: str = "sdr"
    lr_schedule: str = "plateau"
    final_learning_rate: float = 0.0

    def validate(self) -> None:
        _check(self.batch_size > 0, "train.batch_size", "must be positive")
        _check(self.steps_per_epoch > 0, "train.steps_per_epoch", "must be positive")
        _check(self.epochs > 0, "train.epochs", "must be positive")
        _check(
            math.isfinite(self.learning_rate) and self.learning_rate > 0,
            "train.learning_rate",
            "must be positive",
        )
        _check(
            self.early_stopping_patience > 0, "train.early_stopping_patience", "must be positive"
        )
        _check(self.reduce_lr_patience > 0, "train.reduce_lr_patience", "must be positive")
        _check(0 < self.reduce_lr_factor < 1, "train.reduce_lr_factor", "must be in (0, 1)")
        _check(
            len(self.gain_range) == 2 and 0 <= self.gain_range[0] <= self.gain_range[1],
            "train.gain_range",
            "must be [low, high] with 0 <= low <= high",
        )
        for name in (
            "remix_probability",
            "channel_swap_probability",
            "progressive_probability",
            "multi_hot_probability",
            "zero_condition_probability",
        ):
            value = getattr(self, name)
            _check(0.0 <= value <= 1.0, f"train.{name}", "must be in [0, 1]")
        _check(self.max_minutes >= 0, "train.max_minutes", "must be >= 0 (0 means no limit)")
        _check(
            self.magnitude_loss_weight >= 0
            and self.sdr_loss_weight >= 0
            and self.magnitude_loss_weight + self.sdr_loss_weight > 0,
            "train.magnitude_loss_weight",
            "loss weights must be >= 0 and not both 0",
        )
        _check(0.0 <= self.sdr_loss_min_rms < 1.0, "train.sdr_loss_min_rms", "must be in [0, 1)")
        _check(0.0 <= self.ema_momentum < 1.0, "train.ema_momentum", "must be in [0, 1) (0: off)")
        _check(0 <= self.freq_warp < 0.5, "train.freq_warp", "must be in [0, 0.5)")
        _check(self.raw_mask_loss_weight >= 0, "train.raw_mask_loss_weight", "must be >= 0")
        _check(
            0 < self.magnitude_loss_power <= 2, "train.magnitude_loss_power", "must be in (0, 2]"
        )
        _check(
            self.select_by in SELECTION_METRICS,
            "train.select_by",
            f"must be one of {list(SELECTION_METRICS)}",
        )
        _check(
            self.lr_schedule in LR_SCHEDULES,
            "train.lr_schedule",
            f"must be one of {list(LR_SCHEDULES)}",
        )
        _check(
            0 <= self.final_learning_rate < self.learning_rate,
            "train.final_learning_rate",
            "must be in [0, train.learning_rate)",
        )


@dataclass(frozen=True)
class Config:
    """A complete experiment: audio, model and training settings."""

    name: str = "default"
    audio: AudioConfig = field(default_factory=AudioConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> Config:
        self.audio.validate()
        self.model.validate()
        self.train.validate()
        _check(
            self.audio.n_bins % (2**self.model.n_layers) == 0,
            "audio.n_bins",
            f"must be a multiple of 2**model.n_layers = {2**self.model.n_layers}",
        )
        if self.train.joint:
            n_inst = len(self.model.instruments)
            _check(self.model.kind == "conditioned", "train.joint", "needs a conditioned model")
            _check(
                self.train.batch_size % n_inst == 0,
                "train.batch_size",
                f"must be a multiple of the {n_inst} instruments in joint training",
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists), suitable for YAML/JSON."""
        return to_plain(dataclasses.asdict(self))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"invalid value for '{key}': {message}")


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Build and validate a Config from a nested mapping (as read from YAML)."""
    if not isinstance(data, Mapping):
        raise ConfigError("a config must be a mapping at the top level")
    sections = {"audio": AudioConfig, "model": ModelConfig, "train": TrainConfig}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "name":
            if not isinstance(value, str):
                raise ConfigError("invalid value for 'name': expected a string")
            kwargs["name"] = value
        elif key in sections:
            kwargs[key] = build_dataclass(sections[key], value or {}, f"{key}.")
        else:
            raise ConfigError(f"unknown key '{key}' (valid: audio, model, name, train)")
    return Config(**kwargs).validate()


def load_config(path: str | Path) -> Config:
    """Read a YAML config file into a validated, frozen Config (ConfigError naming file and line if bad)."""
    return config_from_dict(read_yaml(path) or {})
