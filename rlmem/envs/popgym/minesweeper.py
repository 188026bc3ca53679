"""MineSweeper on a hidden board, a JAX port of `popgym.envs.minesweeper` (popgym 1.0.7).

Mines hide under a grid of tiles. Each step the agent reveals a tile and observes only the
number of mines in the 3x3 block around it (the tile itself included, as popgym counts);
it must remember which tiles it revealed and what they said.

Popgym's rules, reproduced exactly:

* Revealing a new safe tile: `+1 / max_len` with `max_len = rows * cols - num_mines`.
* Revealing a tile already revealed: `-0.5 / (max_len - 2)`.
* Revealing a mine: `-0.5 - 1 / max_len`, terminated.
* Revealing the last safe tile wins: terminated (the earlier JAX port never ended here).
* Truncated after `max_len` steps unless terminated on that step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from rlmem.envs import spaces
from rlmem.envs.popgym import deck
from rlmem.envs.popgym.base import LastObsEnv

# difficulty -> ((rows, cols), num_mines), as popgym's constructor defines them.
DIFFICULTIES = {
    "easy": ((4, 4), 2),
    "medium": ((6, 6), 6),
    "hard": ((8, 8), 10),
}


@struct.dataclass
class EnvState(environment.EnvState):
    """MineSweeper state (`[R, C]` is the board shape).

    Attributes:
      mines: `[R, C]` bool, mine tiles.
      viewed: `[R, C]` bool, safe tiles revealed so far.
      neighbors: `[R, C]` int32, mines in the 3x3 block centred on each tile.
      last_obs: int32, the count shown by the last reveal (0 after reset).
      time: int32, steps taken this episode.
    """

    mines: jax.Array
    viewed: jax.Array
    neighbors: jax.Array
    last_obs: jax.Array
    time: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    """MineSweeper parameters.

    Attributes:
      max_steps_in_episode: popgym's `max_episode_length`, the number of safe tiles; all
        reward scales derive from it, as in popgym.
    """

    max_steps_in_episode: int = 14


def neighbor_counts(mines: jax.Array) -> jax.Array:
    """Mines in the 3x3 block around each tile, itself included: `[R, C]` bool -> int32."""
    padded = jnp.pad(mines.astype(jnp.int32), 1)
    rows, cols = mines.shape
    return sum(
        padded[1 + di : 1 + di + rows, 1 + dj : 1 + dj + cols]
        for di in (-1, 0, 1)
        for dj in (-1, 0, 1)
    )


class MineSweeper(LastObsEnv):
    """MineSweeper with a hidden board.

    Args:
      difficulty: `"easy"` (4x4, 2 mines), `"medium"` (6x6, 6 mines) or `"hard"` (8x8,
        10 mines).

    Observation: `Discrete(min(num_mines + 1, 10))` int32 scalar, the count at the last reveal.
    Action: `MultiDiscrete([rows, cols])` int32 `[2]`, the (row, column) to reveal.
    `num_actions` is `rows * cols` (flattened row-major by wrappers).
    """

    def __init__(self, difficulty: str = "easy"):
        super().__init__()
        if difficulty not in DIFFICULTIES:
            raise ValueError(
                f"difficulty must be one of {tuple(DIFFICULTIES)}, got {difficulty!r}"
            )
        self.difficulty = difficulty
        self.dims, self.num_mines = DIFFICULTIES[difficulty]
        self.max_episode_length = self.dims[0] * self.dims[1] - self.num_mines

    @property
    def default_params(self) -> EnvParams:
        return EnvParams(max_steps_in_episode=self.max_episode_length)

    def step_env(
        self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[str, Any]]:
        """Reveals tile `action = (row, column)`."""
        del key
        row, col = action[0], action[1]
        success = 1.0 / params.max_steps_in_episode
        is_mine = state.mines[row, col]
        seen = state.viewed[row, col]
        reward = jnp.where(
            is_mine,
            -0.5 - success,
            jnp.where(seen, -0.5 / (params.max_steps_in_episode - 2), success),
        ).astype(jnp.float32)
        viewed = state.viewed.at[row, col].set(state.viewed[row, col] | ~is_mine)
        # Won once no tile is left that is neither a mine nor revealed.
        terminated = is_mine | jnp.all(state.mines | viewed)
        state = EnvState(
            mines=state.mines,
            viewed=viewed,
            neighbors=state.neighbors,
            last_obs=state.neighbors[row, col],
            time=state.time + 1,
        )
        return self.get_obs(state, params), state, reward, terminated, {}

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """Hides exactly `num_mines` mines on distinct tiles, uniformly."""
        num_tiles = self.dims[0] * self.dims[1]
        # The card games' shuffle: exactly uniform, and batched (a vector env's resets)
        # several times faster than `jax.random.permutation`.
        flat = deck.permutation(key, num_tiles)[: self.num_mines]
        mines = jnp.zeros(num_tiles, bool).at[flat].set(True).reshape(self.dims)
        state = EnvState(
            mines=mines,
            viewed=jnp.zeros_like(mines),
            neighbors=neighbor_counts(mines),
            last_obs=jnp.int32(0),
            time=jnp.int32(0),
        )
        return self.get_obs(state, params), state

    def action_space(self, params: EnvParams | None = None) -> spaces.MultiDiscrete:
        return spaces.MultiDiscrete(list(self.dims))

    def observation_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(min(self.num_mines + 1, 10))
