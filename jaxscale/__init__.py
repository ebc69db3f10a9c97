"""jaxscale: probabilistic scaling laws in JAX.

One contract in every pillar::

    data = pillar.from_frame(df, ...)          # validated arrays (a pytree)
    fit = pillar.fit(key, data, pillar.Spec())  # a pytree of arrays; jit/vmap friendly
    pred = pillar.predict(fit, query)           # jaxscale.Prediction(mean, lower, upper, samples)
    jaxscale.save(fit, "model/"); fit = jaxscale.load("model/")

Pillars: :mod:`jaxscale.chinchilla`, :mod:`jaxscale.learning_curves`,
:mod:`jaxscale.observational`, :mod:`jaxscale.context_law`, :mod:`jaxscale.ncpl`.
Shared layers: :mod:`jaxscale.data`, :mod:`jaxscale.laws`, :mod:`jaxscale.gp`,
:mod:`jaxscale.infer`, :mod:`jaxscale.metrics`, :mod:`jaxscale.plotting`.
"""
from jaxscale._version import __version__
from jaxscale._xla import cpu_deadlock_workaround as _cpu_deadlock_workaround

_cpu_deadlock_workaround()

__all__ = ["Prediction", "enable_x64", "load", "save", "__version__"]

# These names load on first use, so that `import jaxscale` (and the command line's --help) does
# not import JAX.
_LAZY = {"Prediction": "jaxscale.infer.prediction", "enable_x64": "jaxscale.config",
         "load": "jaxscale.io", "save": "jaxscale.io"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jaxscale' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
