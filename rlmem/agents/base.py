"""The contract between an algorithm and the training loop.

An algorithm is a static object (hyperparameters, network, batching mode) built once from
the config; everything that changes during training lives in its `TrainState` pytree, so
the loop can `lax.scan` over iterations and `jax.vmap` over seeds.

One loop iteration (rlmem/loop.py):

    action, carry, extras = algo.act(state, obs, start, carry, key)     # per env step, T times
    ... the loop steps the envs and records a Rollout [num_envs, T] ...
    state, metrics = algo.learn(state, rollout, key)                     # once per iteration

The loop owns the envs, the recurrent carries of the acting policy and the progress
counters; the algorithm owns parameters, optimiser, replay store (DQN) and exploration.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
from flax import struct

from rlmem.types import Transition

PyTree = Any


@struct.dataclass
class Rollout:
    """What the loop collected in one iteration; every leaf is `[num_envs, T, ...]`.

    Attributes:
      transition: the env transitions in time order per env stream (rlmem/types.py).
      extras: what `act` returned per step (e.g. PPO's value and log-prob, or the recurrent
        carry before `obs[t]` for segment batching with stored initial state).
    """

    transition: Transition
    extras: dict[str, jax.Array]


class Algorithm(Protocol):
    """What the loop needs from DQN, PPO, or any algorithm added later."""

    def init(self, key: jax.Array) -> PyTree:
        """A fresh TrainState (params, target params, optimiser state, replay, counters)."""

    def initial_carry(self, num_envs: int) -> PyTree:
        """The acting policy's recurrent state for `num_envs` fresh envs: leaves `[N, ...]`."""

    def act(
        self, state: PyTree, obs: jax.Array, start: jax.Array, carry: PyTree, key: jax.Array
    ) -> tuple[jax.Array, PyTree, dict[str, jax.Array]]:
        """Exploring action. obs: [N, F], start: [N] bool -> action [N] int32, carry, extras."""

    def act_greedy(
        self, state: PyTree, obs: jax.Array, start: jax.Array, carry: PyTree
    ) -> tuple[jax.Array, PyTree]:
        """Evaluation action (greedy / mode). obs: [N, F], start: [N] -> action [N], carry."""

    def learn(
        self, state: PyTree, rollout: Rollout, key: jax.Array
    ) -> tuple[PyTree, dict[str, jax.Array]]:
        """Consume one iteration's rollout: store and/or update. Metrics are scalars."""
