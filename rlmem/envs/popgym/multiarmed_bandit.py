"""Episodic multi-armed bandit, a JAX port of `popgym.envs.multiarmed_bandit` (popgym 1.0.7).

Each episode draws a payout probability per arm uniformly in `[0, 1)`. Pulling an arm pays
out with that probability; the agent observes only whether it paid and must remember the
arms' records to exploit the best one.

Popgym's rules, reproduced exactly: observation 1 on a payout, 0 otherwise (0 after reset);
reward `+1 / episode_length` on a payout and `-1 / episode_length` otherwise; never
terminated, truncated after `episode_length` steps. The payout test is
`uniform(key) < p[arm]`, one float32 uniform per step drawn from the step key.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from rlmem.envs import spaces
from rlmem.envs.popgym.base import LastObsEnv


@struct.dataclass
class EnvState(environment.EnvState):
    """Bandit state (A = num_bandits).

    Attributes:
      bandits: `[A]` float32, payout probability of each arm.
      last_obs: int32, 1 when the last pull paid out.
      time: int32, steps taken this episode.
    """

    bandits: jax.Array
    last_obs: jax.Array
    time: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    """Bandit parameters.

    Attributes:
      max_steps_in_episode: popgym's `episode_length`; rewards are `±1 / max_steps_in_episode`.
    """

    max_steps_in_episode: int = 200


def payout_draw(key: jax.Array) -> jax.Array:
    """The float32 uniform in `[0, 1)` a step compares with the arm's probability."""
    return jax.random.uniform(key, dtype=jnp.float32)


class MultiarmedBandit(LastObsEnv):
    """Episodic multi-armed bandit.

    Args:
      num_bandits: number of arms (>= 1).
      episode_length: steps per episode (>= 1).

    Observation: `Discrete(2)` int32 scalar, 1 when the last pull paid out.
    Action: `Discrete(num_bandits)`, the arm to pull.
    """

    def __init__(self, num_bandits: int = 10, episode_length: int = 200):
        super().__init__()
        if not isinstance(num_bandits, int) or num_bandits < 1:
            raise ValueError(f"num_bandits must be an int >= 1, got {num_bandits!r}")
        if not isinstance(episode_length, int) or episode_length < 1:
            raise ValueError(f"episode_length must be an int >= 1, got {episode_length!r}")
        self.num_bandits = num_bandits
        self.episode_length = episode_length

    @property
    def default_params(self) -> EnvParams:
        return EnvParams(max_steps_in_episode=self.episode_length)

    def step_env(
        self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[str, Any]]:
        """Pulls arm `action` (int in `[0, num_bandits)`)."""
        paid = payout_draw(key) < state.bandits[action]
        scale = 1.0 / params.max_steps_in_episode
        reward = jnp.where(paid, scale, -scale).astype(jnp.float32)
        state = EnvState(
            bandits=state.bandits, last_obs=paid.astype(jnp.int32), time=state.time + 1
        )
        return self.get_obs(state, params), state, reward, jnp.array(False), {}

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """Draws each arm's payout probability uniformly in `[0, 1)`."""
        state = EnvState(
            bandits=jax.random.uniform(key, (self.num_bandits,), dtype=jnp.float32),
            last_obs=jnp.int32(0),
            time=jnp.int32(0),
        )
        return self.get_obs(state, params), state

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.num_bandits)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(2)
