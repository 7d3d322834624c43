"""``python -m graphc.cli ...``: the same as the ``graphc`` console script."""

import sys

from graphc.cli import main

if __name__ == "__main__":
    sys.exit(main())
