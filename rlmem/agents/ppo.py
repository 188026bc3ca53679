"""Recurrent PPO (clipped surrogate) over a memory model, with tape or segment batching.

One `learn` call consumes the loop's rollout `[num_envs, T]`:

1. **Advantages.** The network runs once over every env stream (`with_next`, from the
   carry stored at the stream's `t = 0`), giving `V(next_obs[t])` after the whole episode
   prefix; GAE (`rlmem.memory.returns.gae`, a reverse resettable scan) then bootstraps on
   truncation and at the rollout's end, never on termination. `V(obs[t])` is the acting
   value from `act`'s extras (the same full-context value).
2. **Units.** `batching="tape"`: each env stream's `T` steps are one unit (full-rollout
   BPTT, `start` flags resetting the memory inside it), starting from the carry stored at
   `t = 0`. `batching="segment"`: each stream is cut into `T / L` consecutive pieces of
   `L` steps, starting from the zero state or from the carry stored at the piece's first
   step (`initial_state`).
3. **Behaviour replay.** The pre-update parameters run over every unit exactly as the
   loss will (`rlmem.agents.batching.unroll_segments`, same initial carry), and *those*
   log-probs and values are the behaviour `old_log_prob` / `old_value` of the ratio and
   the value clip.
4. **Epochs x minibatches.** Every epoch shuffles the *units* and splits them into
   `num_minibatches` groups: a minibatch is a set of whole streams or segments, so time is
   never strided or reordered inside a sequence. Each group runs through
   `unroll_segments` (the same code DQN's segments use) and the loss sees flat
   transitions and a mask.

**Which values go where.** GAE (advantages and value targets) uses the full-context values
of step 1: they bootstrap correctly across segment cuts and are what the policy saw while
acting. The ratio and the value clip use the replay of step 3, because they measure how
far an update moved the policy and value *of the replay the loss differentiates*: with
zero-state segments the replay lacks the context before each cut, so comparing it with
the acting log-probs would count that lost context as policy change (a ratio != 1 before
the first step, spurious clipping). With the replay, the ratio is 1 and no clip is active
before the first gradient step in every mode. For tape units and stored-state segments
the replay equals acting up to float rounding, so this changes nothing there.

`act` returns `extras = {"value": [N], "log_prob": [N], "carry": state before obs}`; the
loop stacks them into the rollout.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import struct

from rlmem.agents import batching as bt
from rlmem.agents.base import Rollout
from rlmem.agents.checks import (
    check_positive_floats,
    check_positive_ints,
    check_unit_interval,
)
from rlmem.agents.networks import actor_critic, broadcast_carry, init_params, step_network
from rlmem.agents.optim import gradient_step, make_optimizer
from rlmem.memory.returns import gae
from rlmem.types import Transition

PyTree = Any


@struct.dataclass
class PPOState:
    """Everything PPO changes while training.

    Attributes:
      params: actor-critic parameters.
      opt_state: optimiser state (learning rate inside, see rlmem.agents.optim).
      updates: `[]` int32, gradient steps done.
    """

    params: PyTree
    opt_state: PyTree
    updates: jax.Array


@struct.dataclass
class Units:
    """Rollout data cut into training units; every leaf `[U, S, ...]` (S = T or L).

    Attributes:
      transition: the transitions.
      log_prob, value: the behaviour log-prob of the taken action and value, from the
        pre-update parameters replaying the unit as the loss does (same initial carry).
      advantage, target: GAE advantages and value targets (full-context values).
    """

    transition: Transition
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array


def action_log_prob(logits: jax.Array, action: jax.Array) -> jax.Array:
    """`log pi(action)` from logits `[M, A]` and actions `[M]` -> `[M]`."""
    log_probs = jax.nn.log_softmax(logits)
    return jnp.take_along_axis(log_probs, action[:, None].astype(jnp.int32), axis=-1)[:, 0]


def ppo_loss(
    logits: jax.Array,
    value: jax.Array,
    action: jax.Array,
    mask: jax.Array,
    old_log_prob: jax.Array,
    old_value: jax.Array,
    advantage: jax.Array,
    target: jax.Array,
    clip_eps: float,
    vf_coef: float,
    ent_coef: float,
    normalize_advantage: bool = True,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped-surrogate PPO loss over flat transitions; everything `[M]` (logits `[M, A]`).

    With `mean_m` the mean over `mask`, `r = exp(log pi(action) - old_log_prob)` and `Â`
    the advantage, normalised to `(Â - mean_m Â) / (std_m Â + 1e-8)` (masked mean and
    population std) when `normalize_advantage`:

        policy_loss = -mean_m min(r Â, clip(r, 1 - clip_eps, 1 + clip_eps) Â)
        value_loss  = 0.5 mean_m max((v - target)², (v_clip - target)²),
                      v_clip = old_value + clip(v - old_value, -clip_eps, clip_eps)
        entropy     = mean_m H(pi)
        loss        = policy_loss + vf_coef value_loss - ent_coef entropy

    The value clip reuses `clip_eps` (PPO2 style). Metrics: the three terms,
    `approx_kl = mean_m (r - 1 - log r)` and `clip_frac = mean_m [|r - 1| > clip_eps]`.
    """
    log_probs = jax.nn.log_softmax(logits)
    log_prob = action_log_prob(logits, action)
    if normalize_advantage:
        mean = bt.masked_mean(advantage, mask)
        std = jnp.sqrt(bt.masked_mean((advantage - mean) ** 2, mask))
        advantage = (advantage - mean) / (std + 1e-8)
    ratio = jnp.exp(log_prob - old_log_prob)
    surrogate = jnp.minimum(
        ratio * advantage, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantage
    )
    policy_loss = -bt.masked_mean(surrogate, mask)
    clipped_value = old_value + jnp.clip(value - old_value, -clip_eps, clip_eps)
    value_err = jnp.maximum((value - target) ** 2, (clipped_value - target) ** 2)
    value_loss = 0.5 * bt.masked_mean(value_err, mask)
    entropy = bt.masked_mean(-jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1), mask)
    loss = policy_loss + vf_coef * value_loss - ent_coef * entropy
    metrics = {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": bt.masked_mean((ratio - 1.0) - jnp.log(ratio), mask),
        "clip_frac": bt.masked_mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32), mask),
    }
    return loss, metrics


