"""``python -m anydiff`` is the ``anydiff`` command (and the module torchrun launches)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
