"""jaxscale.save / jaxscale.load: round trip, atomic writes, and files from elsewhere never run code."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxscale
from jaxscale.infer import Prediction
from jaxscale.infer.results import FitResult
from jaxscale.laws import ChinchillaParams


def _obj():
    return FitResult(ChinchillaParams(*(jnp.asarray(v) for v in (1.8, 400.0, 2000.0, 0.34, 0.36))),
                     jnp.asarray(0.5), jnp.asarray(True), jnp.asarray(7), jnp.asarray(1e-9), jnp.asarray(0),
                     {"note": (1, 2.5, float("nan")), "arr": np.arange(3)})


def test_round_trip_keeps_types_values_and_dtypes(tmp_path):
    obj = _obj()
    jaxscale.save(obj, tmp_path / "m")
    back = jaxscale.load(tmp_path / "m")
    assert type(back) is FitResult and type(back.params) is ChinchillaParams
    assert float(back.params.alpha) == 0.34 and bool(back.converged) and int(back.n_steps) == 7
    assert back.history["note"][:2] == (1, 2.5) and np.isnan(back.history["note"][2])
    np.testing.assert_array_equal(back.history["arr"], np.arange(3))
    assert back.history["arr"].dtype == np.arange(3).dtype
    arrays = [leaf for leaf in jax.tree.leaves(back) if hasattr(leaf, "dtype")]
    assert len(arrays) == 11 and all(isinstance(a, jax.Array) for a in arrays), "arrays load as device arrays"


def test_refuses_to_clobber_and_overwrites_on_request(tmp_path):
    p = Prediction(jnp.ones(2), jnp.zeros(2), 2 * jnp.ones(2))
    jaxscale.save(p, tmp_path / "m")
    with pytest.raises(ValueError, match="already exists"):
        jaxscale.save(p, tmp_path / "m")
    jaxscale.save(p._replace(mean=3 * jnp.ones(2)), tmp_path / "m", overwrite=True)
    assert float(jaxscale.load(tmp_path / "m").mean[0]) == 3.0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a saved jaxscale model"):
        jaxscale.save(p, tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (tmp_path / "notes.txt").write_text("precious")  # a file is never replaced, even with overwrite
    with pytest.raises(ValueError, match="is a file, not a saved jaxscale model"):
        jaxscale.save(p, tmp_path / "notes.txt", overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "precious"
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".")]  # no temp folders left


def test_an_array_edited_to_another_shape_or_dtype_is_refused(tmp_path):
    """The model file records each array's shape and dtype: an arrays file cut or retyped by hand
    (or copied from another model) fails at load, not later deep inside predict."""
    jaxscale.save(_obj(), tmp_path / "m")
    path = tmp_path / "m" / "arrays.npz"
    arrays = dict(np.load(path))
    key = next(k for k, a in arrays.items() if a.shape == (3,))
    np.savez(path, **{**arrays, key: arrays[key][:1]})
    with pytest.raises(ValueError, match=rf"array '{key}' holds shape \[1\] .* says \[3\]"):
        jaxscale.load(tmp_path / "m")
    np.savez(path, **{**arrays, key: arrays[key].astype(np.float32)})
    with pytest.raises(ValueError, match="dtype <f4 but the model file says"):
        jaxscale.load(tmp_path / "m")


def _tamper(path, fn):
    meta = json.loads((path / "jaxscale.json").read_text())
    fn(meta)
    (path / "jaxscale.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["object"].__setitem__("__type__", "os.system"), "not a jaxscale result type"),
    (lambda m: m["object"].__setitem__("__type__", "subprocess.Popen"), "not a jaxscale result type"),
    (lambda m: m["object"]["fields"].__setitem__("evil", 1), "has no fields"),
    (lambda m: m["object"]["fields"]["loss"].__setitem__("__array__", "a99"), "not stored"),
    (lambda m: m.__setitem__("format_version", 99), "format version"),
    (lambda m: m["object"]["fields"].__setitem__("loss", {"__reduce__": "os.system"}), "unexpected JSON"),
])
def test_tampered_files_raise_and_never_run_code(tmp_path, edit, message):
    jaxscale.save(_obj(), tmp_path / "m")
    _tamper(tmp_path / "m", edit)
    with pytest.raises(ValueError, match=message):
        jaxscale.load(tmp_path / "m")


def test_object_arrays_and_pickles_are_never_loaded(tmp_path):
    import pickle

    jaxscale.save(_obj(), tmp_path / "m")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    arrays = dict(np.load(tmp_path / "m" / "arrays.npz"))
    arrays["a0"] = np.array([Evil()], dtype=object)
    np.savez(tmp_path / "m" / "arrays.npz", **arrays)
    with pytest.raises(ValueError, match="object arrays"):
        jaxscale.load(tmp_path / "m")
    (tmp_path / "m" / "arrays.npz").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="cannot read the arrays"):
        jaxscale.load(tmp_path / "m")
    assert not marker.exists()


def test_missing_and_foreign_folders(tmp_path):
    with pytest.raises(ValueError, match="not a saved jaxscale model"):
        jaxscale.load(tmp_path)
    (tmp_path / "jaxscale.json").write_text("{not json")
    (tmp_path / "arrays.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="not valid JSON"):
        jaxscale.load(tmp_path)


#: Each pillar's Spec, and the module that defined it before it moved to the pillar's `spec` module.
_SPECS = {
    "chinchilla": ("jaxscale.chinchilla.spec.ChinchillaSpec", "jaxscale.chinchilla.fit.ChinchillaSpec"),
    "learning_curves": ("jaxscale.learning_curves.spec.Spec", "jaxscale.learning_curves.core.Spec"),
    "observational": ("jaxscale.observational.spec.ObsSpec", "jaxscale.observational.model.ObsSpec"),
    "context_law": ("jaxscale.context_law.spec.Spec", "jaxscale.context_law.model.Spec"),
    "ncpl": ("jaxscale.ncpl.spec.Spec", "jaxscale.ncpl.model.Spec"),
}


@pytest.mark.parametrize("pillar", sorted(_SPECS))
def test_pillar_types_load_in_a_fresh_process(pillar, tmp_path):
    """A pillar package loads its names lazily: loading imports the module that registers each saved
    type, and files that name a type where it was defined before it moved keep loading."""
    import importlib
    import subprocess
    import sys

    new, old = _SPECS[pillar]
    spec = importlib.import_module(f"jaxscale.{pillar}").Spec()
    path = jaxscale.save(spec, tmp_path / "new")
    meta = json.loads((path / "jaxscale.json").read_text())
    assert meta["type"] == new
    old_path = tmp_path / "old"
    old_path.mkdir()
    (old_path / "arrays.npz").write_bytes((path / "arrays.npz").read_bytes())
    (old_path / "jaxscale.json").write_text(json.dumps(meta).replace(f'"{new}"', f'"{old}"'))
    code = ("import sys, jaxscale\n"
            f"a, b = jaxscale.load({str(path)!r}), jaxscale.load({str(old_path)!r})\n"
            f"assert type(a) is type(b) and tuple(a) == tuple(b) == {tuple(spec)!r}, (a, b)\n"
            "print(type(a).__module__)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == [new.rpartition(".")[0]]
