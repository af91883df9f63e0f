"""``python -m fmexp``: the ``fmexp`` command (``fmexp.cli``)."""

import sys

from fmexp.cli import main

if __name__ == "__main__":
    sys.exit(main())
