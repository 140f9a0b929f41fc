"""`python -m deepbox`: the same CLI as the `deepbox` command."""

import sys

from deepbox.cli import main

if __name__ == "__main__":
    sys.exit(main())
