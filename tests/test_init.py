"""cunet (the package): the public API in `__all__`, each name loaded on first use."""

from __future__ import annotations

import subprocess
import sys

import cunet


def test_every_public_name_resolves() -> None:
    for name in cunet.__all__:
        assert getattr(cunet, name) is not None, name
    assert sorted(dir(cunet)) == sorted(cunet.__all__)


def test_import_cunet_loads_nothing_heavy() -> None:
    code = (
        "import sys, cunet; heavy = [m for m in ('numpy', 'tensorflow', 'keras') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_separate_file_is_the_jobs_one() -> None:
    from cunet.jobs import separate_file

    assert cunet.separate_file is separate_file and cunet.__version__.count(".") == 2
