"""The jitted training loop: collect -> learn, many iterations per compiled call.

One **iteration** collects a rollout with the exploring policy, hands it to `algo.learn`
(which stores it and/or runs its updates) and counts what happened. How much it collects
is `rollout` (`LoopSettings.rollout`, the config's `loop.rollout`):

* `"steps"`: every one of the `num_envs` envs steps exactly `rollout_steps` times. Envs
  and acting carries persist across iterations, so a window may hold the end of one
  episode and the start of the next (the `start` flags say so).
* `"episode"`: every env plays until its current episode ends (at most `rollout_steps`
  steps, the time limit); an env whose episode has ended waits, its steps masked out
  (`mask` False, never stored), and the `while_loop` stops once every env is done. With
  `num_envs = 1` one iteration is exactly the paper's "epoch" -- one whole episode, then
  `train_ratio` updates -- on tasks of any episode length. On fixed-length tasks it
  gives bit-identical results to `"steps"` with `rollout_steps` = the episode length.

One **period** is `eval_interval` iterations followed by one greedy evaluation on freshly
seeded envs. `run_chunk` scans over a static number of periods, so evaluation sits inside
the compiled call with no `lax.cond` (under the seeds `vmap` a `cond` on a per-seed counter
would turn into a `select` and run the evaluation every iteration).

`num_seeds` vmaps everything: every leaf of `LoopState` and every metric has a leading
`[S]` axis, and seeds never mix. Seed `s` uses `PRNGKey(s)`, so seed 3 of a ten-seed run
reproduces a one-seed run with `seed=3`.

**Divergence.** Every iteration checks the learn metrics (loss, gradient norm, ...) and
every period the parameters for NaN/inf; the first hit is kept per seed in
`LoopState.nonfinite_metric`/`nonfinite_env_step`, so the Python driver can stop the run
at the end of the chunk without ever checkpointing a non-finite state.

(Over 400 lines on purpose: collection, learning, evaluation, periods and chunks are the
stages of one compiled call and share `LoopState` and the seed-map rules above.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rlmem.agents.base import Algorithm, Rollout
from rlmem.envs.vector import select_envs
from rlmem.types import Transition

PyTree = Any


@struct.dataclass
class LoopState:
    """Everything that changes during training, for one seed (leading `[S]` when vmapped).

    Attributes:
      algo: the algorithm's TrainState (params, optimiser, replay store, schedules).
      env_state: the vectorised envs' state; its `EpisodeStatistics` layer counts each
        env's running episode (read as `episode_return` / `episode_length`).
      obs: `[N, F]` the observation the next action is taken on.
      start: `[N]` bool, `obs` begins an episode.
      carry: the acting policy's recurrent state before `obs`, leaves `[N, ...]`.
      key: RNG for collection and learning.
      eval_key: RNG for evaluation envs, split at every evaluation (fresh eval seeds).
      env_steps: `[]` env steps taken (summed over envs).
      episodes: `[]` episodes completed.
      iterations: `[]` iterations (collect + learn) done.
      eval_return: `[]` mean return of the latest evaluation (NaN before the first).
      best_eval_return: `[]` running best of `eval_return` (-inf before the first).
      nonfinite_metric: `[]` int32, -1 while every learn metric and parameter is finite;
        then the index (`Loop.nonfinite_names`) of the first non-finite one.
      nonfinite_env_step: `[]` int32, `env_steps` when it was first seen (-1 before).
      hparams: `{name: []}` float32, this run's values of the algorithm's sweepable
        hyper-parameters (`algo.hparams()`; a vectorised sweep gives every member its
        own). The loop binds them (`algo.bind`) wherever it calls the algorithm.
    """

    algo: PyTree
    env_state: PyTree
    obs: jax.Array
    start: jax.Array
    carry: PyTree
    key: jax.Array
    eval_key: jax.Array
    env_steps: jax.Array
    episodes: jax.Array
    iterations: jax.Array
    eval_return: jax.Array
    best_eval_return: jax.Array
    nonfinite_metric: jax.Array
    nonfinite_env_step: jax.Array
    hparams: dict[str, jax.Array]

    # Episodes are counted once, by the envs' `EpisodeStatistics` wrapper (`VecEnv` puts
    # it outermost), never by the loop: these read its running counters.
    @property
    def episode_return(self) -> jax.Array:
        """`[N]` return of each env's running episode so far."""
        return self.env_state.env_state.episode_return

    @property
    def episode_length(self) -> jax.Array:
        """`[N]` length of each env's running episode so far."""
        return self.env_state.env_state.episode_length


