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


def _run(devices: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_eight_devices_match_one():
    one, eight = _run(1), _run(8)
    assert one["devices"] == 1 and eight["devices"] == 8
    np.testing.assert_array_equal(one["vmap"], eight["vmap"])
    # multistart screening + polishing (L-BFGS) and bootstrap refits (Newton), split over 8 devices
    np.testing.assert_allclose(eight["theta"], one["theta"], rtol=1e-5)
    np.testing.assert_allclose(eight["boot"], one["boot"], rtol=1e-7, atol=1e-9)
