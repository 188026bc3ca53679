"""A batch of `N` envs with **optimistic resets**, for the jitted training loop.

gymnax's `Environment.step` auto-resets by computing a full `reset_env` for *every* env
at *every* step and selecting; for card games that reset (a shuffle) costs far more than
the step itself. `VecEnv` instead steps all `N` envs with `step_env` and computes only
`k = resets_per_step` fresh reset states per step.

Where the fresh states go, and what that costs in independence:

* `k >= N`: every env that finishes takes fresh state `i` of that step (reset key `i`
  for env `i`): exactly gymnax's auto-reset.
* `k < N`: fresh states go into a **reset pool** of `pool_size` (default `N`) states kept
  in the `VecEnvState`; each step the `k` new ones replace pool entries already handed
  out, and each finished env takes an unused entry. A fresh state is handed out once,
  so episodes are independent, *unless* more envs finish in one step than the pool has
  unused entries: then the extra envs reuse entries handed out in the same step (env
  ranks differing by a multiple of the number of unused entries share one initial
  state -- same deck, same maze -- and are correlated until their actions diverge).
  The pool refills at `k` per step, so this needs bursts of more than `pool_size` ends
  or a sustained end rate above `k` per step. Card games whose envs all start together
  end together every `L` steps: they stay independent while `pool_size >= N` and
  `k * L >= N`. Without the pool (simply reusing the `k` fresh states of the step),
  such envs would share decks in groups of `N / k` forever.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from rlmem.envs.wrappers import EpisodeStatistics


@struct.dataclass
class VecEnvState:
    """`env_state`: leaves `[N, ...]`; `pool_obs`/`pool_state`: `[P, ...]` fresh reset
    observations/states (None when `k >= N`: no pool); `pool_used`: `[P]` bool, True for
    entries already handed out."""

    env_state: Any
    pool_obs: Any
    pool_state: Any
    pool_used: jax.Array


def select_envs(mask: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Per-env `where` over pytrees whose leaves are `[N, ...]`; `mask: [N]`."""

    def pick(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, on_true, on_false)


class VecEnv:
    """`num_envs` copies of a (wrapped) gymnax env with optimistic auto-reset.

    Args:
      env: a gymnax env, usually from :func:`rlmem.envs.make` (flat obs, one Discrete).
        It is wrapped in :class:`~rlmem.envs.wrappers.EpisodeStatistics`.
      params: its env params.
      num_envs: `N`.
      resets_per_step: `k` fresh reset states per step, `1 <= k`; default `max(1, N // 8)`.
        Values above `N` are treated as `N` (exact gymnax auto-reset, no pool).
      pool_size: reset-pool entries `P >= 1` when `k < N`; default `N`.
    """

    def __init__(self, env: environment.Environment, params: Any, num_envs: int,
                 resets_per_step: int | None = None, pool_size: int | None = None):
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        if resets_per_step is None:
            resets_per_step = max(1, num_envs // 8)
        if not isinstance(resets_per_step, int) or resets_per_step < 1:
            raise ValueError(f"resets_per_step must be a positive int, got {resets_per_step!r}")
        if pool_size is None:
            pool_size = num_envs
        if not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError(f"pool_size must be a positive int, got {pool_size!r}")
        self.env = env if isinstance(env, EpisodeStatistics) else EpisodeStatistics(env)
        self.params = params
        self.num_envs = num_envs
        self.resets_per_step = min(resets_per_step, num_envs)
        self.pool_size = 0 if self.resets_per_step >= num_envs else pool_size

    def observation_space(self):
        return self.env.observation_space(self.params)

    def action_space(self):
        return self.env.action_space(self.params)

    def _resets(self, key: jax.Array, n: int) -> tuple[Any, Any]:
        return jax.vmap(self.env.reset_env, in_axes=(0, None))(jax.random.split(key, n),
                                                              self.params)

    def reset(self, key: jax.Array) -> tuple[jax.Array, VecEnvState]:
        """Reset all envs (and fill the pool). Returns `obs: [N, F]` and the state."""
        env_key, pool_key = jax.random.split(key)
        obs, env_state = self._resets(env_key, self.num_envs)
        pool_obs = pool_state = None
        if self.pool_size:
            pool_obs, pool_state = self._resets(pool_key, self.pool_size)
        state = VecEnvState(env_state, pool_obs, pool_state, jnp.zeros(self.pool_size, bool))
        return obs, state

    def _take_from_pool(self, key: jax.Array, state: VecEnvState, done: jax.Array):
        """Refill `k` handed-out pool entries, then give each finished env an unused one.

        Returns the `[N]` fresh (obs, state) rows (meaningful where `done`) and the pool.
        """
        p, k = self.pool_size, self.resets_per_step
        fresh_obs, fresh = self._resets(key, k)
        # Refill: the first k handed-out entries (index p = out of range: dropped).
        targets = jnp.nonzero(state.pool_used, size=k, fill_value=p)[0]
        put = lambda pool, new: pool.at[targets].set(new, mode="drop")
        pool_obs = jax.tree.map(put, state.pool_obs, fresh_obs)
        pool_state = jax.tree.map(put, state.pool_state, fresh)
        used = state.pool_used.at[targets].set(False, mode="drop")
        # Take: the r-th finished env gets the r-th unused entry (wrapping if too few).
        rank = jnp.cumsum(done) - 1
        unused = jnp.logical_not(used)
        num_unused = unused.sum()
        unused_idx = jnp.nonzero(unused, size=p, fill_value=0)[0]
        slot = jnp.where(num_unused > 0, unused_idx[rank % jnp.maximum(num_unused, 1)],
                         rank % p)
        used = used.at[jnp.where(done, slot, p)].set(True, mode="drop")
        rows = jax.tree.map(lambda x: x[slot], (pool_obs, pool_state))
        return rows, state.replace(pool_obs=pool_obs, pool_state=pool_state, pool_used=used)

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
        """
        n = self.num_envs
        step_key, reset_key = jax.random.split(key)
        obs, stepped, reward, terminated, info = jax.vmap(
            self.env.step_env, in_axes=(0, 0, 0, None))(
            jax.random.split(step_key, n), state.env_state, action, self.params)
        terminated = jnp.asarray(terminated, bool)
        truncated = jax.vmap(self.env.is_truncated, in_axes=(0, None))(stepped, self.params)
        truncated = jnp.logical_and(truncated, jnp.logical_not(terminated))
        done = jnp.logical_or(terminated, truncated)

        if self.pool_size:
            (fresh_obs, fresh), state = self._take_from_pool(reset_key, state, done)
        else:
            fresh_obs, fresh = self._resets(reset_key, n)
        state = state.replace(env_state=select_envs(done, fresh, stepped))
        new_obs = select_envs(done, fresh_obs, obs)
        info = {**info, "final_obs": obs, "start": done}
        return (new_obs, state, jnp.asarray(reward, jnp.float32), terminated, truncated,
                info)
