"""Recurrent PPO (clipped surrogate) over a memory model, with tape or segment batching.

One `learn` call consumes the loop's rollout `[num_envs, T]`:

1. **Advantages.** The network runs once over every env stream (`with_next`, from the
   carry stored at the stream's `t = 0`), giving `V(next_obs[t])` after the whole episode
   prefix; GAE (`rlmem.memory.returns.gae`, a reverse resettable scan) then bootstraps on
   truncation and at the rollout's end, never on termination. `V(obs[t])` is the acting
   value from `act`'s extras (the same full-context value).
2. **Units.** `TapeBatching`: each env stream's `T` steps are one unit (full-rollout
   BPTT, `start` flags resetting the memory inside it), starting from the carry stored at
   `t = 0`. `SegmentBatching`: each stream is cut into `T / L` consecutive pieces of
   `L` steps, starting from the zero state or from the carry stored at the piece's first
   step (`initial_state`).
3. **Behaviour replay.** The pre-update parameters run over every unit exactly as the
   loss will (`rlmem.agents.unroll.unroll_segments`, same initial carry), and *those*
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

from rlmem.agents import unroll as ur
from rlmem.agents.base import RecurrentAgent, Rollout
from rlmem.agents.batching import TAPE, Batching
from rlmem.agents.networks import DEFAULT_NETWORK, NetworkSettings, actor_critic, step_network
from rlmem.agents.on_policy import OnPolicyAgent
from rlmem.agents.optim import OptimSettings
from rlmem.checks import check_unit_interval
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
        mean = ur.masked_mean(advantage, mask)
        std = jnp.sqrt(ur.masked_mean((advantage - mean) ** 2, mask))
        advantage = (advantage - mean) / (std + 1e-8)
    ratio = jnp.exp(log_prob - old_log_prob)
    surrogate = jnp.minimum(
        ratio * advantage, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantage
    )
    policy_loss = -ur.masked_mean(surrogate, mask)
    clipped_value = old_value + jnp.clip(value - old_value, -clip_eps, clip_eps)
    value_err = jnp.maximum((value - target) ** 2, (clipped_value - target) ** 2)
    value_loss = 0.5 * ur.masked_mean(value_err, mask)
    entropy = ur.masked_mean(-jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1), mask)
    loss = policy_loss + vf_coef * value_loss - ent_coef * entropy
    metrics = {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": ur.masked_mean((ratio - 1.0) - jnp.log(ratio), mask),
        "clip_frac": ur.masked_mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32), mask),
    }
    return loss, metrics


class PPO(OnPolicyAgent):
    """Recurrent PPO. A static object: hyperparameters and network, no arrays.

    Args:
      memory: the memory model (rlmem.memory.make_memory).
      obs_size: observation features `F`.
      num_actions: discrete actions `A`.
      batching: `TapeBatching()` (one unit per env stream) or `SegmentBatching(L)`
        (length-`L` pieces starting from zeros or the stored carry; no burn-in; `L` must
        divide the rollout length `T`). Tape units always start from the stream's stored
        carry, which is exact.
      optim: optimiser settings (`algo.optim.*`; `PPO.default_optim`).
      network: encoder/torso width and blocks per head (`algo.network.*`).
      num_envs, rollout_steps: the loop's rollout shape `[E, T]`, if known: checked now
        (`check_rollout`) instead of at the first `learn`.
      gamma, gae_lambda: GAE discount and lambda.
      clip_eps: PPO ratio and value clip.
      vf_coef, ent_coef: loss weights.
      update_epochs: passes over the rollout per `learn`.
      num_minibatches: groups of units per epoch; must divide the number of units.
      normalize_advantage: normalise advantages per minibatch.
    """

    sweepable = (*RecurrentAgent.sweepable, "gamma", "gae_lambda", "clip_eps", "vf_coef",
                 "ent_coef")
    default_optim = OptimSettings(learning_rate=2.5e-4, warmup_updates=0, max_grad_norm=0.5,
                                  adam_eps=1e-5)

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
        gae_lambda: float = 0.95,
        clip_eps: float = 0.2,
        vf_coef: float = 0.5,
        ent_coef: float = 0.01,
        update_epochs: int = 4,
        num_minibatches: int = 1,
        normalize_advantage: bool = True,
    ):
        super().__init__(
            actor_critic(memory, num_actions, network.hidden_size, network.num_blocks,
                         image_shape=network.image_shape),
            obs_size, num_actions, batching, optim,
        )
        check_unit_interval(gamma=gamma, gae_lambda=gae_lambda, clip_eps=clip_eps)
        if clip_eps <= 0:
            raise ValueError(f"clip_eps must be > 0, got {clip_eps!r}")
        self.gamma, self.gae_lambda = gamma, gae_lambda
        self.clip_eps, self.vf_coef, self.ent_coef = clip_eps, vf_coef, ent_coef
        self.normalize_advantage = normalize_advantage
        self.init_on_policy("ppo", update_epochs, num_minibatches, num_envs, rollout_steps)

    # -- the Algorithm protocol (rlmem/agents/base.py) ---------------------------------

    def init(self, key: jax.Array) -> PPOState:
        """Fresh parameters and optimiser state."""
        params = self.init_params(key)
        return PPOState(
            params=params,
            opt_state=self.optimizer.init(params),
            updates=jnp.zeros((), jnp.int32),
        )

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

    def policy_logits(self, out: tuple[jax.Array, jax.Array]) -> jax.Array:
        """Greedy acting takes the policy's mode: `out` is (logits `[N, A]`, value)."""
        return out[0]

    def learn(
        self, state: PPOState, rollout: Rollout, key: jax.Array
    ) -> tuple[PPOState, dict[str, jax.Array]]:
        """`update_epochs` x `num_minibatches` gradient steps on one rollout `[E, T]`."""
        self.check_rollout(*rollout.transition.reward.shape)
        return self.minibatch_epochs(state, self.make_units(state.params, rollout), key)

    # -- pieces --------------------------------------------------------------------------

    def advantages(
        self, params: PyTree, rollout: Rollout
    ) -> tuple[jax.Array, jax.Array]:
        """GAE over each env stream. Returns `(advantage [E, T], target [E, T])`."""
        tr = rollout.transition
        streams = self.stream_outputs(params, rollout)
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
        adv, target = self.advantages(params, rollout)
        data, carry = self.batching.cut_units(
            (rollout.transition, adv, target), rollout.extras["carry"]
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
        run = ur.unroll_segments(self.network, params, transition, carry, with_next=False)
        logits, value = run.out
        shape = transition.reward.shape
        log_prob = action_log_prob(logits, run.transition.action)
        return log_prob.reshape(shape), value.reshape(shape)

    def loss(
        self, params: PyTree, units: Units, carry: PyTree
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """PPO loss of a minibatch of units `[k, S]` from carries `[k, ...]` (or None)."""
        run = ur.unroll_segments(self.network, params, units.transition, carry, with_next=False)
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
        params, opt_state, metrics = self.gradient_step(state.params, state.opt_state, units,
                                                        carry)
        return (
            state.replace(
                params=params,
                opt_state=opt_state,
                updates=state.updates + 1,
            ),
            metrics,
        )


ALGORITHM = PPO  # `algo.name=ppo` (rlmem.config discovers it)
