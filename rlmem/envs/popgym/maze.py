"""Perfect mazes generated in JAX, and the grid world shared by the Labyrinth envs
(popgym's `popgym.core.maze`).

Layout (as popgym, via mazelib): a maze of `rows x cols` cells is a grid of shape
`[2 rows + 1, 2 cols + 1]`; cell `(r, c)` sits at `(2r + 1, 2c + 1)`, the grid entries
between cells are walls or passages, everything on even/even coordinates and the outer
border is wall. The passages form a spanning tree of the cells (a *perfect* maze: every
cell reachable by exactly one path). Two entrances are cut into the outer border on
opposite sides, at odd coordinates (mazelib's `generate_entrances(start_outer=True)`).

Generation is popgym's algorithm, Hunt-and-Kill with random hunting: random-walk from a
cell into unvisited neighbours until stuck, then restart from a random visited cell that
still has unvisited neighbours. Mazelib hunts by sampling random cells until one qualifies
(and gives up after `H * W` tries, leaving cells unvisited with tiny probability); we
sample uniformly among the qualifying cells directly, which is the same distribution
conditioned on success (tests compare the dead-end statistics with mazelib's). Every
iteration carves exactly one new cell, so the loop has the static length
`rows * cols - 1` and jits with static sizes.

Popgym warns that its maze envs can be solved without memory (an MLP beats an LSTM); they
are ported for completeness.
"""

from __future__ import annotations

import enum

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment

from rlmem.envs import spaces
from rlmem.envs.popgym.base import PopgymEnv


class Cell(enum.IntEnum):
    """Grid values (popgym's `Cell`)."""

    FREE = 0
    OBSTACLE = 1
    START = 2
    GOAL = 3
    HIDDEN = 4


class Action(enum.IntEnum):
    """Moves (popgym's `Actions`); `NONE` only appears in the first observation."""

    LEFT = 0
    RIGHT = 1
    UP = 2
    DOWN = 3
    NONE = 4


# (dy, dx) of LEFT, RIGHT, UP, DOWN; rows grow downwards.
MOVES = jnp.array([[0, -1], [0, 1], [-1, 0], [1, 0]], jnp.int32)


def _neighbour_table(rows: int, cols: int) -> np.ndarray:
    """`[rows * cols, 4]` int32: flat index of the neighbour in direction `MOVES[d]`, or
    `rows * cols` (a sentinel) where it would leave the maze. Static, built in numpy."""
    r, c = np.divmod(np.arange(rows * cols), cols)
    moves = np.asarray(MOVES)
    nr, nc = r[:, None] + moves[:, 0], c[:, None] + moves[:, 1]
    inside = (nr >= 0) & (nr < rows) & (nc >= 0) & (nc < cols)
    return np.where(inside, nr * cols + nc, rows * cols).astype(np.int32)


def _pick(u: jax.Array, mask: jax.Array) -> jax.Array:
    """A uniformly random True entry of the 1-D `mask`, chosen by `u ~ U[0, 1)`: the
    `floor(u * count)`-th True entry (int32 scalar). One random number per pick, however
    long the mask."""
    count = jnp.sum(mask)
    k = jnp.minimum(jnp.floor(u * count), count - 1)
    return jnp.argmax(jnp.cumsum(mask) > k).astype(jnp.int32)


