"""A batch of `N` envs that resets only the envs that finished, for the jitted training loop.

gymnax's `Environment.step` auto-resets by computing a full `reset_env` for *every* env
at *every* step and selecting; for card games that reset (a shuffle) costs far more than
the step itself, and only one env in `L` (the episode length) needs it. `VecEnv` steps all
`N` envs with `step_env` and then computes fresh states for **the envs that finished, and
only for them**: the reset budget is the real finishing rate, whatever it is (bursts of
`N` included).

How: on a step where `D > 0` envs finished (a `lax.cond`: nothing runs on the other
steps), a `lax.while_loop` takes them `k = resets_per_step` at a time (the first `k`
still waiting, by index), computes `k` resets and scatters them in: `ceil(D / k)` passes
(`k = N`: one pass that resets all `N` and selects the finished envs' rows). `k` is a
speed knob only. Env `i` always resets with the key `fold_in(reset_key, i)`, so every
finished env gets its own fresh, independent state -- gymnax's auto-reset semantics (a
fresh reset key per env and step; the key values differ from gymnax's), bit for bit the
same for every `k`. A larger `k` pads more (a pass computes `k` resets even for fewer
envs); a smaller one takes more passes when many envs finish at once. Default
(:func:`default_resets_per_step`): `N` for fixed-length games (their envs all start
together, so they all finish together, every `L` steps: one pass of `N` resets every `L`
steps), else `N // 8`.

This replaces an *optimistic* scheme (a pool refilled with `k` resets every step), which
computed resets whether or not any env finished, `N // 8` per step by default (about 6x
what a card game needs), and handed one reset state to several envs when more finished
at once than the pool held.

Under `vmap` (several seeds) the `cond` becomes a select, so the loop is entered every
step, and it runs as many passes as the seed that needs most (none on a step where no
seed's env finished; the other seeds' passes write nothing). On an accelerator each
pass's condition is a device-to-host round trip; measured on CPU only.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from rlmem.envs import threefry
from rlmem.envs.wrappers import EpisodeStatistics


@struct.dataclass
class VecEnvState:
    """`env_state`: the wrapped envs' states, leaves `[N, ...]`."""

    env_state: Any


