"""Fixed-shape array helpers shared by the store's readers (no store types here, so every
module of `rlmem.data` can import them)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def masked_take(buf: jax.Array, stream: jax.Array, index: jax.Array, valid: jax.Array
                ) -> jax.Array:
    """`buf[stream, index]` (leaves `[E, C, ...]`, indices of any shape `S`), zeros where
    `valid` (`S`) is False."""
    x = buf[stream, index]
    keep = valid.reshape(valid.shape + (1,) * (x.ndim - valid.ndim))
    return jnp.where(keep, x, jnp.zeros((), x.dtype))
