#!/usr/bin/env python
"""Score a model and baselines on MUSDB18 with museval:
`python scripts/evaluate.py --musdb-root DIR [--model PATH] [--baselines] [--protocol musdb|paper] --out DIR`."""

import sys

from cunet.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
