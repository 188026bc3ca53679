"""Maze generation and the shared grid mechanics of the Labyrinths (`maze.py`).

Generated mazes are checked structurally with plain-Python graph code (right dims, cells
open, corners walls, a spanning tree of the cells: connected with exactly `cells - 1`
passages), and statistically against popgym's own generator (mazelib's Hunt-and-Kill),
which they should match in distribution. `move` and `local_view` are compared with
popgym's `MazeEnv` methods on arbitrary positions, borders included.
"""

from __future__ import annotations

import functools
import random
import warnings
from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.spaces import Discrete
from hypothesis import given
from hypothesis import strategies as st

from rlmem.envs.popgym import maze
from tests.envs.harness import Lockstep

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from mazelib.generate.HuntAndKill import HuntAndKill
    from popgym.envs.labyrinth_escape import LabyrinthEscape as PopEscape

# Popgym's Easy maze and a non-square one; Medium/Hard sizes are checked through the
# Labyrinth envs' resets (test_labyrinth_*.py), which share this generator.
SIZES = [(5, 5), (3, 6)]
NUM_MAZES = 256


@functools.cache
def _many_mazes(rows, cols):
    """`[NUM_MAZES, 2 rows + 1, 2 cols + 1]` generated mazes (one compile per size)."""
    keys = jax.random.split(jax.random.PRNGKey(rows * 100 + cols), NUM_MAZES)
    gen = jax.jit(jax.vmap(lambda k: maze.generate_maze(k, rows, cols)))
    return np.asarray(gen(keys))


def _passages(grid, y, x):
    """Open grid squares next to cell square `(y, x)`."""
    return [(y + dy, x + dx) for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))
            if grid[y + dy, x + dx] == maze.Cell.FREE]


def assert_perfect(grid, rows, cols):
    """Plain-Python check that `grid` (no entrances) is a perfect `rows x cols` maze."""
    assert grid.shape == (2 * rows + 1, 2 * cols + 1)
    assert set(np.unique(grid)) <= {maze.Cell.FREE, maze.Cell.OBSTACLE}
    assert (grid[1::2, 1::2] == maze.Cell.FREE).all(), "every cell is open"
    assert (grid[::2, ::2] == maze.Cell.OBSTACLE).all(), "corners are walls"
    border = np.concatenate([grid[0], grid[-1], grid[:, 0], grid[:, -1]])
    assert (border == maze.Cell.OBSTACLE).all(), "closed outer wall"
    num_passages = (grid[1::2, 2:-1:2] == 0).sum() + (grid[2:-1:2, 1::2] == 0).sum()
    assert num_passages == rows * cols - 1, "a tree has cells - 1 edges"
    seen, todo = {(1, 1)}, deque([(1, 1)])
    while todo:
        y, x = todo.popleft()
        for wy, wx in _passages(grid, y, x):
            nxt = (2 * wy - y, 2 * wx - x)
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert len(seen) == rows * cols, "connected"


@pytest.mark.parametrize("rows,cols", SIZES)
def test_generated_mazes_are_perfect(rows, cols):
    mazes = _many_mazes(rows, cols)
    for grid in mazes:
        assert_perfect(grid, rows, cols)
    assert len({g.tobytes() for g in mazes}) > NUM_MAZES * 0.9, "mazes differ"


def _dead_ends(grid):
    h, w = grid.shape[0] // 2, grid.shape[1] // 2
    return sum(len(_passages(grid, 2 * r + 1, 2 * c + 1)) == 1
               for r in range(h) for c in range(w))


def test_texture_matches_popgym_hunt_and_kill():
    """Same algorithm, same distribution: the mean number of dead ends (a texture
    statistic that separates maze algorithms; e.g. Kruskal's gives ~7.5 on 5x5, Hunt-and-
    Kill ~4.2) agrees with mazelib's within 4 standard errors."""
    n = NUM_MAZES
    ours = np.array([_dead_ends(g) for g in _many_mazes(5, 5)])
    random.seed(0)
    np.random.seed(0)
    theirs = np.array([_dead_ends(HuntAndKill(5, 5).generate()) for _ in range(n)])
    se = np.sqrt(ours.var() / n + theirs.var() / n)
    assert abs(ours.mean() - theirs.mean()) < 4 * se, (ours.mean(), theirs.mean())


def test_outer_entrances_on_opposite_walls():
    rows, cols = 5, 7
    keys = jax.random.split(jax.random.PRNGKey(4), 800)
    start, end = map(np.asarray, jax.jit(jax.vmap(
        lambda k: maze.outer_entrances(k, rows, cols)))(keys))
    height, width = 2 * rows + 1, 2 * cols + 1
    sides = []
    for s, e in zip(start, end, strict=True):
        if s[0] in (0, height - 1) and e[0] == height - 1 - s[0]:
            sides.append("N" if s[0] == 0 else "S")
            assert s[1] % 2 == 1 and e[1] % 2 == 1
        else:
            assert s[1] in (0, width - 1) and e[1] == width - 1 - s[1], (s, e)
            sides.append("W" if s[1] == 0 else "E")
            assert s[0] % 2 == 1 and e[0] % 2 == 1
    counts = np.array([sides.count(k) for k in "NSWE"])
    assert (np.abs(counts - 200) < 60).all(), counts  # uniform side, sd ~12
    assert set(start[:, 1][start[:, 0] == 0]) == set(range(1, width, 2))


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="rows"):
        maze.generate_maze(jax.random.PRNGKey(0), 0, 4)
    with pytest.raises(ValueError, match="maze_dims"):
        maze.MazeEnv(maze_dims=(9, 10))
    with pytest.raises(ValueError, match="maze_dims"):
        maze.MazeEnv(maze_dims=(4, 10))
    with pytest.raises(ValueError, match="episode_length"):
        maze.MazeEnv(episode_length=1)


