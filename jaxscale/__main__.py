"""``python -m jaxscale`` runs the command line."""
import sys

from jaxscale.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
