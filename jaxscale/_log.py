"""Logging to stderr and progress bars that stay quiet when nobody is watching."""
from __future__ import annotations

import logging
import os
import sys

__all__ = ["get_logger", "progress", "progress_enabled"]


def get_logger(name: str) -> logging.Logger:
    """A logger writing to stderr (stdout stays free for ``--json`` output)."""
    logger = logging.getLogger(name)
    root = logging.getLogger("jaxscale")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[jaxscale] %(message)s"))
        root.addHandler(handler)
        root.setLevel(os.environ.get("JAXSCALE_LOG_LEVEL", "INFO"))
        root.propagate = False
    return logger


def progress_enabled() -> bool:
    """Progress bars are on for an interactive stderr unless JAXSCALE_PROGRESS=0 (forced on with 1)."""
    flag = os.environ.get("JAXSCALE_PROGRESS")
    if flag is not None:
        return flag not in ("0", "", "false", "False")
    return sys.stderr.isatty()


def progress(iterable=None, *, total=None, desc: str = "", disable: bool | None = None):
    """A tqdm progress bar on stderr (a plain pass-through when disabled)."""
    from tqdm.auto import tqdm

    if disable is None:
        disable = not progress_enabled()
    return tqdm(iterable, total=total, desc=desc, disable=disable, file=sys.stderr, leave=False)
