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
from jaxscale.config import enable_x64
from jaxscale.infer.prediction import Prediction
from jaxscale.io import load, save

from jaxscale._version import __version__

__all__ = ["Prediction", "enable_x64", "load", "save", "__version__"]
