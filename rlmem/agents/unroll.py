"""How a network runs over a batch: one tape `[B]` or segments `[N, L]`.

Both unrolls return an `Unrolled`: the network's outputs and the transitions, flattened to
`[M]` with a `mask`, so DQN's, PQN's and PPO's losses never see a time axis and serve both
modes unchanged (`masked_mean` averages over the real rows).

* **tape** (TBB): the batch is one tape of whole episodes concatenated; the memory model
  runs over it once, `start` flags cutting the episodes apart. `M = B`.
* **segment** (SBB): the batch is `N` zero-padded segments of length `L`; the network is
  vmapped over segments, each starting from a zero (identity) state or a stored one. The
  first `burn_in` steps of every row only warm the state up (R2D2): they run under
  `stop_gradient` and are dropped from the output. `M = N * (L - burn_in)`.

In both modes `out_next[t]` comes from `with_next`: the next observation is combined with
the whole prefix of its episode that the batch holds, never with `next_obs` alone. Segments
also offer the paper's reference rule as an ablation (`next_state="segment_restart"`, see
`NEXT_STATES`).

`unroll_tape_shifted` is the tape mode's cheaper way to the same `out_next` when only some
rows need it (DQN's online argmax): inside an episode the state after `next_obs[t]` *is*
the tape's state after `obs[t + 1]`, so `out_next[t] = out[t + 1]` there, and only the
other rows (episode and tape ends) run the network on `next_obs`.

Which unroll a run uses is decided once, by its batching object (`rlmem.agents.batching`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from rlmem.agents.networks import RecurrentNetwork, keeps_states
from rlmem.types import Transition

PyTree = Any
# Where a next-state output's recurrent state comes from (DQN's `algo.next_state`):
# "prefix" (the default) continues the batch's episode prefix with `next_obs`;
# "segment_restart" is the paper's reference SBB: a second pass over the row's `next_obs`
# sequence from the row's initial state (each episode's first observation never enters it).
NEXT_STATES = ("prefix", "segment_restart")


@struct.dataclass
class Unrolled:
    """A network's outputs over a batch, flattened to `[M]` transitions.

    Attributes:
      out: the network output per transition, leaves `[M, ...]`.
      out_next: the output for each `next_obs` after its episode prefix (leaves `[M, ...]`),
        or None when not asked for.
      transition: the transitions the outputs belong to, every field `[M, ...]`; its `mask`
        says which are real (padding and burn-in are already False or removed).
    """

    out: PyTree
    out_next: PyTree
    transition: Transition


def _run(
    network: RecurrentNetwork,
    params: PyTree,
    obs: jax.Array,
    start: jax.Array,
    carry: PyTree,
    next_obs: jax.Array,
    with_next: bool,
) -> tuple[PyTree, PyTree]:
    """One sequence: obs, next_obs [T, F], start [T] -> (out [T, ...], out_next or None)."""
    if with_next:
        out, out_next, _ = network.apply(
            params, obs, start, carry, next_obs, method=RecurrentNetwork.with_next
        )
        return out, out_next
    out, _ = network.apply(params, obs, start, carry)
    return out, None


def unroll_tape(
    network: RecurrentNetwork,
    params: PyTree,
    batch: Transition,
    carry: PyTree | None = None,
    with_next: bool = True,
) -> Unrolled:
    """Run `network` once over a tape.

    Args:
      network: the network (keeps the memory call contract).
      params: its parameters.
      batch: a tape, every field `[B, ...]` (whole episodes concatenated, `start` marking
        each episode's first step).
      carry: recurrent state before `batch.obs[0]`; None for the zero state (a tape that
        begins with `start[0] = True` ignores it anyway).
      with_next: also compute `out_next` (for TD targets / bootstraps).

    Returns:
      `Unrolled` with `M = B`.
    """
    if batch.start.ndim != 1:
        raise ValueError(
            f"a tape batch has fields [B, ...]; got start of shape {batch.start.shape}"
        )
    if carry is None:
        carry = network.initialize_carry()
    out, out_next = _run(
        network, params, batch.obs, batch.start, carry, batch.next_obs, with_next
    )
    return Unrolled(out=out, out_next=out_next, transition=batch)


SHIFTED_CHUNK = 32  # rows computed from next_obs per pass of `unroll_tape_shifted`


def unroll_tape_shifted(
    network: RecurrentNetwork,
    params: PyTree,
    batch: Transition,
    carry: PyTree | None = None,
    wanted: jax.Array | None = None,
    chunk: int = SHIFTED_CHUNK,
) -> Unrolled:
    """`unroll_tape` whose `out_next` reuses `out` wherever it can; no gradient in it.

    Row `t + 1` continues row `t`'s episode when `start[t + 1]` is False and
    `obs[t + 1] == next_obs[t]` (every feature); the state after `next_obs[t]` is then the
    tape's state after `obs[t + 1]`, so `out_next[t] = out[t + 1]` (the same computation,
    done once). The other rows of `wanted` (each episode's last row in the tape, the tape's
    last row, rows whose `next_obs` differs) get `network.next_from_states` on their state
    and `next_obs`, `chunk` rows per pass: one pass always, more in a `while_loop` only when
    more rows need it. Rows outside `wanted` hold `out[t + 1]` (or `out[0]` at the end):
    only use `out_next` where `wanted`.

    `out` is differentiable in `params`; `out_next` is not (`stop_gradient`): for a
    greedy choice such as Double DQN's `argmax_a Q_online(s', a)`.

    Args:
      network: a network whose memory keeps per-step states (`keeps_states`).
      params, batch, carry: as `unroll_tape`.
      wanted: `[B]` bool, the rows whose `out_next` is used (None: all).
      chunk: rows computed from `next_obs` per pass (static).

    Returns:
      `Unrolled` with `M = B`.
    """
    if batch.start.ndim != 1:
        raise ValueError(
            f"a tape batch has fields [B, ...]; got start of shape {batch.start.shape}"
        )
    if not keeps_states(network):
        raise ValueError(
            f"unroll_tape_shifted needs a memory with per-step states (a memoroid), got "
            f"{type(network.memory).__name__}; use unroll_tape"
        )
    if carry is None:
        carry = network.initialize_carry()
    out, states = network.apply(
        params, batch.obs, batch.start, carry, method=RecurrentNetwork.with_states
    )
    length = batch.start.shape[0]
    chunk = max(1, min(chunk, length))
    flat = lambda x: x.reshape(length, -1)
    same_obs = jnp.all(flat(batch.next_obs)[:-1] == flat(batch.obs)[1:], axis=-1)
    continues = jnp.concatenate([~batch.start[1:] & same_obs, jnp.zeros((1,), bool)])
    need = ~continues if wanted is None else wanted & ~continues

    frozen = jax.lax.stop_gradient(params)
    states = jax.lax.stop_gradient(states)
    shifted = jax.tree.map(lambda o: jnp.roll(jax.lax.stop_gradient(o), -1, axis=0), out)
    # Rows to compute, in order, padded with `length` (dropped by the scatter below).
    rows_all = jnp.nonzero(need, size=length + chunk, fill_value=length)[0]
    count = jnp.sum(need, dtype=jnp.int32)

    def fill(first: jax.Array, acc: PyTree) -> PyTree:
        rows = jax.lax.dynamic_slice(rows_all, (first,), (chunk,))
        safe = jnp.minimum(rows, length - 1)
        values = network.apply(
            frozen,
            jax.tree.map(lambda s: s[safe], states),
            batch.next_obs[safe],
            method=RecurrentNetwork.next_from_states,
        )
        return jax.tree.map(lambda a, v: a.at[rows].set(v, mode="drop"), acc, values)

    out_next = fill(jnp.zeros((), jnp.int32), shifted)
    _, out_next = jax.lax.while_loop(
        lambda c: c[0] < count,
        lambda c: (c[0] + chunk, fill(c[0], c[1])),
        (jnp.asarray(chunk, jnp.int32), out_next),
    )
    return Unrolled(out=out, out_next=out_next, transition=batch)


def unroll_segments(
    network: RecurrentNetwork,
    params: PyTree,
    batch: Transition,
    carry: PyTree | None = None,
    burn_in: int = 0,
    with_next: bool = True,
    next_state: str = "prefix",
) -> Unrolled:
    """Run `network` over each of `N` segments (vmapped) and flatten.

    Args:
      network: the network.
      params: its parameters.
      batch: segments, every field `[N, L, ...]`, zero-padded with `mask` False.
      carry: recurrent state before each segment's first step, leaves `[N, ...]` (stored
        states); None starts every segment from the zero (identity) state.
      burn_in: leading steps of each row replayed only to warm the state up: no gradient
        reaches the parameters through them and they are removed from the result.
      with_next: also compute `out_next`.
      next_state: "prefix" (`with_next` over the row) or "segment_restart" (the network
        run again over the row's `next_obs` as if it were the observations, same `start`
        flags, same initial carry and burn-in: the paper's reference code).

    Returns:
      `Unrolled` with `M = N * (L - burn_in)`, rows kept in order (segment-major).
    """
    if batch.start.ndim != 2:
        raise ValueError(
            f"a segment batch has fields [N, L, ...]; got start of shape {batch.start.shape}"
        )
    num, length = batch.start.shape
    if not 0 <= burn_in < length:
        raise ValueError(f"burn_in must be in [0, L={length}), got {burn_in!r}")
    carry_axis = 0
    if carry is None:
        carry, carry_axis = network.initialize_carry(), None

    if next_state not in NEXT_STATES:
        raise ValueError(f"next_state must be one of {NEXT_STATES}, got {next_state!r}")
    restart = with_next and next_state == "segment_restart"

    def burned(obs, start, h):
        if burn_in:
            frozen = jax.lax.stop_gradient(params)
            _, h = network.apply(frozen, obs[:burn_in], start[:burn_in], h)
            h = jax.lax.stop_gradient(h)
        return h

    def one(obs, start, next_obs, h0):
        h = burned(obs, start, h0)
        out, out_next = _run(network, params, obs[burn_in:], start[burn_in:], h,
                             next_obs[burn_in:], with_next and not restart)
        if restart:
            h_next = burned(next_obs, start, h0)
            out_next, _ = _run(network, params, next_obs[burn_in:], start[burn_in:], h_next,
                               next_obs[burn_in:], False)
        return out, out_next

    out, out_next = jax.vmap(one, in_axes=(0, 0, 0, carry_axis))(
        batch.obs, batch.start, batch.next_obs, carry
    )
    kept = num * (length - burn_in)

    def flat(x: jax.Array) -> jax.Array:
        return x.reshape((kept,) + x.shape[2:])

    transition = jax.tree.map(lambda x: flat(x[:, burn_in:]), batch)
    return Unrolled(
        out=jax.tree.map(flat, out),
        out_next=None if out_next is None else jax.tree.map(flat, out_next),
        transition=transition,
    )


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of `x` over entries where `mask` is True (0 when none are). x, mask: [M]."""
    mask = mask.astype(x.dtype)
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)
