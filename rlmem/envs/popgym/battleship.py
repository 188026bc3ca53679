"""Battleship on a hidden board, a JAX port of `popgym.envs.battleship` (popgym 1.0.7).

Ships are placed at random on a `board_size x board_size` grid; the agent fires at a tile
each step and only sees hit (1) or miss (0). It must remember where it fired and where the
ships it hit continue.

Popgym's rules, reproduced exactly:

* A hit is a ship tile not fired at before; firing at a tile twice is a miss.
* Reward `1 / needed_hits` per hit and `-1 / (board_size**2 - needed_hits)` per miss
  (`needed_hits = sum(ship_sizes)`), so sinking everything without a miss sums to 1.
* Terminated when every ship tile is hit; truncated after `board_size**2` steps.
* Ships are straight, non-overlapping (they may touch). Popgym draws a start tile and one of
  four directions uniformly and rejects placements off the board or overlapping; every valid
  placement arises from exactly two (start, direction) draws (four for a 1-tile ship), so
  this amounts to a uniform choice among the valid placements, which is what `reset_env`
  does (no rejection loop under `jit`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from rlmem.envs import spaces
from rlmem.envs.popgym.base import LastObsEnv


@struct.dataclass
class EnvState(environment.EnvState):
    """Battleship state (B = board_size).

    Attributes:
      board: `[B, B]` bool, ship tiles.
      guesses: `[B, B]` bool, tiles fired at.
      hits: int32, ship tiles hit so far.
      last_obs: int32, 1 when the last shot hit.
      time: int32, steps taken this episode.
    """

    board: jax.Array
    guesses: jax.Array
    hits: jax.Array
    last_obs: jax.Array
    time: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    """Battleship parameters.

    Attributes:
      max_steps_in_episode: popgym's `max_episode_length`, `board_size**2`; the miss penalty
        is `-1 / (max_steps_in_episode - needed_hits)`, as in popgym.
    """

    max_steps_in_episode: int = 100


def place_ship(key: jax.Array, board: jax.Array, size: jax.Array) -> jax.Array:
    """Adds one straight ship of `size` tiles, uniformly among the placements that fit.

    Args:
      key: PRNG key.
      board: `[B, B]` bool, ships placed so far.
      size: int32 scalar, ship length in `[1, B]` (dynamic, so one compiled body serves all).

    Returns:
      `[B, B]` bool board with the new ship. Candidates are (orientation, row, column) of the
      top/left end; a 1-tile ship is a candidate in both orientations, which keeps the choice
      uniform over tiles.
    """
    n = board.shape[0]
    idx = jnp.arange(n)
    end = jnp.minimum(idx + size, n)
    fits = idx + size <= n  # [B]: a ship starting here stays on the board
    occupied = board.astype(jnp.int32)
    # Tiles already taken in each window, from prefix sums along rows / columns.
    row_sums = jnp.pad(jnp.cumsum(occupied, axis=1), ((0, 0), (1, 0)))  # [B, B + 1]
    col_sums = jnp.pad(jnp.cumsum(occupied, axis=0), ((1, 0), (0, 0)))  # [B + 1, B]
    horizontal_ok = fits[None, :] & (row_sums[:, end] - row_sums[:, idx] == 0)
    vertical_ok = fits[:, None] & (col_sums[end, :] - col_sums[idx, :] == 0)
    ok = jnp.stack([horizontal_ok, vertical_ok]).ravel()  # [2 * B * B]
    choice = jax.random.categorical(key, jnp.where(ok, 0.0, -jnp.inf))
    vertical, r, c = choice // (n * n), (choice // n) % n, choice % n
    rows, cols = idx[:, None], idx[None, :]
    along_row = (rows == r) & (cols >= c) & (cols < c + size)
    along_col = (cols == c) & (rows >= r) & (rows < r + size)
    return board | jnp.where(vertical == 1, along_col, along_row)


class Battleship(LastObsEnv):
    """Battleship with a hidden board.

    Args:
      board_size: width and height of the board in tiles (>= 1).
      ship_sizes: length of each ship, placed in this order; each in `[1, board_size]`.

    Observation: `Discrete(2)` int32 scalar, 1 for a hit.
    Action: `MultiDiscrete([board_size, board_size])` int32 `[2]`, the (row, column) to fire at.
    `num_actions` is `board_size**2` (flattened row-major by wrappers).
    """

    def __init__(self, board_size: int = 10, ship_sizes: Sequence[int] = (2, 3, 3, 4)):
        super().__init__()
        if not isinstance(board_size, int) or board_size < 1:
            raise ValueError(f"board_size must be an int >= 1, got {board_size!r}")
        ship_sizes = tuple(int(s) for s in ship_sizes)
        if not ship_sizes or any(s < 1 or s > board_size for s in ship_sizes):
            raise ValueError(
                f"ship_sizes must be a non-empty list of ints in [1, board_size={board_size}], "
                f"got {ship_sizes!r}"
            )
        if sum(ship_sizes) >= board_size**2:
            raise ValueError(
                f"ship_sizes {ship_sizes!r} cover {sum(ship_sizes)} tiles, need fewer than "
                f"board_size**2 = {board_size**2} (the miss penalty divides by the difference)"
            )
        self.board_size = board_size
        self.ship_sizes = ship_sizes
        self.needed_hits = sum(ship_sizes)

    @property
    def default_params(self) -> EnvParams:
        return EnvParams(max_steps_in_episode=self.board_size**2)

    def step_env(
        self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[str, Any]]:
        """Fires at tile `action = (row, column)`."""
        del key
        row, col = action[0], action[1]
        hit = state.board[row, col] & ~state.guesses[row, col]
        hits = state.hits + hit
        reward = jnp.where(
            hit,
            1.0 / self.needed_hits,
            -1.0 / (params.max_steps_in_episode - self.needed_hits),
        ).astype(jnp.float32)
        state = EnvState(
            board=state.board,
            guesses=state.guesses.at[row, col].set(True),
            hits=hits,
            last_obs=hit.astype(jnp.int32),
            time=state.time + 1,
        )
        terminated = hits == self.needed_hits
        return self.get_obs(state, params), state, reward, terminated, {}

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """Places the ships one after the other, each uniformly among the free placements.

        Should no placement fit (a board too crowded for `ship_sizes`), popgym would loop
        forever; here the ship goes to an arbitrary candidate instead. The popgym sizes always
        fit.
        """
        keys = jax.random.split(key, len(self.ship_sizes))
        sizes = jnp.asarray(self.ship_sizes, jnp.int32)
        board, _ = jax.lax.scan(
            lambda b, ks: (place_ship(ks[0], b, ks[1]), None),
            jnp.zeros((self.board_size, self.board_size), bool),
            (keys, sizes),
        )
        state = EnvState(
            board=board,
            guesses=jnp.zeros_like(board),
            hits=jnp.int32(0),
            last_obs=jnp.int32(0),
            time=jnp.int32(0),
        )
        return self.get_obs(state, params), state

    def action_space(self, params: EnvParams | None = None) -> spaces.MultiDiscrete:
        return spaces.MultiDiscrete([self.board_size, self.board_size])

    def observation_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(2)