def select_envs(mask: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Per-env `where` over pytrees whose leaves are `[N, ...]`; `mask: [N]`."""

    def pick(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, on_true, on_false)


def fixed_episode_length(env: environment.Environment, params: Any) -> int | None:
    """The length every episode of `env` has under `params`, or None when it varies.

    Read from the env's `fixed_episode_length` attribute (the card games set it; wrappers
    forward attributes), capped by the time limit `params.max_steps_in_episode`.
    """
    length = getattr(env, "fixed_episode_length", None)
    if not isinstance(length, int) or length < 1:
        return None
    limit = getattr(params, "max_steps_in_episode", None)
    return min(length, int(limit)) if isinstance(limit, int) and limit >= 1 else length


def default_resets_per_step(env: environment.Environment, params: Any, num_envs: int) -> int:
    """`num_envs` for fixed-length games (all envs finish at the same steps, so one pass
    of `N` resets every `L` steps and none in between), else `max(1, num_envs // 8)`."""
    if fixed_episode_length(env, params) is not None:
        return num_envs
    return max(1, num_envs // 8)


class VecEnv:
    """`num_envs` copies of a (wrapped) gymnax env, each reset as soon as it finishes.

    Args:
      env: a gymnax env, usually from :func:`rlmem.envs.make` (flat obs, one Discrete).
        It is wrapped in :class:`~rlmem.envs.wrappers.EpisodeStatistics`.
      params: its env params.
      num_envs: `N`.
      resets_per_step: `k >= 1`, how many finished envs one loop pass resets (see the
        module docstring); results do not depend on it, only speed. Default
        :func:`default_resets_per_step`; values above `N` are treated as `N`.
    """

    def __init__(self, env: environment.Environment, params: Any, num_envs: int,
                 resets_per_step: int | None = None):
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        if resets_per_step is None:
            resets_per_step = default_resets_per_step(env, params, num_envs)
        if not isinstance(resets_per_step, int) or resets_per_step < 1:
            raise ValueError(f"resets_per_step must be a positive int, got {resets_per_step!r}")
        self.env = env if isinstance(env, EpisodeStatistics) else EpisodeStatistics(env)
        self.params = params
        self.num_envs = num_envs
        self.resets_per_step = min(resets_per_step, num_envs)

    def observation_space(self):
        return self.env.observation_space(self.params)

    def action_space(self):
        return self.env.action_space(self.params)

    def reset_keys(self, key: jax.Array, env_ids: jax.Array) -> jax.Array:
        """`fold_in(key, i)` for each env `i` in `env_ids`: the envs' reset keys."""
        return threefry.fold_in(key, env_ids)

    def _resets(self, keys: jax.Array) -> tuple[Any, Any]:
        return jax.vmap(self.env.reset_env, in_axes=(0, None))(keys, self.params)

    def reset(self, key: jax.Array) -> tuple[jax.Array, VecEnvState]:
        """Reset all envs (env `i` with `fold_in(key, i)`). Returns `obs: [N, F]` and
        the state."""
        obs, env_state = self._resets(self.reset_keys(key, jnp.arange(self.num_envs)))
        return obs, VecEnvState(env_state)

    def _reset_finished(self, key: jax.Array, done: jax.Array, obs: Any, state: Any):
        """`(obs, state)` with the rows where `done: [N]` replaced by fresh resets, env
        `i`'s from `fold_in(split(key)[1], i)`, `k` per loop pass."""
        n, k = self.num_envs, self.resets_per_step

        def loop(obs, state):
            reset_key = threefry.split_part(key, 1)  # split(key)[1]

            def body(carry):
                pending, obs, state = carry
                if k == n:
                    # One pass resets every env and keeps the rows of those waiting: the
                    # same rows as below, without gathering ids and scattering. (The ids
                    # of the others are n, a key never kept, so that the resets depend on
                    # `pending`: else XLA hoists them out of the loop, where under `vmap`
                    # they would run every step.)
                    ids = jnp.where(pending, jnp.arange(n), n)
                    fresh_obs, fresh = self._resets(self.reset_keys(reset_key, ids))
                    return (jnp.zeros_like(pending), select_envs(pending, fresh_obs, obs),
                            select_envs(pending, fresh, state))
                # The first k envs still waiting; n (out of range) pads, and is dropped.
                ids = jnp.nonzero(pending, size=k, fill_value=n)[0]
                fresh_obs, fresh = self._resets(self.reset_keys(reset_key, ids))
                put = lambda rows, new: rows.at[ids].set(new, mode="drop")
                return (pending.at[ids].set(False, mode="drop"),
                        jax.tree.map(put, obs, fresh_obs), jax.tree.map(put, state, fresh))

            # A loop, not a `cond`, even for one pass: under `vmap` a `cond` becomes a
            # select that runs its branch every step, a loop runs while a seed needs it.
            return jax.lax.while_loop(lambda carry: jnp.any(carry[0]), body,
                                      (done, obs, state))[1:]

        # Unbatched, the `cond` skips the loop's set-up on the (many) steps where no env
        # finished.
        return jax.lax.cond(jnp.any(done), loop, lambda obs, state: (obs, state), obs, state)

    def step(self, key: jax.Array, state: VecEnvState, action: jax.Array):
        """Step all envs; finished ones are reset.

        Args:
          key: PRNG key for this step.
          state: from `reset`/`step`.
          action: `[N]` actions.

        Returns:
          `obs [N, F]` (already the first observation of the next episode where an
          episode ended), `state`, `reward [N]` float32, `terminated [N]`, `truncated [N]`
          (bool, never both True), and `info` with `final_obs [N, F]` (the observation
          before any reset: `next_obs` of :mod:`rlmem.types`), `start [N]` (the returned
          obs begins an episode), and `episode_done`, `episode_return`,
          `episode_length [N]` (valid where `episode_done`).

        Randomness: `key` splits into `(step_key, reset_key)`; env `i` steps with
        `split(step_key, N)[i]` and, if it finished, resets with
        `fold_in(reset_key, i)`.
        """
        n = self.num_envs
        step_keys = threefry.split(threefry.split_part(key, 0), n)
        obs, stepped, reward, terminated, info = jax.vmap(
            self.env.step_env, in_axes=(0, 0, 0, None))(
            step_keys, state.env_state, action, self.params)
        terminated = jnp.asarray(terminated, bool)
        truncated = jax.vmap(self.env.is_truncated, in_axes=(0, None))(stepped, self.params)
        truncated = jnp.logical_and(truncated, jnp.logical_not(terminated))
        done = jnp.logical_or(terminated, truncated)

        new_obs, env_state = self._reset_finished(key, done, obs, stepped)
        info = {**info, "final_obs": obs, "start": done}
        return (new_obs, state.replace(env_state=env_state), jnp.asarray(reward, jnp.float32),
                terminated, truncated, info)
