"""LabyrinthEscape against popgym 1.0.7.

Lock-step: popgym generates the maze (mazelib), we read its grid, position and explored
squares into the JAX state, then both are driven by the same actions. Everything is
integer grid logic, so observations must be equal and rewards equal to float32 rounding.
A left-wall follower (with random detours) makes episodes reach the exit (termination);
an agent that keeps walking into the outer wall runs into popgym's time limit at exactly
`episode_length - 1` steps (truncation).
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest

from rlmem.envs.popgym import maze
from rlmem.envs.popgym.labyrinth_escape import LabyrinthEscape
from tests.envs.harness import run_lockstep
from tests.envs.test_maze import (
    assert_labyrinth_matches_popgym,
    assert_perfect,
    maze_lockstep,
    quiet_popgym,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import popgym.envs.labyrinth_escape as pop_escape

DIFFICULTIES = {
    "Easy": (pop_escape.LabyrinthEscapeEasy, (10, 10)),
    "Medium": (pop_escape.LabyrinthEscapeMedium, (14, 14)),
    "Hard": (pop_escape.LabyrinthEscapeHard, (18, 18)),
}
_ENVS = {name: LabyrinthEscape(maze_dims=dims) for name, (_, dims) in DIFFICULTIES.items()}


def _pop(name):
    return quiet_popgym(DIFFICULTIES[name][0])


@pytest.mark.parametrize("name", list(DIFFICULTIES))
def test_spaces_and_limits_match_popgym(name):
    assert_labyrinth_matches_popgym(_ENVS[name], _pop(name))


@pytest.mark.parametrize("name", list(DIFFICULTIES))
def test_lockstep_escapes(name):
    """Episodes that end at the exit: every step compared, including the +1 and
    `terminated` on reaching it."""
    case = maze_lockstep(_ENVS[name], _pop(name), epsilon=0.1)
    for seed in range(2):
        steps = run_lockstep(case, num_episodes=1, seed=seed, max_steps=1023)
        assert steps < 1023, "the wall follower escapes before the time limit"


def test_lockstep_time_limit():
    """An agent that never escapes: truncated (not terminated) after exactly 1023 steps."""
    case = maze_lockstep(_ENVS["Easy"], _pop("Easy"), epsilon=None)
    assert run_lockstep(case, num_episodes=1, seed=5, max_steps=1023) == 1023


def test_lockstep_random_walk():
    case = maze_lockstep(_ENVS["Easy"], _pop("Easy"), epsilon=1.0)
    run_lockstep(case, num_episodes=1, seed=3, max_steps=1023)


@pytest.mark.parametrize("name", ["Easy", "Hard"])  # Medium: same code, another size
def test_reset_structure(name):
    """Our own resets: a perfect maze with the entrance (START, where the agent stands)
    and the exit (GOAL) on opposite outer walls; first observation carries NONE."""
    env = _ENVS[name]
    keys = jax.random.split(jax.random.PRNGKey(1), 16)
    obs, state = jax.jit(jax.vmap(env.reset_env, in_axes=(0, None)))(keys, env.default_params)
    for i in range(16):
        grid = np.asarray(state.grid[i])
        y, x = np.asarray(state.position[i])
        assert grid[y, x] == maze.Cell.START
        (gy,), (gx,) = np.nonzero(grid == maze.Cell.GOAL)
        height, width = grid.shape
        assert (gy, gx) in {(height - 1 - y, gx), (gy, width - 1 - x)}
        assert y in (0, height - 1) or x in (0, width - 1)
        assert np.asarray(state.explored[i]).sum() == 1 and state.explored[i, y, x]
        inner = grid.copy()
        inner[y, x] = inner[gy, gx] = maze.Cell.OBSTACLE
        assert_perfect(inner, env.rows, env.cols)
    assert (np.asarray(obs)[:, -1] == maze.Action.NONE).all()
    assert (np.asarray(state.time) == 0).all()
