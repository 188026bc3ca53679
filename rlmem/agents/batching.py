"""The batching mode as a value: tape (TBB) or segments (SBB), chosen once per run.

`TapeBatching()` and `SegmentBatching(segment_length, burn_in, initial_state, period)` are
frozen, validated when built (from the config's `batching.*`, spelled as in the YAML), and
the only place below `rlmem.config` that knows the mode. An algorithm holds one and asks
it to sample a replay batch (uniform or prioritised), to unroll its network over a batch
(`rlmem.agents.unroll`), whether acting must record carries (`stores_carry`), and how a
rollout is cut into learning units (PPO, PQN).

* **tape** (TBB): a batch is one tape of whole episodes concatenated, `[B]`.
* **segment** (SBB): a batch is `N = B // L` zero-padded sequences of length `L`, each
  from a zero or a stored initial state, optionally after a burn-in and overlapping every
  `period` steps (R2D2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import jax

from rlmem.agents.networks import RecurrentNetwork, keeps_states
from rlmem.agents.unroll import (
    NEXT_STATES,
    Unrolled,
    unroll_segments,
    unroll_tape,
    unroll_tape_shifted,
)
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
        """The preset's name (`batching=segment_l<L>`) for the paper's SBB; what sets an
        R2D2-style arm apart is added, so no two batchings share a name: `_b<B>` a burn-in,
        `_p<P>` overlapping sequences, `_stored` the stored initial state
        (`batching=r2d2_l20`: `segment_l20_b10_p10_stored`). For run names, W&B groups and
        the lines of `scripts/plot_runs.py --label batching`."""
        label = f"segment_l{self.segment_length}"
        if self.burn_in:
            label += f"_b{self.burn_in}"
        if self.overlap_period is not None:
            label += f"_p{self.period}"
        return label + ("_stored" if self.stores_carry else "")

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
