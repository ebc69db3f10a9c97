"""Batched axes split over devices give the numbers of one device (8 forced CPU devices, each run in
a fresh process because the device count is fixed when JAX starts)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

CHILD = r"""
import json
import jax, numpy as np, pandas as pd
jax.config.update("jax_enable_x64", True)
from jaxscale import chinchilla as ch
from jaxscale.infer import sharded_vmap
rng = np.random.default_rng(0)
N = np.repeat([3e7, 1e8, 3e8, 1e9, 3e9], 5); D = np.tile([3e9, 1e10, 3e10, 1e11, 3e11], 5)
L = (1.7 + 400 / N**0.34 + 1500 / D**0.30) * np.exp(0.01 * rng.normal(size=N.size))
data = ch.from_frame(pd.DataFrame({"N": N, "D": D, "loss": L}))
fit = ch.fit(jax.random.key(0), data, ch.Spec(n_boot=50, screen_steps=10, polish_top=8), starts=ch.start_grid()[::30])
x = jax.numpy.arange(21.0).reshape(7, 3)  # 7 members on 8 devices: padded and trimmed
v = jax.jit(lambda x: sharded_vmap(lambda r: jax.numpy.sum(r ** 2) * r, x))(x)
print(json.dumps({"devices": len(jax.devices()), "theta": np.asarray(fit.theta).tolist(),
                  "boot": np.asarray(fit.boot_theta).tolist(), "vmap": np.asarray(v).tolist()}))
"""


#: Every other batched axis of independent members, each on a tiny problem (member counts that are
#: not multiples of 8, so the padding is exercised too). float64 unless noted.
AXES = r"""
import json
import jax, jax.numpy as jnp, numpy as np, pandas as pd
jax.config.update("jax_enable_x64", True)
out = {"devices": len(jax.devices())}
leaves = lambda t: [np.asarray(a, float).ravel().tolist() for a in jax.tree.leaves(t)]
rng = np.random.default_rng(0)

# observational bootstrap refits: fit_law_batch (5 refits from a fixed start)
from jaxscale.observational.fit import fit_law_batch
ability = rng.normal(size=24)
target = np.clip(1 / (1 + np.exp(-(2 * ability - 1))) + 0.02 * rng.normal(size=24), 0.01, 0.99)
X = np.c_[ability, ability ** 2 / 4]
W = rng.multinomial(24, np.full(24, 1 / 24), size=5).astype(float)
law, res = fit_law_batch(X, target, W, floor=False, theta0=np.array([-1.0, 2.0, 0.0, -8.0]))
out["obs"] = leaves((law, res.params))

# batched NUTS: MAP + Laplace over 3 problems, 3 problems x 3 chains
from jaxscale.infer.batched_nuts import batched_nuts, map_laplace_batched
pot = jax.jit(lambda x, mu, s: 0.5 * jnp.sum(((x - mu) / s) ** 2))
mu = jnp.asarray(rng.normal(size=(3, 2)))
xm, cov, _ = map_laplace_batched(pot, jnp.zeros((3, 2)), (mu,), (jnp.asarray([1.0, 2.0]),), steps=5)
z = batched_nuts(jax.random.key(2), pot, xm, cov, (mu,), (jnp.asarray([1.0, 2.0]),), num_warmup=20, num_samples=10,
                 num_chains=3)
out["nuts"] = leaves((xm, cov, z))

# NCPL ensemble members (float32): the member axis of the training step, 3 members
from jaxscale import ncpl
n = 24
N = rng.choice([2e7, 5e7, 1e8, 3e8], n); D = N * rng.choice([10.0, 20.0, 40.0], n); lr = 10 ** rng.uniform(-3.5, -2.0, n)
runs = pd.DataFrame({"N": N, "D": D, "lr": lr, "optimizer": rng.choice(["adamw", "lion"], n),
                     "loss": 1.8 + 400 / N**0.34 + 400 / D**0.28 + 0.05 * (np.log10(lr) + 2.7) ** 2})
spec = ncpl.Spec(members=3, steps=20, eval_every=10, patience=100, lr=3e-3, batch_size=8, width=16)
nd = ncpl.from_frame(runs, target_col="loss", n_col="N", d_col="D")
batch = ncpl.prepare(jax.random.key(0), nd, spec)
out["ncpl"] = leaves(jax.jit(lambda k: ncpl.fit_core(k, batch, spec))(jax.random.key(3)))

