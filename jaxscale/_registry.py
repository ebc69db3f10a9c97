"""The types :func:`jaxscale.load` may rebuild (imports nothing heavy: no JAX, no numpy)."""
from __future__ import annotations

__all__ = ["SERIALIZABLE", "register_serializable", "type_name"]

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
