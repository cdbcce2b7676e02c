#!/usr/bin/env python
"""Export a model as a SavedModel: `python scripts/export.py --model run/best.keras --out models/cunet/1`."""

import sys

from cunet.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
