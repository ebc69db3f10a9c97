"""Packages whose public names load on first use (imports nothing heavy: no JAX, no pandas).

A pillar package lists where each of its names is defined and calls :func:`lazy_package`; the
submodule that defines a name (and with it JAX) is imported only when the name is first used, so
that ``import jaxscale.chinchilla`` or reading a ``Spec`` default stays fast. ``from
jaxscale.chinchilla import fit`` works as with an eager import.

Example (in ``jaxscale/pillar/__init__.py``)::

    _LAZY = {"fit": "jaxscale.pillar.core", "Data": "jaxscale.pillar.core:PillarData"}
    __getattr__, __dir__ = lazy_package(__name__, _LAZY, __all__)
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types

__all__ = ["lazy_package"]


class _LazyPackage(types.ModuleType):
    """A package whose exported names win over its submodules of the same name.

    Importing a submodule binds it to its package's attribute of the same name; where the package
    exports something else under that name (the function ``fit`` of the module ``fit``), the export
    is kept, as an eager ``from .fit import fit`` in the package would have left it.
    """

    def __setattr__(self, name, value):
        exports = self.__dict__.get("_LAZY", {})
        if (isinstance(value, types.ModuleType) and name in exports
                and value.__name__ == f"{self.__name__}.{name}"):
            return  # a submodule import: the exported object of that name stays the attribute
        super().__setattr__(name, value)


def _target(spec: str, name: str) -> tuple[str, str]:
    module, _, attr = spec.partition(":")
    return module, attr or name


def lazy_package(package: str, exports: dict[str, str], names: list[str]):
    """``(__getattr__, __dir__)`` for the package ``package``.

    Args:
      package: the package's ``__name__``.
      exports: public name -> ``"module"`` (the name is defined there under the same name) or
        ``"module:attribute"`` (an alias).
      names: the package's ``__all__``.
    """
    module = sys.modules[package]
    module.__class__ = _LazyPackage

    def __getattr__(name):
        spec = exports.get(name)
        if spec is None:
            # A submodule not imported yet (``jaxscale.pillar.plot``) is reachable as an attribute,
            # as it was when the package imported its submodules eagerly.
            if not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is not None:
                return importlib.import_module(f"{package}.{name}")
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        source, attr = _target(spec, name)
        value = getattr(importlib.import_module(source), attr)
        module.__dict__[name] = value
        return value

    def __dir__():
        return sorted(set(module.__dict__) | set(exports) | set(names))

    return __getattr__, __dir__
