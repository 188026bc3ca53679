"""The tape store: fixed-capacity circular storage of transitions, one tape per env stream.

Each of the `num_envs` streams owns `C = capacity // num_envs` slots; absolute time `t`
of a stream (its `t`-th transition ever written) lives in slot `t % C`. `add` takes
`[num_envs, T]` chunks of which each stream keeps a prefix of `length[e] <= T` real steps
(all `T` by default; fewer when the loop collects whole episodes of varying length), so
every stream has its own clock `steps[e]`.

Episode bookkeeping is a per-stream circular index of episode start times: episode `k`
(counted from 0 since the stream began) started at `ep_start[e, k % C]`; episodes
`ep_lo[e] <= k < ep_hi[e]` are valid. An episode stays valid exactly as long as its first
transition is in the store, so when `add` overwrites slots it counts the `start` flags it
overwrites and advances `ep_lo` by that much: O(T) per add, never O(capacity). A stream
holds at most `C` episodes (each has >= 1 transition), so the index never overflows.
Episode `k` ends where episode `k + 1` starts, or at `steps[e]` while it is still running.

Times and episode numbers are int32: a stream can be written for 2**31 steps.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from rlmem.checks import positive_int
from rlmem.data import priority as pr
from rlmem.data import sparse_extras as sp
from rlmem.types import Transition

PyTree = Any

_FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated", "start")


@struct.dataclass
class TapeStore:
    """Replay storage; every array has fixed shape. `E` streams, `C` slots per stream.

    Attributes:
      data: `Transition` with leaves `[E, C, ...]`; `mask[e, c]` is True once slot written.
      extras: dict of stored per-step extras, leaves `[E, C, ...]` (may be empty).
      ep_id: `[E, C]` int32, the episode number of the transition in each slot.
      ep_start: `[E, C]` int32, circular index: start time of episode `k` at `k % C`.
      ep_lo: `[E]` int32, oldest valid episode number per stream.
      ep_hi: `[E]` int32, number of episodes started per stream (newest is `ep_hi - 1`).
      steps: `[E]` int32, transitions written to each stream so far (its clock).
      priorities: the replay units' priorities (`rlmem.data.priority`), kept by `add`;
        None for uniform replay.
      sparse: extras kept only at the steps sequences start from
        (`rlmem.data.sparse_extras`: compact stored carries), or None.
    """

    data: Transition
    extras: dict[str, jax.Array]
    ep_id: jax.Array
    ep_start: jax.Array
    ep_lo: jax.Array
    ep_hi: jax.Array
    steps: jax.Array
    priorities: pr.Priorities | None = None
    sparse: sp.SparseExtras | None = None

    @property
    def num_envs(self) -> int:
        return self.ep_id.shape[0]

    @property
    def stream_capacity(self) -> int:
        """C: slots per env stream."""
        return self.ep_id.shape[1]


def is_replay_store(x: Any) -> bool:
    """True for a `TapeStore`: the subtree a lean checkpoint leaves out
    (`rlmem.checkpoint.Checkpointer(exclude=is_replay_store)`; a resumed run refills it)."""
    return isinstance(x, TapeStore)


def _leaf_zeros(x: Any, lead: tuple[int, ...]) -> jax.Array:
    x = jnp.asarray(x)
    return jnp.zeros(lead + x.shape, x.dtype)


def init_store(
    capacity: int,
    num_envs: int,
    example: Transition,
    extras_example: dict[str, Any] | None = None,
    priority_period: int | None = None,
    sparse_example: dict[str, Any] | None = None,
    sparse_period: int | None = None,
) -> TapeStore:
    """An empty store for `capacity` transitions split evenly across `num_envs` streams.

    Args:
      capacity: total transitions kept (4M in the paper); each stream keeps
        `capacity // num_envs` (the remainder is unused).
      num_envs: number of env streams that `add` receives, the chunk's leading dim.
      example: one transition (a `Transition`, leaves without leading dims) giving the
        shapes and dtypes of the fields; its `mask` is ignored.
      extras_example: optional dict of per-step extras to store beside each transition
        (e.g. the recurrent carry before `obs[t]`), leaves without leading dims.
      priority_period: keep replay priorities (`rlmem.data.priority`) for units that are
        episodes (`0`) or sequences starting every `priority_period` steps; None: none.
      sparse_example, sparse_period: extras kept only at episode offsets `P, 2P, ...`
        (`P = sparse_period`; `rlmem.data.sparse_extras`), leaves without leading dims.

    Returns:
      An empty `TapeStore`.
    """
    positive_int("num_envs", num_envs)
    if not isinstance(capacity, int) or capacity < num_envs:
        raise ValueError(
            f"capacity must be an int >= num_envs ({num_envs}) so every stream has a slot, "
            f"got {capacity!r}"
        )
    missing = [f for f in _FIELDS if not hasattr(example, f)]
    if missing:
        raise ValueError(f"example must be a Transition-like pytree; it lacks fields {missing}")
    if extras_example is not None and not isinstance(extras_example, dict):
        raise ValueError(f"extras_example must be a dict or None, got {type(extras_example)}")
    c = capacity // num_envs
    lead = (num_envs, c)
    fields = {f: _leaf_zeros(getattr(example, f), lead) for f in _FIELDS}
    data = Transition(**fields, mask=jnp.zeros(lead, bool))
    extras = jax.tree.map(lambda x: _leaf_zeros(x, lead), dict(extras_example or {}))
    # Separate buffers (never one array twice) so the whole store can be donated to jit.
    return TapeStore(
        data=data,
        extras=extras,
        ep_id=jnp.zeros(lead, jnp.int32),
        ep_start=jnp.zeros(lead, jnp.int32),
        ep_lo=jnp.zeros((num_envs,), jnp.int32),
        ep_hi=jnp.zeros((num_envs,), jnp.int32),
        steps=jnp.zeros((num_envs,), jnp.int32),
        priorities=None if priority_period is None else pr.init_priorities(
            num_envs, c, priority_period),
        sparse=None if sparse_example is None else sp.init_sparse(
            sparse_example, num_envs, c, sparse_period),
    )


def _check_chunk(store: TapeStore, chunk: Transition, extras: dict | None,
                 sparse: dict | None = None) -> int:
    e, c = store.num_envs, store.stream_capacity
    shape = tuple(chunk.start.shape)
    if len(shape) != 2 or shape[0] != e:
        raise ValueError(f"chunk.start must have shape [num_envs={e}, T], got {shape}")
    t = shape[1]
    if t > c:
        raise ValueError(
            f"chunk length T={t} exceeds the per-stream capacity {c} (capacity // num_envs); "
            "use a larger capacity or shorter chunks"
        )
    for f in _FIELDS:
        want_shape = (e, t) + tuple(getattr(store.data, f).shape[2:])
        got_shape = tuple(jnp.shape(getattr(chunk, f)))
        if got_shape != want_shape:
            raise ValueError(f"chunk.{f} must have shape {want_shape}, got {got_shape}")
    want = set(store.extras)
    got = set(extras or {})
    if want != got:
        raise ValueError(
            f"extras keys must be {sorted(want)} (as in init_store), got {sorted(got)}"
        )
    want = set(store.sparse.data) if store.sparse is not None else set()
    if set(sparse or {}) != want:
        raise ValueError(f"sparse keys must be {sorted(want)} (as in init_store), got "
                         f"{sorted(sparse or {})}")
    return t


def add(
    store: TapeStore,
    chunk: Transition,
    extras: dict[str, jax.Array] | None = None,
    length: jax.Array | None = None,
    sparse: dict[str, jax.Array] | None = None,
) -> TapeStore:
    """Append a chunk to every stream, overwriting the oldest slots.

    Args:
      store: the store.
      chunk: `Transition` with leaves `[num_envs, T, ...]`, each stream in time order and
        continuing where the previous chunk of that stream stopped; `mask` is ignored.
      extras: dict with the same keys as `extras_example`, leaves `[num_envs, T, ...]`.
      length: `[num_envs]` int, real steps at the front of each stream's chunk (`0..T`);
        the rest is padding and is not written. None = all `T` steps.
      sparse: the sparse extras' values at every step (keys of `sparse_example`, leaves
        `[num_envs, T, ...]`); only the steps sequences start from are kept.

    Returns:
      The updated store. Cost O(num_envs * T), independent of capacity (with priorities,
      O(num_envs * T * log capacity) amortised, `rlmem.data.priority`).
    """
    t_len = _check_chunk(store, chunk, extras, sparse)
    e, c = store.num_envs, store.stream_capacity
    col = jnp.arange(t_len, dtype=jnp.int32)
    if length is None:
        length = jnp.full((e,), t_len, jnp.int32)
    length = jnp.clip(jnp.asarray(length, jnp.int32), 0, t_len)
    real = col[None, :] < length[:, None]  # [E, T]
    times = store.steps[:, None] + col[None, :]  # [E, T]
    slots = times % c
    rows = jnp.arange(e)[:, None]
    # The first transition ever written opens an episode, whatever its flag says.
    start = (jnp.asarray(chunk.start, bool) | (times == 0)) & real

    # Episodes whose first transition is overwritten now stop being valid, oldest first.
    held = real & (times - c >= 0)  # the slot already held data
    evicted = jnp.sum(store.data.start[rows, slots] & held, axis=1, dtype=jnp.int32)
    ep_lo = store.ep_lo + evicted

    # New episode starts go to the circular index; non-starts scatter out of bounds.
    opened = jnp.cumsum(start, axis=1, dtype=jnp.int32)  # [E, T]
    ep_id = store.ep_hi[:, None] + opened - 1  # the running episode if no start yet
    ring = jnp.where(start, ep_id % c, c)
    ep_start = store.ep_start.at[rows, ring].set(times, mode="drop")
    ep_hi = store.ep_hi + opened[:, -1]

    # Padding scatters out of bounds (slot c) and is dropped.
    dest = jnp.where(real, slots, c)

    def write(buf: jax.Array, x: jax.Array) -> jax.Array:
        return buf.at[rows, dest].set(jnp.asarray(x, buf.dtype), mode="drop")

    fields = {f: write(getattr(store.data, f), getattr(chunk, f)) for f in _FIELDS if f != "start"}
    data = Transition(
        **fields,
        start=write(store.data.start, start),
        mask=write(store.data.mask, jnp.ones((e, t_len), bool)),
    )
    new_extras = jax.tree.map(write, store.extras, dict(extras or {}))
    # A stream whose running episode has lost its start keeps ep_lo <= ep_hi.
    ep_lo = jnp.minimum(ep_lo, ep_hi)
    new = store.replace(
        data=data,
        extras=new_extras,
        ep_id=write(store.ep_id, ep_id),
        ep_start=ep_start,
        ep_lo=ep_lo,
        ep_hi=ep_hi,
        steps=store.steps + length,
    )
    episode_start = ep_start[rows, ep_id % c]  # [E, T]: of each written step's episode
    if store.sparse is not None:
        new = new.replace(sparse=sp.note_writes(store.sparse, sparse, times, episode_start,
                                                real))
    if store.priorities is None:
        return new
    pri, fresh = store.priorities, valid_from(new)
    if pri.period != pr.EPISODE_UNITS:
        # Sequence starts left in the surviving, older part of an evicted episode (its own
        # first slot was just overwritten): times before this add, so the clearing and the
        # writes below touch disjoint slots.
        pri = pr.clear_times(pri, jnp.maximum(valid_from(store), new.steps - c),
                             jnp.minimum(fresh, store.steps), c)
    # A written step of an episode that already lost its start opens no unit.
    pri = pr.note_writes(pri, jnp.broadcast_to(rows, slots.shape), slots, times,
                         episode_start, start, real, c, times >= fresh[:, None])
    return new.replace(priorities=pri)


def num_episodes(store: TapeStore) -> jax.Array:
    """`[E]` int32: valid episodes per stream (complete or still running)."""
    return store.ep_hi - store.ep_lo


def valid_from(store: TapeStore) -> jax.Array:
    """`[E]` int32: time of each stream's oldest valid transition (`steps[e]` if none)."""
    lo_start = store.ep_start[jnp.arange(store.num_envs), store.ep_lo % store.stream_capacity]
    return jnp.where(num_episodes(store) > 0, lo_start, store.steps)


def num_transitions(store: TapeStore) -> jax.Array:
    """`[E]` int32: transitions of valid episodes per stream (what the samplers can draw)."""
    return store.steps - valid_from(store)
