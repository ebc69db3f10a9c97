"""Traced programs kept on disk between processes, so a command's second run skips tracing.

JAX's persistent compilation cache (:func:`jaxscale.config.enable_compilation_cache`) stores the
compiled XLA programs, but a fresh process must still trace its Python functions to find out which
program it needs; for the multistart L-BFGS of a Chinchilla fit that tracing takes longer than the
fit. :func:`call` stores the traced program itself (a serialised :mod:`jax.export` module,
StableHLO: no Python objects, nothing is unpickled) the first time, and a later process loads it
instead of tracing; its compiled form then comes from the compilation cache.

It is active only where the compilation cache was turned on through jaxscale (the command line
does; :func:`jaxscale.config.enable_compilation_cache` in Python), on a single device and outside
other traced functions; otherwise :func:`call` is a plain ``jax.jit``. A stored program is found
by a hash of the package's source files, the JAX version, the platform, the float64 setting, the
static arguments and the shapes and dtypes of the inputs, so a program traced by other code is
never used.
"""
from __future__ import annotations

import functools
import hashlib
import os
import threading
from functools import lru_cache

import jax
import numpy as np

__all__ = ["LIGHT_CPU_OPTIONS", "call", "light_jit", "program_dir", "set_program_dir"]

_DIR: list[str | None] = [None]
_LOADED: dict = {}
_LOCK = threading.Lock()


def set_program_dir(path: str | None) -> None:
    """Where traced programs are kept (``None``: not kept, :func:`call` is a plain ``jax.jit``)."""
    _DIR[0] = path


def program_dir() -> str | None:
    """The folder set by :func:`set_program_dir`, or ``None``."""
    return _DIR[0]


@lru_cache(maxsize=1)
def source_hash() -> str:
    """Hash of every Python source file of the package (a changed file changes every key)."""
    root = os.path.dirname(os.path.abspath(__file__))
    h = hashlib.sha256()
    for base, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(base, name)
                h.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


def _key(name: str, static, treedef, leaves) -> str:
    import jaxlib

    dev = jax.devices()[0]
    parts = [name, source_hash(), jax.__version__, jaxlib.__version__, dev.platform,
             getattr(dev, "device_kind", ""), str(bool(jax.config.read("jax_enable_x64"))), repr(static),
             str(treedef)] + [f"{a.shape}{a.dtype}" for a in leaves]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def call(name: str, fn, args: tuple, static: tuple = (), *, light: bool = False):
    """``jax.jit(fn, static)(*args)`` with its traced program kept on disk (see the module).

    ``fn(*args, *static)`` must return a tuple or a namedtuple registered with
    :func:`jax.export.register_namedtuple_serialization`; ``static`` holds hashable non-array
    arguments (passed last, positionally). ``name`` names the program in the key. ``light``:
    compile with :data:`LIGHT_CPU_OPTIONS` on CPU (see :func:`light_jit`). Array leaves must not
    be PRNG key arrays (pass ``jax.random.key_data`` and wrap them inside ``fn``).
    """
    leaves, treedef = jax.tree_util.tree_flatten(args)
    # numpy leaves go to the device as they are (jnp.asarray would compile a small program per shape)
    leaves = [jax.device_put(a) if isinstance(a, np.ndarray | np.generic) else jax.numpy.asarray(a) for a in leaves]
    folder = _DIR[0]
    opts = LIGHT_CPU_OPTIONS if light and jax.default_backend() == "cpu" else None
    traced = _traced(leaves)  # inside another program: inline it
    if folder is None or traced or jax.device_count() != 1:
        jitted = _jitted(fn, static, None if traced else _frozen(opts))
        return jitted(*jax.tree_util.tree_unflatten(treedef, leaves))
    key = _key(name, static, treedef, leaves)
    with _LOCK:
        prog = _LOADED.get(key)
    if prog is None:
        prog = _load_or_export(folder, name, key, fn, static, treedef, leaves, opts)
        with _LOCK:
            _LOADED[key] = prog
    return prog(*leaves)


def _traced(tree) -> bool:
    """Whether any leaf of ``tree`` is a tracer (the call happens inside another traced function)."""
    return any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(tree))


def _frozen(opts):
    return None if opts is None else tuple(sorted(opts.items()))


@lru_cache(maxsize=64)
def _jitted(fn, static, opts):
    return jax.jit(lambda *a: fn(*a, *static), compiler_options=None if opts is None else dict(opts))


def _load_or_export(folder, name, key, fn, static, treedef, leaves, opts):
    from jax import export

    path = os.path.join(folder, f"{name}-{key}.jaxexport")
    try:
        from jax._src.export import serialization  # noqa: F401  (needs the flatbuffers package)
    except ImportError:
        return _jitted(fn, static, _frozen(opts))
    exp = None
    if os.path.exists(path):
        try:
            with open(path, "rb") as f:
                exp = export.deserialize(bytearray(f.read()))
        except Exception:  # unreadable (truncated, older format): trace again and overwrite
            exp = None
    if exp is None:
        def flat(*xs):
            return fn(*jax.tree_util.tree_unflatten(treedef, xs), *static)

        exp = export.export(jax.jit(flat))(*leaves)
        try:
            os.makedirs(folder, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(exp.serialize())
            os.replace(tmp, path)
        except OSError:  # a read-only cache folder only costs the next run its tracing
            pass
    return jax.jit(exp.call, compiler_options=opts)


#: XLA options for programs whose compile time dwarfs their run time on CPU: optimisation level 1
#: and the classic loop fusion instead of the fusion emitters. Measured on 2 CPU cores, same
#: numbers bit for bit: the context law's differential evolution (120 cells) compiled in 0.46 s
#: instead of 1.04 s (0.20 s since its random draws share one call site) and the cold ICL contract
#: fit took 5.4 s instead of 12.0 s; a cold Chinchilla fit of 2,000 / 200,000 rows 28.8 / 31.3 s
#: instead of 30.8 / 35.5 s, warm run unchanged. Not for long first-order loops: MaGP's 10 x 2000
#: Adam steps ran 86 s instead of 80 s with them. Optimisation level 0 compiled the DE in 0.12 s
#: but ran the polished ICL contract fit 4x slower warm (3.9 s against 0.9 s).
LIGHT_CPU_OPTIONS = {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": False}


def light_jit(fun=None, **jit_kwargs):
    """``jax.jit(fun, **jit_kwargs)`` compiled with :data:`LIGHT_CPU_OPTIONS` when the default
    backend is the CPU (other backends: a plain ``jax.jit``). Usable as a decorator, also as
    ``functools.partial(light_jit, static_argnames=...)``. Inside another traced function it is
    inlined like any ``jax.jit`` (the outer program's options apply)."""
    if fun is None:
        return lambda f: light_jit(f, **jit_kwargs)
    jitted: dict = {}

    def wrapper(*args, **kwargs):
        # called on traced values (inside another program): a plain jit, inlined there
        backend = "traced" if _traced((args, kwargs)) else jax.default_backend()
        f = jitted.get(backend)
        if f is None:
            opts = LIGHT_CPU_OPTIONS if backend == "cpu" else None
            f = jitted[backend] = jax.jit(fun, compiler_options=opts, **jit_kwargs)
        return f(*args, **kwargs)

    return functools.wraps(fun)(wrapper)
