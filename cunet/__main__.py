"""`python -m cunet ...`: the `cunet` command."""

import sys

from .cli import main

sys.exit(main())