def generate_maze(key: jax.Array, rows: int, cols: int) -> jax.Array:
    """A random perfect maze by Hunt-and-Kill.

    Args:
      key: PRNG key.
      rows, cols: static number of cells along each axis (>= 1).

    Returns:
      `[2 rows + 1, 2 cols + 1]` int32 grid of `Cell.FREE` / `Cell.OBSTACLE`, no entrances.
    """
    if rows < 1 or cols < 1:
        raise ValueError(f"rows and cols must be >= 1, got rows={rows!r}, cols={cols!r}")
    num_cells = rows * cols
    neighbours = jnp.asarray(_neighbour_table(rows, cols))
    # All randomness is drawn up front (two uniforms per carved cell) and the loop only
    # records which cell it carved from in which direction; the grid is painted once
    # afterwards. A small loop body keeps compile time and run time low.
    key_first, key_loop = jax.random.split(key)
    first = jax.random.randint(key_first, (), 0, num_cells)
    uniforms = jax.random.uniform(key_loop, (num_cells - 1, 2))
    # `visited` has one extra always-visited entry: the off-maze sentinel.
    visited = jnp.zeros(num_cells + 1, bool).at[first].set(True).at[num_cells].set(True)

    def carve(carry, u):
        visited, cell = carry
        open_dirs = ~visited[neighbours]  # [num_cells, 4]
        frontier = visited[:num_cells] & open_dirs.any(-1)
        # Walk on while the current cell can; otherwise hunt for a new start.
        cell = jnp.where(frontier[cell], cell, _pick(u[0], frontier))
        direction = _pick(u[1], open_dirs[cell])
        nxt = neighbours[cell, direction]
        return (visited.at[nxt].set(True), nxt), (cell, direction)

    _, (cells, directions) = jax.lax.scan(carve, (visited, first), uniforms)
    # Paint: every cell square, and the wall square crossed by each carved edge.
    grid = jnp.ones((2 * rows + 1, 2 * cols + 1), jnp.int32)
    grid = grid.at[1::2, 1::2].set(Cell.FREE)
    wall = 2 * jnp.stack([cells // cols, cells % cols], -1) + 1 + MOVES[directions]
    return grid.at[wall[:, 0], wall[:, 1]].set(Cell.FREE)


def outer_entrances(key: jax.Array, rows: int, cols: int) -> tuple[jax.Array, jax.Array]:
    """Start and end on opposite outer walls, next to a cell (mazelib's outer entrances).

    Args:
      key: PRNG key.
      rows, cols: static number of cells.

    Returns:
      `(start, end)`, each `[2]` int32 `(y, x)` on the border of the `[2 rows + 1,
      2 cols + 1]` grid. The side of the start is uniform among N, S, W, E.
    """
    key_side, key_a, key_b = jax.random.split(key, 3)
    height, width = 2 * rows + 1, 2 * cols + 1
    side = jax.random.randint(key_side, (), 0, 4)
    # North/South walls: a random odd column each; West/East: a random odd row each.
    along_ns = 2 * jax.random.randint(key_a, (2,), 0, cols) + 1
    along_we = 2 * jax.random.randint(key_b, (2,), 0, rows) + 1
    candidates = jnp.array([
        [[0, along_ns[0]], [height - 1, along_ns[1]]],  # start North, end South
        [[height - 1, along_ns[0]], [0, along_ns[1]]],  # start South, end North
        [[along_we[0], 0], [along_we[1], width - 1]],  # start West, end East
        [[along_we[0], width - 1], [along_we[1], 0]],  # start East, end West
    ], jnp.int32)
    return candidates[side, 0], candidates[side, 1]


@struct.dataclass
class EnvState(environment.EnvState):
    """A labyrinth in progress.

    Attributes:
      time: steps taken.
      grid: `[H, W]` int32 `Cell` values (START at the entrance; GOAL at the exit in
        LabyrinthEscape).
      position: `[2]` int32 `(y, x)` of the agent.
      explored: `[H, W]` bool, squares the agent has stood on.
      last_action: int32, the action that led here (`Action.NONE` after reset).
    """

    grid: jax.Array
    position: jax.Array
    explored: jax.Array
    last_action: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    """`max_steps_in_episode`: steps before truncation, `episode_length - 1` as in popgym
    (it truncates when its step counter reaches `episode_length - 1`); `step_penalty`:
    reward of an uneventful step, `-1 / episode_length`."""

    max_steps_in_episode: int = 1023
    step_penalty: float = -1.0 / 1024


def move(grid: jax.Array, position: jax.Array, action: jax.Array) -> jax.Array:
    """Popgym's `MazeEnv.move`: one square in `action`'s direction, clamped to the grid;
    stays put when the target is an obstacle. `grid: [H, W]`, `position: [2]` -> `[2]`."""
    upper = jnp.array(grid.shape, jnp.int32) - 1
    target = jnp.clip(position + MOVES[action], 0, upper)
    blocked = grid[target[0], target[1]] == Cell.OBSTACLE
    return jnp.where(blocked, position, target)


def local_view(grid: jax.Array, position: jax.Array) -> jax.Array:
    """Popgym's `MazeEnv.local_view`: the 3x3 window around `position`, `[3, 3]` int32.

    Popgym slices `grid[y-1 : y+2, x-1 : x+2]` with the start clamped to 0 and pads the
    slice with obstacles *after* (below/right) to 3x3. On the top or left border the
    window is therefore shifted: its first row/column is the agent's own. We reproduce
    this, including popgym's use of `shape[0]` for the x-bound and `shape[1]` for the
    y-bound (the same on its square mazes).
    """
    height, width = grid.shape
    y, x = position[0], position[1]
    y0, x0 = jnp.maximum(y - 1, 0), jnp.maximum(x - 1, 0)
    y_last = jnp.minimum(jnp.minimum(y + 1, width), height - 1)
    x_last = jnp.minimum(jnp.minimum(x + 1, height), width - 1)
    ys, xs = y0 + jnp.arange(3), x0 + jnp.arange(3)
    inside = (ys <= y_last)[:, None] & (xs <= x_last)[None, :]
    window = grid[jnp.clip(ys, 0, height - 1)[:, None], jnp.clip(xs, 0, width - 1)[None, :]]
    return jnp.where(inside, window, Cell.OBSTACLE).astype(jnp.int32)


class MazeEnv(PopgymEnv):
    """Base of the Labyrinth envs: maze generation, moves and observations.

    Args:
      maze_dims: `(height, width)` of the grid minus one, both even; the maze has
        `height // 2 x width // 2` cells (>= 3 each, mazelib's minimum).
      episode_length: popgym's `episode_length`; episodes last `episode_length - 1` steps.

    Observation: MultiDiscrete `[10]` int32: the 3x3 local view (row-major, `Cell` values)
    and the last action (`Action.NONE` = 4 on reset). Action: Discrete(4) LEFT, RIGHT, UP,
    DOWN.
    """

    def __init__(self, maze_dims: tuple[int, int] = (10, 10), episode_length: int = 1024):
        super().__init__()
        dims = tuple(int(d) for d in maze_dims)
        if len(dims) != 2 or any(d % 2 or d < 6 for d in dims):
            raise ValueError(f"maze_dims must be two even ints >= 6, got {maze_dims!r}")
        if int(episode_length) < 2:
            raise ValueError(f"episode_length must be >= 2, got {episode_length!r}")
        self.maze_dims = dims
        self.rows, self.cols = dims[0] // 2, dims[1] // 2
        self.episode_length = int(episode_length)

    @property
    def default_params(self) -> EnvParams:
        return EnvParams(
            max_steps_in_episode=self.episode_length - 1,
            step_penalty=-1.0 / self.episode_length,
        )

    def _mark_exit(self, grid: jax.Array, end: jax.Array) -> jax.Array:
        """What the subclass does with the second entrance (nothing: it stays wall)."""
        return grid

    def reset_env(self, key, params: EnvParams):
        key_maze, key_doors = jax.random.split(key)
        grid = generate_maze(key_maze, self.rows, self.cols)
        start, end = outer_entrances(key_doors, self.rows, self.cols)
        grid = self._mark_exit(grid.at[start[0], start[1]].set(Cell.START), end)
        state = EnvState(
            time=jnp.int32(0),
            grid=grid,
            position=start,
            explored=jnp.zeros(grid.shape, bool).at[start[0], start[1]].set(True),
            last_action=jnp.int32(Action.NONE),
        )
        return self.get_obs(state, params), state

    def _advance(self, state: EnvState, action) -> EnvState:
        """Moves the agent and books the square as explored (popgym's `MazeEnv.step`)."""
        action = jnp.asarray(action, jnp.int32)
        position = move(state.grid, state.position, action)
        return state.replace(
            time=state.time + 1,
            position=position,
            explored=state.explored.at[position[0], position[1]].set(True),
            last_action=action,
        )

    def get_obs(self, state: EnvState, params=None, key=None) -> jax.Array:
        """`[10]` int32: local view (9 `Cell` values) then the last action."""
        view = local_view(state.grid, state.position).reshape(-1)
        return jnp.concatenate([view, state.last_action[None]]).astype(jnp.int32)

    def action_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(4)

    def observation_space(self, params=None) -> spaces.MultiDiscrete:
        return spaces.MultiDiscrete([len(Cell)] * 9 + [len(Action)])