class PPO:
    """Recurrent PPO. A static object: hyperparameters and network, no arrays.

    Args:
      memory: the memory model (rlmem.memory.make_memory).
      obs_size: observation features `F`.
      num_actions: discrete actions `A`.
      batching: "tape" (one unit per env stream) or "segment" (length-L pieces).
      segment_length: `L`; must divide the rollout length `T`.
      initial_state: "zero" or "stored" carry at each segment's start (segment only; tape
        units always start from the stored carry of the stream, which is exact).
      gamma, gae_lambda: GAE discount and lambda.
      clip_eps: PPO ratio and value clip.
      vf_coef, ent_coef: loss weights.
      update_epochs: passes over the rollout per `learn`.
      num_minibatches: groups of units per epoch; must divide the number of units.
      learning_rate, warmup_updates, max_grad_norm, adam_eps, weight_decay: optimiser
        (rlmem.agents.optim.make_optimizer).
      normalize_advantage: normalise advantages per minibatch.
      hidden_size, num_blocks: encoder/torso width and blocks per head.
    """

    def __init__(
        self,
        memory: nn.Module,
        obs_size: int,
        num_actions: int,
        *,
        batching: str = "tape",
        segment_length: int = 16,
        initial_state: str = "zero",
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_eps: float = 0.2,
        vf_coef: float = 0.5,
        ent_coef: float = 0.01,
        update_epochs: int = 4,
        num_minibatches: int = 4,
        learning_rate: float = 2.5e-4,
        warmup_updates: int = 0,
        max_grad_norm: float = 0.5,
        adam_eps: float = 1e-5,
        weight_decay: float = 0.0,
        normalize_advantage: bool = True,
        hidden_size: int = 256,
        num_blocks: int = 2,
    ):
        bt.check_mode(batching, initial_state if batching == "segment" else "zero")
        check_positive_ints(
            obs_size=obs_size, num_actions=num_actions, segment_length=segment_length,
            update_epochs=update_epochs, num_minibatches=num_minibatches,
            hidden_size=hidden_size,
        )
        check_unit_interval(gamma=gamma, gae_lambda=gae_lambda, clip_eps=clip_eps)
        check_positive_floats(
            learning_rate=learning_rate, max_grad_norm=max_grad_norm, adam_eps=adam_eps
        )
        if clip_eps <= 0:
            raise ValueError(f"clip_eps must be > 0, got {clip_eps!r}")
        self.network = actor_critic(memory, num_actions, hidden_size, num_blocks)
        self.obs_size, self.num_actions = obs_size, num_actions
        self.batching, self.segment_length = batching, segment_length
        self.initial_state = initial_state
        self.gamma, self.gae_lambda = gamma, gae_lambda
        self.clip_eps, self.vf_coef, self.ent_coef = clip_eps, vf_coef, ent_coef
        self.update_epochs, self.num_minibatches = update_epochs, num_minibatches
        self.normalize_advantage = normalize_advantage
        self.optimizer = make_optimizer(
            learning_rate, warmup_updates, max_grad_norm, adam_eps, weight_decay
        )

    # -- the Algorithm protocol (rlmem/agents/base.py) ---------------------------------

    def init(self, key: jax.Array) -> PPOState:
        """Fresh parameters and optimiser state."""
        params = init_params(self.network, key, self.obs_size)
        return PPOState(
            params=params,
            opt_state=self.optimizer.init(params),
            updates=jnp.zeros((), jnp.int32),
        )

    def initial_carry(self, num_envs: int) -> PyTree:
        """Zero recurrent state for `num_envs` envs, leaves `[num_envs, ...]`."""
        return broadcast_carry(self.network, num_envs)

    def act(
        self, state: PPOState, obs: jax.Array, start: jax.Array, carry: PyTree, key: jax.Array
    ) -> tuple[jax.Array, PyTree, dict[str, jax.Array]]:
        """Sample from the policy. obs: [N, F], start: [N] -> (action [N], carry, extras).

        extras: `value [N]`, `log_prob [N]` and `carry` (the state before `obs`).
        """
        (logits, value), new_carry = step_network(self.network, state.params, obs, start, carry)
        action = jax.random.categorical(key, logits).astype(jnp.int32)
        log_prob = action_log_prob(logits, action)
        return action, new_carry, {"value": value, "log_prob": log_prob, "carry": carry}

    def act_greedy(
        self, state: PPOState, obs: jax.Array, start: jax.Array, carry: PyTree
    ) -> tuple[jax.Array, PyTree]:
        """The policy's mode. obs: [N, F], start: [N] -> (action [N] int32, carry)."""
        (logits, _), carry = step_network(self.network, state.params, obs, start, carry)
        return jnp.argmax(logits, axis=-1).astype(jnp.int32), carry

    def learn(
        self, state: PPOState, rollout: Rollout, key: jax.Array
    ) -> tuple[PPOState, dict[str, jax.Array]]:
        """`update_epochs` x `num_minibatches` gradient steps on one rollout `[E, T]`."""
        num_envs, length = rollout.transition.reward.shape
        num_units = num_envs
        if self.batching == "segment":
            num_units = num_envs * (length // self.segment_length)
        if num_units % self.num_minibatches:
            raise ValueError(
                f"num_minibatches ({self.num_minibatches}) must divide the number of "
                f"training units ({num_units} = "
                + ("num_envs" if self.batching == "tape" else "num_envs * T / segment_length")
                + ")"
            )
        per_batch = num_units // self.num_minibatches
        units, carry = self.make_units(state.params, rollout)

        def epoch(state: PPOState, key: jax.Array):
            order = jax.random.permutation(key, num_units)
            groups = jax.tree.map(
                lambda x: x[order].reshape((self.num_minibatches, per_batch) + x.shape[1:]),
                (units, carry),
            )
            return jax.lax.scan(self.update, state, groups)

        keys = jax.random.split(key, self.update_epochs)
        state, metrics = jax.lax.scan(epoch, state, keys)
        return state, jax.tree.map(jnp.mean, metrics)

    # -- pieces --------------------------------------------------------------------------

    def advantages(
        self, params: PyTree, rollout: Rollout
    ) -> tuple[jax.Array, jax.Array]:
        """GAE over each env stream. Returns `(advantage [E, T], target [E, T])`."""
        tr = rollout.transition
        carry0 = jax.tree.map(lambda c: c[:, 0], rollout.extras["carry"])
        streams = bt.unroll_segments(self.network, params, tr, carry0)
        num_envs, length = tr.reward.shape
        next_value = streams.out_next[1].reshape(num_envs, length)
        value = rollout.extras["value"]
        adv, target = jax.vmap(
            lambda r, v, nv, te, tu: gae(r, v, nv, te, tu, self.gamma, self.gae_lambda)
        )(tr.reward, value, next_value, tr.terminated, tr.truncated)
        return adv, target

    def make_units(self, params: PyTree, rollout: Rollout) -> tuple[Units, PyTree]:
        """Cut the rollout `[E, T]` into units `[U, S]` and their initial carries `[U, ...]`.

        Tape: `U = E`, `S = T`, carry stored at `t = 0`. Segment: `U = E * T / L`, `S = L`,
        units of one stream consecutive, carry stored at each piece's first step or None.
        `log_prob` and `value` come from `params` replaying each unit from that carry.
        """
        num_envs, length = rollout.transition.reward.shape
        seg = self.segment_length
        if self.batching == "segment" and length % seg:
            raise ValueError(
                f"segment_length ({seg}) must divide the rollout length T ({length})"
            )
        adv, target = self.advantages(params, rollout)
        data = (rollout.transition, adv, target)
        stored = rollout.extras["carry"]
        if self.batching == "tape":
            carry = jax.tree.map(lambda c: c[:, 0], stored)
        else:
            pieces = num_envs * (length // seg)
            data = jax.tree.map(lambda x: x.reshape((pieces, seg) + x.shape[2:]), data)
            carry = None
            if self.initial_state == "stored":
                carry = jax.tree.map(
                    lambda c: c[:, ::seg].reshape((pieces,) + c.shape[2:]), stored
                )
        transition, adv, target = data
        log_prob, value = self.behaviour(params, transition, carry)
        units = Units(
            transition=transition, log_prob=log_prob, value=value, advantage=adv, target=target
        )
        return units, carry

    def behaviour(
        self, params: PyTree, transition: Transition, carry: PyTree
    ) -> tuple[jax.Array, jax.Array]:
        """Log-prob of the taken action and value, `[U, S]` each, replaying units `[U, S]`.

        The same `unroll_segments` call as `loss`, from the same carries `[U, ...]` (or
        None), so before the first gradient step `loss` sees a ratio of exactly 1 (up to
        float rounding) and inactive clips, whatever the batching mode.
        """
        params = jax.lax.stop_gradient(params)  # the behaviour policy is a constant
        run = bt.unroll_segments(self.network, params, transition, carry, with_next=False)
        logits, value = run.out
        shape = transition.reward.shape
        log_prob = action_log_prob(logits, run.transition.action)
        return log_prob.reshape(shape), value.reshape(shape)

    def loss(
        self, params: PyTree, units: Units, carry: PyTree
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """PPO loss of a minibatch of units `[k, S]` from carries `[k, ...]` (or None)."""
        run = bt.unroll_segments(self.network, params, units.transition, carry, with_next=False)
        logits, value = run.out
        flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), units)
        return ppo_loss(
            logits,
            value,
            run.transition.action,
            run.transition.mask,
            flat.log_prob,
            flat.value,
            flat.advantage,
            flat.target,
            self.clip_eps,
            self.vf_coef,
            self.ent_coef,
            self.normalize_advantage,
        )

    def update(
        self, state: PPOState, minibatch: tuple[Units, PyTree]
    ) -> tuple[PPOState, dict[str, jax.Array]]:
        """One optimiser step on a minibatch `(units [k, S], carry [k, ...])`."""
        units, carry = minibatch
        params, opt_state, metrics = gradient_step(
            self.optimizer, self.loss, state.params, state.opt_state, units, carry
        )
        return (
            state.replace(
                params=params,
                opt_state=opt_state,
                updates=state.updates + 1,
            ),
            metrics,
        )
