"""cunet: Conditioned U-Net music source separation (Meseguer-Brocal & Peeters, ISMIR 2019).

Nothing heavy is imported here: `cunet.Separator` loads TensorFlow on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Separator", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Separator":
        from .separator import Separator

        return Separator
    raise AttributeError(f"module 'cunet' has no attribute {name!r}")
