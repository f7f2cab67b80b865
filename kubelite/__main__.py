"""`python -m kubelite`: the command line, as the `kubelite` script runs it (`kubelite.cli.main`)."""

import sys

from kubelite.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
