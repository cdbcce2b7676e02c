"""Synthetic multitracks rendered from MIDI (`cunet synth`): stems grouped by General MIDI program,
per-song variation drawn from a seed, a folder dataset that `cunet train --data` reads."""

from .dataset import SynthSettings, synthesize
from .stems import DEFAULT_STEMS, StemSpec, parse_stems

__all__ = ["DEFAULT_STEMS", "StemSpec", "SynthSettings", "parse_stems", "synthesize"]
