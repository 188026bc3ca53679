"""Replay priorities (Schaul et al., 2016; R2D2's sequence priorities), one per replay unit.

A *unit* is what one draw of the prioritised samplers returns: a whole episode for tapes
(prioritised TBB), a sequence for segments (R2D2). Every unit is named by the store slot of
its first transition, so priorities live in a sum-tree over the store's `E * C` slots
(`leaf = e * C + slot`), non-zero exactly at the first slots of valid units:

* tapes (`period = 0`): an episode's first transition;
* segments (`period = P`): the transitions at offsets `0, P, 2P, ...` of their episode
  (`rlmem.data.segment_sampler`'s sequence starts).

`TapeStore.add` keeps that invariant (`note_writes`, `clear_times`): a written slot gets the
largest priority seen so far if it starts a unit (new units are replayed soon, as in PER),
0 otherwise, which also clears the unit an overwritten slot held; and when an episode is
evicted (its first transition overwritten) the sequence starts still in its surviving tail
are cleared. Each slot is cleared at most once per write, so the bookkeeping costs O(T log N)
per `add` of `T` steps per stream, amortised; sampling and updates cost O(log N) per unit.

Leaves hold `(priority + PRIORITY_EPS) ** alpha`; the sampler draws a unit with probability
`leaf / total` (`rlmem.data.prioritised_sampler`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from rlmem.data import sum_tree as st

EPISODE_UNITS = 0  # `Priorities.period` for tapes: a unit is a whole episode
PRIORITY_EPS = 1e-6  # added to every priority: a unit with zero TD error stays drawable
CLEAR_CHUNK = 64  # slots per stream cleared per pass of `clear_times`' loop


@struct.dataclass
class Priorities:
    """Unit priorities over a store's slots; lives in `TapeStore.priorities`.

    Attributes:
      tree: `SumTree` over `E * C` leaves, `leaf = e * C + slot`.
      max_leaf: `[]` float32, the largest leaf value written so far (new units get it).
      period: static: `EPISODE_UNITS` (0) or the segments' start period `P`.
    """

    tree: st.SumTree
    max_leaf: jax.Array
    period: int = struct.field(pytree_node=False, default=EPISODE_UNITS)


def init_priorities(num_envs: int, stream_capacity: int, period: int) -> Priorities:
    """No units yet; `period`: `EPISODE_UNITS` or the sequence start period (>= 1)."""
    if not isinstance(period, int) or period < 0:
        raise ValueError(f"period must be an int >= 0 (0: episode units), got {period!r}")
    return Priorities(
        tree=st.init_sum_tree(num_envs * stream_capacity),
        max_leaf=jnp.ones((), jnp.float32),
        period=period,
    )


def _set(pri: Priorities, leaf: jax.Array, value: jax.Array, valid: jax.Array) -> Priorities:
    # Never read the old leaves here: a read of the tree before its in-place update made
    # XLA on CPU copy the whole tree at every level (scripts/bench_replay.py --prioritised).
    return pri.replace(tree=st.update(pri.tree, leaf, value, valid))


def note_writes(
    pri: Priorities,
    stream: jax.Array,
    slot: jax.Array,
    time: jax.Array,
    episode_start: jax.Array,
    start: jax.Array,
    written: jax.Array,
    stream_capacity: int,
    valid: jax.Array,
) -> Priorities:
    """New transitions were written: each written slot now starts a unit (leaf = max) or
    not (leaf = 0). All arguments `[E, T]`: the slot's stream, slot, absolute time, the
    start time of its episode, its `start` flag, whether it was written, and whether its
    episode is valid (an episode whose start was overwritten opens no unit)."""
    by_offset = (time - episode_start) % max(pri.period, 1) == 0
    opens = start if pri.period == EPISODE_UNITS else by_offset
    value = jnp.where(opens & valid, pri.max_leaf, 0.0)
    leaf = stream * stream_capacity + slot
    return _set(pri, leaf.reshape(-1), value.reshape(-1), written.reshape(-1))


def clear_times(pri: Priorities, lo: jax.Array, hi: jax.Array, stream_capacity: int
                ) -> Priorities:
    """Zero the leaves of times `[lo[e], hi[e])` of every stream (`lo, hi: [E]`, ranges no
    longer than `stream_capacity`): the tails of evicted episodes."""
    num_envs = lo.shape[0]
    col = jnp.arange(CLEAR_CHUNK, dtype=jnp.int32)
    base = (jnp.arange(num_envs, dtype=jnp.int32) * stream_capacity)[:, None]

    def clear(carry: tuple[jax.Array, Priorities]) -> tuple[jax.Array, Priorities]:
        first, pri = carry
        times = first[:, None] + col[None, :]  # [E, CHUNK]
        inside = times < hi[:, None]
        leaf = base + times % stream_capacity
        zeros = jnp.zeros(times.shape, jnp.float32)
        return first + CLEAR_CHUNK, _set(pri, leaf.reshape(-1), zeros.reshape(-1),
                                         inside.reshape(-1))

    _, pri = jax.lax.while_loop(lambda c: jnp.any(c[0] < hi), clear, (lo, pri))
    return pri


def unit_priority(td_abs: jax.Array, unit: jax.Array, mask: jax.Array, num_draws: int,
                  eta: float) -> tuple[jax.Array, jax.Array]:
    """R2D2's priority per drawn unit: `eta * max|td| + (1 - eta) * mean|td|` over the
    unit's learning transitions.

    Args:
      td_abs: `[M]` |TD error| of the batch's flat transitions.
      unit: `[M]` int, the draw (in `[0, num_draws)`) each transition belongs to.
      mask: `[M]` bool, transitions that carry a loss.
      num_draws: `K` draws in the batch (static).
      eta: the max's weight (R2D2: 0.9).

    Returns:
      `(priority [K], seen [K])`: `seen` is False for draws with no learning transition
      (their priority is meaningless and must not be written).
    """
    td = jnp.where(mask, td_abs, 0.0)
    count = jax.ops.segment_sum(mask.astype(jnp.float32), unit, num_draws)
    total = jax.ops.segment_sum(td, unit, num_draws)
    largest = jax.ops.segment_max(td, unit, num_draws)
    seen = count > 0
    mean = total / jnp.maximum(count, 1.0)
    return jnp.where(seen, eta * largest + (1.0 - eta) * mean, 0.0), seen


def set_priorities(pri: Priorities, leaf: jax.Array, priority: jax.Array, valid: jax.Array,
                   alpha: float) -> Priorities:
    """Write drawn units' new priorities (`leaf, priority, valid: [K]`) as
    `(priority + PRIORITY_EPS) ** alpha`; duplicates keep one of their values."""
    value = (priority + PRIORITY_EPS) ** alpha
    tree = st.update(pri.tree, leaf, value, valid)
    top = jnp.max(jnp.where(valid, value, 0.0))
    return pri.replace(tree=tree, max_leaf=jnp.maximum(pri.max_leaf, top))


def importance_weights(prob: jax.Array, beta: jax.Array | float, valid: jax.Array
                       ) -> jax.Array:
    """PER's importance-sampling weights `(N P(i)) ** -beta` divided by the batch's
    largest (so they only scale updates down), i.e. `(P(i) / min_j P(j)) ** -beta` over
    the batch's valid draws: the number of units `N` cancels, so it is never counted.
    prob, valid: `[K]` -> `[K]` (0 where not valid)."""
    smallest = jnp.min(jnp.where(valid, prob, jnp.inf))
    ratio = jnp.maximum(prob, 1e-30) / jnp.maximum(smallest, 1e-30)
    return jnp.where(valid, ratio ** -beta, 0.0)
