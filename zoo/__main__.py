"""``python -m zoo ...``: the ``kerazoo`` command (``python -m kerazoo`` answers --help without importing Keras)."""

import sys

from kerazoo.cli import main

if __name__ == "__main__":
    sys.exit(main())
