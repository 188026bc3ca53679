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
the whole prefix of its episode that the batch holds, never with `next_obs` alone. Segments
also offer the paper's reference rule as an ablation (`next_state="segment_restart"`, see
`NEXT_STATES`).

`unroll_tape_shifted` is the tape mode's cheaper way to the same `out_next` when only some
rows need it (DQN's online argmax): inside an episode the state after `next_obs[t]` *is*
the tape's state after `obs[t + 1]`, so `out_next[t] = out[t + 1]` there, and only the
other rows (episode and tape ends) run the network on `next_obs`.

**The batching objects.** `TapeBatching()` and `SegmentBatching(segment_length, burn_in,
initial_state)` are the batching mode as a value: frozen, validated when built (from the
config's `batching.*`, spelled as in the YAML), and the only place below `rlmem.config`
that knows the mode. An algorithm holds one and asks it to sample a replay batch, to
unroll its network over a batch, whether acting must record carries (`stores_carry`), and
how a rollout is cut into learning units (PPO).

(Over 400 lines on purpose: this is the one place the modes differ; the two objects sit
next to the unroll and sampling functions they dispatch to.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from rlmem.agents.networks import RecurrentNetwork, keeps_states
from rlmem.data.prioritised_sampler import (
    Draws,
    sample_segments_prioritised,
    sample_tape_prioritised,
)
from rlmem.data.priority import EPISODE_UNITS
from rlmem.data.segment_sampler import SegmentBatch, check_segment_args, sample_segments
from rlmem.data.tape import TapeStore
from rlmem.data.tape_sampler import sample_tape
from rlmem.types import Transition

PyTree = Any
INITIAL_STATES = ("zeros", "stored")  # a segment's first carry: zero state | recorded (R2D2)
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
    period: int | None = None,
) -> tuple[Transition, PyTree]:
    """`num_segments` rows of `burn_in + segment_length` steps and their initial carries,
    sequences starting every `period` steps of an episode (None: `segment_length`).

    Returns `(Transition [N, burn_in + L], carry)`: the transition's `mask` is the
    sampler's learn mask (real data outside the burn-in), `carry` the stored
    `extras["carry"]` at each row's first valid step (leaves `[N, ...]`) or None (zeros).
    Rows that start at an episode's first step have `start` True there, which discards
    whatever carry they are given.
    """
    batch = sample_segments(store, key, num_segments, segment_length, burn_in, period)
    return _learning_rows(batch, stored_state)


def _learning_rows(batch: SegmentBatch, stored_state: bool) -> tuple[Transition, PyTree]:
    """A segment batch as the unroll takes it: the learn mask as `mask`, and the stored
    carries at the rows' first valid steps (or None: zeros)."""
    carry = batch.initial_extras["carry"] if stored_state else None
    return batch.transition.replace(mask=batch.learn_mask), carry


def divisors(n: int, shown: int = 12) -> str:
    """`1, 2, 3, ...`: the allowed values of a size that must divide `n`, for messages."""
    found = [d for d in range(1, n + 1) if n % d == 0]
    return ", ".join(map(str, found[:shown])) + (", ..." if len(found) > shown else "")


# ---------------------------------------------------------------------------------------
# the batching mode as a value
# ---------------------------------------------------------------------------------------
# Rule messages spell the config keys (`batching.*`, `algo.*`): these objects are built
# from them, and `rlmem.config` passes the messages on unchanged.
@dataclass(frozen=True)
class TapeBatching:
    """Tape-based batching (TBB): one tape of whole episodes, the memory run once over it.

    Learning units of a rollout `[E, T]` are the env streams themselves (full-rollout
    BPTT from the carry recorded at `t = 0`).
    """

    mode: ClassVar[str] = "tape"
    stores_carry: ClassVar[bool] = False  # a tape starts at an episode start: no carry
    next_states: ClassVar[tuple[str, ...]] = ("prefix",)  # the `next_state` rules it serves

    @property
    def label(self) -> str:
        """The preset's name (`batching=tape`), for run names and W&B groups."""
        return "tape"

    def sample(self, store: TapeStore, key: jax.Array, batch_size: int
               ) -> tuple[Transition, PyTree]:
        """A tape of `batch_size` transitions `[B]` and its initial carry (None: zeros)."""
        return sample_tape_batch(store, key, batch_size)

    priority_period: ClassVar[int] = EPISODE_UNITS  # prioritised replay draws episodes
    carry_period: ClassVar[None] = None  # no stored carries

    def sample_prioritised(self, store: TapeStore, key: jax.Array, batch_size: int
                           ) -> tuple[Transition, None, Draws]:
        """A tape of whole episodes drawn by priority `[B]`, no carry, and its `Draws`
        (`rlmem.data.prioritised_sampler`)."""
        batch, draws = sample_tape_prioritised(store, key, batch_size)
        return batch.transition, None, draws

    @staticmethod
    def unroll_mask(batch: Transition) -> jax.Array:
        """`[M]` the learning mask of a sampled batch as `unroll` flattens it."""
        return batch.mask

    def unroll(self, network: RecurrentNetwork, params: PyTree, batch: Transition,
               carry: PyTree | None, with_next: bool = True,
               next_state: str = "prefix") -> Unrolled:
        """`unroll_tape`: `M = B`."""
        check_next_state(self, next_state)
        return unroll_tape(network, params, batch, carry, with_next)

    def unroll_greedy_next(self, network: RecurrentNetwork, params: PyTree,
                           batch: Transition, carry: PyTree | None,
                           wanted: jax.Array, next_state: str = "prefix") -> Unrolled:
        """`unroll` whose `out_next` is only read at `wanted` rows and needs no gradient
        (Double DQN's online argmax): shifted from the tape itself for memoroids."""
        check_next_state(self, next_state)
        if keeps_states(network):
            return unroll_tape_shifted(network, params, batch, carry, wanted=wanted)
        return self.unroll(network, params, batch, carry)

    def num_units(self, num_envs: int, rollout_steps: int) -> int:
        """Learning units per rollout `[num_envs, rollout_steps]`: one per env stream."""
        return num_envs

    def cut_units(self, data: PyTree, stored_carry: PyTree) -> tuple[PyTree, PyTree]:
        """Rollout leaves `[E, T, ...]` -> units `[E, T, ...]` and the carries recorded at
        each stream's `t = 0` (leaves `[E, ...]`; exact: the stream's true state)."""
        return data, jax.tree.map(lambda c: c[:, 0], stored_carry)


@dataclass(frozen=True)
class SegmentBatching:
    """Segment-based batching (SBB): `batch_size // segment_length` zero-padded segments.

    Attributes:
      segment_length: `L`, the steps of a segment that carry a loss.
      burn_in: leading steps replayed before each segment without gradient (R2D2); 0 is
        the paper's SBB.
      initial_state: "zeros" (the paper's SBB) or "stored" (the carry recorded while
        acting, R2D2): each segment's first state.
      period: steps between replayed sequences' starts in an episode, in `[1, L]`; None
        is `L` (aligned segments, the paper's SBB), R2D2 overlaps them with `L / 2`
        (`rlmem.data.segment_sampler`). Replay only: on-policy pieces never overlap.
    """

    segment_length: int
    burn_in: int = 0
    initial_state: str = "zeros"
    period: int | None = None
    mode: ClassVar[str] = "segment"
    next_states: ClassVar[tuple[str, ...]] = NEXT_STATES

    def __post_init__(self):
        check_segment_args(self.segment_length, self.burn_in, self.period, "batching.")
        if self.initial_state not in INITIAL_STATES:
            raise ValueError(
                f"initial_state must be one of {INITIAL_STATES}, got {self.initial_state!r}"
            )

    @property
    def label(self) -> str:
        """The preset's name (`batching=segment_l<L>`; `_p<P>` added for overlapping
        sequences), for run names and W&B groups."""
        label = f"segment_l{self.segment_length}"
        return label if self.overlap_period is None else f"{label}_p{self.period}"

    @property
    def overlap_period(self) -> int | None:
        """The start period when sequences overlap (`period < L`), else None (aligned)."""
        return self.period if self.period not in (None, self.segment_length) else None

    @property
    def stores_carry(self) -> bool:
        """Acting records the carry before each step (`extras["carry"]`) for the segments'
        stored initial states."""
        return self.initial_state == "stored"

    def num_segments(self, batch_size: int) -> int:
        """Segments per replay batch of `batch_size` transitions; at least one fits."""
        if batch_size < self.segment_length:
            raise ValueError(
                f"algo.batch_size={batch_size} cannot hold one segment of "
                f"batching.segment_length={self.segment_length}; need algo.batch_size >= "
                f"{self.segment_length}"
            )
        return batch_size // self.segment_length

    def sample(self, store: TapeStore, key: jax.Array, batch_size: int
               ) -> tuple[Transition, PyTree]:
        """`Transition [N, burn_in + L]` and the segments' initial carries (None: zeros)."""
        return sample_segment_batch(store, key, self.num_segments(batch_size),
                                    self.segment_length, self.burn_in, self.stores_carry,
                                    self.period)

    @property
    def carry_period(self) -> int | None:
        """Stored carries are only read at episode offsets that are multiples of this
        (the start period, when the burn-in is a multiple of it): the store keeps them
        there only (`rlmem.data.sparse_extras`). None: kept at every step."""
        period = self.priority_period
        return period if self.stores_carry and self.burn_in % period == 0 else None

    @property
    def priority_period(self) -> int:
        """Prioritised replay draws sequences starting every this many steps."""
        return self.period or self.segment_length

    def sample_prioritised(self, store: TapeStore, key: jax.Array, batch_size: int
                           ) -> tuple[Transition, PyTree, Draws]:
        """`sample`'s layout with sequences drawn by priority, and their `Draws`."""
        batch, draws = sample_segments_prioritised(
            store, key, self.num_segments(batch_size), self.segment_length, self.burn_in,
            self.period)
        return (*_learning_rows(batch, self.stores_carry), draws)

    def unroll_mask(self, batch: Transition) -> jax.Array:
        """`[M]` the learning mask of a sampled batch as `unroll` flattens it."""
        return batch.mask[:, self.burn_in:].reshape(-1)

    def unroll(self, network: RecurrentNetwork, params: PyTree, batch: Transition,
               carry: PyTree | None, with_next: bool = True,
               next_state: str = "prefix") -> Unrolled:
        """`unroll_segments` with this burn-in: `M = N * L`."""
        return unroll_segments(network, params, batch, carry, self.burn_in, with_next,
                               next_state)

    def unroll_greedy_next(self, network: RecurrentNetwork, params: PyTree,
                           batch: Transition, carry: PyTree | None,
                           wanted: jax.Array, next_state: str = "prefix") -> Unrolled:
        """`unroll` (segments have no cheaper way to their next-state outputs)."""
        return self.unroll(network, params, batch, carry, next_state=next_state)

    def num_units(self, num_envs: int, rollout_steps: int) -> int:
        """Learning units per rollout: `rollout_steps / L` consecutive pieces per stream."""
        if rollout_steps % self.segment_length:
            raise ValueError(
                f"batching.segment_length={self.segment_length} must divide the rollout "
                f"length loop.rollout_steps={rollout_steps} (default: env.max_episode_length)"
                f"; allowed: {divisors(rollout_steps)}"
            )
        return num_envs * (rollout_steps // self.segment_length)

    def cut_units(self, data: PyTree, stored_carry: PyTree) -> tuple[PyTree, PyTree]:
        """Rollout leaves `[E, T, ...]` -> pieces `[E * T / L, L, ...]` (one stream's
        consecutive) and their first carries: recorded (`stored`) or None (zeros)."""
        num_envs, length = jax.tree.leaves(data)[0].shape[:2]
        pieces = self.num_units(num_envs, length)
        seg = self.segment_length
        data = jax.tree.map(lambda x: x.reshape((pieces, seg) + x.shape[2:]), data)
        if not self.stores_carry:
            return data, None
        return data, jax.tree.map(lambda c: c[:, ::seg].reshape((pieces,) + c.shape[2:]),
                                  stored_carry)


Batching = TapeBatching | SegmentBatching
TAPE = TapeBatching()  # the default batching (stateless: one instance serves all)


def check_next_state(batching: Batching, next_state: str) -> None:
    """Refuse a next-state rule the batching mode cannot serve (`algo.next_state`)."""
    if next_state not in NEXT_STATES:
        raise ValueError(
            f"algo.next_state={next_state!r} is not allowed; allowed: {', '.join(NEXT_STATES)}"
        )
    if next_state not in batching.next_states:
        raise ValueError(
            f"algo.next_state={next_state!r} needs segment batching (it restarts each "
            f"segment's next observations from the segment's initial state), got "
            f"batching.mode={batching.mode!r}; allowed with batching.mode="
            f"{batching.mode!r}: {', '.join(batching.next_states)}"
        )
