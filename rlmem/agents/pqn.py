"""PQN (Gallici et al., *Simplifying Deep Temporal Difference Learning*, ICLR 2025) over a
recurrent Q-network, with tape or segment batching.

On-policy Q-learning: many envs step in parallel, acting epsilon-greedily; no replay
buffer and no target network (LayerNorm in the network keeps it stable: every block of
`rlmem.agents.networks` normalises). One `learn` consumes the loop's rollout `[E, T]`:

1. **Targets.** The network (the parameters before this rollout's updates, no gradient)
   runs once over every env stream from the carry recorded at its `t = 0`, with
   `with_next`: `max_a Q(next_obs[t], a)` after the whole episode prefix. Peng's Q(λ)
   targets (`rlmem.memory.returns.q_lambda_targets`, a reverse resettable scan over the
   stream) bootstrap on truncation and at the rollout's end, never across a termination.
2. **Units.** As PPO (`rlmem.agents.on_policy`): whole streams for tapes (full-rollout
   BPTT from the carry at `t = 0`), consecutive length-`L` pieces for segments, from the
   zero state or the carry stored at the piece's first step (`batching.initial_state`).
3. **Epochs x minibatches** of whole units; the loss is `0.5 (Q(s, a) - G^λ)^2`, mean
   over real transitions.

Exploration: epsilon falls linearly from `eps_start` to `eps_end` over `eps_decay`
rollouts (`learn` calls) and stays there. `act` returns `extras = {"carry": state
before obs}`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import struct

from rlmem.agents import unroll as ur
from rlmem.agents.base import RecurrentAgent, Rollout
from rlmem.agents.batching import TAPE, Batching
from rlmem.agents.networks import DEFAULT_NETWORK, NetworkSettings, q_network, step_network
from rlmem.agents.on_policy import OnPolicyAgent
from rlmem.agents.optim import OptimSettings
from rlmem.agents.schedules import epsilon_greedy, linear
from rlmem.checks import check_unit_interval
from rlmem.memory.returns import q_lambda_targets
from rlmem.types import Transition

PyTree = Any


@struct.dataclass
class PQNState:
    """Everything PQN changes while training.

    Attributes:
      params: Q-network parameters.
      opt_state: optimiser state.
      rollouts: `[]` int32, rollouts learned from (the exploration schedule's counter).
      updates: `[]` int32, gradient steps done.
    """

    params: PyTree
    opt_state: PyTree
    rollouts: jax.Array
    updates: jax.Array


def q_loss(q: jax.Array, action: jax.Array, target: jax.Array, mask: jax.Array
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`0.5 (Q(s, a) - target)^2` over flat transitions. q: [M, A]; the rest [M]."""
    chosen = jnp.take_along_axis(q, action[:, None].astype(jnp.int32), axis=-1)[:, 0]
    error = chosen - jax.lax.stop_gradient(target)
    metrics = {"q_mean": ur.masked_mean(chosen, mask),
               "td_abs": ur.masked_mean(jnp.abs(error), mask)}
    return ur.masked_mean(0.5 * error**2, mask), metrics


class PQN(OnPolicyAgent):
    """Recurrent PQN. A static object: hyperparameters and network, no arrays.

    Args:
      memory: the memory model (rlmem.memory.make_memory).
      obs_size: observation features `F`.
      num_actions: discrete actions `A`.
      batching: `TapeBatching()` or `SegmentBatching(L)` (no burn-in; `L` divides `T`).
      optim: optimiser settings (`algo.optim.*`; `PQN.default_optim`).
      network: encoder/head width and blocks (`algo.network.*`).
      num_envs, rollout_steps: the loop's rollout shape `[E, T]`, if known (checked now).
      gamma: discount.
      q_lambda: the λ of the Q(λ) targets (0: one-step, 1: Monte Carlo).
      eps_start, eps_end, eps_decay: epsilon from `eps_start` to `eps_end` linearly over
        `eps_decay` rollouts.
      update_epochs: passes over the rollout per `learn`.
      num_minibatches: groups of units per epoch; must divide the number of units.
    """

    sweepable = (*RecurrentAgent.sweepable, "gamma", "q_lambda", "eps_start", "eps_end")
    default_optim = OptimSettings(learning_rate=2.5e-4, warmup_updates=0, max_grad_norm=10.0,
                                  adam_eps=1e-8)
    period_end_metrics = ("epsilon", "rollouts", "updates")

    def __init__(
        self,
        memory: nn.Module,
        obs_size: int,
        num_actions: int,
        *,
        batching: Batching = TAPE,
        optim: OptimSettings = default_optim,
        network: NetworkSettings = DEFAULT_NETWORK,
        num_envs: int | None = None,
        rollout_steps: int | None = None,
        gamma: float = 0.99,
        q_lambda: float = 0.65,
        eps_start: float = 1.0,
        eps_end: float = 0.05,
        eps_decay: int = 100,
        update_epochs: int = 4,
        num_minibatches: int = 1,
    ):
        super().__init__(
            q_network(memory, num_actions, network.hidden_size, network.num_blocks,
                      image_shape=network.image_shape),
            obs_size, num_actions, batching, optim,
        )
        check_unit_interval(gamma=gamma, q_lambda=q_lambda, eps_start=eps_start,
                            eps_end=eps_end)
        if not isinstance(eps_decay, int) or isinstance(eps_decay, bool) or eps_decay < 0:
            raise ValueError(f"eps_decay must be an int >= 0 (rollouts), got {eps_decay!r}")
        self.gamma, self.q_lambda = gamma, q_lambda
        self.eps_start, self.eps_end, self.eps_decay = eps_start, eps_end, eps_decay
        self.init_on_policy("pqn", update_epochs, num_minibatches, num_envs, rollout_steps)

    # -- the Algorithm protocol (rlmem/agents/base.py) ---------------------------------

    def init(self, key: jax.Array) -> PQNState:
        """Fresh parameters and optimiser state, zero counters."""
        params = self.init_params(key)
        zero = jnp.zeros((), jnp.int32)
        return PQNState(params=params, opt_state=self.optimizer.init(params), rollouts=zero,
                        updates=zero)

    def epsilon(self, state: PQNState) -> jax.Array:
        """The current exploration rate."""
        return linear(self.eps_start, self.eps_end, self.eps_decay, state.rollouts)

    def act(
        self, state: PQNState, obs: jax.Array, start: jax.Array, carry: PyTree, key: jax.Array
    ) -> tuple[jax.Array, PyTree, dict[str, jax.Array]]:
        """Epsilon-greedy. obs: [N, F], start: [N] -> (action [N], carry, {"carry"})."""
        q, new_carry = step_network(self.network, state.params, obs, start, carry)
        return epsilon_greedy(key, q, self.epsilon(state)), new_carry, {"carry": carry}

    def policy_logits(self, out: jax.Array) -> jax.Array:
        """Greedy acting maximises Q: `out` is q `[N, A]`."""
        return out

    def learn(
        self, state: PQNState, rollout: Rollout, key: jax.Array
    ) -> tuple[PQNState, dict[str, jax.Array]]:
        """`update_epochs` x `num_minibatches` gradient steps on one rollout `[E, T]`."""
        self.check_rollout(*rollout.transition.reward.shape)
        units = self.batching.cut_units((rollout.transition, self.targets(state.params, rollout)),
                                        rollout.extras["carry"])
        state, metrics = self.minibatch_epochs(state, units, key)
        state = state.replace(rollouts=state.rollouts + 1)
        metrics.update(epsilon=self.epsilon(state), rollouts=state.rollouts,
                       updates=state.updates)
        return state, metrics

    # -- pieces --------------------------------------------------------------------------

    def targets(self, params: PyTree, rollout: Rollout) -> jax.Array:
        """Q(λ) targets `[E, T]` from the full-context pass over each env stream."""
        tr = rollout.transition
        streams = self.stream_outputs(jax.lax.stop_gradient(params), rollout)
        next_q = jnp.max(streams.out_next, axis=-1).reshape(tr.reward.shape)
        return jax.vmap(
            lambda r, nq, te, tu: q_lambda_targets(r, nq, te, tu, self.gamma, self.q_lambda)
        )(tr.reward, next_q, tr.terminated, tr.truncated)

    def loss(self, params: PyTree, data: tuple[Transition, jax.Array], carry: PyTree
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The Q(λ) regression loss of a minibatch of units `[k, S]` from carries `[k, ...]`
        (or None)."""
        transition, target = data
        run = ur.unroll_segments(self.network, params, transition, carry, with_next=False)
        return q_loss(run.out, run.transition.action, target.reshape(-1),
                      run.transition.mask)

    def update(
        self, state: PQNState, minibatch: tuple[tuple[Transition, jax.Array], PyTree]
    ) -> tuple[PQNState, dict[str, jax.Array]]:
        """One optimiser step on a minibatch `((transition, target) [k, S], carry)`."""
        data, carry = minibatch
        params, opt_state, metrics = self.gradient_step(state.params, state.opt_state, data,
                                                        carry)
        return state.replace(params=params, opt_state=opt_state,
                             updates=state.updates + 1), metrics


ALGORITHM = PQN  # `algo.name=pqn` (rlmem.config discovers it)