# context law: tasks (fit_many: 3 tasks) and restarts (fit_core: 3 restarts of one task)
import warnings
from jaxscale import context_law as cl
from jaxscale.context_law.fit import fit_many
rows = [dict(task=t, C=C, n_ctx=c, n_pmt=p) for t in ("a", "b", "c") for C in (1e21, 1e22, 1e23)
        for c in (4096.0, 16384.0) for p in (200.0, 3000.0, 20000.0)]
cf = pd.DataFrame(rows)
cf["score"] = np.clip(0.9 - 0.05 * np.log10(cf["n_pmt"]) + 0.03 * (np.log10(cf["C"]) - 22)
                      + 0.01 * rng.normal(size=len(cf)), 0.01, 0.99)
cd = cl.from_frame(cf, task_col="task")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    stacked = jax.tree_util.tree_map(lambda a: a.reshape((3, -1) + a.shape[1:]), cd)  # rows are task-major
    tasks = fit_many(jax.random.key(4), stacked, cl.Spec(popsize=5, maxiter=15, restarts=1, polish=False))
one = jax.tree_util.tree_map(lambda a: a[np.asarray(cd.task) == 0], cd)
rst = cl.fit_core(jax.random.key(5), one, cl.Spec(popsize=5, maxiter=15, restarts=3, polish=False))
out["context"] = leaves((tasks.theta, rst.theta, rst.loss))

# learning-curve GP restarts: MaGP, 3 restarts
from jaxscale.learning_curves.magp import fit_magp
from jaxscale.learning_curves.problem import Points
xg = jnp.linspace(0.0, 1.0, 5)
d, r, p = np.repeat([0, 0, 1, 1], 5), np.repeat([0, 1, 0, 1], 5), np.tile(np.arange(5), 4)
y = np.sin(3 * np.asarray(xg)[p] + d) + 0.1 * r + 0.05 * rng.normal(size=20)
pts = Points(xg[p], jnp.asarray(p), jnp.asarray(r), jnp.asarray(d), jnp.asarray(d * 2 + r), jnp.asarray(y))
mg = fit_magp(jax.random.key(6), xg, pts, 2, restarts=3, steps=15)
out["magp"] = leaves((mg.params, mg.loss))
print(json.dumps(out))
"""


def _run(devices: int, *children: str) -> list:
    """Run ``children`` in turn (each in fresh globals) in ONE process with ``devices`` forced CPU
    devices; the last JSON line each printed, in order."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    code = "\n".join(f"exec({c!r}, {{'__name__': '__main__'}})" for c in children)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [ln for ln in res.stdout.strip().splitlines() if ln.startswith("{")]
    assert len(lines) >= len(children), res.stdout[-3000:]
    return [json.loads(ln) for ln in lines[-len(children):]]


@pytest.fixture(scope="module")
def runs():
    """Both scripts run in one process per device count (two JAX start-ups instead of four); the
    jit caches they share do not change any number."""
    (one, one_axes), (eight, eight_axes) = _run(1, CHILD, AXES), _run(8, CHILD, AXES)
    return {"child": (one, eight), "axes": (one_axes, eight_axes)}


@pytest.mark.slow
def test_eight_devices_match_one(runs):
    one, eight = runs["child"]
    assert one["devices"] == 1 and eight["devices"] == 8
    np.testing.assert_array_equal(one["vmap"], eight["vmap"])
    # multistart screening + polishing (L-BFGS) and bootstrap refits (Newton), split over 8 devices
    np.testing.assert_allclose(eight["theta"], one["theta"], rtol=1e-5)
    np.testing.assert_allclose(eight["boot"], one["boot"], rtol=1e-7, atol=1e-9)


@pytest.mark.slow
def test_every_member_axis_eight_devices_match_one(runs):
    """Bootstrap refits, NUTS chains (and the MAP stage), NCPL members, context-law tasks and
    restarts, MaGP restarts: 8 forced devices give the 1-device numbers (float64: rtol 1e-9; the
    float32 NCPL ensemble: rtol 1e-5 with atol 1e-4, since one member per device multiplies its
    float32 matrices unbatched, which rounds a little differently over the Adam steps)."""
    one, eight = runs["axes"]
    assert one["devices"] == 1 and eight["devices"] == 8
    for axis in ("obs", "nuts", "ncpl", "context", "magp"):
        tol = dict(rtol=1e-5, atol=1e-4) if axis == "ncpl" else dict(rtol=1e-9, atol=1e-12)
        assert len(one[axis]) == len(eight[axis]), axis
        for a, b in zip(one[axis], eight[axis]):
            np.testing.assert_allclose(b, a, err_msg=axis, **tol)