ROLLOUT_MODES = ("steps", "episode")


def step_unit_of(rollout: str) -> str:
    """What a run's step axis (logs, checkpoints, progress) counts under `loop.rollout`."""
    return "episodes" if rollout == "episode" else "env steps"


@dataclass(frozen=True)
class LoopSettings:
    """Static sizes of the loop (Python ints: they fix array shapes).

    Attributes:
      num_envs: envs stepped in parallel per seed.
      rollout_steps: steps per env per iteration (`"episode"`: at most this many).
      resets_per_step: finished envs reset per pass of `VecEnv`'s reset loop (a speed knob:
        results do not depend on it); None: `VecEnv`'s default.
      eval_interval: iterations between evaluations.
      eval_episodes: greedy episodes per evaluation (run as parallel envs).
      eval_max_steps: bound on an evaluation episode's length (the env's time limit).
      rollout: `"steps"` (fixed windows) or `"episode"` (one whole episode per env).
    """

    num_envs: int
    rollout_steps: int
    resets_per_step: int | None
    eval_interval: int
    eval_episodes: int
    eval_max_steps: int
    rollout: str = "steps"

    def __post_init__(self) -> None:
        if self.rollout not in ROLLOUT_MODES:
            raise ValueError(f"rollout must be one of {ROLLOUT_MODES}, got {self.rollout!r}")

    @property
    def steps_per_iteration(self) -> int:
        """Env steps per iteration (`"episode"`: the most there can be)."""
        return self.num_envs * self.rollout_steps

    @property
    def step_unit(self) -> str:
        """What the run's step axis (logs, checkpoints, progress) counts."""
        return step_unit_of(self.rollout)

    def step_of(self, iterations: int) -> int:
        """The step-axis value after `iterations` iterations, the same for every seed:
        env steps for `"steps"`, episodes collected for `"episode"` (whose env steps
        differ per seed; `counters/env_steps` has them)."""
        per = self.num_envs if self.rollout == "episode" else self.steps_per_iteration
        return int(iterations) * per


def _nanmean(total: jax.Array, count: jax.Array) -> jax.Array:
    """`total / count`, NaN when nothing was counted (not a fake zero)."""
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


def _squeezed(fn: Callable) -> Callable:
    """The single-seed stand-in for `jax.vmap`: the state carries no seed axis, so every
    `lax.cond` stays a real branch (under `vmap` it would become a `select`)."""
    return fn


