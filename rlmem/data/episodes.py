"""Fixed-shape queries on a `TapeStore`: draw episodes or transitions, find and gather them.

Uniform draws across streams never look at the whole store: a uniform integer below the
total count is located in the `[E]` cumulative per-stream counts (one `searchsorted` over
`num_envs` entries), then mapped inside its stream by arithmetic on the circular index.
Every function here costs O(n log num_envs) for `n` draws (O(n num_envs) with a tiny
constant up to 64 streams), independent of capacity.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlmem.data.arrays import masked_take
from rlmem.data.tape import TapeStore, num_episodes, num_transitions, valid_from
from rlmem.types import Transition


def _draw_across_streams(key: jax.Array, counts: jax.Array, n: int):
    """`n` uniform draws over `sum(counts)` items grouped by stream.

    Returns `(stream [n], index within stream [n], any [])`; `any` is False when there is
    nothing to draw (then the draws are meaningless zeros).
    """
    cum = jnp.cumsum(counts)
    total = cum[-1]
    u = jax.random.randint(key, (n,), 0, jnp.maximum(total, 1), dtype=jnp.int32)
    # Few streams: comparing against all of them beats a binary search's sequential steps.
    method = "compare_all" if counts.shape[0] <= 64 else "scan"
    stream = jnp.searchsorted(cum, u, side="right", method=method).astype(jnp.int32)
    stream = jnp.minimum(stream, counts.shape[0] - 1)
    before = cum[stream] - counts[stream]
    return stream, u - before, total > 0


def episode_span(store: TapeStore, stream: jax.Array, episode: jax.Array):
    """Start time and length of episodes (any shape of `stream` / `episode` arrays).

    A still-running episode ends at its stream's clock `store.steps[stream]`.
    Returns `(start, length, running)`.
    """
    c = store.stream_capacity
    start = store.ep_start[stream, episode % c]
    has_next = episode + 1 < store.ep_hi[stream]
    end = jnp.where(has_next, store.ep_start[stream, (episode + 1) % c],
                    store.steps[stream])
    return start, end - start, ~has_next


def draw_episodes(store: TapeStore, key: jax.Array, n: int):
    """`n` valid episodes, each drawn with equal probability (with replacement).

    Returns `(stream [n], episode [n], any [])` with absolute episode numbers.
    """
    stream, k, ok = _draw_across_streams(key, num_episodes(store), n)
    return stream, store.ep_lo[stream] + k, ok


def draw_transitions(store: TapeStore, key: jax.Array, n: int):
    """`n` transitions of valid episodes, each with equal probability (with replacement).

    Returns `(stream [n], time [n], episode [n], any [])`.
    """
    stream, i, ok = _draw_across_streams(key, num_transitions(store), n)
    time = valid_from(store)[stream] + i
    episode = store.ep_id[stream, time % store.stream_capacity]
    return stream, time, episode, ok


def gather(store: TapeStore, stream: jax.Array, time: jax.Array, valid: jax.Array):
    """Stored transitions and extras at `(stream, time)`; zeros where `valid` is False.

    `stream`, `time`, `valid` share a shape `S`; returns `(Transition [S, ...], extras)`.
    The stored `mask` is replaced by `valid`.
    """
    slot = time % store.stream_capacity

    def take(buf: jax.Array) -> jax.Array:
        return masked_take(buf, stream, slot, valid)

    data = jax.tree.map(take, store.data)
    extras = jax.tree.map(take, store.extras)
    return data.replace(mask=valid), extras


def mark_cuts(tr: Transition, last: jax.Array) -> Transition:
    """Flag `truncated` on `last` steps (a cut episode end) that are not terminal."""
    return tr.replace(truncated=tr.truncated | (last & ~tr.terminated & tr.mask))
