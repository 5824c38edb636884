"""`python -m colbert`: the `colbert` command line (colbert.cli)."""

import sys

from colbert.cli import main

if __name__ == "__main__":
    sys.exit(main())
