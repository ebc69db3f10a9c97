"""One helper for every batched axis: split it over all devices.

Multi-starts, bootstrap refits, Monte-Carlo draws and other independent members of a batch are a
leading array axis. :func:`shard_batch` asks XLA (inside ``jit``) to lay that axis out over a
one-dimensional mesh of all devices (:func:`device_mesh`), so a ``vmap`` over it runs in parallel
on 8 GPUs, a TPU slice or several CPU devices with no other change; on one device it does nothing.
The members are independent, so the numbers do not depend on the number of devices.

Several hosts: call ``jax.distributed.initialize()`` first (it detects TPU pods, Slurm and Open MPI;
otherwise pass ``coordinator_address``, ``num_processes`` and ``process_id``); ``jax.devices()``
then lists every host's devices and the same mesh spans them.

Several CPU devices for testing: ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` set before
JAX starts.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["BATCH_AXIS", "device_mesh", "shard_batch", "sharded_vmap"]

#: Name of the mesh axis batches are split over.
BATCH_AXIS = "batch"


def device_mesh(devices=None) -> Mesh:
    """A one-dimensional mesh over ``devices`` (default: all of ``jax.devices()``)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (BATCH_AXIS,))


def shard_batch(tree, mesh: Mesh | None = None):
    """Constrain the leading axis of every leaf of ``tree`` to be split over the mesh.

    Use inside ``jit``-traced code (a no-op outside tracing is not needed: it also works eagerly).
    Leaves whose leading size is not a multiple of the device count, and any tree on a single
    device, are returned unchanged.
    """
    mesh = device_mesh() if mesh is None else mesh
    n = mesh.devices.size
    if n == 1:
        return tree

    def one(x):
        if not hasattr(x, "shape") or x.ndim == 0 or x.shape[0] % n:
            return x
        spec = PartitionSpec(BATCH_AXIS, *([None] * (x.ndim - 1)))
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

    return jax.tree_util.tree_map(one, tree)


def sharded_vmap(fn, xs, mesh: Mesh | None = None, *, linalg: bool = False, uneven: bool = False):
    """``jax.vmap(fn)(xs)`` with the leading (batch) axis split over all devices.

    The batch is padded to a multiple of the device count by repeating its last member (the extra
    results are dropped), so any batch size runs on any mesh.

    ``linalg=True`` marks members dominated by dense factorisations and triangular solves (GP
    likelihoods). On a single CPU device those members then run one after another
    (``jax.lax.map``, same numbers): jaxlib 0.10.2's batched CPU LAPACK kernels spread a batch over
    the intra-op thread pool and wait for it, and two such calls running at once can leave every
    pool thread waiting (a hang at 0 % CPU). The vmapped batch bought nothing there: 4 restarts of
    the law-informed GP on 240 points took 61 s vmapped and 46 s mapped on 2 cores. GPUs, TPUs and
    several devices keep the vmap.

    ``uneven=True`` marks members whose work differs widely, such as optimiser runs to
    convergence: a vmapped loop runs every member for as many iterations (and line-search trials)
    as its slowest one. On a single CPU device they too run one after another, each to its own
    stop; the 48 starts of a Chinchilla least-squares fit on 1,708 runs took 15 s vmapped and
    1.3 s mapped (the rows already fill the vector units).
    """
    mesh = device_mesh() if mesh is None else mesh
    n_dev = mesh.devices.size
    if n_dev == 1:
        if (linalg or uneven) and mesh.devices.flat[0].platform == "cpu":
            return jax.lax.map(fn, xs)
        return jax.vmap(fn)(xs)
    n = jax.tree_util.tree_leaves(xs)[0].shape[0]
    pad = (-n) % n_dev
    if pad:
        xs = jax.tree_util.tree_map(lambda a: jax.numpy.concatenate([a, jax.numpy.repeat(a[-1:], pad, axis=0)]), xs)
    out = shard_batch(jax.vmap(fn)(shard_batch(xs, mesh)), mesh)
    return jax.tree_util.tree_map(lambda a: a[:n], out) if pad else out
