"""``python -m simtopo``: the same as the ``simtopo`` command."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the command line loads: one line, not a traceback
    sys.stderr.write("interrupted\n")
    sys.exit(130)

sys.exit(main())
