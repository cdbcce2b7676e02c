"""cunet: Conditioned U-Net music source separation (Meseguer-Brocal & Peeters, ISMIR 2019).

The public API is `__all__`; every name is imported on first use, so `import cunet` loads nothing
heavy (no NumPy, no TensorFlow). See the README's "Public API" table.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# name -> the module that defines it
_API = {
    "Separator": "cunet.separator",
    "separate_file": "cunet.jobs",
    "separate_inputs": "cunet.jobs",
    "OutputSettings": "cunet.io.output",
    "ChunkSettings": "cunet.settings",
    "Excerpt": "cunet.io.audio",
    "Postprocess": "cunet.postprocess",
    "Config": "cunet.config",
    "load_config": "cunet.config",
    "CunetError": "cunet.errors",
}
__all__ = [
    "ChunkSettings",
    "Config",
    "CunetError",
    "Excerpt",
    "OutputSettings",
    "Postprocess",
    "Separator",
    "__version__",
    "load_config",
    "separate_file",
    "separate_inputs",
]

if TYPE_CHECKING:  # for type checkers and IDEs only; at run time `__getattr__` imports lazily
    from .config import Config, load_config
    from .errors import CunetError
    from .io.audio import Excerpt
    from .io.output import OutputSettings
    from .jobs import separate_file, separate_inputs
    from .postprocess import Postprocess
    from .separator import Separator
    from .settings import ChunkSettings


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'cunet' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
