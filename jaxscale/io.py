"""Save and load fitted models safely: JSON metadata plus arrays in an ``.npz``; never pickle.

A saved model is a folder holding two files:

* ``jaxscale.json``: format version, package version, the fitted object's type and its whole
  structure (static fields such as the ``Spec``, column names and labels as plain JSON, every
  array as a reference ``{"__array__": "a3", "shape": [4], "dtype": "<f8"}``);
* ``arrays.npz``: the arrays, read back with ``allow_pickle=False``.

Loading parses JSON and numeric arrays only, and rebuilds only types that this package registered
(:data:`jaxscale._pytree.SERIALIZABLE`); a file naming any other type, holding object arrays,
missing or extra arrays, an array of another shape or dtype than its reference says, or edited
into an invalid structure raises ``ValueError``. No code from
the file is ever executed.

Example:
  >>> import jax.numpy as jnp, tempfile, jaxscale
  >>> from jaxscale.infer import Prediction
  >>> p = Prediction(jnp.ones(2), jnp.zeros(2), 2 * jnp.ones(2))
  >>> d = tempfile.mkdtemp()
  >>> _ = jaxscale.save(p, d + "/pred")
  >>> q = jaxscale.load(d + "/pred")
  >>> float(q.upper[0])
  2.0
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from jaxscale._registry import SERIALIZABLE, register_serializable, type_name

__all__ = ["save", "load", "FORMAT_VERSION", "META_FILE", "ARRAYS_FILE"]

FORMAT_VERSION = 1
META_FILE = "jaxscale.json"
ARRAYS_FILE = "arrays.npz"

#: Modules imported on load to register a saved type, by the type's module prefix. Only names in
#: this table are ever imported (they are this package's own modules).
_LOADABLE_MODULES = (
    "jaxscale.infer",
    "jaxscale.laws",
    "jaxscale.chinchilla",
    "jaxscale.learning_curves",
    "jaxscale.observational",
    "jaxscale.context_law",
    "jaxscale.ncpl",
)


def _register_builtin() -> None:
    from jaxscale.infer.prediction import Prediction
    from jaxscale.infer.results import FitResult

    register_serializable(Prediction)
    register_serializable(FitResult)


def _is_namedtuple(obj) -> bool:
    return isinstance(obj, tuple) and hasattr(type(obj), "_fields")


class _Writer:
    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, value) -> dict:
        arr = np.asarray(value)
        if arr.dtype == object or arr.dtype.kind in "OUSV":
            raise TypeError(f"cannot save an array of dtype {arr.dtype}; only numeric arrays are saved")
        key = f"a{len(self.arrays)}"
        self.arrays[key] = arr
        return {"__array__": key, "shape": list(arr.shape), "dtype": arr.dtype.str}

    def encode(self, obj, where: str):
        import jax

        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, (int, np.integer)) and not isinstance(obj, np.bool_):
            return int(obj)
        if isinstance(obj, (float, np.floating)):
            v = float(obj)
            return v if math.isfinite(v) else {"__float__": repr(v)}
        if isinstance(obj, np.bool_):
            return bool(obj)
        if isinstance(obj, (np.ndarray, jax.Array)):
            if isinstance(obj, jax.Array) and jax.dtypes.issubdtype(obj.dtype, jax.dtypes.prng_key):
                raise TypeError(f"{where}: PRNG keys are not saved; store the seed instead")
            return self.array(obj)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return self._typed(obj, {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}, where)
        if _is_namedtuple(obj):
            return self._typed(obj, obj._asdict(), where)
        if isinstance(obj, tuple):
            return {"__tuple__": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        if isinstance(obj, dict):
            bad = [k for k in obj if not isinstance(k, str)]
            if bad:
                raise TypeError(f"{where}: dict keys must be str to be saved, got {bad[:3]}")
            return {"__dict__": {k: self.encode(v, f"{where}[{k!r}]") for k, v in obj.items()}}
        raise TypeError(f"{where}: cannot save a value of type {type(obj).__name__}; a saved fit holds "
                        "arrays, numbers, strings, tuples, dicts and jaxscale result types only")

    def _typed(self, obj, fields: dict, where: str):
        name = type_name(type(obj))
        if SERIALIZABLE.get(name) is not type(obj):
            raise TypeError(f"{where}: type {name} is not registered for saving "
                            "(jaxscale._pytree.register_serializable)")
        return {"__type__": name, "fields": {k: self.encode(v, f"{where}.{k}") for k, v in fields.items()}}


class _Reader:
    def __init__(self, arrays, path):
        self.arrays = arrays
        self.used: set[str] = set()
        self.path = path

    def fail(self, msg):
        raise ValueError(f"{self.path}: {msg}; the file is damaged or was not written by jaxscale.save")

    def decode(self, obj):
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, list):
            return [self.decode(v) for v in obj]
        if not isinstance(obj, dict) or len(obj) not in (1, 2, 3):
            self.fail(f"unexpected JSON value {str(obj)[:80]!r}")
        if "__array__" in obj and set(obj) in ({"__array__"}, {"__array__", "shape", "dtype"}):
            key = obj["__array__"]
            if not isinstance(key, str) or key not in self.arrays.files:
                self.fail(f"array {key!r} is referenced but not stored")
            if key in self.used:
                self.fail(f"array {key!r} is referenced twice")
            self.used.add(key)
            arr = self.arrays[key]
            if "shape" in obj and (list(arr.shape) != obj["shape"] or arr.dtype.str != obj["dtype"]):
                self.fail(f"array {key!r} holds shape {list(arr.shape)} and dtype {arr.dtype.str} but the model file "
                          f"says {obj['shape']} and {obj['dtype']}: {ARRAYS_FILE} was edited or belongs to another "
                          "model")
            if arr.dtype.kind in "biufc":  # numbers become device arrays, as in a fresh fit
                import jax.numpy as jnp

                return jnp.asarray(arr)
            return arr
        if "__float__" in obj and len(obj) == 1:
            text = obj["__float__"]
            if text not in ("nan", "inf", "-inf"):
                self.fail(f"bad float {text!r}")
            return float(text)
        if "__tuple__" in obj and len(obj) == 1 and isinstance(obj["__tuple__"], list):
            return tuple(self.decode(v) for v in obj["__tuple__"])
        if "__dict__" in obj and len(obj) == 1 and isinstance(obj["__dict__"], dict):
            return {str(k): self.decode(v) for k, v in obj["__dict__"].items()}
        if set(obj) == {"__type__", "fields"} and isinstance(obj["fields"], dict):
            cls = _lookup(obj["__type__"], self.fail)
            values = {k: self.decode(v) for k, v in obj["fields"].items()}
            expected = ([f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls)
                        else list(cls._fields))
            unknown = sorted(set(values) - set(expected))
            if unknown:
                self.fail(f"type {obj['__type__']} has no fields {unknown}")
            try:
                return cls(**values)
            except TypeError as exc:
                self.fail(f"cannot rebuild {obj['__type__']}: {exc}")
        self.fail(f"unexpected JSON object with keys {sorted(obj)[:5]}")


def _import_defining_module(name: str, prefix: str) -> None:
    """Import the module of this package that registers the type ``name`` (``module.QualName``):
    the longest dotted prefix of ``name`` that is a module under ``prefix``, else ``prefix``."""
    parts = name.split(".")
    for end in range(len(parts) - 1, prefix.count(".") + 1, -1):
        module = ".".join(parts[:end])
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (module == exc.name or module.startswith(exc.name + ".")):
                raise  # a module exists but one of its own imports is missing
            continue
        if name in SERIALIZABLE:
            return
    importlib.import_module(prefix)


def _lookup(name, fail):
    if not isinstance(name, str):
        fail("type name is not a string")
    if name not in SERIALIZABLE:
        prefix = next((m for m in _LOADABLE_MODULES if name == m or name.startswith(m + ".")), None)
        if prefix is None:
            fail(f"type {name!r} is not a jaxscale result type")
        _import_defining_module(name, prefix)
    cls = SERIALIZABLE.get(name)
    if cls is None:
        fail(f"type {name!r} is not a jaxscale result type")
    return cls


def save(obj, path, *, overwrite: bool = False) -> Path:
    """Write a fit (or any jaxscale result pytree) to the folder ``path``.

    The folder is written to a temporary sibling first and then renamed into place, so an
    interrupted save never leaves a half-written model.

    Args:
      obj: a ``Fit`` (or ``Prediction``...) of this package.
      path: folder to create; an existing non-empty folder is refused unless ``overwrite``.
      overwrite: replace an existing saved model at ``path``.

    Returns:
      The folder path.
    """
    from jaxscale._version import __version__

    _register_builtin()
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a saved jaxscale model; refusing to replace it (a model is a folder: "
                         "choose a new path)")
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise ValueError(f"{path} already exists and is not empty; choose a new folder or pass overwrite=True "
                             "(CLI: --overwrite)")
        if path.is_dir() and not (path / META_FILE).exists():
            raise ValueError(f"{path} is not a saved jaxscale model; refusing to overwrite it")
    writer = _Writer()
    body = writer.encode(obj, type(obj).__name__)
    meta = {"format": "jaxscale-model", "format_version": FORMAT_VERSION, "jaxscale_version": __version__,
            "type": type_name(type(obj)), "object": body}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1, allow_nan=False))
        with open(tmp / ARRAYS_FILE, "wb") as fh:
            np.savez(fh, **writer.arrays)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load(path):
    """Load a model written by :func:`save` (safe: JSON and numeric arrays only).

    Numeric arrays come back as JAX arrays on the default device, as in a freshly fitted model.

    Raises:
      ValueError: the folder is missing, not a jaxscale model, from a newer format, or damaged.
    """
    _register_builtin()
    path = Path(path)
    meta_path, arr_path = path / META_FILE, path / ARRAYS_FILE
    if not meta_path.exists() or not arr_path.exists():
        raise ValueError(f"{path} is not a saved jaxscale model (expected {META_FILE} and {ARRAYS_FILE} "
                         "in that folder, written by jaxscale.save or --save)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{meta_path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != "jaxscale-model" or "object" not in meta:
        raise ValueError(f"{meta_path}: not a jaxscale model file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{meta_path}: format version {meta.get('format_version')!r} is not supported by this "
                         f"jaxscale (reads version {FORMAT_VERSION}); upgrade jaxscale")
    try:
        arrays = np.load(arr_path, allow_pickle=False)
    except Exception as exc:  # zip / header errors
        raise ValueError(f"{arr_path}: cannot read the arrays ({exc})") from exc
    with arrays:
        reader = _Reader(arrays, path)
        try:
            obj = reader.decode(meta["object"])
        except ValueError as exc:
            if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
                raise ValueError(f"{arr_path}: holds object arrays, which are never loaded") from exc
            raise
        extra = sorted(set(arrays.files) - reader.used)
        if extra:
            reader.fail(f"arrays {extra[:5]} are stored but not referenced")
    if type_name(type(obj)) != meta.get("type") and SERIALIZABLE.get(meta.get("type")) is not type(obj):
        raise ValueError(f"{meta_path}: header type {meta.get('type')!r} does not match the stored object")
    return obj
