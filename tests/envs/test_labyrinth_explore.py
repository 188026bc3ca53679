"""LabyrinthExplore against popgym 1.0.7.

Lock-step as for LabyrinthEscape (popgym's maze read into the JAX state, same actions,
exact integer comparisons). A left-wall follower tours the whole perfect maze, so
episodes end by exploring every square (termination); an agent that keeps walking into
the outer wall runs into the time limit at exactly `episode_length - 1` steps.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest

from rlmem.envs.popgym import maze
from rlmem.envs.popgym.labyrinth_explore import LabyrinthExplore
from tests.envs.harness import run_lockstep
from tests.envs.test_maze import (
    assert_labyrinth_matches_popgym,
    assert_perfect,
    maze_lockstep,
    quiet_popgym,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import popgym.envs.labyrinth_explore as pop_explore

DIFFICULTIES = {
    "Easy": (pop_explore.LabyrinthExploreEasy, (10, 10)),
    "Medium": (pop_explore.LabyrinthExploreMedium, (14, 14)),
    "Hard": (pop_explore.LabyrinthExploreHard, (18, 18)),
}
_ENVS = {name: LabyrinthExplore(maze_dims=dims) for name, (_, dims) in DIFFICULTIES.items()}


def _pop(name):
    return quiet_popgym(DIFFICULTIES[name][0])


@pytest.mark.parametrize("name", list(DIFFICULTIES))
def test_spaces_and_limits_match_popgym(name):
    assert_labyrinth_matches_popgym(_ENVS[name], _pop(name))


@pytest.mark.parametrize("name", list(DIFFICULTIES))
def test_lockstep_explores_everything(name):
    """Episodes that end by visiting every open square; rewards `1/F` for new squares."""
    case = maze_lockstep(_ENVS[name], _pop(name), epsilon=0.1)
    for seed in range(2):
        steps = run_lockstep(case, num_episodes=1, seed=seed, max_steps=1023)
        assert steps < 1023, "the wall follower explores the maze before the time limit"


def test_lockstep_time_limit():
    """An agent that never moves: truncated (not terminated) after exactly 1023 steps."""
    case = maze_lockstep(_ENVS["Easy"], _pop("Easy"), epsilon=None)
    assert run_lockstep(case, num_episodes=1, seed=5, max_steps=1023) == 1023


def test_reset_structure_and_return_of_full_exploration():
    """Our own reset: one entrance (START, the agent's square), the other stays wall, a
    perfect maze; exploring everything earns exactly 1 in new-square rewards."""
    env = _ENVS["Easy"]
    keys = jax.random.split(jax.random.PRNGKey(2), 16)
    _, state = jax.jit(jax.vmap(env.reset_env, in_axes=(0, None)))(keys, env.default_params)
    for i in range(16):
        grid = np.asarray(state.grid[i])
        y, x = np.asarray(state.position[i])
        assert grid[y, x] == maze.Cell.START and (grid == maze.Cell.GOAL).sum() == 0
        border = np.concatenate([grid[0], grid[-1], grid[:, 0], grid[:, -1]])
        assert (border != maze.Cell.OBSTACLE).sum() == 1
        inner = grid.copy()
        inner[y, x] = maze.Cell.OBSTACLE
        assert_perfect(inner, env.rows, env.cols)
        num_free = (grid == maze.Cell.FREE).sum()
        assert num_free == 2 * env.rows * env.cols - 1  # cells + tree edges
