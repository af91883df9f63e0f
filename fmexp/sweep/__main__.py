"""``python -m fmexp.sweep STUDY [flags]``: the same command, through the same parser, as ``fmexp sweep``."""

import sys

from fmexp.cli import main

if __name__ == "__main__":
    sys.argv.insert(1, "sweep")
    sys.exit(main(prog="python -m fmexp.sweep"))
