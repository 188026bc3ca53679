"""Spaces gymnax lacks: `MultiDiscrete`, as popgym uses for boards and card tuples."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces

Space = spaces.Space
Discrete = spaces.Discrete
Box = spaces.Box
Tuple = spaces.Tuple
Dict = spaces.Dict


class MultiDiscrete(spaces.Space):
    """A vector of independent discrete values, entry `i` in `[0, nvec[i])`.

    Args:
      nvec: number of categories of each entry; any shape (popgym uses 1-D and 2-D).
    """

    def __init__(self, nvec: Sequence[int] | np.ndarray):
        self.nvec = np.asarray(nvec, dtype=np.int32)
        if self.nvec.size == 0 or (self.nvec < 1).any():
            raise ValueError(f"MultiDiscrete nvec must be non-empty and >= 1, got {nvec!r}")
        self.shape = self.nvec.shape
        self.dtype = jnp.int32

    def __repr__(self) -> str:
        return f"MultiDiscrete({self.nvec.tolist()})"

    def sample(self, key: jax.Array) -> jax.Array:
        u = jax.random.uniform(key, self.shape)
        return jnp.floor(u * jnp.asarray(self.nvec)).astype(self.dtype)

    def contains(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.all((x >= 0) & (x < jnp.asarray(self.nvec)))
