#!/usr/bin/env python
"""Train a C-U-Net on MUSDB18: `python scripts/train.py --config configs/default.yaml --musdb-root DIR --out DIR`."""

import sys

from cunet.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
