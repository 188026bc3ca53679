"""What the on-policy algorithms (PPO, PQN) share: one `learn` consumes the loop's rollout
`[E, T]`, cuts it into training units with the batching object (`cut_units`: whole env
streams for tapes, consecutive length-`L` pieces for segments), and runs
`update_epochs` x `num_minibatches` gradient steps over shuffled whole units, so time is
never strided or reordered inside a sequence.

Also the one place the full-context pass over the env streams lives (`stream_outputs`):
the network over each stream from the carry recorded at its `t = 0`, with `with_next`, so
bootstrap values after the last step of a stream (or a truncation) see the whole episode
prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from rlmem.agents import batching as bt
from rlmem.agents import unroll as ur
from rlmem.agents.base import RecurrentAgent, Rollout
from rlmem.agents.batching import SegmentBatching
from rlmem.checks import check_positive_ints

PyTree = Any


class OnPolicyAgent(RecurrentAgent):
    """A `RecurrentAgent` that learns from each rollout in epochs of minibatches of units.

    Subclasses set `update_epochs` and `num_minibatches` (via `init_on_policy`) and define
    `update(state, (units, carry)) -> (state, metrics)`.
    """

    serves_episode_rollouts = False  # it learns from fixed-length rollout windows

    def init_on_policy(self, algo: str, update_epochs: int, num_minibatches: int,
                       num_envs: int | None, rollout_steps: int | None) -> None:
        """Check and keep the epoch settings; refuse segment burn-in (units are cut from
        one rollout and have no preceding steps to burn in)."""
        if isinstance(self.batching, SegmentBatching) and self.batching.burn_in:
            raise ValueError(
                f"batching.burn_in={self.batching.burn_in} cannot be served by "
                f"algo.name={algo!r} ({algo.upper()} segments are cut from one rollout and "
                "have no burn-in); allowed: batching.burn_in=0"
            )
        if isinstance(self.batching, SegmentBatching) and self.batching.overlap_period:
            raise ValueError(
                f"batching.period={self.batching.period} cannot be served by "
                f"algo.name={algo!r} ({algo.upper()} cuts each rollout into consecutive "
                "pieces; overlapping sequences are a replay rule); allowed: "
                f"batching.period=null or {self.batching.segment_length}"
            )
        check_positive_ints(update_epochs=update_epochs, num_minibatches=num_minibatches)
        self.update_epochs, self.num_minibatches = update_epochs, num_minibatches
        if num_envs is not None and rollout_steps is not None:
            self.check_rollout(num_envs, rollout_steps)

    def check_rollout(self, num_envs: int, rollout_steps: int) -> int:
        """The training units of a rollout `[num_envs, rollout_steps]`; refuses a shape
        that cannot be cut into equal minibatches of them."""
        units = self.batching.num_units(num_envs, rollout_steps)
        if units % self.num_minibatches:
            per_stream = (" * rollout_steps / batching.segment_length"
                          if isinstance(self.batching, SegmentBatching) else "")
            raise ValueError(
                f"algo.num_minibatches={self.num_minibatches} must divide the {units} "
                f"training sequences per rollout (loop.num_envs{per_stream}); allowed: "
                f"{bt.divisors(units)}"
            )
        return units

    def minibatch_epochs(self, state: PyTree, data: tuple[PyTree, PyTree], key: jax.Array,
                         update: Callable | None = None) -> tuple[PyTree, dict]:
        """`update_epochs` passes; each shuffles the units of `data = (units, carry)`
        (leaves `[U, ...]`; carry may be None) and scans `update` over `num_minibatches`
        groups. Returns the state and the metrics averaged over every step."""
        update = update or self.update
        num_units = jax.tree.leaves(data[0])[0].shape[0]
        per_batch = num_units // self.num_minibatches

        def epoch(state: PyTree, key: jax.Array):
            order = jax.random.permutation(key, num_units)
            groups = jax.tree.map(
                lambda x: x[order].reshape((self.num_minibatches, per_batch) + x.shape[1:]),
                data,
            )
            return jax.lax.scan(update, state, groups)

        keys = jax.random.split(key, self.update_epochs)
        state, metrics = jax.lax.scan(epoch, state, keys)
        return state, jax.tree.map(jnp.mean, metrics)

    def stream_outputs(self, params: PyTree, rollout: Rollout) -> ur.Unrolled:
        """The network over each env stream `[E, T]` from its carry at `t = 0`, with the
        next-observation outputs (`out_next`) after each step's whole episode prefix;
        flattened to `[E * T]` rows."""
        carry0 = jax.tree.map(lambda c: c[:, 0], rollout.extras["carry"])
        return ur.unroll_segments(self.network, params, rollout.transition, carry0)
