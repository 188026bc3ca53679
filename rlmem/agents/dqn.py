"""Double Dueling DQN over a recurrent network, for tape (TBB) and segment (SBB) batching.

The paper's algorithm (PAPER.md):

* network: encoder -> memory -> dueling head (`rlmem.agents.networks.q_network`);
* TD target `y = r + gamma (1 - terminated) Q_target(s', argmax_a Q_online(s', a))`, where
  `s'` is the recurrent state of the whole episode prefix followed by `next_obs`
  (`with_next`; the reference code rebuilt it from `next_obs` alone, losing each episode's
  first observation); only termination cuts the bootstrap;
* Huber loss (delta 1) per transition, mean over the batch's valid transitions: the same
  loss for both batching modes (`td_loss` sees flat transitions and a mask);
* optimiser `zero_nans -> clip_by_global_norm(0.01) -> adamw` with a linear lr warm-up,
  Polyak target update `tau = 1 / target_delay` after every gradient step;
* exploration: uniform random actions for `random_epochs` epochs, then epsilon-greedy with
  epsilon linear `eps_start -> eps_end` over `train_epochs` epochs.

**Epochs.** An epoch is one *completed episode*: `state.epochs` counts the episode ends
(`terminated | truncated`) of every env stream in the rollouts `learn` has stored. The
exploration schedule is keyed on it. One `learn` call stores the loop's rollout
`[num_envs, T]`, then runs `updates_per_learn` gradient updates, unless the rollout was
collected during the random phase (`epochs < random_epochs` before it), which only fills
the store, as in the paper. The paper's "collect one episode, then `train_ratio` updates"
is therefore `num_envs = 1`, `T` = the task's episode length, `updates_per_learn =
train_ratio`; more envs or longer rollouts keep the same counters with a different replay
ratio.

**Segments.** `SegmentBatching` draws `batch_size // segment_length` segments of
`segment_length` steps plus `burn_in` leading steps replayed without gradient. With
`initial_state="stored"` each segment starts from the acting policy's recurrent state
saved at its first step: `act` then returns the carry *before* `obs` as
`extras["carry"]` and `learn` stores it beside the transitions (R2D2).

**The reference code's SBB, as an ablation.** The paper's reference code trained SBB with
two other rules (PAPER.md lists both as defects); `td_loss="mean_abs"` and
`next_state="segment_restart"` reproduce them, so the paper's TBB-SBB gap can be split into
its batching, loss and next-state parts:

* `td_loss="mean_abs"`: the Huber of the masked *mean* |TD error| of the batch (one
  scalar), instead of the mean of per-transition Hubers; under the 0.01 global-norm clip
  its gradient is close to a sign per transition.
* `next_state="segment_restart"` (segments only): next-state values from a second pass
  over each segment's `next_obs` from the segment's initial state (see
  `rlmem.agents.unroll.NEXT_STATES`).

**Prioritised replay** (`priority="td"`, Schaul et al. 2016 with R2D2's sequence priority):
the store keeps a priority per replay unit, a whole episode for tapes (prioritised TBB) or
a sequence for segments (`rlmem.data.priority`); a batch draws its units with probability
`p^alpha / sum p^alpha`, weights each transition's Huber by its unit's importance weight
`(N P(i))^-beta` (divided by the batch's largest; `beta` linear `priority_beta ->
priority_beta_end` over `train_epochs` after the random phase, like epsilon), and after the
step sets each drawn unit's priority to `eta max|td| + (1 - eta) mean|td|` over its
learning transitions.

(Over 400 lines on purpose: the paper's algorithm and the rules its ablations switch, the
reference SBB's and R2D2's, each one constructor argument, checked and applied here.)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import struct

from rlmem.agents import batching as bt
from rlmem.agents import unroll as ur
from rlmem.agents.base import RecurrentAgent, Rollout
from rlmem.agents.batching import TAPE, Batching, SegmentBatching
from rlmem.agents.networks import DEFAULT_NETWORK, NetworkSettings, q_network, step_network
from rlmem.agents.optim import OptimSettings, polyak_update
from rlmem.agents.schedules import epsilon as epsilon_schedule
from rlmem.agents.schedules import epsilon_greedy, linear
from rlmem.agents.td_loss import TD_LOSSES, td_loss
from rlmem.checks import (
    check_positive_floats,
    check_positive_ints,
    check_unit_interval,
)
from rlmem.data import priority as pr
from rlmem.data.tape import TapeStore, add, init_store
from rlmem.types import Transition

PyTree = Any
UPDATE_METRICS = ("loss", "q_mean", "td_abs", "grad_norm")  # what `update` reports
PRIORITIES = ("none", "td")  # `algo.priority`: uniform replay, or prioritised by |TD error|


@struct.dataclass
class DQNState:
    """Everything DQN changes while training (a pytree; vmap it over seeds).

    Attributes:
      params: online network parameters.
      target_params: Polyak-averaged target parameters.
      opt_state: optimiser state (the learning rate lives in it, see rlmem.agents.optim).
      store: the replay `TapeStore` (with stored initial states, `{"carry"}` as per-step
        extras, or as sparse extras where the batching allows, `carry_period`).
      epochs: `[]` int32, completed episodes stored so far (the schedule counter).
      updates: `[]` int32, gradient updates done.
    """

    params: PyTree
    target_params: PyTree
    opt_state: PyTree
    store: TapeStore
    epochs: jax.Array
    updates: jax.Array


class DQN(RecurrentAgent):
    """Double Dueling DQN. A static object: hyperparameters and network, no arrays.

    `period_end_metrics` names the learn metrics that are schedules or counters: the loop
    reports them as they stand at the end of an evaluation period instead of averaging.

    Args:
      memory: the memory model (rlmem.memory.make_memory).
      obs_size: observation features `F`.
      num_actions: discrete actions `A`.
      batching: `TapeBatching()` or `SegmentBatching(...)` (rlmem.agents.batching).
      optim: optimiser settings (`algo.optim.*`).
      network: encoder/head width and dueling blocks (`algo.network.*`).
      num_envs: env streams of the loop's rollouts (the store's streams).
      rollout_steps: the loop's rollout length `T`, if known: every stream must hold one.
      buffer_capacity: replay capacity in transitions (both batching modes).
      batch_size: transitions per update (the tape's length; segments:
        `batch_size // segment_length` of them).
      gamma: discount.
      target_delay: Polyak rate `tau = 1 / target_delay`.
      updates_per_learn: gradient updates per `learn` (the paper's train_ratio).
      random_epochs: epochs (episodes) of uniform random actions before training.
      train_epochs: epochs over which epsilon decays.
      eps_start, eps_end: epsilon schedule ends.
      huber_delta: Huber threshold.
      td_loss: how a batch's TD errors become the loss (`TD_LOSSES`; module doc).
      next_state: where next-state values come from (`rlmem.agents.unroll.NEXT_STATES`;
        "segment_restart" needs segment batching).
      value_rescaling: learn `h(Q)` with R2D2's invertible rescaling (`td_loss`).
      n_step: n-step TD targets inside each sampled tape or segment (`td_loss`).
      priority: "none" (uniform replay) or "td" (prioritised; module doc).
      priority_eta: the max's weight in a unit's priority (R2D2: 0.9).
      priority_alpha: priority exponent (R2D2: 0.9; 0 is uniform).
      priority_beta, priority_beta_end: importance-sampling exponent's schedule ends.
    """

    default_optim = OptimSettings()  # the paper's: lr 1e-4 after 200 warm-up updates

    def __init__(
        self,
        memory: nn.Module,
        obs_size: int,
        num_actions: int,
        *,
        batching: Batching = TAPE,
        optim: OptimSettings = default_optim,
        network: NetworkSettings = DEFAULT_NETWORK,
        num_envs: int = 1,
        rollout_steps: int | None = None,
        buffer_capacity: int = 100_000,
        batch_size: int = 1000,
        gamma: float = 0.99,
        target_delay: float = 200.0,
        updates_per_learn: int = 1,
        random_epochs: int = 100,
        train_epochs: int = 500,
        eps_start: float = 0.2,
        eps_end: float = 0.01,
        huber_delta: float = 1.0,
        td_loss: str = "per_transition",
        next_state: str = "prefix",
        value_rescaling: bool = False,
        n_step: int = 1,
        priority: str = "none",
        priority_eta: float = 0.9,
        priority_alpha: float = 0.9,
        priority_beta: float = 0.6,
        priority_beta_end: float = 1.0,
    ):
        super().__init__(
            q_network(memory, num_actions, network.hidden_size, network.num_blocks,
                      image_shape=network.image_shape),
            obs_size, num_actions, batching, optim,
        )
        check_positive_ints(num_envs=num_envs, batch_size=batch_size,
                            buffer_capacity=buffer_capacity,
                            updates_per_learn=updates_per_learn, n_step=n_step)
        check_unit_interval(gamma=gamma, eps_start=eps_start, eps_end=eps_end,
                            priority_eta=priority_eta, priority_alpha=priority_alpha,
                            priority_beta=priority_beta, priority_beta_end=priority_beta_end)
        if priority not in PRIORITIES:
            raise ValueError(
                f"algo.priority={priority!r} is not allowed; allowed: {', '.join(PRIORITIES)}"
            )
        if priority != "none" and td_loss != "per_transition":
            raise ValueError(
                f"algo.priority={priority!r} weights each transition's loss, which "
                f"algo.td_loss={td_loss!r} does not have; allowed with algo.priority="
                f"{priority!r}: algo.td_loss=per_transition"
            )
        check_positive_floats(huber_delta=huber_delta)
        if target_delay < 1:
            raise ValueError(
                f"target_delay must be >= 1 (tau = 1/target_delay), got {target_delay!r}"
            )
        if td_loss not in TD_LOSSES:
            raise ValueError(
                f"algo.td_loss={td_loss!r} is not allowed; allowed: {', '.join(TD_LOSSES)}"
            )
        bt.check_next_state(batching, next_state)
        if not isinstance(value_rescaling, bool):
            raise ValueError(f"algo.value_rescaling must be true or false, got "
                             f"{value_rescaling!r}")
        if isinstance(batching, SegmentBatching):
            batching.num_segments(batch_size)  # at least one segment fits
        if batch_size > buffer_capacity:
            raise ValueError(
                f"algo.batch_size={batch_size} must be <= algo.buffer_capacity="
                f"{buffer_capacity} (batches are drawn from the replay); allowed: "
                f"algo.batch_size in [1, {buffer_capacity}]"
            )
        if rollout_steps is not None and buffer_capacity // num_envs < rollout_steps:
            raise ValueError(
                f"algo.buffer_capacity={buffer_capacity} cannot hold one rollout per env "
                f"stream: each of the loop.num_envs={num_envs} streams keeps "
                f"buffer_capacity // num_envs = {buffer_capacity // num_envs} transitions, "
                f"fewer than loop.rollout_steps={rollout_steps}; allowed: "
                f"algo.buffer_capacity >= {num_envs * rollout_steps}"
            )
        if random_epochs < 0 or train_epochs < 0:
            raise ValueError(
                f"random_epochs and train_epochs must be >= 0, got {random_epochs!r}, "
                f"{train_epochs!r}"
            )
        self.num_envs = num_envs
        self.buffer_capacity, self.batch_size = buffer_capacity, batch_size
        self.gamma, self.target_delay, self.huber_delta = gamma, target_delay, huber_delta
        self.td_loss, self.next_state = td_loss, next_state
        self.value_rescaling, self.n_step = value_rescaling, n_step
        self.priority, self.priority_eta = priority, priority_eta
        self.priority_alpha = priority_alpha
        self.priority_beta, self.priority_beta_end = priority_beta, priority_beta_end
        self.updates_per_learn = updates_per_learn
        self.random_epochs, self.train_epochs = random_epochs, train_epochs
        self.eps_start, self.eps_end = eps_start, eps_end

    period_end_metrics = ("epsilon", "epochs", "updates")
    sweepable = (*RecurrentAgent.sweepable, "gamma", "target_delay", "eps_start", "eps_end",
                 "huber_delta")

    @property
    def tau(self) -> float | jax.Array:
        """The Polyak rate `1 / target_delay`."""
        return 1.0 / self.target_delay

    @property
    def stores_carry(self) -> bool:
        """True when `act` returns `extras["carry"]` and the store keeps it."""
        return self.batching.stores_carry

    # -- the Algorithm protocol (rlmem/agents/base.py) ---------------------------------

    def init(self, key: jax.Array) -> DQNState:
        """Fresh parameters (target = online), optimiser state, empty store, zero counters."""
        params = self.init_params(key)
        example = Transition(
            obs=jnp.zeros((self.obs_size,), jnp.float32),
            action=jnp.zeros((), jnp.int32),
            reward=jnp.zeros((), jnp.float32),
            next_obs=jnp.zeros((self.obs_size,), jnp.float32),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            start=jnp.zeros((), bool),
            mask=jnp.zeros((), bool),
        )
        carry = {"carry": self.network.initialize_carry()} if self.stores_carry else None
        period = None if self.priority == "none" else self.batching.priority_period
        sparse = self.batching.carry_period  # carries kept only where rows start
        store = init_store(self.buffer_capacity, self.num_envs, example,
                           None if sparse else carry, period, sparse and carry, sparse)
        zero = jnp.zeros((), jnp.int32)
        return DQNState(
            params=params,
            target_params=params,
            opt_state=self.optimizer.init(params),
            store=store,
            epochs=zero,
            updates=zero,
        )

    def epsilon(self, state: DQNState) -> jax.Array:
        """The current exploration rate (1 during the random phase)."""
        return epsilon_schedule(
            state.epochs, self.random_epochs, self.train_epochs, self.eps_start, self.eps_end
        )

    def act(
        self, state: DQNState, obs: jax.Array, start: jax.Array, carry: PyTree, key: jax.Array
    ) -> tuple[jax.Array, PyTree, dict[str, jax.Array]]:
        """Epsilon-greedy. obs: [N, F], start: [N] -> (action [N] int32, carry, extras).

        extras holds `"carry"` (the state before `obs`) when segments start from stored
        states; it is empty otherwise.
        """
        q, new_carry = step_network(self.network, state.params, obs, start, carry)
        action = epsilon_greedy(key, q, self.epsilon(state))
        extras = {"carry": carry} if self.stores_carry else {}
        return action, new_carry, extras

    def beta(self, state: DQNState) -> jax.Array:
        """The importance-sampling exponent now (prioritised replay)."""
        return linear(self.priority_beta, self.priority_beta_end, self.train_epochs,
                      state.epochs - self.random_epochs)

    def policy_logits(self, out: jax.Array) -> jax.Array:
        """Greedy acting maximises Q: `out` is q `[N, A]`."""
        return out

    def wants_update(self, state: DQNState) -> jax.Array:
        """`[]` bool: the next `learn` runs updates (its rollout comes after the random
        phase). The loop decides the update branch from this once for all seeds."""
        return state.epochs >= self.random_epochs

    def learn(
        self, state: DQNState, rollout: Rollout, key: jax.Array
    ) -> tuple[DQNState, dict[str, jax.Array]]:
        """Store the rollout `[num_envs, T]` (each stream's masked prefix of real steps),
        count its episodes, then update (see module doc).

        Returns metrics averaged over this call's updates (zeros when none ran, with
        `training` 0), plus the schedule and counters (`period_end_metrics`).
        """
        training = self.wants_update(state)
        return self.update_phase(self.observe(state, rollout), key, training)

    def observe(self, state: DQNState, rollout: Rollout) -> DQNState:
        """Store the rollout's real steps and count its episodes; no learning.

        The loop calls this outside any `lax.cond`: XLA copies a buffer written inside
        the branches of a conditional, and the paper's store holds 4M transitions."""
        tr = rollout.transition
        if tr.start.shape[0] != self.num_envs:
            raise ValueError(
                f"DQN was built with num_envs={self.num_envs} (the replay store's streams) but "
                f"got a rollout of {tr.start.shape[0]} envs (shape {tr.start.shape}); "
                "pass num_envs = the loop's num_envs"
            )
        carry = {"carry": rollout.extras["carry"]} if self.stores_carry else None
        sparse = self.batching.carry_period is not None
        # Only real steps count and are stored: each stream's are a prefix (rlmem.loop).
        ended = jnp.sum((tr.terminated | tr.truncated) & tr.mask, dtype=jnp.int32)
        length = jnp.sum(tr.mask, axis=1, dtype=jnp.int32)
        store = add(state.store, tr, None if sparse else carry, length,
                    carry if sparse else None)
        return state.replace(store=store, epochs=state.epochs + ended)

    def update_phase(
        self, state: DQNState, key: jax.Array, training: jax.Array, may_update: bool = True
    ) -> tuple[DQNState, dict[str, jax.Array]]:
        """The gradient updates of one `learn` after `observe`: `updates_per_learn` of
        them when `training` (`wants_update` before `observe`), none otherwise.

        `may_update=False` (static) promises `training` is False and leaves the update
        step out of the program, so seeds vmapped through their random phase compute no
        updates at all.
        """

        def run_updates(state: DQNState) -> tuple[DQNState, dict[str, jax.Array]]:
            keys = jax.random.split(key, self.updates_per_learn)
            state, metrics = jax.lax.scan(self.update, state, keys)
            return state, jax.tree.map(jnp.mean, metrics)

        def skip(state: DQNState) -> tuple[DQNState, dict[str, jax.Array]]:
            return state, {name: jnp.zeros((), jnp.float32) for name in UPDATE_METRICS}

        if may_update:
            state, metrics = jax.lax.cond(training, run_updates, skip, state)
        else:
            state, metrics = skip(state)
        metrics.update(
            epsilon=self.epsilon(state),
            epochs=state.epochs,
            updates=state.updates,
            training=training.astype(jnp.float32),
        )
        return state, metrics

    # -- one gradient step --------------------------------------------------------------

    def sample(self, store: TapeStore, key: jax.Array) -> tuple[Transition, PyTree]:
        """A batch in this algorithm's layout and the initial carries (None: zero state).

        Tape: `Transition [B]`. Segment: `Transition [N, burn_in + L]`, carries `[N, ...]`.
        """
        return self.batching.sample(store, key, self.batch_size)

    def unroll(self, params: PyTree, batch: Transition, carry: PyTree) -> ur.Unrolled:
        """Q and next-state Q over a sampled batch, flattened (rlmem.agents.unroll)."""
        return self.batching.unroll(self.network, params, batch, carry,
                                    next_state=self.next_state)

    def loss(
        self, params: PyTree, target_params: PyTree, batch: Transition, carry: PyTree,
        weights: jax.Array | None = None,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The TD loss of a sampled batch (either layout), differentiable in `params`.

        The online next-state Q only picks `a*` (no gradient), and only where the target
        bootstraps (`mask & ~terminated`): the batching may then take a cheaper way to it
        (`TapeBatching.unroll_greedy_next`: shifted from the online pass on a memoroid's
        tape instead of a second pass over `next_obs`). `weights`: `[M]` importance
        weights of the flat transitions (prioritised replay; `td_loss`).
        """
        online = self.batching.unroll_greedy_next(
            self.network, params, batch, carry, wanted=batch.mask & ~batch.terminated,
            next_state=self.next_state,
        )
        target = self.unroll(jax.lax.stop_gradient(target_params), batch, carry)
        return td_loss(
            online.out,
            online.out_next,
            target.out_next,
            online.transition,
            self.gamma,
            self.huber_delta,
            self.td_loss,
            self.value_rescaling,
            self.n_step,
            batch.start.shape[0] if batch.start.ndim == 2 else 1,
            weights,
        )

    def update(self, state: DQNState, key: jax.Array) -> tuple[DQNState, dict[str, jax.Array]]:
        """Sample, one optimiser step, Polyak target update (and the drawn units' new
        priorities under prioritised replay). Returns (state, metrics)."""
        store = state.store
        if self.priority == "none":
            batch, carry = self.sample(store, key)
            params, opt_state, metrics = self.gradient_step(
                state.params, state.opt_state, state.target_params, batch, carry
            )
        else:
            batch, carry, draws = self.batching.sample_prioritised(store, key,
                                                                   self.batch_size)
            weights = pr.importance_weights(draws.prob, self.beta(state), draws.used)
            params, opt_state, metrics = self.gradient_step(
                state.params, state.opt_state, state.target_params, batch, carry,
                weights[draws.unit],
            )
            td_steps = metrics.pop("td_steps")
            learning = self.batching.unroll_mask(batch)
            priority, seen = pr.unit_priority(td_steps, draws.unit, learning,
                                              draws.leaf.shape[0], self.priority_eta)
            store = store.replace(priorities=pr.set_priorities(
                store.priorities, draws.leaf, priority, seen & draws.used,
                self.priority_alpha))
        return (
            state.replace(
                store=store,
                params=params,
                target_params=polyak_update(state.target_params, params, self.tau),
                opt_state=opt_state,
                updates=state.updates + 1,
            ),
            metrics,
        )


ALGORITHM = DQN  # `algo.name=dqn` (rlmem.config discovers it)
