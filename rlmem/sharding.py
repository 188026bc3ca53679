"""Spread the seeds of one run over the local devices (one JAX process, several devices).

    state = loop.init(seeds)                                # every leaf [S, ...]
    state, sharding, message = shard_seeds(state, S)        # leaves split on axis 0
    state, metrics = loop.run_chunk(state, n)
    state = keep_sharded(state, sharding)                   # same placement every call

The training state carries a leading seed axis `[S]` and seeds never interact, so the
simplest scaling is data parallelism over that axis: a 1-D `jax.sharding.Mesh` named
``"seeds"`` and every leaf placed with ``NamedSharding(mesh, P("seeds"))``. The jitted
`run_chunk` then runs each device's seeds on that device (XLA propagates the sharding
through the vmapped loop; no collective is needed because nothing mixes seeds), and the
numbers are the ones the unsharded run computes.

With `S` seeds and `D` devices the mesh uses the largest `d <= D` that divides `S`, so
every device holds the same number of seeds; `d == 1` (one device, one seed, or e.g. 3
seeds on 2 devices) leaves the state where it is and says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

PyTree = Any
SEED_AXIS = "seeds"


def devices_for_seeds(num_seeds: int, num_devices: int) -> int:
    """The number of devices to shard `num_seeds` over: the largest `d <= num_devices`
    that divides `num_seeds` (1 = do not shard).

    Raises:
      ValueError: `num_seeds` or `num_devices` is not an int >= 1.
    """
    for name, value in (("num_seeds", num_seeds), ("num_devices", num_devices)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {name}={value!r}")
    return max(d for d in range(1, min(num_seeds, num_devices) + 1) if num_seeds % d == 0)


def seed_sharding(num_seeds: int, devices: Sequence[Any] | None = None) -> NamedSharding | None:
    """`NamedSharding(Mesh(devices[:d], ("seeds",)), P("seeds"))`, or None when `d == 1`.

    Args:
      num_seeds: `S`, the size of every leaf's leading axis.
      devices: the devices to use (default: `jax.local_devices()`).
    """
    devices = list(jax.local_devices() if devices is None else devices)
    d = devices_for_seeds(num_seeds, len(devices))
    if d == 1:
        return None
    mesh = Mesh(np.asarray(devices[:d]), (SEED_AXIS,))
    return NamedSharding(mesh, PartitionSpec(SEED_AXIS))


def shard_seeds(
    state: PyTree, num_seeds: int, devices: Sequence[Any] | None = None
) -> tuple[PyTree, NamedSharding | None, str | None]:
    """Place every leaf of `state` (leading axis `[num_seeds]`) over the devices.

    Args:
      state: a pytree whose leaves all have leading axis `num_seeds` (a vmapped LoopState).
      num_seeds: `S`.
      devices: default `jax.local_devices()`.

    Returns:
      `(state, sharding, message)`: the placed state, the sharding used (pass it to
      `keep_sharded` after every jitted call) and a log line saying what was done; with
      one device the state unchanged, None and None (nothing worth saying).
    """
    devices = list(jax.local_devices() if devices is None else devices)
    if len(devices) == 1:
        return state, None, None
    sharding = seed_sharding(num_seeds, devices)
    if sharding is None:
        return state, None, (
            f"{len(devices)} devices, but num_seeds={num_seeds} has no divisor between 2 "
            f"and {len(devices)}: not sharding (all seeds on {devices[0]})")
    bad = [np.shape(x) for x in jax.tree.leaves(state) if np.shape(x)[:1] != (num_seeds,)]
    if bad:
        raise ValueError(
            f"every leaf must have leading axis num_seeds={num_seeds}; got shapes {bad[:3]}")
    d = sharding.mesh.devices.size
    return jax.device_put(state, sharding), sharding, (
        f"sharding {num_seeds} seeds over {d} devices "
        f"({num_seeds // d} per device, mesh axis {SEED_AXIS!r})")


def keep_sharded(state: PyTree, sharding: NamedSharding | None) -> PyTree:
    """Put back on `sharding` any leaf a jitted call returned placed otherwise.

    XLA may return a leaf that does not depend on the seed (e.g. a counter reset to the
    same value for every seed) replicated rather than split; feeding that back would make
    the next call see new input shardings and compile the loop again. Leaves already on
    `sharding` are not copied.
    """
    return state if sharding is None else jax.device_put(state, sharding)
