"""``python -m converters caffe DEPLOY.prototxt WEIGHTS.caffemodel -o OUT.keras`` (see :mod:`converters.cli`)."""

import sys

from converters.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
