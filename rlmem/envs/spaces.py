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


def _box_bounds(space: Box) -> tuple[np.ndarray, np.ndarray]:
    shape = tuple(space.shape)
    low = np.broadcast_to(np.asarray(space.low, np.float32), shape).reshape(-1)
    high = np.broadcast_to(np.asarray(space.high, np.float32), shape).reshape(-1)
    return low, high


def _children(space: Space) -> list[Space]:
    if isinstance(space, Tuple):
        return list(space.spaces)
    return [space.spaces[k] for k in space.spaces]  # Dict: insertion order, as gymnasium


def flat_bounds(space: Space) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of :func:`flatten`'s output, `([F], [F])` float32 (one-hots are in [0, 1]).

    Raises:
      TypeError: for a space that is not Discrete, MultiDiscrete, Box, Tuple or Dict.
    """
    if isinstance(space, Discrete):
        return np.zeros(space.n, np.float32), np.ones(space.n, np.float32)
    if isinstance(space, MultiDiscrete):
        total = int(space.nvec.sum())
        return np.zeros(total, np.float32), np.ones(total, np.float32)
    if isinstance(space, Box):
        return _box_bounds(space)
    if isinstance(space, Tuple | Dict):
        lows, highs = zip(*(flat_bounds(s) for s in _children(space)), strict=True)
        return np.concatenate(lows), np.concatenate(highs)
    raise TypeError(f"space must be Discrete, MultiDiscrete, Box, Tuple or Dict, got {space!r}")


def flat_dim(space: Space) -> int:
    """Length `F` of :func:`flatten`'s output."""
    return int(flat_bounds(space)[0].size)


def flatten_space(space: Space) -> Box:
    """The `Box([F])` float32 space of flattened observations (gymnasium `flatten_space`)."""
    low, high = flat_bounds(space)
    return Box(low, high, (low.size,), jnp.float32)


def flatten(space: Space, x) -> jax.Array:
    """One-hot and concatenate an observation of `space` into `[F]` float32.

    Same layout as gymnasium's `spaces.utils.flatten` (what popgym's `Flatten` calls):
    Discrete -> one-hot, MultiDiscrete -> one one-hot per entry (row-major), Box ->
    the values raveled, Tuple/Dict -> the children's flattenings concatenated.
    """
    if isinstance(space, Discrete):
        return jax.nn.one_hot(x, space.n, dtype=jnp.float32)
    if isinstance(space, MultiDiscrete):
        nvec = space.nvec.reshape(-1)
        x = jnp.asarray(x).reshape(-1)
        if (nvec == nvec[0]).all():  # common case: no scatter needed
            return jax.nn.one_hot(x, int(nvec[0]), dtype=jnp.float32).reshape(-1)
        offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])
        return jnp.zeros(int(nvec.sum()), jnp.float32).at[offsets + x].set(1.0)
    if isinstance(space, Box):
        return jnp.asarray(x, jnp.float32).reshape(-1)
    if isinstance(space, Tuple):
        return jnp.concatenate([flatten(s, xi) for s, xi in zip(space.spaces, x, strict=True)])
    if isinstance(space, Dict):
        return jnp.concatenate([flatten(space.spaces[k], x[k]) for k in space.spaces])
    raise TypeError(f"space must be Discrete, MultiDiscrete, Box, Tuple or Dict, got {space!r}")
