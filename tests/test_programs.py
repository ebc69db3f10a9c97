"""Traced programs kept on disk between processes (jaxscale._programs)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxscale import _programs as programs
from jaxscale.infer import FitResult

TRACES = []


def _prog(x, y, scale):
    TRACES.append(scale)  # runs only while JAX traces
    z = jnp.sin(x) * scale + y.sum()
    return FitResult(params=z, loss=jnp.sum(z), converged=jnp.asarray(True), n_steps=jnp.asarray(3),
                     grad_norm=jnp.asarray(0.0), reason=jnp.asarray(0))


@pytest.fixture
def folder(tmp_path):
    before = programs.program_dir()
    programs.set_program_dir(str(tmp_path / "programs"))
    programs._LOADED.clear()
    TRACES.clear()
    yield tmp_path / "programs"
    programs.set_program_dir(before)
    programs._LOADED.clear()


def _files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_stored_program_is_loaded_instead_of_traced_and_gives_the_same_numbers(folder):
    x, y = jnp.linspace(0.0, 1.0, 7), jnp.arange(3.0)
    first = programs.call("toy", _prog, (x, y), (2.0,))
    assert TRACES == [2.0] and len(_files(folder)) == 1
    programs._LOADED.clear()  # as a new process: nothing in memory, the file on disk
    second = programs.call("toy", _prog, (x, y), (2.0,))
    assert TRACES == [2.0], "the stored program was traced again"
    assert isinstance(second, FitResult)
    np.testing.assert_array_equal(np.asarray(second.params), np.asarray(first.params))
    np.testing.assert_array_equal(np.asarray(first.params), np.sin(np.asarray(x)) * 2.0 + 3.0)
    assert second.history is None and int(second.n_steps) == 3


def test_other_static_arguments_or_shapes_get_their_own_program(folder):
    x, y = jnp.linspace(0.0, 1.0, 7), jnp.arange(3.0)
    programs.call("toy", _prog, (x, y), (2.0,))
    out = programs.call("toy", _prog, (x, y), (3.0,))
    programs.call("toy", _prog, (jnp.linspace(0.0, 1.0, 9), y), (2.0,))
    assert len(_files(folder)) == 3 and TRACES == [2.0, 3.0, 2.0]
    np.testing.assert_allclose(np.asarray(out.params), np.sin(np.asarray(x)) * 3.0 + 3.0)


def test_an_unreadable_stored_program_is_traced_again_and_replaced(folder):
    x, y = jnp.linspace(0.0, 1.0, 7), jnp.arange(3.0)
    programs.call("toy", _prog, (x, y), (2.0,))
    (path,) = list(folder.iterdir())
    path.write_bytes(b"not a program")
    programs._LOADED.clear()
    out = programs.call("toy", _prog, (x, y), (2.0,))
    assert TRACES == [2.0, 2.0] and path.stat().st_size > 100
    np.testing.assert_allclose(np.asarray(out.params), np.sin(np.asarray(x)) * 2.0 + 3.0)


def test_without_a_folder_it_is_a_plain_jit_and_writes_nothing(tmp_path):
    before = programs.program_dir()
    programs.set_program_dir(None)
    try:
        TRACES.clear()
        x, y = jnp.linspace(0.0, 1.0, 7), jnp.arange(3.0)
        a = programs.call("toy", _prog, (x, y), (5.0,))
        b = programs.call("toy", _prog, (x, y), (5.0,))
        assert TRACES == [5.0]  # jit's own in-process cache
        np.testing.assert_array_equal(np.asarray(a.params), np.asarray(b.params))
    finally:
        programs.set_program_dir(before)
    assert not any(tmp_path.iterdir())


def test_the_key_changes_with_the_package_source():
    leaves = [jnp.zeros(3)]
    treedef = jax.tree_util.tree_structure((leaves[0],))
    k = programs._key("toy", (1,), treedef, leaves)
    assert k == programs._key("toy", (1,), treedef, leaves)
    programs.source_hash.cache_clear()
    real = programs.source_hash()
    assert len(real) == 64
    try:
        programs.source_hash.cache_clear()
        orig = programs.source_hash
        programs.source_hash = lambda: "edited"  # as if a file of the package had changed
        assert programs._key("toy", (1,), treedef, leaves) != k
    finally:
        programs.source_hash = orig


COMMANDS = {
    "chinchilla": (["chinchilla", "fit", "--json"], ["chinchilla_backtest_refit", "chinchilla_fit_core"]),
    "obs": (["obs", "fit", "--task", "gsm8k_cot", "--json"], ["obs_fit_law", "obs_fit_transform"]),
    "context": (["context", "fit", "--dataset", "longcontext_icl", "--json"], ["context_fit_tasks"]),
    "ncpl": (["ncpl", "evaluate", "--source", "marin", "--split", "ood", "--model", "chinchilla_refit", "--json"],
             ["ncpl_chinchilla_starts"]),
}


@pytest.mark.parametrize("pillar", list(COMMANDS))
def test_a_second_run_loads_its_programs_and_prints_the_same_result(tmp_path, pillar):
    """End to end: the command line keeps its fit's programs; a second process loads them and gives
    the same numbers, bit for bit."""
    argv, names = COMMANDS[pillar]
    env = dict(os.environ, JAXSCALE_CACHE_DIR=str(tmp_path / "cache"), JAXSCALE_NO_CACHE="0",
               JAXSCALE_PROGRESS="0")
    outs = []
    for _ in range(2):
        res = subprocess.run([sys.executable, "-m", "jaxscale", *argv], env=env, capture_output=True, text=True,
                             timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        out = json.loads(res.stdout)
        out.pop("fit_seconds", None)
        outs.append(out)
    kept = sorted({p.name.split("-")[0] for p in (tmp_path / "cache" / "programs").iterdir()})
    assert kept == names
    assert outs[0] == outs[1]
    if pillar == "chinchilla":
        assert abs(outs[0]["E"] - 1.817) < 1e-3  # Epoch's replication (E = 1.82), as in the Chinchilla tests


def test_light_jit_gives_jit_s_numbers_top_level_and_nested():
    """Light compile options on CPU change nothing in the result, and a light program called inside
    another traced function is inlined there (JAX refuses options on nested programs)."""
    from functools import partial

    def f(x, n):
        return jnp.cumsum(jnp.sin(x) ** n) / jnp.arange(1, x.size + 1)

    light = partial(programs.light_jit, static_argnames=("n",))(f)
    x = jnp.linspace(0.0, 3.0, 257)
    np.testing.assert_array_equal(np.asarray(light(x, n=3)), np.asarray(jax.jit(f, static_argnames=("n",))(x, n=3)))
    outer = jax.jit(lambda x: light(x, n=2).sum())
    np.testing.assert_allclose(float(outer(x)), float(np.sum(np.asarray(f(x, 2)))), rtol=1e-12)
    assert light.__name__ == "f"


def test_called_inside_another_program_it_is_inlined_and_stores_nothing(folder):
    x, y = jnp.linspace(0.0, 1.0, 5), jnp.ones(3)
    outer = jax.jit(lambda x: programs.call("toy", _prog, (x, y), (2.0,)).loss)
    np.testing.assert_allclose(float(outer(x)), float(_prog(x, y, 2.0).loss), rtol=1e-12)
    assert _files(folder) == []
