"""``python -m kerazoo ...``: the ``kerazoo`` command."""

import sys

from kerazoo.cli import main

if __name__ == "__main__":
    sys.exit(main())
