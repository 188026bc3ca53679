"""jax's Threefry-2x32 hash, unrolled, for key derivations on the env hot path.

jax's `threefry2x32` primitive runs its 20 rounds as a 5-step loop on CPU: a few
microseconds a call whatever its size, which `VecEnv` paid on every step for one
`split` and again on every reset pass for the envs' reset keys. Unrolled, the same hash is
a handful of fused elementwise ops. The functions here return exactly what
`jax.random.fold_in` and `jax.random.split` return for jax's default (threefry,
`jax_threefry_partitionable`) raw `uint32[2]` keys (`tests/envs/test_threefry.py`); other
key types go through `jax.random`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def threefry2x32(k1, k2, x1, x2):
    """Threefry-2x32 (20 rounds) of the counters `(x1, x2)` under the key `(k1, k2)`;
    uint32 arrays, broadcast together. Returns the two output words."""
    ks = (k1, k2, k1 ^ k2 ^ np.uint32(0x1BD11BDA))
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x1 = x1 + x2
            x2 = ((x2 << np.uint32(r)) | (x2 >> np.uint32(32 - r))) ^ x1
        x1 = x1 + ks[(i + 1) % 3]
        x2 = x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x1, x2


def _raw(key: jax.Array) -> bool:
    """A raw `uint32[2]` key of jax's default threefry implementation (what
    `jax.random.PRNGKey` returns)."""
    return (not jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.dtype == jnp.uint32
            and key.shape == (2,) and jax.config.jax_default_prng_impl == "threefry2x32")


def fold_in(key: jax.Array, data: jax.Array) -> jax.Array:
    """`jax.random.fold_in(key, d)` for every `d` in `data` (int array, any shape): keys
    `[*data.shape, 2]`. Other key types go through `jax.random`."""
    data = jnp.asarray(data)
    if not _raw(key):
        flat = jax.vmap(jax.random.fold_in, (None, 0))(key, data.reshape(-1))
        return flat.reshape(data.shape + flat.shape[1:])
    y1, y2 = threefry2x32(key[0], key[1], np.uint32(0), data.astype(jnp.uint32))
    return jnp.stack([y1, y2], axis=-1)


def split(key: jax.Array, num: int = 2) -> jax.Array:
    """`jax.random.split(key, num)`."""
    if not (_raw(key) and jax.config.jax_threefry_partitionable):
        return jax.random.split(key, num)
    # Partitionable threefry splits by hashing the counters (0, i), as fold_in does.
    return fold_in(key, jnp.arange(num, dtype=jnp.uint32))


def split_part(key: jax.Array, index: int, num: int = 2) -> jax.Array:
    """`jax.random.split(key, num)[index]`, without computing the other parts."""
    if not (_raw(key) and jax.config.jax_threefry_partitionable):
        return jax.random.split(key, num)[index]
    return fold_in(key, np.uint32(index))
