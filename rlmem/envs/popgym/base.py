"""The base class of the popgym ports: what every discrete-action one shares.

Gymnax's `Environment` already names an env after its class (`name`); `PopgymEnv` adds
`num_actions`, read off `action_space` so the two can never disagree. A `MultiDiscrete`
action (a board coordinate) counts every combination, which is how the wrappers flatten it
(row-major) into one `Discrete` action.
"""

from __future__ import annotations

import jax
import numpy as np
from gymnax.environments import environment

from rlmem.envs import spaces


class PopgymEnv(environment.Environment):
    """A gymnax environment with a `Discrete` or `MultiDiscrete` action space."""

    @property
    def num_actions(self) -> int:
        space = self.action_space()
        if isinstance(space, spaces.MultiDiscrete):
            return int(np.prod(space.nvec))
        return int(space.n)


class LastObsEnv(PopgymEnv):
    """A game whose observation is one int32 its step writes into `state.last_obs` (0
    after reset): what the last action revealed (Battleship: a hit; MineSweeper: the mine
    count around the tile; MultiarmedBandit: a payout)."""

    def get_obs(self, state: environment.EnvState, params: environment.EnvParams | None = None,
                key: jax.Array | None = None) -> jax.Array:
        """int32 scalar: `state.last_obs`."""
        return state.last_obs
