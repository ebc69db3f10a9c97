"""Conversion of validated tables to array pytrees."""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxscale.data.validate import check_finite

__all__ = ["to_arrays"]


def to_arrays(df: pd.DataFrame, columns: Sequence[str], dtype=None, what: str = "table") -> dict:
    """Return ``{column: jax.Array}`` for numeric ``columns`` after a finiteness check.

    ``dtype`` defaults to float64 when x64 is on (else float32).
    """
    check_finite(df, list(columns), what)
    dtype = dtype or jnp.result_type(float)
    return {c: jnp.asarray(np.asarray(df[c], dtype=float), dtype=dtype) for c in columns}
