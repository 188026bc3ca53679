"""How a network runs over a batch: one tape `[B]` or segments `[N, L]`.

This is the only place the two batching modes differ. Both return an `Unrolled`: the
network's outputs and the transitions, flattened to `[M]` with a `mask`, so DQN's and PPO's
losses never see a time axis and serve both modes unchanged.

* **tape** (TBB): the batch is one tape of whole episodes concatenated; the memory model
  runs over it once, `start` flags cutting the episodes apart. `M = B`.
* **segment** (SBB): the batch is `N` zero-padded segments of length `L`; the network is
  vmapped over segments, each starting from a zero (identity) state or a stored one. The
  first `burn_in` steps of every row only warm the state up (R2D2): they run under
  `stop_gradient` and are dropped from the output. `M = N * (L - burn_in)`.

In both modes `out_next[t]` comes from `with_next`: the next observation is combined with
the whole prefix of its episode that the batch holds, never with `next_obs` alone.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import struct

from rlmem.agents.networks import RecurrentNetwork
from rlmem.data.segment_sampler import sample_segments
from rlmem.data.tape import TapeStore
from rlmem.data.tape_sampler import sample_tape
from rlmem.types import Transition

PyTree = Any
BatchingMode = Literal["tape", "segment"]
BATCHING_MODES = ("tape", "segment")
INITIAL_STATES = ("zero", "stored")


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


def check_mode(batching: str, initial_state: str = "zero", burn_in: int = 0) -> None:
    """Raise a clear error for an unknown batching mode, initial state or bad burn-in."""
    if batching not in BATCHING_MODES:
        raise ValueError(f"batching must be one of {BATCHING_MODES}, got {batching!r}")
    if initial_state not in INITIAL_STATES:
        raise ValueError(f"initial_state must be one of {INITIAL_STATES}, got {initial_state!r}")
    if burn_in < 0:
        raise ValueError(f"burn_in must be >= 0, got {burn_in!r}")
    if batching == "tape" and (burn_in or initial_state != "zero"):
        raise ValueError(
            "burn_in and initial_state='stored' only apply to batching='segment'; got "
            f"batching='tape', burn_in={burn_in!r}, initial_state={initial_state!r}"
        )


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


def unroll_segments(
    network: RecurrentNetwork,
    params: PyTree,
    batch: Transition,
    carry: PyTree | None = None,
    burn_in: int = 0,
    with_next: bool = True,
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

    def one(obs, start, next_obs, h):
        if burn_in:
            frozen = jax.lax.stop_gradient(params)
            _, h = network.apply(frozen, obs[:burn_in], start[:burn_in], h)
            h = jax.lax.stop_gradient(h)
        return _run(
            network, params, obs[burn_in:], start[burn_in:], h, next_obs[burn_in:], with_next
        )

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


def sample_tape_batch(
    store: TapeStore, key: jax.Array, batch_size: int
) -> tuple[Transition, None]:
    """A tape of `batch_size` whole-episode transitions `[B]`; no initial carry needed."""
    return sample_tape(store, key, batch_size).transition, None


def sample_segment_batch(
    store: TapeStore,
    key: jax.Array,
    num_segments: int,
    segment_length: int,
    burn_in: int = 0,
    stored_state: bool = False,
) -> tuple[Transition, PyTree]:
    """`num_segments` rows of `burn_in + segment_length` steps and their initial carries.

    Returns `(Transition [N, burn_in + L], carry)`: the transition's `mask` is the
    sampler's learn mask (real data outside the burn-in), `carry` the stored
    `extras["carry"]` at each row's first valid step (leaves `[N, ...]`) or None (zeros).
    Rows that start at an episode's first step have `start` True there, which discards
    whatever carry they are given.
    """
    batch = sample_segments(store, key, num_segments, segment_length, burn_in)
    carry = batch.initial_extras["carry"] if stored_state else None
    return batch.transition.replace(mask=batch.learn_mask), carry
