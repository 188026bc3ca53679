"""Labyrinth Escape: find the exit of a random maze (popgym's `LabyrinthEscape`).

The agent enters a fresh perfect maze (see :mod:`rlmem.envs.popgym.maze`) through an
entrance in the outer wall and sees only the 3x3 squares around it. Every step costs
`1 / episode_length`; stepping onto the exit, cut into the opposite outer wall, earns
`+1` on top and terminates the episode. Popgym truncates when its step counter reaches
`episode_length - 1`, so an episode lasts at most `episode_length - 1` steps; we do the same.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlmem.envs.popgym.maze import Cell, EnvParams, EnvState, MazeEnv


class LabyrinthEscape(MazeEnv):
    """Escape a random maze; arguments, observation and action as in `MazeEnv`."""

    def _mark_exit(self, grid: jax.Array, end: jax.Array) -> jax.Array:
        return grid.at[end[0], end[1]].set(Cell.GOAL)

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        state = self._advance(state, action)
        escaped = state.grid[state.position[0], state.position[1]] == Cell.GOAL
        reward = params.step_penalty + jnp.where(escaped, 1.0, 0.0)
        return self.get_obs(state, params), state, reward.astype(jnp.float32), escaped, {}
