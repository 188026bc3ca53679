"""Prioritised replay batches: units drawn by priority from `TapeStore.priorities`.

Tapes (prioritised TBB) draw whole episodes, segments (R2D2) draw sequences; each draw is
located by its first transition's slot (`rlmem.data.priority`) and laid out exactly as the
uniform samplers lay out theirs (`lay_out_tape`, `segment_rows`), so a prioritised batch
differs from a uniform one only in which units it holds. Cost O(n log capacity) for `n`
draws.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from rlmem.checks import positive_int
from rlmem.data import sum_tree as st
from rlmem.data.episodes import episode_span
from rlmem.data.priority import EPISODE_UNITS
from rlmem.data.segment_sampler import SegmentBatch, check_segment_args, segment_rows
from rlmem.data.tape import TapeStore
from rlmem.data.tape_sampler import TapeBatch, lay_out_tape


@struct.dataclass
class Draws:
    """The units behind a prioritised batch and where their transitions landed.

    Attributes:
      leaf: `[K]` int32, each draw's leaf in the priority tree (for the update).
      prob: `[K]` float32, each draw's sampling probability `leaf / total`.
      used: `[K]` bool, the draw is real and contributed at least one transition.
      unit: int32, the draw behind each transition of the batch as an unroll flattens it
        (`rlmem.agents.unroll.Unrolled`): `[B]` for a tape, `[N * L]` for segments
        (burn-in columns dropped, row-major).
    """

    leaf: jax.Array
    prob: jax.Array
    used: jax.Array
    unit: jax.Array


def draw_units(store: TapeStore, key: jax.Array, n: int):
    """`n` units drawn i.i.d. by priority.

    Returns `(stream [n], time [n] of each unit's first transition, leaf [n], prob [n],
    ok [])`; `ok` is False while no unit exists (then the draws are meaningless).
    """
    pri = store.priorities
    if pri is None:
        raise ValueError("the store keeps no priorities: build it with "
                         "init_store(..., priority_period=...)")
    c = store.stream_capacity
    leaf = st.sample(pri.tree, key, n)
    total = st.total(pri.tree)
    prob = st.leaf_values(pri.tree, leaf) / jnp.maximum(total, 1e-30)
    stream, slot = leaf // c, leaf % c
    # The time a slot holds: the one in [steps - C, steps) congruent to it modulo C.
    base = jnp.maximum(store.steps[stream] - c, 0)
    time = base + (slot - base) % c
    return stream, time, leaf, prob, total > 0


def sample_tape_prioritised(store: TapeStore, key: jax.Array, batch_size: int
                            ) -> tuple[TapeBatch, Draws]:
    """A tape of `batch_size` transitions made of whole episodes drawn by priority.

    Returns `(TapeBatch [B], Draws)` with `K = B` draws, `Draws.unit: [B]`.
    """
    positive_int("batch_size", batch_size)
    _check_units(store, EPISODE_UNITS, "episodes (tape batching)")
    stream, time, leaf, prob, ok = draw_units(store, key, batch_size)
    episode = store.ep_id[stream, time % store.stream_capacity]
    batch, unit = lay_out_tape(store, stream, episode, ok, batch_size)
    used = jnp.zeros((batch_size,), bool).at[unit].set(True) & ok
    return batch, Draws(leaf=leaf, prob=prob, used=used, unit=unit)


def sample_segments_prioritised(
    store: TapeStore,
    key: jax.Array,
    num_segments: int,
    segment_length: int,
    burn_in: int = 0,
    period: int | None = None,
) -> tuple[SegmentBatch, Draws]:
    """`N` sequences drawn by priority (`rlmem.data.segment_sampler`'s layout).

    The store's units must be the sequences of this `period` (None: `segment_length`).
    Returns `(SegmentBatch [N, burn_in + L], Draws)` with `K = N`, `Draws.unit: [N * L]`.
    """
    positive_int("num_segments", num_segments)
    period = check_segment_args(segment_length, burn_in, period)
    _check_units(store, period, f"sequences every {period} steps")
    stream, time, leaf, prob, ok = draw_units(store, key, num_segments)
    episode = store.ep_id[stream, time % store.stream_capacity]
    ep_start, length, running = episode_span(store, stream, episode)
    batch = segment_rows(store, stream, time, ep_start, length, running,
                         jnp.broadcast_to(ok, (num_segments,)), segment_length, burn_in)
    unit = jnp.repeat(jnp.arange(num_segments, dtype=jnp.int32), segment_length)
    used = jnp.any(batch.learn_mask, axis=1)
    return batch, Draws(leaf=leaf, prob=prob, used=used, unit=unit)


def _check_units(store: TapeStore, period: int, what: str) -> None:
    have = store.priorities.period if store.priorities is not None else None
    if have != period:
        kept = ("none" if have is None else "episodes" if have == EPISODE_UNITS
                else f"sequences every {have} steps")
        raise ValueError(f"this sampler draws {what} but the store's priorities are kept "
                         f"for {kept}; build it with init_store(..., priority_period="
                         f"{period})")
