"""``python -m jaxscale``: the command line."""
import sys

from jaxscale.cli import main

__all__: list[str] = []

sys.exit(main())
