"""``python -m simtopo``: the same as the ``simtopo`` command."""

import sys

from .cli import main

sys.exit(main())
