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


def progress(iterable=None, *, total=None, desc: str = "", disable: bool | None = None, initial: int = 0):
    """A tqdm progress bar on stderr. Where stderr is no terminal (a batch job, a log file) and
    ``JAXSCALE_PROGRESS`` is unset, the same progress comes as a log line at most every
    :data:`HEARTBEAT_SECONDS` (steps done, seconds, an estimate of the time left); ``disable=True``
    or ``JAXSCALE_PROGRESS=0``: a plain pass-through. ``initial``: steps already done (a resumed
    fit), left out of the time estimate."""
    from tqdm.auto import tqdm

    if disable is None:
        if os.environ.get("JAXSCALE_PROGRESS") is None and not sys.stderr.isatty():
            return _LoggedProgress(iterable, total, desc, initial)
        disable = not progress_enabled()
    return tqdm(iterable, total=total, desc=desc, disable=disable, file=sys.stderr, leave=False, initial=initial)


#: When a progress line was last logged and the time since the one before (a heartbeat stays quiet
#: while progress lines come).
_LAST_PROGRESS_LINE = [float("-inf"), float("inf")]


class _LoggedProgress:
    """The part of tqdm's interface the package uses (iteration, ``update``, ``set_postfix``,
    ``set_description``, ``close``), reporting as log lines at most every :data:`HEARTBEAT_SECONDS`."""

    def __init__(self, iterable, total, desc: str, initial: int = 0):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc = iterable, total, desc or "progress"
        self.n = self.n0 = int(initial)
        self.t0 = self.last = time.perf_counter()
        self.postfix = ""

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = time.perf_counter()
        if now - self.last < HEARTBEAT_SECONDS:
            return
        self.last = now
        took = now - self.t0
        of = f"/{self.total}" if self.total else ""
        left = ""
        if self.total and self.n > self.n0:
            left = f", about {took * (self.total - self.n) / (self.n - self.n0):.0f} s left"
        get_logger("jaxscale").info("%s: %d%s after %.0f s%s%s", self.desc, self.n, of, took, left, self.postfix)
        _LAST_PROGRESS_LINE[1] = now - _LAST_PROGRESS_LINE[0]
        _LAST_PROGRESS_LINE[0] = now

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def set_postfix(self, **values) -> None:
        self.postfix = "".join(f", {k} {v}" for k, v in values.items())

    def close(self) -> None:
        pass


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
            last, gap = _LAST_PROGRESS_LINE
            if time.perf_counter() - last < max(every, 1.5 * gap if gap < float("inf") else 0.0):
                continue  # progress lines are coming, and say more
            beats[0] += 1
            log.info("%s: still running after %.0f s", desc, time.perf_counter() - t0)

    thread = threading.Thread(target=beat, name="jaxscale-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if beats[0] or _LAST_PROGRESS_LINE[0] >= t0:
            log.info("%s: done in %.0f s", desc, time.perf_counter() - t0)