# Grids for the mechanics tests: real mazes with entrances, square and not.
_GRIDS = {}


def _grid(rows, cols, index):
    if (rows, cols) not in _GRIDS:
        grids = _many_mazes(rows, cols)[:4].copy()
        for g in grids:
            g[0, 1], g[-1, -2] = maze.Cell.START, maze.Cell.GOAL
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pop = PopEscape(maze_dims=(2 * rows, 2 * cols))
        _GRIDS[rows, cols] = grids, pop
    grids, pop = _GRIDS[rows, cols]
    return grids[index], pop


_move = jax.jit(maze.move)
_view = jax.jit(maze.local_view)


@given(
    dims=st.sampled_from([(5, 5), (3, 6)]), index=st.integers(0, 3),
    y=st.integers(0, 12), x=st.integers(0, 12), action=st.integers(0, 3),
)
def test_move_and_local_view_match_popgym(dims, index, y, x, action):
    """Any position, walls and borders included (popgym pads the view *after* the slice,
    which shifts it on the top/left border; and bounds x by shape[0] and y by shape[1])."""
    grid, pop = _grid(*dims, index)
    y, x = min(y, grid.shape[0] - 1), min(x, grid.shape[1] - 1)
    pop.maze = type("Maze", (), {"grid": grid.copy()})()
    pop.position = (y, x)
    position = jnp.array([y, x], jnp.int32)
    np.testing.assert_array_equal(_view(jnp.asarray(grid), position), pop.local_view(grid))
    np.testing.assert_array_equal(
        _move(jnp.asarray(grid), position, jnp.int32(action)), pop.move(action))


# ---- Shared by test_labyrinth_escape.py and test_labyrinth_explore.py -------------------


def maze_state_from_popgym(pop, params) -> maze.EnvState:
    """Popgym's maze, position and explored squares after `reset`, as the JAX state."""
    return maze.EnvState(
        time=jnp.int32(pop.curr_step),
        grid=jnp.asarray(pop.maze.grid, jnp.int32),
        position=jnp.asarray(pop.position, jnp.int32),
        explored=jnp.asarray(pop.explored == 1),
        last_action=jnp.int32(maze.Action.NONE),
    )


# Left-hand rule, directions as actions: LEFT 0, RIGHT 1, UP 2, DOWN 3.
_TURN_LEFT = {2: 0, 0: 3, 3: 1, 1: 2}
_TURN_RIGHT = {v: k for k, v in _TURN_LEFT.items()}
_BACK = {0: 1, 1: 0, 2: 3, 3: 2}
_DELTA = {0: (0, -1), 1: (0, 1), 2: (-1, 0), 3: (1, 0)}


class WallFollower(Discrete):
    """Discrete(4) whose `sample()` follows the left wall of popgym's maze (in a perfect
    maze this tours every square and passes the exit), taking a random action with
    probability `epsilon`. `epsilon=None` never moves: it always walks into the outer wall
    at the entrance, so the episode can only end by the time limit."""

    def __init__(self, pop, epsilon):
        super().__init__(4)
        self.pop, self.epsilon = pop, epsilon
        self.rng, self.heading = np.random.default_rng(0), 2

    def seed(self, seed=None):
        self.rng, self.heading = np.random.default_rng(seed), 2
        return [seed]

    def _open(self, action):
        grid, (y, x) = self.pop.maze.grid, self.pop.position
        ty = min(max(y + _DELTA[action][0], 0), grid.shape[0] - 1)
        tx = min(max(x + _DELTA[action][1], 0), grid.shape[1] - 1)
        return (ty, tx) != (y, x) and grid[ty, tx] != maze.Cell.OBSTACLE

    def sample(self):
        if self.epsilon is None:
            return next(a for a in range(4) if not self._open(a))
        if self.rng.random() < self.epsilon:
            action = int(self.rng.integers(4))
        else:
            h = self.heading
            action = next(a for a in (_TURN_LEFT[h], h, _TURN_RIGHT[h], _BACK[h])
                          if self._open(a))
        if self._open(action):
            self.heading = action
        return action


def maze_lockstep(jax_env, pop_env, epsilon) -> Lockstep:
    """Lock-step case for a Labyrinth: mazes are integer grids, so everything is exact."""
    pop_env.action_space = WallFollower(pop_env, epsilon)
    return Lockstep(
        jax_env=jax_env, params=jax_env.default_params, pop_env=pop_env,
        state_from_popgym=maze_state_from_popgym, action_to_jax=lambda a: jnp.int32(a),
        atol=1e-6,
    )


def quiet_popgym(pop_cls):
    """A popgym Labyrinth, built without its "solvable without memory" warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pop_cls()


def assert_labyrinth_matches_popgym(env, pop) -> None:
    """Spaces, time limit, step penalty and grid shape of a Labyrinth equal popgym's."""
    params = env.default_params
    np.testing.assert_array_equal(env.observation_space(params).nvec, pop.observation_space.nvec)
    assert env.action_space(params).n == pop.action_space.n == env.num_actions
    assert env.episode_length == pop.max_episode_length == 1024
    assert params.max_steps_in_episode == 1023
    np.testing.assert_allclose(params.step_penalty, pop.neg_reward_scale)
    assert (2 * env.rows + 1, 2 * env.cols + 1) == pop.state_space.shape
