"""A tqdm progress bar on stderr, or nothing (tqdm is imported only when a bar is shown)."""

from __future__ import annotations

from typing import Any

__all__ = ["progress_bar"]


class _NoProgress:
    """The progress bar when none is shown (importing tqdm costs start-up time)."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, disable: bool, desc: str, unit: str = "chunk") -> Any:
    """A bar counting `total` units (`update()` once per unit, `close()` at the end)."""
    if disable:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
