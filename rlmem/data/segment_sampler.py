"""Segment-based batching (SBB): length-`L` episode pieces, zero-padded, with a mask.

Segments start at offsets `0, L, 2L, ...` of each episode. `L` is chosen at sampling time,
so the store keeps no per-`L` index; instead a uniform segment is found by rejection:
draw candidate transitions uniformly and keep those sitting at an aligned offset. Every
segment has exactly one aligned transition, so the kept candidates are uniform over
segments. At least one transition in `L` is aligned, so `L * (2N + 32)` candidates give
`N` hits except with negligible probability; in that case the remaining rows take the
segment around a non-aligned candidate (probability proportional to segment length).
Cost O(N L + num_envs), independent of capacity.

Optional R2D2 burn-in (Kapturowski et al., 2019): `burn_in` steps before the segment,
from the same episode only, are replayed without gradient (`learn_mask` is False there);
`initial_extras` holds the stored extras (e.g. recurrent carry before `obs[t]`) at the
row's first valid step, to start from the stored state instead of zeros.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from rlmem.checks import positive_int
from rlmem.data.episodes import draw_transitions, episode_span, gather, mark_cuts
from rlmem.data.tape import TapeStore
from rlmem.types import Transition


@struct.dataclass
class SegmentBatch:
    """`N` rows of `W = burn_in + L` steps (see the layout in :mod:`rlmem.data`).

    Attributes:
      transition: `Transition`, leaves `[N, W, ...]`; `transition.mask` is valid data.
      learn_mask: `[N, W]` bool, valid and not burn-in.
      extras: stored extras, leaves `[N, W, ...]`, zero where padded.
      initial_extras: stored extras at each row's first valid step, leaves `[N, ...]`.
    """

    transition: Transition
    learn_mask: jax.Array
    extras: dict[str, jax.Array]
    initial_extras: dict[str, jax.Array]

    @property
    def mask(self) -> jax.Array:
        """`[N, W]` bool: real data (not padding)."""
        return self.transition.mask


def sample_segments(
    store: TapeStore,
    key: jax.Array,
    num_segments: int,
    segment_length: int,
    burn_in: int = 0,
) -> SegmentBatch:
    """Sample `N` segments uniformly among all aligned segments of valid episodes.

    Args:
      store: the tape store.
      key: PRNG key.
      num_segments: `N`, static.
      segment_length: `L`, static.
      burn_in: steps replayed before each segment without gradient, static.

    Returns:
      `SegmentBatch` with rows `[N, burn_in + L]`.
    """
    positive_int("num_segments", num_segments)
    positive_int("segment_length", segment_length)
    if not isinstance(burn_in, int) or burn_in < 0:
        raise ValueError(f"burn_in must be an int >= 0, got {burn_in!r}")
    n, seg_len = num_segments, segment_length
    num_candidates = seg_len * (2 * n + 32)
    stream, time, episode, ok = draw_transitions(store, key, num_candidates)
    ep_start, length, running = episode_span(store, stream, episode)
    aligned = (time - ep_start) % seg_len == 0
    # The first N aligned candidates in draw order (i.i.d. draws, so any N of them are
    # uniform), found by a running count in O(candidates); rows left over (rare) keep
    # candidate `row`, whose segment is then snapped to its aligned start.
    rank = jnp.cumsum(aligned, dtype=jnp.int32) - 1
    row = jnp.where(aligned & (rank < n), rank, n)
    pick = jnp.arange(n).at[row].set(jnp.arange(num_candidates), mode="drop")
    stream, time, ep_start = stream[pick], time[pick], ep_start[pick]
    length, running = length[pick], running[pick]
    seg_start = ep_start + (time - ep_start) // seg_len * seg_len  # [N]

    width = burn_in + seg_len
    col = jnp.arange(width, dtype=jnp.int32)
    times = seg_start[:, None] - burn_in + col  # [N, W]
    ep_end = (ep_start + length)[:, None]
    valid = ok & (times >= ep_start[:, None]) & (times < ep_end)
    rows = jnp.broadcast_to(stream[:, None], times.shape)
    tr, extras = gather(store, rows, times, valid)
    tr = tr.replace(start=(times == ep_start[:, None]) & valid)
    # The row's last valid step: valid data is one contiguous run per row.
    next_valid = jnp.concatenate([valid[:, 1:], jnp.zeros_like(valid[:, :1])], axis=1)
    last = valid & ~next_valid
    tr = mark_cuts(tr, last & ((times < ep_end - 1) | running[:, None]))

    first_time = jnp.maximum(seg_start - burn_in, ep_start)
    _, initial_extras = gather(store, stream, first_time, jnp.broadcast_to(ok, (n,)))
    return SegmentBatch(
        transition=tr,
        learn_mask=valid & (col >= burn_in)[None, :],
        extras=extras,
        initial_extras=initial_extras,
    )
