"""The jitted training loop: collect -> learn, many iterations per compiled call.

One **iteration** steps `num_envs` envs for `rollout_steps` steps with the exploring policy,
hands the `[num_envs, rollout_steps]` rollout to `algo.learn` (which stores it and/or runs
its updates) and counts what happened. With `num_envs = 1` and `rollout_steps` equal to a
fixed-length task's episode length, one iteration is the paper's "epoch": one episode, then
`train_ratio` updates. Envs and acting carries persist across iterations, so a rollout
window may hold the end of one episode and the start of the next (the `start` flags say so).

One **period** is `eval_interval` iterations followed by one greedy evaluation on freshly
seeded envs. `run_chunk` scans over a static number of periods, so evaluation sits inside
the compiled call with no `lax.cond` (under the seeds `vmap` a `cond` on a per-seed counter
would turn into a `select` and run the evaluation every iteration).

`num_seeds` vmaps everything: every leaf of `LoopState` and every metric has a leading
`[S]` axis, and seeds never mix. Seed `s` uses `PRNGKey(s)`, so seed 3 of a ten-seed run
reproduces a one-seed run with `seed=3`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rlmem.agents.base import Algorithm, Rollout
from rlmem.types import Transition

PyTree = Any


@struct.dataclass
class LoopState:
    """Everything that changes during training, for one seed (leading `[S]` when vmapped).

    Attributes:
      algo: the algorithm's TrainState (params, optimiser, replay store, schedules).
      env_state: the vectorised envs' state.
      obs: `[N, F]` the observation the next action is taken on.
      start: `[N]` bool, `obs` begins an episode.
      carry: the acting policy's recurrent state before `obs`, leaves `[N, ...]`.
      key: RNG for collection and learning.
      eval_key: RNG for evaluation envs, split at every evaluation (fresh eval seeds).
      episode_return: `[N]` return of each env's running episode so far.
      episode_length: `[N]` length of each env's running episode so far.
      env_steps: `[]` env steps taken (summed over envs).
      episodes: `[]` episodes completed.
      iterations: `[]` iterations (collect + learn) done.
      eval_return: `[]` mean return of the latest evaluation (NaN before the first).
      best_eval_return: `[]` running best of `eval_return` (-inf before the first).
    """

    algo: PyTree
    env_state: PyTree
    obs: jax.Array
    start: jax.Array
    carry: PyTree
    key: jax.Array
    eval_key: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array
    env_steps: jax.Array
    episodes: jax.Array
    iterations: jax.Array
    eval_return: jax.Array
    best_eval_return: jax.Array


@dataclass(frozen=True)
class LoopSettings:
    """Static sizes of the loop (Python ints: they fix array shapes).

    Attributes:
      num_envs: envs stepped in parallel per seed.
      rollout_steps: steps per env per iteration.
      resets_per_step: fresh reset states computed per step (VecEnv's optimistic resets).
      eval_interval: iterations between evaluations.
      eval_episodes: greedy episodes per evaluation (run as parallel envs).
      eval_max_steps: bound on an evaluation episode's length (the env's time limit).
    """

    num_envs: int
    rollout_steps: int
    resets_per_step: int
    eval_interval: int
    eval_episodes: int
    eval_max_steps: int

    @property
    def steps_per_iteration(self) -> int:
        return self.num_envs * self.rollout_steps


def _nanmean(total: jax.Array, count: jax.Array) -> jax.Array:
    """`total / count`, NaN when nothing was counted (not a fake zero)."""
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


def _over_seeds(fn: Callable, num_seeds: int) -> Callable:
    """`jax.vmap(fn)`, except for one seed: then `fn` runs unbatched on the squeezed state.

    Under `vmap` a `lax.cond` on a per-seed value becomes a `select` that runs both branches
    (e.g. DQN's "no updates during the random phase"); one seed keeps the real branch.
    """
    if num_seeds != 1:
        return jax.vmap(fn)
    squeeze = lambda tree: jax.tree.map(lambda x: x[0], tree)
    expand = lambda tree: jax.tree.map(lambda x: x[None], tree)
    return lambda *args: expand(fn(*map(squeeze, args)))


def seed_keys(seeds: Sequence[int]) -> jax.Array:
    """`[S]` PRNG keys, one per seed value (seed `s` -> `PRNGKey(s)`)."""
    return jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])


@dataclass(frozen=True)
class Loop:
    """The training loop for one algorithm on one env; build once, then `init` / `run_chunk`.

    Args:
      algo: an `rlmem.agents.base.Algorithm`.
      env, env_params: a wrapped env from `rlmem.envs.make`.
      settings: `LoopSettings`.
      make_vec_env: `(env, params, num_envs, resets_per_step) -> VecEnv`; defaults to
        `rlmem.envs.vector.VecEnv`.
    """

    algo: Algorithm
    env: Any
    env_params: Any
    settings: LoopSettings
    make_vec_env: Callable | None = None
    _compiled: dict = field(default_factory=dict, compare=False, repr=False)

    # -- construction -----------------------------------------------------------------
    def _vec(self, num_envs: int, resets_per_step: int):
        make = self.make_vec_env
        if make is None:
            from rlmem.envs.vector import VecEnv as make
        return make(self.env, self.env_params, num_envs, resets_per_step)

    @property
    def vec_env(self):
        return self._vec(self.settings.num_envs, self.settings.resets_per_step)

    @property
    def eval_env(self):
        # Only the first episode of each eval env counts, so one reset per step is plenty.
        return self._vec(self.settings.eval_episodes, 1)

    def init_one(self, key: jax.Array) -> LoopState:
        """A fresh `LoopState` for one seed from its key."""
        algo_key, env_key, loop_key, eval_key = jax.random.split(key, 4)
        n = self.settings.num_envs
        obs, env_state = self.vec_env.reset(env_key)
        return LoopState(
            algo=self.algo.init(algo_key),
            env_state=env_state,
            obs=obs,
            start=jnp.ones((n,), bool),
            carry=self.algo.initial_carry(n),
            key=loop_key,
            eval_key=eval_key,
            episode_return=jnp.zeros((n,), jnp.float32),
            episode_length=jnp.zeros((n,), jnp.int32),
            env_steps=jnp.zeros((), jnp.int32),
            episodes=jnp.zeros((), jnp.int32),
            iterations=jnp.zeros((), jnp.int32),
            eval_return=jnp.full((), jnp.nan, jnp.float32),
            best_eval_return=jnp.full((), -jnp.inf, jnp.float32),
        )

    def init(self, seeds: Sequence[int]) -> LoopState:
        """The vmapped state for `seeds`: every leaf `[S, ...]`."""
        if "init" not in self._compiled:
            self._compiled["init"] = jax.jit(jax.vmap(self.init_one))
        return self._compiled["init"](seed_keys(seeds))

    # -- one iteration ----------------------------------------------------------------
    def collect(self, state: LoopState, key: jax.Array) -> tuple[LoopState, Rollout, dict]:
        """Step the envs `rollout_steps` times with the exploring policy.

        Returns the advanced state, the `Rollout` (leaves `[N, T, ...]`) and the sums of the
        returns/lengths of the episodes completed in it.
        """
        vec = self.vec_env

        def step(carry_, key_t):
            s, ret_sum, len_sum, done_count = carry_
            act_key, env_key = jax.random.split(key_t)
            action, carry, extras = self.algo.act(s.algo, s.obs, s.start, s.carry, act_key)
            obs, env_state, reward, terminated, truncated, info = vec.step(
                env_key, s.env_state, action
            )
            done = jnp.logical_or(terminated, truncated)
            ep_ret = s.episode_return + reward
            ep_len = s.episode_length + 1
            transition = Transition(
                obs=s.obs,
                action=action.astype(jnp.int32),
                reward=reward.astype(jnp.float32),
                next_obs=info["final_obs"],
                terminated=terminated,
                truncated=truncated,
                start=s.start,
                mask=jnp.ones_like(done),
            )
            s = s.replace(
                env_state=env_state,
                obs=obs,
                start=info["start"],
                carry=carry,
                episode_return=jnp.where(done, 0.0, ep_ret),
                episode_length=jnp.where(done, 0, ep_len),
            )
            sums = (
                ret_sum + jnp.sum(jnp.where(done, ep_ret, 0.0)),
                len_sum + jnp.sum(jnp.where(done, ep_len, 0)),
                done_count + jnp.sum(done),
            )
            return (s, *sums), (transition, extras)

        keys = jax.random.split(key, self.settings.rollout_steps)
        zero = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
        (state, ret_sum, len_sum, count), (transition, extras) = jax.lax.scan(
            step, (state, *zero), keys
        )
        # scan stacks time first: [T, N, ...] -> the store's [N, T, ...].
        to_env_major = lambda x: jnp.swapaxes(x, 0, 1)
        rollout = Rollout(
            transition=jax.tree.map(to_env_major, transition),
            extras=jax.tree.map(to_env_major, extras),
        )
        state = state.replace(
            env_steps=state.env_steps + self.settings.steps_per_iteration,
            episodes=state.episodes + count,
        )
        return state, rollout, {"return_sum": ret_sum, "length_sum": len_sum, "count": count}

    def iteration(self, state: LoopState) -> tuple[LoopState, tuple[dict, dict]]:
        """Collect one rollout, then `algo.learn` on it."""
        key, collect_key, learn_key = jax.random.split(state.key, 3)
        state, rollout, episode_sums = self.collect(state.replace(key=key), collect_key)
        algo_state, learn_metrics = self.algo.learn(state.algo, rollout, learn_key)
        state = state.replace(algo=algo_state, iterations=state.iterations + 1)
        return state, (episode_sums, learn_metrics)

    # -- evaluation -------------------------------------------------------------------
    def evaluate(self, algo_state: PyTree, key: jax.Array) -> dict[str, jax.Array]:
        """Greedy returns of `eval_episodes` episodes on envs seeded from `key`.

        Each eval env runs until its first episode ends (or `eval_max_steps`); later
        steps are masked out. A `while_loop` stops as soon as every episode has ended.

        Returns `{"return": [], "length": []}` means over the episodes.
        """
        vec = self.eval_env
        n = self.settings.eval_episodes
        reset_key, key = jax.random.split(key)
        obs, env_state = vec.reset(reset_key)

        def cond(c):
            t, *_, done, _, _ = c
            return jnp.logical_and(t < self.settings.eval_max_steps, ~jnp.all(done))

        def body(c):
            t, obs, start, env_state, carry, done, ret, length = c
            action, carry = self.algo.act_greedy(algo_state, obs, start, carry)
            obs, env_state, reward, terminated, truncated, info = vec.step(
                jax.random.fold_in(key, t), env_state, action
            )
            live = ~done
            ret = ret + jnp.where(live, reward, 0.0)
            length = length + live.astype(jnp.int32)
            done = done | terminated | truncated
            return t + 1, obs, info["start"], env_state, carry, done, ret, length

        init = (
            jnp.zeros((), jnp.int32),
            obs,
            jnp.ones((n,), bool),
            env_state,
            self.algo.initial_carry(n),
            jnp.zeros((n,), bool),
            jnp.zeros((n,), jnp.float32),
            jnp.zeros((n,), jnp.int32),
        )
        *_, ret, length = jax.lax.while_loop(cond, body, init)
        return {"return": jnp.mean(ret), "length": jnp.mean(length.astype(jnp.float32))}

    # -- periods and chunks -----------------------------------------------------------
    def period(self, state: LoopState) -> tuple[LoopState, dict[str, jax.Array]]:
        """`eval_interval` iterations, then one evaluation. Metrics are scalars."""
        state, (sums, learn) = jax.lax.scan(
            lambda s, _: self.iteration(s), state, None, length=self.settings.eval_interval
        )
        eval_key, key = jax.random.split(state.eval_key)
        ev = self.evaluate(state.algo, key)
        best = jnp.maximum(state.best_eval_return, ev["return"])
        state = state.replace(eval_key=eval_key, eval_return=ev["return"], best_eval_return=best)
        count = jnp.sum(sums["count"])
        metrics = {
            "collect/episode_return": _nanmean(jnp.sum(sums["return_sum"]), count),
            "collect/episode_length": _nanmean(jnp.sum(sums["length_sum"]), count),
            "collect/episodes": count,
            "eval/return": ev["return"],
            "eval/length": ev["length"],
            "eval/best_return": best,
            "counters/env_steps": state.env_steps,
            "counters/iterations": state.iterations,
            "counters/episodes": state.episodes,
        }
        for name, value in learn.items():
            metrics[f"train/{name}"] = jnp.nanmean(value.astype(jnp.float32))
        return state, metrics

    def chunk_one(self, state: LoopState, num_periods: int) -> tuple[LoopState, dict]:
        """`num_periods` periods for one seed; metrics stacked `[num_periods]`."""
        return jax.lax.scan(lambda s, _: self.period(s), state, None, length=num_periods)

    def run_chunk(self, state: LoopState, num_periods: int) -> tuple[LoopState, dict]:
        """Advance every seed by `num_periods * eval_interval` iterations in one call.

        Args:
          state: vmapped `LoopState` (leaves `[S, ...]`); its buffers are donated, so do
            not use `state` after the call.
          num_periods: static; each distinct value compiles once.

        Returns:
          (state, metrics) with metrics `{name: [S, num_periods]}`.
        """
        num_seeds = int(np.shape(state.iterations)[0])
        name = ("chunk", num_periods, num_seeds == 1)
        if name not in self._compiled:
            fn = _over_seeds(lambda s: self.chunk_one(s, num_periods), num_seeds)
            self._compiled[name] = jax.jit(fn, donate_argnums=0)
        return self._compiled[name](state)
