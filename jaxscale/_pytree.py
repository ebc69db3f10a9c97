"""Frozen dataclasses that are JAX pytrees: array fields are leaves, ``static_field`` s are not.

Every ``Fit`` and ``Data`` of the pillars is such a class, so ``jax.jit(lambda f: f)(fit)`` works,
a fit can be passed into user JAX code, and :func:`jaxscale.save` knows how to write it. Names,
column labels, category vocabularies and the ``Spec`` that produced a fit live in static fields
(hashable, part of the tree structure), never in leaves.

Example:
  >>> import jax, jax.numpy as jnp
  >>> @pytree_dataclass
  ... class Toy:
  ...     theta: jax.Array
  ...     name: str = static_field(default="toy")
  >>> t = jax.jit(lambda t: t)(Toy(jnp.ones(2)))
  >>> t.name, t.theta.shape
  ('toy', (2,))
"""
from __future__ import annotations

import dataclasses
import json

import jax

from jaxscale._registry import SERIALIZABLE, register_serializable, type_name

__all__ = ["pytree_dataclass", "static_field", "is_static", "StaticDict", "register_serializable", "SERIALIZABLE",
           "type_name"]


class StaticDict(dict):
    """A dict that can be static pytree metadata (a fit's diagnostics, a calibration record):
    hashable by its JSON text, equal by content. It is part of the tree structure: do not change
    it in place."""

    def __hash__(self):
        return hash(json.dumps(self, sort_keys=True, default=repr))


def static_field(**kwargs):
    """A dataclass field that is static under JAX transforms (metadata, not a leaf)."""
    metadata = dict(kwargs.pop("metadata", {}) or {}, static=True)
    return dataclasses.field(metadata=metadata, **kwargs)


def is_static(field: dataclasses.Field) -> bool:
    return bool(field.metadata.get("static", False))


def pytree_dataclass(cls: type) -> type:
    """Make ``cls`` a frozen dataclass registered as a pytree (and, for jaxscale's own classes,
    as loadable by :func:`jaxscale.load`).

    Fields declared with :func:`static_field` become pytree metadata; they must be hashable
    (str, int, float, bool, tuples, frozen specs). Every other field is a child (an array, a
    NamedTuple of arrays, ``None``...).
    """
    cls = dataclasses.dataclass(frozen=True)(cls)
    fields = dataclasses.fields(cls)
    data = [f.name for f in fields if not is_static(f)]
    meta = [f.name for f in fields if is_static(f)]
    jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)
    cls.replace = lambda self, **changes: dataclasses.replace(self, **changes)
    cls.replace.__doc__ = "A copy with some fields changed (``dataclasses.replace``)."
    if type_name(cls).startswith("jaxscale."):  # user classes are pytrees, but not loadable
        register_serializable(cls)
    return cls
