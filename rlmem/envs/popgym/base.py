"""The base class of the popgym ports: what every discrete-action one shares.

Gymnax's `Environment` already names an env after its class (`name`); `PopgymEnv` adds
`num_actions`, read off `action_space` so the two can never disagree. A `MultiDiscrete`
action (a board coordinate) counts every combination, which is how the wrappers flatten it
(row-major) into one `Discrete` action.
"""

from __future__ import annotations

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
