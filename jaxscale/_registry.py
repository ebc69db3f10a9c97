"""The types :func:`jaxscale.load` may rebuild (imports nothing heavy: no JAX, no numpy)."""
from __future__ import annotations

__all__ = ["SERIALIZABLE", "register_serializable", "register_moved", "type_name"]

#: Qualified type name -> class, for every class :func:`jaxscale.load` may rebuild. Only classes
#: of this package are ever registered, so a saved file can only name types the package defines.
SERIALIZABLE: dict[str, type] = {}


def type_name(cls: type) -> str:
    """``module.QualName`` of a class, the key used in saved files."""
    return f"{cls.__module__}.{cls.__qualname__}"


def register_serializable(cls: type) -> type:
    """Allow :func:`jaxscale.load` to rebuild ``cls`` (a NamedTuple or a dataclass)."""
    name = type_name(cls)
    if not name.startswith("jaxscale."):
        raise ValueError(f"only jaxscale types can be registered for loading, got {name}")
    SERIALIZABLE[name] = cls
    return cls


def register_moved(cls: type, module: str) -> type:
    """Also rebuild ``cls`` from files that name it ``module.QualName``: the module that defined it
    before it moved, so that models saved by earlier versions keep loading. Call it in ``module``
    (loading such a file imports ``module``)."""
    register_serializable(cls)
    old = f"{module}.{cls.__qualname__}"
    if not old.startswith("jaxscale."):
        raise ValueError(f"only jaxscale types can be registered for loading, got {old}")
    SERIALIZABLE[old] = cls
    return cls
