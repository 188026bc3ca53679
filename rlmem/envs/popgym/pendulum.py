"""Pendulum with the angular velocity hidden (popgym's `PositionOnlyPendulum` and
`NoisyPositionOnlyPendulum`).

The dynamics are gymnasium's `PendulumEnv`: a torque-driven pendulum,
`theta_dot += (3 g / (2 l) sin(theta) + 3 u / (m l^2)) dt` clipped to `+-8`, then
`theta += theta_dot dt` (`dt = 0.05`, `m = l = 1`), started uniformly in
`theta in [-pi, pi]`, `theta_dot in [-1, 1]`. Gymnasium's reward is
`-(normalize(theta)^2 + 0.1 theta_dot^2 + 0.001 u^2)` in `[-16.27, 0]`; popgym rescales it
to `[-1, 1]` and divides by `max_episode_length`, so a return lies in `[-1, 1]`. The
episode never terminates; it is truncated after `max_episode_length` steps.

Popgym shows only `(cos theta, sin theta)`: the velocity must be inferred from memory.
The physics runs in float32 (popgym: float64).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from rlmem.envs import spaces
from rlmem.envs.popgym import noise

# Gymnasium's PendulumEnv constants.
MAX_SPEED = 8.0
MAX_TORQUE = 2.0
DT = 0.05
MASS = 1.0
LENGTH = 1.0
RESET_THETA = math.pi
RESET_THETA_DOT = 1.0
# Popgym's reward rescaling: gymnasium's reward range is [REWARD_LOW, 0].
REWARD_LOW = -16.2736044

# Indices of `EnvState.physics`.
THETA, THETA_DOT = range(2)


@struct.dataclass
class EnvState(environment.EnvState):
    """`time`: steps taken; `physics`: `[2]` float32 `(theta, theta_dot)`; theta is not
    wrapped (as gymnasium), only the cost normalises it."""

    physics: jax.Array


@struct.dataclass
class NoisyEnvState(EnvState):
    """Adds `noise`: `[2]` float32 noise of the current observation (drawn when it was made,
    so `get_obs` is a pure function of the state)."""

    noise: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    """`max_steps_in_episode`: popgym's `max_episode_length` (time limit and reward scale);
    `g`: gravity (gymnasium's `g` argument)."""

    max_steps_in_episode: int = 200
    g: float = 10.0


@struct.dataclass
class NoisyEnvParams(EnvParams):
    """Adds `noise_sigma`: standard deviation of the Gaussian added to each observation."""

    noise_sigma: float = 0.1


def angle_normalize(theta: jax.Array) -> jax.Array:
    """Wraps an angle into `[-pi, pi)`."""
    return jnp.mod(theta + math.pi, 2 * math.pi) - math.pi


def pendulum_dynamics(
    physics: jax.Array, torque: jax.Array, g: float
) -> tuple[jax.Array, jax.Array]:
    """One step of gymnasium's pendulum.

    Args:
      physics: `[2]` `(theta, theta_dot)`.
      torque: float scalar, clipped to `[-2, 2]`.
      g: gravity.

    Returns:
      `(physics [2], reward)`: the next state and gymnasium's (unscaled) reward, computed
      from the state *before* the step, as gymnasium does.
    """
    theta, theta_dot = physics
    u = jnp.clip(torque, -MAX_TORQUE, MAX_TORQUE)
    cost = angle_normalize(theta) ** 2 + 0.1 * theta_dot**2 + 0.001 * u**2
    new_theta_dot = theta_dot + (
        3 * g / (2 * LENGTH) * jnp.sin(theta) + 3.0 / (MASS * LENGTH**2) * u
    ) * DT
    new_theta_dot = jnp.clip(new_theta_dot, -MAX_SPEED, MAX_SPEED)
    # Semi-implicit: the angle advances with the *new* velocity.
    new_theta = theta + new_theta_dot * DT
    return jnp.stack([new_theta, new_theta_dot]).astype(jnp.float32), -cost


def pendulum_reset_physics(key: jax.Array) -> jax.Array:
    """`[2]` float32 initial `(theta, theta_dot)`, uniform in `[-pi, pi) x [-1, 1)`."""
    high = jnp.array([RESET_THETA, RESET_THETA_DOT], jnp.float32)
    return jax.random.uniform(key, (2,), jnp.float32, -high, high)


class PositionOnlyPendulum(environment.Environment):
    """Swing the pendulum up and hold it, seeing only `(cos theta, sin theta)`.

    Args:
      max_episode_length: time limit in steps (Easy 200, Medium 150, Hard 100); rewards
        are divided by it.
      g: gravity.

    Observation: Box `[2]` float32 in `[-1, 1]`. Action: Box `[1]` float32 torque in
    `[-2, 2]` (a scalar is accepted too; out-of-range torques are clipped, as gymnasium).
    """

    def __init__(self, max_episode_length: int = 200, g: float = 10.0):
        super().__init__()
        if int(max_episode_length) < 1:
            raise ValueError(f"max_episode_length must be >= 1, got {max_episode_length!r}")
        self.max_episode_length = int(max_episode_length)
        self.g = float(g)

    @property
    def default_params(self) -> EnvParams:
        return EnvParams(max_steps_in_episode=self.max_episode_length, g=self.g)

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        torque = jnp.reshape(jnp.asarray(action, jnp.float32), (-1,))[0]
        physics, reward = pendulum_dynamics(state.physics, torque, params.g)
        half_range = -REWARD_LOW / 2
        reward = (reward + half_range) / half_range / params.max_steps_in_episode
        state = state.replace(time=state.time + 1, physics=physics)
        terminated = jnp.bool_(False)
        return self.get_obs(state, params), state, reward.astype(jnp.float32), terminated, {}

    def reset_env(self, key, params: EnvParams):
        state = EnvState(time=jnp.int32(0), physics=pendulum_reset_physics(key))
        return self.get_obs(state, params), state

    def get_obs(self, state: EnvState, params=None, key=None) -> jax.Array:
        """`[2]` float32 `(cos theta, sin theta)`."""
        theta = state.physics[THETA]
        return jnp.stack([jnp.cos(theta), jnp.sin(theta)]).astype(jnp.float32)

    @property
    def num_actions(self) -> int:
        return 1

    def action_space(self, params=None) -> spaces.Box:
        return spaces.Box(-MAX_TORQUE, MAX_TORQUE, (1,), jnp.float32)

    def observation_space(self, params=None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (2,), jnp.float32)


class NoisyPositionOnlyPendulum(noise.NoisyObservations, PositionOnlyPendulum):
    """`PositionOnlyPendulum` whose observations carry Gaussian noise.

    Each observation is `clip((cos, sin) + noise, -1, 1)` with `noise ~ N(0, sigma^2)`
    drawn afresh for each observation (from the whole `key` of `step_env`, from the second
    split of `reset_env`'s key).

    Args:
      noise_sigma: noise standard deviation (Easy 0.1, Medium 0.2, Hard 0.3).
      max_episode_length: time limit in steps (popgym keeps 200 for all difficulties).
      g: gravity.
    """

    noisy_state_type = NoisyEnvState
    reset_physics = staticmethod(pendulum_reset_physics)

    def __init__(self, noise_sigma: float = 0.1, max_episode_length: int = 200, g: float = 10.0):
        super().__init__(max_episode_length, g)
        self.noise_sigma = noise.check_sigma(noise_sigma)

    @property
    def default_params(self) -> NoisyEnvParams:
        return NoisyEnvParams(
            max_steps_in_episode=self.max_episode_length, g=self.g, noise_sigma=self.noise_sigma
        )
