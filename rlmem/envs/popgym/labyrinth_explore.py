"""Labyrinth Explore: visit every square of a random maze (popgym's `LabyrinthExplore`).

The agent enters a fresh perfect maze (see :mod:`rlmem.envs.popgym.maze`) through an
entrance in the outer wall and sees only the 3x3 squares around it; the other entrance
stays closed. Stepping onto a square for the first time earns `1 / F` (`F`: free squares
of the maze, the entrance excluded, so the return of a complete exploration is 1); any
other step costs `1 / episode_length`. The episode terminates once every open square has
been visited, and is truncated after `episode_length - 1` steps as in popgym.
"""

from __future__ import annotations

import jax.numpy as jnp

from rlmem.envs.popgym.maze import Cell, EnvParams, EnvState, MazeEnv


class LabyrinthExplore(MazeEnv):
    """Explore a random maze; arguments, observation and action as in `MazeEnv`."""

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        before = state.explored
        state = self._advance(state, action)
        new_square = ~before[state.position[0], state.position[1]]
        num_free = jnp.sum(state.grid == Cell.FREE)
        reward = jnp.where(new_square, 1.0 / num_free, params.step_penalty)
        open_squares = state.grid != Cell.OBSTACLE
        terminated = jnp.all(open_squares == state.explored)
        return self.get_obs(state, params), state, reward.astype(jnp.float32), terminated, {}
