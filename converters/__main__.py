"""``python -m converters caffe DEPLOY.prototxt WEIGHTS.caffemodel -o OUT.keras`` (see :mod:`converters.cli`)."""

from converters.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    from kerazoo.cli import exit_after

    exit_after(main())
