"""``python -m kerazoo ...``: the ``kerazoo`` command."""

from kerazoo.cli import exit_after, main

if __name__ == "__main__":
    exit_after(main())
