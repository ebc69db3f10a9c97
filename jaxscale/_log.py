"""Logging to stderr and progress bars that stay quiet when nobody is watching."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time

__all__ = ["get_logger", "progress", "progress_enabled", "heartbeat"]


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


#: Seconds between :func:`heartbeat` lines.
HEARTBEAT_SECONDS = 30.0


@contextlib.contextmanager
def heartbeat(desc: str, *, every: float | None = None, logger: logging.Logger | None = None):
    """Log ``desc: still running after N s`` every ``every`` seconds (default
    :data:`HEARTBEAT_SECONDS`) while the block runs, and the total time at the end when a line
    was logged; short work logs nothing.

    For one compiled program (a fit whose optimiser loop runs inside XLA) that cannot report its
    own steps without a host callback (which would keep it out of the persistent compilation
    cache). A daemon thread does the logging; XLA releases the GIL while it compiles and runs.
    Block on the result inside the ``with`` (``jax.block_until_ready``): dispatch is asynchronous.
    """
    every = HEARTBEAT_SECONDS if every is None else float(every)
    log = logger or get_logger("jaxscale")
    stop, beats = threading.Event(), [0]
    t0 = time.perf_counter()

    def beat():
        while not stop.wait(every):
            beats[0] += 1
            log.info("%s: still running after %.0f s", desc, time.perf_counter() - t0)

    thread = threading.Thread(target=beat, name="jaxscale-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if beats[0]:
            log.info("%s: done in %.0f s", desc, time.perf_counter() - t0)
