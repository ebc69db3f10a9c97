"""jaxscale: probabilistic scaling laws in JAX.

Shared layers: :mod:`jaxscale.data`, :mod:`jaxscale.laws`, :mod:`jaxscale.gp`,
:mod:`jaxscale.infer`, :mod:`jaxscale.metrics`, :mod:`jaxscale.plotting`.
Pillars: :mod:`jaxscale.learning_curves`, :mod:`jaxscale.observational`,
:mod:`jaxscale.context_law`, :mod:`jaxscale.config_regression`.
"""
from jaxscale.config import enable_x64

__version__ = "0.1.0"

__all__ = ["enable_x64", "__version__"]