def _flag_nonfinite(state: LoopState, bad: jax.Array) -> LoopState:
    """Keep the first non-finite hit: `bad [K]` flags metric `k` (see `nonfinite_names`)."""
    first = state.nonfinite_metric < 0
    hit = first & jnp.any(bad)
    return state.replace(
        nonfinite_metric=jnp.where(hit, jnp.argmax(bad).astype(jnp.int32), state.nonfinite_metric),
        nonfinite_env_step=jnp.where(hit, state.env_steps, state.nonfinite_env_step),
    )


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
    _traced: dict = field(default_factory=dict, compare=False, repr=False)  # facts seen tracing

    # -- construction -----------------------------------------------------------------
    def _vec(self, num_envs: int, resets_per_step: int | None):
        make = self.make_vec_env
        if make is None:
            from rlmem.envs.vector import VecEnv as make
        return make(self.env, self.env_params, num_envs, resets_per_step)

    @property
    def vec_env(self):
        return self._vec(self.settings.num_envs, self.settings.resets_per_step)

    @property
    def eval_env(self):
        # VecEnv resets exactly the envs that finished (results do not depend on the reset
        # budget), so its default serves evaluation too.
        return self._vec(self.settings.eval_episodes, None)

    def bound(self, hparams: dict[str, jax.Array]):
        """The algorithm with one run's hyper-parameters bound (`LoopState.hparams`)."""
        return self.algo.bind(hparams) if hparams else self.algo

    def default_hparams(self) -> dict[str, float]:
        """The algorithm's own sweepable values (`{}` for one that has none)."""
        return dict(self.algo.hparams()) if hasattr(self.algo, "hparams") else {}

    def init_one(self, key: jax.Array, hparams: dict[str, jax.Array]) -> LoopState:
        """A fresh `LoopState` for one run from its key and hyper-parameters."""
        algo_key, env_key, loop_key, eval_key = jax.random.split(key, 4)
        n = self.settings.num_envs
        obs, env_state = self.vec_env.reset(env_key)
        return LoopState(
            algo=self.bound(hparams).init(algo_key),
            env_state=env_state,
            obs=obs,
            start=jnp.ones((n,), bool),
            carry=self.algo.initial_carry(n),
            key=loop_key,
            eval_key=eval_key,
            env_steps=jnp.zeros((), jnp.int32),
            episodes=jnp.zeros((), jnp.int32),
            iterations=jnp.zeros((), jnp.int32),
            eval_return=jnp.full((), jnp.nan, jnp.float32),
            best_eval_return=jnp.full((), -jnp.inf, jnp.float32),
            nonfinite_metric=jnp.full((), -1, jnp.int32),
            nonfinite_env_step=jnp.full((), -1, jnp.int32),
            hparams=hparams,
        )

    def init(self, seeds: Sequence[int],
             hparams: Mapping[str, Sequence[float]] | None = None) -> LoopState:
        """The vmapped state of `len(seeds)` runs: every leaf `[R, ...]`.

        Args:
          seeds: each run's seed (a vectorised sweep repeats them across its members).
          hparams: `{name: [R] values}` for some of `algo.hparams()`; the others (all,
            by default) take the algorithm's own values in every run.
        """
        values = {name: np.full(len(seeds), value, np.float32)
                  for name, value in self.default_hparams().items()}
        for name, run_values in (hparams or {}).items():
            if name not in values:
                raise ValueError(f"hparams: {name!r} is not a sweepable hyper-parameter of "
                                 f"the algorithm; allowed: {sorted(values)}")
            run_values = np.asarray(run_values, np.float32)
            if run_values.shape != (len(seeds),):
                raise ValueError(f"hparams[{name!r}] must have one value per run "
                                 f"({len(seeds)}), got shape {run_values.shape}")
            values[name] = run_values
        if "init" not in self._compiled:
            self._compiled["init"] = jax.jit(jax.vmap(self.init_one))
        return self._compiled["init"](seed_keys(seeds), values)

    # -- one iteration ----------------------------------------------------------------
    def _env_step(self, s: LoopState, key: jax.Array, live: jax.Array):
        """One exploring step of every env; envs where `live` is False keep their state.

        Returns the new state, the transition (`mask = live`), the extras, and the
        finished episodes' `(return sum, length sum, count)`, as the envs'
        `EpisodeStatistics` report them.
        """
        act_key, env_key = jax.random.split(key)
        action, carry, extras = self.bound(s.hparams).act(s.algo, s.obs, s.start, s.carry,
                                                          act_key)
        obs, env_state, reward, terminated, truncated, info = self.vec_env.step(
            env_key, s.env_state, action
        )
        transition = Transition(
            obs=s.obs,
            action=action.astype(jnp.int32),
            reward=reward.astype(jnp.float32),
            next_obs=info["final_obs"],
            terminated=terminated,
            truncated=truncated,
            start=s.start,
            mask=live,
        )
        stepped = s.replace(env_state=env_state, obs=obs, start=info["start"], carry=carry)
        if self.settings.rollout == "episode":  # waiting envs keep everything as it was
            # (their episode counters included: they live in the env state)
            keep = {f: select_envs(live, getattr(stepped, f), getattr(s, f))
                    for f in ("obs", "start", "carry")}
            stepped = stepped.replace(
                env_state=env_state.replace(
                    env_state=select_envs(live, env_state.env_state, s.env_state.env_state)
                ),
                **keep,
            )
        done = info["episode_done"] & live  # a waiting env's step is thrown away
        sums = (
            jnp.sum(jnp.where(done, info["episode_return"], 0.0)),
            jnp.sum(jnp.where(done, info["episode_length"], 0)),
            jnp.sum(done, dtype=jnp.int32),
        )
        return stepped, transition, extras, sums

    def collect(self, state: LoopState, key: jax.Array) -> tuple[LoopState, Rollout, dict]:
        """Collect one rollout with the exploring policy (`settings.rollout` says how much).

        Returns the advanced state, the `Rollout` (leaves `[N, T]`, `T = rollout_steps`;
        with `"episode"` each env's real steps are a prefix, `mask` False after it) and the
        sums of the returns/lengths of the episodes completed in it.
        """
        num_steps = self.settings.rollout_steps
        keys = jax.random.split(key, num_steps)
        zero = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
        add = lambda a, b: jax.tree.map(jnp.add, a, b)

        if self.settings.rollout == "steps":
            all_live = jnp.ones((self.settings.num_envs,), bool)

            def step(carry_, key_t):
                s, sums = carry_
                s, transition, extras, done = self._env_step(s, key_t, all_live)
                return (s, add(sums, done)), (transition, extras)

            (state, sums), (transition, extras) = jax.lax.scan(step, (state, zero), keys)
        else:
            state, sums, transition, extras = self._collect_episodes(state, keys, zero)
        # Time-major [T, N, ...] -> the store's env-major [N, T, ...].
        to_env_major = lambda x: jnp.swapaxes(x, 0, 1)
        rollout = Rollout(
            transition=jax.tree.map(to_env_major, transition),
            extras=jax.tree.map(to_env_major, extras),
        )
        ret_sum, len_sum, count = sums
        state = state.replace(
            env_steps=state.env_steps + jnp.sum(rollout.transition.mask, dtype=jnp.int32),
            episodes=state.episodes + count,
        )
        return state, rollout, {"return_sum": ret_sum, "length_sum": len_sum, "count": count}

    def _collect_episodes(self, state: LoopState, keys: jax.Array, zero: tuple):
        """`"episode"` collection: a `while_loop` that steps until every env's episode
        ended (or `rollout_steps`), writing step `t` into time-major buffers `[T, N]`."""
        n = self.settings.num_envs
        probe = jax.eval_shape(lambda s: self._env_step(s, keys[0], jnp.ones((n,), bool)), state)
        _, tr_shape, ex_shape, _ = probe
        empty = lambda x: jnp.zeros((keys.shape[0], *x.shape), x.dtype)
        buffers = (jax.tree.map(empty, tr_shape), jax.tree.map(empty, ex_shape))

        def cond(c):
            t, _, live, *_ = c
            return (t < keys.shape[0]) & jnp.any(live)

        def body(c):
            t, s, live, sums, (tr_buf, ex_buf) = c
            s, transition, extras, done = self._env_step(s, keys[t], live)
            put = lambda buf, x: buf.at[t].set(x)
            tr_buf = jax.tree.map(put, tr_buf, transition)
            ex_buf = jax.tree.map(put, ex_buf, extras)
            live = live & ~(transition.terminated | transition.truncated)
            return t + 1, s, live, jax.tree.map(jnp.add, sums, done), (tr_buf, ex_buf)

        init = (jnp.zeros((), jnp.int32), state, jnp.ones((n,), bool), zero, buffers)
        _, state, _, sums, (transition, extras) = jax.lax.while_loop(cond, body, init)
        return state, sums, transition, extras

    def iteration(self, states: LoopState, over_seeds: Callable) -> tuple[LoopState, tuple]:
        """Collect one rollout per seed, then `algo.learn` on it; flag non-finite metrics.

        `states` has the seed axis; `over_seeds(fn)` maps a per-seed function over it.
        When the algorithm can say whether it will update (`wants_update`), that branch
        is decided once for all seeds, outside the seed map: under `vmap` a per-seed
        `lax.cond` would become a `select` and run the updates of a seed still in its
        random phase (or of every seed, while all of them are). Seeds in a mixed phase
        still go through the per-seed branch, so results do not depend on it.
        """

        def before(state: LoopState):
            key, collect_key, learn_key = jax.random.split(state.key, 3)
            state, rollout, episode_sums = self.collect(state.replace(key=key), collect_key)
            return state, rollout, episode_sums, learn_key

        states, rollouts, sums, keys = over_seeds(before)(states)
        if hasattr(self.algo, "update_phase"):
            # Phased algorithms (DQN): store unconditionally, then one branch for all
            # seeds; only the updates sit inside the `cond` (a store written inside it
            # would be copied whole every iteration).
            hp = states.hparams
            training = over_seeds(lambda h, a: self.bound(h).wants_update(a))(hp, states.algo)
            algo = over_seeds(lambda h, a, r: self.bound(h).observe(a, r))(
                hp, states.algo, rollouts)
            train = lambda may_update: over_seeds(
                lambda h, a, k, t: self.bound(h).update_phase(a, k, t, may_update))
            algo, metrics = jax.lax.cond(
                jnp.any(training), train(True), train(False), hp, algo, keys, training
            )
        else:
            algo, metrics = over_seeds(lambda h, a, r, k: self.bound(h).learn(a, r, k))(
                states.hparams, states.algo, rollouts, keys)

        def after(state: LoopState, algo: PyTree, metrics: dict):
            names = tuple(sorted(metrics))
            self._traced["learn_metrics"] = names  # recorded at trace time for the driver
            bad = jnp.stack([~jnp.all(jnp.isfinite(metrics[n])) for n in names])
            state = _flag_nonfinite(state, bad)
            return state.replace(algo=algo, iterations=state.iterations + 1)

        states = over_seeds(after)(states, algo, metrics)
        return states, (sums, metrics)

    @property
    def nonfinite_names(self) -> tuple[str, ...]:
        """What `LoopState.nonfinite_metric` indexes: the learn metrics, then "params".
        Known once the loop has been traced (`run_chunk` called)."""
        return (*self._traced.get("learn_metrics", ()), "params")

    def _period_metrics(self, learn: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """A period's `train/*` values from its iterations' learn metrics (`[I]` each).

        Counters and schedules the algorithm lists in `period_end_metrics` are reported
        as they stand at the period's end; every other metric is averaged over the
        iterations that ran updates (`learn["training"]`, when the algorithm reports it),
        so a random phase's placeholder zeros never dilute it (NaN: none ran).
        """
        end_names = getattr(self.algo, "period_end_metrics", ())
        trained = learn["training"] > 0 if "training" in learn else None
        out = {}
        for name, value in learn.items():
            value = value.astype(jnp.float32)
            if name in end_names:
                out[name] = value[-1]
            elif name == "training" or trained is None:
                out[name] = jnp.nanmean(value)
            else:
                out[name] = _nanmean(jnp.sum(jnp.where(trained, value, 0.0)), jnp.sum(trained))
        return out

    # -- evaluation -------------------------------------------------------------------
    def evaluate(self, algo_state: PyTree, key: jax.Array,
                 hparams: dict[str, jax.Array] | None = None) -> dict[str, jax.Array]:
        """Greedy returns of `eval_episodes` episodes on envs seeded from `key`.

        Each eval env runs until its first episode ends (or `eval_max_steps`); what it
        plays after that does not count. A `while_loop` stops as soon as every episode
        has ended. The envs' `EpisodeStatistics` count the returns and lengths; an
        episode cut by `eval_max_steps` counts as far as it got.

        Returns `{"return": [], "length": []}` means over the episodes.
        """
        algo = self.bound(hparams or {})
        vec = self.eval_env
        n = self.settings.eval_episodes
        reset_key, key = jax.random.split(key)
        obs, env_state = vec.reset(reset_key)

        def cond(c):
            t, *_, done, _, _ = c
            return jnp.logical_and(t < self.settings.eval_max_steps, ~jnp.all(done))

        def body(c):
            t, obs, start, env_state, carry, done, ret, length = c
            action, carry = algo.act_greedy(algo_state, obs, start, carry)
            obs, env_state, *_, info = vec.step(jax.random.fold_in(key, t), env_state, action)
            first = info["episode_done"] & ~done  # the env's first episode just ended
            ret = jnp.where(first, info["episode_return"], ret)
            length = jnp.where(first, info["episode_length"], length)
            done = done | first
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
        _, _, _, env_state, _, done, ret, length = jax.lax.while_loop(cond, body, init)
        # Episodes still running at `eval_max_steps`: their totals so far.
        running = env_state.env_state
        ret = jnp.where(done, ret, running.episode_return)
        length = jnp.where(done, length, running.episode_length)
        return {"return": jnp.mean(ret), "length": jnp.mean(length.astype(jnp.float32))}

    # -- periods and chunks -----------------------------------------------------------
    def period(self, states: LoopState, over_seeds: Callable) -> tuple[LoopState, dict]:
        """`eval_interval` iterations, then one evaluation per seed. Metrics: `{name: [S]}`
        (per-seed scalars when `over_seeds` squeezes a single seed)."""
        states, (sums, learn) = jax.lax.scan(
            lambda s, _: self.iteration(s, over_seeds), states, None,
            length=self.settings.eval_interval,
        )
        # scan stacks iterations first: [I, S, ...] -> [S, I, ...] for the per-seed map.
        seeds_first = lambda tree: jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1), tree)
        if over_seeds is not _squeezed:  # (a squeezed seed has no seed axis to move)
            sums, learn = seeds_first(sums), seeds_first(learn)
        return over_seeds(self._end_period)(states, sums, learn)

    def _end_period(self, state: LoopState, sums: dict, learn: dict):
        """One seed's evaluation and metrics at the end of a period (`sums`, `learn`: `[I]`)."""
        eval_key, key = jax.random.split(state.eval_key)
        ev = self.evaluate(state.algo, key, state.hparams)
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
        for name, value in self._period_metrics(learn).items():
            metrics[f"train/{name}"] = value
        params = getattr(state.algo, "params", None)
        if params is not None:  # a cheap reduction once per period, not per update
            leaves = [x for x in jax.tree.leaves(params) if jnp.issubdtype(x.dtype, jnp.inexact)]
            finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
            flags = jnp.zeros((len(self.nonfinite_names),), bool).at[-1].set(~finite)
            state = _flag_nonfinite(state, flags)
        return state, metrics

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
            over_seeds = _squeezed if num_seeds == 1 else jax.vmap

            def chunk(states: LoopState):
                if num_seeds == 1:
                    states = jax.tree.map(lambda x: x[0], states)
                states, metrics = jax.lax.scan(
                    lambda s, _: self.period(s, over_seeds), states, None, length=num_periods
                )
                if num_seeds == 1:
                    return jax.tree.map(lambda x: x[None], (states, metrics))
                return states, jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1), metrics)

            self._compiled[name] = jax.jit(chunk, donate_argnums=0)
        return self._compiled[name](state)
