"""Segment-based batching (SBB): length-`L` episode pieces, zero-padded, with a mask.

Segments start at offsets `0, P, 2P, ...` of each episode, `P` the start `period`: `P = L`
(the default) gives the paper's SBB, aligned pieces that tile each episode; `P < L` gives
R2D2's overlapping sequences (Kapturowski et al., 2019: `P = L / 2`), a new sequence every
`P` steps. A sequence never crosses its episode's end: it stops there and is zero-padded,
like every segment, so each row holds one episode (its burn-in and stored state included).
`L` and `P` are chosen at sampling time, so the store keeps no per-`L` index; instead a
uniform start is found by rejection: draw candidate transitions uniformly and keep those
sitting at a start offset. Every start is exactly one transition, so the kept candidates
are uniform over sequences. At least one transition in `P` is a start, so
`P * (2N + 32)` candidates give `N` hits except with negligible probability; in that case
the remaining rows take the sequence whose start precedes a non-start candidate
(probability proportional to the gap between starts). Cost O(N P + num_envs), independent
of capacity.

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
from rlmem.data.sparse_extras import gather_sparse
from rlmem.data.tape import TapeStore
from rlmem.types import Transition


@struct.dataclass
class SegmentBatch:
    """`N` rows of `W = burn_in + L` steps (see the layout in :mod:`rlmem.data`).

    Attributes:
      transition: `Transition`, leaves `[N, W, ...]`; `transition.mask` is valid data.
      learn_mask: `[N, W]` bool, valid and not burn-in.
      extras: stored extras, leaves `[N, W, ...]`, zero where padded.
      initial_extras: stored extras at each row's first valid step, leaves `[N, ...]`
        (with the store's sparse extras, zeros where that step is an episode's first).
    """

    transition: Transition
    learn_mask: jax.Array
    extras: dict[str, jax.Array]
    initial_extras: dict[str, jax.Array]

    @property
    def mask(self) -> jax.Array:
        """`[N, W]` bool: real data (not padding)."""
        return self.transition.mask


def check_segment_args(
    segment_length: int, burn_in: int, period: int | None, prefix: str = ""
) -> int:
    """Validate the static arguments; returns the start period (`segment_length` if None).

    `prefix` names the arguments in errors as their config keys (`"batching."`).
    """
    positive_int(f"{prefix}segment_length", segment_length)
    if not isinstance(burn_in, int) or isinstance(burn_in, bool) or burn_in < 0:
        raise ValueError(f"{prefix}burn_in must be an int >= 0, got {burn_in!r}")
    if period is None:
        return segment_length
    if (not isinstance(period, int) or isinstance(period, bool)
            or not 1 <= period <= segment_length):
        # A period longer than L would leave steps that no sequence covers.
        raise ValueError(
            f"{prefix}period={period!r} is not allowed; allowed: null (aligned segments) "
            f"or an int in [1, {prefix}segment_length={segment_length}]"
        )
    return period


def sample_segments(
    store: TapeStore,
    key: jax.Array,
    num_segments: int,
    segment_length: int,
    burn_in: int = 0,
    period: int | None = None,
) -> SegmentBatch:
    """Sample `N` sequences uniformly among all sequence starts of valid episodes.

    Args:
      store: the tape store.
      key: PRNG key.
      num_segments: `N`, static.
      segment_length: `L`, static.
      burn_in: steps replayed before each segment without gradient, static.
      period: `P`, steps between sequence starts in an episode, in `[1, L]`, static;
        None: `L` (aligned, non-overlapping: the paper's SBB).

    Returns:
      `SegmentBatch` with rows `[N, burn_in + L]`.
    """
    positive_int("num_segments", num_segments)
    period = check_segment_args(segment_length, burn_in, period)
    n = num_segments
    num_candidates = period * (2 * n + 32)
    stream, time, episode, ok = draw_transitions(store, key, num_candidates)
    ep_start, length, running = episode_span(store, stream, episode)
    at_start = (time - ep_start) % period == 0
    # The first N start candidates in draw order (i.i.d. draws, so any N of them are
    # uniform), found by a running count in O(candidates); rows left over (rare) keep
    # candidate `row`, whose sequence is then snapped to the start before it.
    rank = jnp.cumsum(at_start, dtype=jnp.int32) - 1
    row = jnp.where(at_start & (rank < n), rank, n)
    pick = jnp.arange(n).at[row].set(jnp.arange(num_candidates), mode="drop")
    stream, time, ep_start = stream[pick], time[pick], ep_start[pick]
    length, running = length[pick], running[pick]
    seg_start = ep_start + (time - ep_start) // period * period  # [N]
    return segment_rows(store, stream, seg_start, ep_start, length, running,
                        jnp.broadcast_to(ok, (n,)), segment_length, burn_in)


def segment_rows(
    store: TapeStore,
    stream: jax.Array,
    seg_start: jax.Array,
    ep_start: jax.Array,
    length: jax.Array,
    running: jax.Array,
    ok: jax.Array,
    segment_length: int,
    burn_in: int,
) -> SegmentBatch:
    """Gather the rows of chosen sequences: `burn_in` steps before `seg_start` and `L` from
    it, inside the episode `[ep_start, ep_start + length)` of `stream` only, zero-padded.

    `stream`, `seg_start`, `ep_start`, `length`, `running` (episode still being written),
    `ok` (row is real): `[N]`. Returns `SegmentBatch` with rows `[N, burn_in + L]`.
    """
    seg_len = segment_length
    width = burn_in + seg_len
    col = jnp.arange(width, dtype=jnp.int32)
    times = seg_start[:, None] - burn_in + col  # [N, W]
    ep_end = (ep_start + length)[:, None]
    valid = ok[:, None] & (times >= ep_start[:, None]) & (times < ep_end)
    rows = jnp.broadcast_to(stream[:, None], times.shape)
    tr, extras = gather(store, rows, times, valid)
    tr = tr.replace(start=(times == ep_start[:, None]) & valid)
    # The row's last valid step: valid data is one contiguous run per row.
    next_valid = jnp.concatenate([valid[:, 1:], jnp.zeros_like(valid[:, :1])], axis=1)
    last = valid & ~next_valid
    tr = mark_cuts(tr, last & ((times < ep_end - 1) | running[:, None]))

    first_time = jnp.maximum(seg_start - burn_in, ep_start)
    _, initial_extras = gather(store, stream, first_time, ok)
    if store.sparse is not None:  # zeros at an episode's first step: the state resets there
        initial_extras = {**initial_extras, **gather_sparse(
            store.sparse, stream, first_time, ok & (first_time > ep_start))}
    return SegmentBatch(
        transition=tr,
        learn_mask=valid & (col >= burn_in)[None, :],
        extras=extras,
        initial_extras=initial_extras,
    )
