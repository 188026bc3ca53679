"""Tape-based batching (TBB): whole episodes concatenated into one tape of `B` transitions.

Draw `B` episodes (enough: each has at least one transition), lay them end to end by a
cumulative sum of their lengths, and find the episode behind every tape position with one
binary search over those `B` ends. Fixed shapes, no Python loop over episodes, cost
O(B log B + num_envs) whatever the capacity. Unlike the reference sampler, the newest
(still running) episodes are drawn like any other, a store holding a single episode or an
episode longer than `B` works, and a cut last episode is reported, not hidden.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rlmem.checks import positive_int
from rlmem.data.episodes import draw_episodes, draw_transitions, episode_span, gather, mark_cuts
from rlmem.data.tape import TapeStore
from rlmem.types import Transition

WEIGHTINGS = ("episode", "transition")


class TapeBatch(NamedTuple):
    """One tape of `B` transitions (see the layout in :mod:`rlmem.data`).

    Attributes:
      transition: `Transition`, leaves `[B, ...]`.
      extras: stored extras, leaves `[B, ...]`.
      cut: `[]` bool, the batch end cut the tape's last episode.
    """

    transition: Transition
    extras: dict[str, jax.Array]
    cut: jax.Array


def sample_tape(
    store: TapeStore, key: jax.Array, batch_size: int, weighting: str = "episode"
) -> TapeBatch:
    """Sample a tape of exactly `batch_size` transitions made of whole episodes.

    Args:
      store: the tape store.
      key: PRNG key.
      batch_size: `B`, static.
      weighting: `"episode"`: every valid episode equally likely (the paper);
        `"transition"`: an episode's probability is proportional to its length.

    Returns:
      `TapeBatch(transition [B], extras [B, ...], cut [])`.
    """
    positive_int("batch_size", batch_size)
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if weighting == "episode":
        stream, episode, ok = draw_episodes(store, key, batch_size)
    else:
        stream, _, episode, ok = draw_transitions(store, key, batch_size)
    return lay_out_tape(store, stream, episode, ok, batch_size)[0]


def lay_out_tape(
    store: TapeStore, stream: jax.Array, episode: jax.Array, ok: jax.Array, batch_size: int
) -> tuple[TapeBatch, jax.Array]:
    """The tape made of drawn episodes `(stream, episode)` `[D]` in draw order, `D >= 1`.

    The first episodes fill the `B` positions (the draws must hold at least `B`
    transitions in all, as `B` draws always do); `ok` `[]` says the draws are real.
    Returns `(TapeBatch, draw [B])`, `draw[p]` the index of the draw behind position `p`.
    """
    start, length, running = episode_span(store, stream, episode)  # [D]
    # Clipping at B keeps the cumulative sum in int32 and changes no tape position.
    clipped = jnp.clip(length, 1, batch_size)
    ends = jnp.cumsum(clipped)  # ends[-1] >= B: the draws always fill the tape
    pos = jnp.arange(batch_size, dtype=jnp.int32)
    j = jnp.searchsorted(ends, pos, side="right")
    offset = pos - (ends[j] - clipped[j])
    valid = jnp.broadcast_to(ok, (batch_size,))
    tr, extras = gather(store, stream[j], start[j] + offset, valid)
    ends_episode = offset == length[j] - 1
    tr = tr.replace(start=(offset == 0) & valid)
    tr = mark_cuts(tr, (ends_episode & running[j]) | (pos == batch_size - 1))
    cut = ok & ~ends_episode[-1]
    return TapeBatch(tr, extras, cut), j.astype(jnp.int32)
