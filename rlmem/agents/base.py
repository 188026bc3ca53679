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

What the implementations put in `extras` (the loop stacks them into `Rollout.extras`, leaves
`[num_envs, T, ...]`, and must pass them back unchanged):

* `DQN` (rlmem/agents/dqn.py): `{}`; with `SegmentBatching(..., initial_state="stored")`,
  `{"carry": state before obs[t]}`, which `learn` writes into the replay store.
* `PPO` (rlmem/agents/ppo.py): `{"value": [N], "log_prob": [N], "carry": state before
  obs[t]}`; `learn` takes each stream's (or segment's) initial state from `carry`.

Both algorithms are plain Python objects holding only static settings (hashable by
identity), so they can be closed over in `jax.jit`; every array lives in the TrainState
(`DQNState`, `PPOState`). Their `learn` metrics are scalar arrays with a fixed set of keys.
Two optional conventions shape how the loop summarises them per evaluation period: a
`"training"` metric (1 when the call ran updates) restricts the averages to the iterations
that trained, and an attribute `period_end_metrics` (names) marks counters and schedules,
reported at the period's end rather than averaged.

An algorithm whose updates follow a schedule (DQN's random phase) may split `learn` into
`wants_update(state) -> [] bool`, `observe(state, rollout) -> state` (store, count; no
learning) and `update_phase(state, key, training, may_update: bool)`: the loop then
evaluates `wants_update` for every seed, observes unconditionally, and compiles the
updates only into the branch it takes when any seed wants one, so vmapped seeds never pay
for updates nobody runs (and the store is never written inside a `cond`, which would copy
it).

With `loop.rollout="episode"` a rollout's envs end their episodes at different steps:
every stream's real steps are a prefix of its `T` and `transition.mask` is False after
it; `learn` must ignore the masked steps (DQN stores only the prefix).
DQN's *epoch* is one completed episode (see rlmem/agents/dqn.py): `state.epochs` counts the
episode ends in the rollouts it stored and keys the exploration schedule.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Protocol, Self

import jax
import jax.numpy as jnp
from flax import struct

from rlmem.agents.batching import Batching, SegmentBatching, TapeBatching
from rlmem.agents.networks import (
    RecurrentNetwork,
    broadcast_carry,
    init_params,
    step_network,
)
from rlmem.agents.optim import SWEEPABLE_OPTIM, OptimSettings, gradient_step
from rlmem.checks import check_positive_ints
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

    def hparams(self) -> dict[str, float]:
        """The hyper-parameters that are numbers inside the compiled program, by name."""

    def bind(self, values: Mapping[str, jax.Array]) -> Any:
        """A copy with (some of) `hparams` replaced by traced scalars."""


class RecurrentAgent:
    """What every algorithm here shares, so that an algorithm module holds only its loss,
    its `learn` and its state.

    A static object (settings and the network, no arrays): the recurrent network over the
    memory model, the batching (`rlmem.agents.batching`), the optimiser built from
    `OptimSettings`, and the pieces every algorithm uses the same way: parameter init,
    the acting carry, greedy acting and one gradient step on `self.loss`.

    Subclasses build `network` from their head, call `super().__init__`, and define
    `policy_logits(out)` (what greedy acting maximises: Q values or the policy's logits)
    and `loss(params, *batch) -> (loss [], metrics)`.
    """

    serves_episode_rollouts = True  # learns from rollouts of whole episodes (loop.rollout)
    # Hyper-parameters that are plain numbers inside the compiled program, named as their
    # config keys below `algo.`: a vectorised sweep (`sweep.vmap`, rlmem.sweep) may vary
    # them per run in one compiled program. Each is an attribute of the agent (`optim.X`:
    # a field of `self.optim`); subclasses add theirs.
    sweepable: tuple[str, ...] = tuple(f"optim.{name}" for name in SWEEPABLE_OPTIM)

    def __init__(self, network: RecurrentNetwork, obs_size: int, num_actions: int,
                 batching: Batching, optim: OptimSettings):
        check_positive_ints(obs_size=obs_size, num_actions=num_actions)
        if not isinstance(batching, TapeBatching | SegmentBatching):
            raise ValueError(
                "batching must be rlmem.agents.batching.TapeBatching() or "
                f"SegmentBatching(...), got {batching!r}"
            )
        self.network, self.obs_size, self.num_actions = network, obs_size, num_actions
        self.batching, self.optim = batching, optim
        self.optimizer = optim.make()

    def hparams(self) -> dict[str, float]:
        """The `sweepable` hyper-parameters' values, by name (`"gamma"`,
        `"optim.learning_rate"`, ...)."""
        return {name: float(self._hparam(name)) for name in self.sweepable}

    def _hparam(self, name: str) -> Any:
        if name.startswith("optim."):
            return getattr(self.optim, name.removeprefix("optim."))
        return getattr(self, name)

    def bind(self, values: Mapping[str, jax.Array]) -> Self:
        """A copy of this agent whose `sweepable` hyper-parameters are `values` (scalars,
        traced inside the compiled loop). The loop binds every run's values from its
        `LoopState`, so one compiled program serves every member of a vectorised sweep,
        and a run outside a sweep takes the very same path with its config's values."""
        unknown = sorted(set(values) - set(self.sweepable))
        if unknown:
            raise ValueError(f"{type(self).__name__} cannot bind {unknown}; its sweepable "
                             f"hyper-parameters are {list(self.sweepable)}")
        bound = copy.copy(self)
        optim = {k.removeprefix("optim."): v for k, v in values.items() if k.startswith("optim.")}
        for name, value in values.items():
            if not name.startswith("optim."):
                setattr(bound, name, value)
        if optim:
            bound.optim = self.optim.with_values(**optim)
            bound.optimizer = bound.optim.make()
        return bound

    def init_params(self, key: jax.Array) -> PyTree:
        """Fresh network parameters."""
        return init_params(self.network, key, self.obs_size)

    def initial_carry(self, num_envs: int) -> PyTree:
        """Zero recurrent state for `num_envs` envs, leaves `[num_envs, ...]`."""
        return broadcast_carry(self.network, num_envs)

    def policy_logits(self, out: PyTree) -> jax.Array:
        """The network output's action scores `[N, A]` (greedy acting takes the argmax)."""
        raise NotImplementedError

    def act_greedy(
        self, state: PyTree, obs: jax.Array, start: jax.Array, carry: PyTree
    ) -> tuple[jax.Array, PyTree]:
        """The greedy action. obs: [N, F], start: [N] -> (action [N] int32, carry)."""
        out, carry = step_network(self.network, state.params, obs, start, carry)
        return jnp.argmax(self.policy_logits(out), axis=-1).astype(jnp.int32), carry

    def gradient_step(
        self, params: PyTree, opt_state: PyTree, *batch: Any
    ) -> tuple[PyTree, PyTree, dict[str, jax.Array]]:
        """One optimiser step on `self.loss(params, *batch)`: `(params, opt_state,
        metrics)` with `loss` and `grad_norm` added (`rlmem.agents.optim.gradient_step`)."""
        return gradient_step(self.optimizer, self.loss, params, opt_state, *batch)
