"""The README's demo command: runs the quickstart on built-in synthetic data (no downloads).

    ./dev demo            # full quickstart
    ./dev demo --fast     # reduced mode (used by the tests)
"""

import sys

from examples import quickstart

if __name__ == "__main__":
    sys.exit(quickstart.main(sys.argv[1:]))
