"""Extras kept only where a replayed sequence can start from them: compact stored carries.

R2D2 starts each sequence from the recurrent state recorded while acting. A segment
sampler with start `period` `P` and a burn-in that is a multiple of `P` only ever starts a
row at an episode's first step (where the state is reset, so nothing is read) or at an
episode offset `kP`, `k >= 1`. Storing the carry beside *those* steps only cuts its memory
by `P` (the paper's FFM carry is 2 KiB, LRU's 4 KiB per step: 7.6 and 15 GiB per seed
at 4M transitions, per step).

Such steps are at least `P` apart in a stream's time (two in one episode are `P` apart; a
later episode starts after the earlier one's step and waits `P` more), so step `t` can
own bucket `(t // P) % B` of a ring of `B = C // P + 2` buckets per stream: two steps that
are both still in the store (less than `C` apart) never share one. A bucket is read only
for a step that is in the store and needs it, so stale buckets are never seen.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from rlmem.data.arrays import masked_take

PyTree = Any


@struct.dataclass
class SparseExtras:
    """Per-stream rings of extras at the steps sequences start from.

    Attributes:
      data: dict of extras, leaves `[E, B, ...]`, `B = num_buckets(C, period)`.
      period: static, the sequence start period `P` the steps are chosen by.
    """

    data: dict[str, jax.Array]
    period: int = struct.field(pytree_node=False, default=1)

    @property
    def ring(self) -> int:
        """`B`, buckets per stream."""
        return jax.tree.leaves(self.data)[0].shape[1] if self.data else 1


def num_buckets(stream_capacity: int, period: int) -> int:
    """Ring length `B` per stream: `C // P + 2` (module doc)."""
    return stream_capacity // period + 2


def needs_extras(time: jax.Array, episode_start: jax.Array, period: int) -> jax.Array:
    """True at the steps a sequence may start from with a stored state: episode offsets
    `P, 2P, ...` (never an episode's first step, where the state is reset)."""
    offset = time - episode_start
    return (offset > 0) & (offset % period == 0)


def init_sparse(example: dict[str, Any], num_envs: int, stream_capacity: int,
                period: int) -> SparseExtras:
    """Empty rings for extras shaped like `example` (leaves without leading dims)."""
    if not isinstance(period, int) or isinstance(period, bool) or period < 1:
        raise ValueError(f"sparse_period must be an int >= 1, got {period!r}")
    lead = (num_envs, num_buckets(stream_capacity, period))
    data = jax.tree.map(lambda x: jnp.zeros(lead + jnp.shape(x), jnp.asarray(x).dtype),
                        dict(example))
    return SparseExtras(data=data, period=period)


def note_writes(sparse: SparseExtras, values: dict[str, jax.Array], time: jax.Array,
                episode_start: jax.Array, written: jax.Array) -> SparseExtras:
    """Keep the values of written steps that need them. values: leaves `[E, T, ...]`;
    time, episode_start (of each step's episode), written: `[E, T]`."""
    ring = sparse.ring
    keep = written & needs_extras(time, episode_start, sparse.period)
    bucket = jnp.where(keep, (time // sparse.period) % ring, ring)  # ring: dropped
    rows = jnp.arange(time.shape[0])[:, None]

    def write(buf: jax.Array, x: jax.Array) -> jax.Array:
        return buf.at[rows, bucket].set(jnp.asarray(x, buf.dtype), mode="drop")

    return sparse.replace(data=jax.tree.map(write, sparse.data, dict(values)))


def gather_sparse(sparse: SparseExtras, stream: jax.Array, time: jax.Array,
                  valid: jax.Array) -> dict[str, jax.Array]:
    """The extras kept for steps `(stream, time)` (`[N]`); zeros where `valid` is False.
    Only meaningful for steps that need them (`needs_extras`) and are still stored."""
    bucket = (time // sparse.period) % sparse.ring
    return jax.tree.map(lambda buf: masked_take(buf, stream, bucket, valid), sparse.data)
