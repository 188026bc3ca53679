"""CartPole with half the state hidden (popgym's `PositionOnlyCartPole`,
`NoisyPositionOnlyCartPole` and `VelocityOnlyCartPole`).

The dynamics are gymnasium's `CartPoleEnv` (Barto, Sutton & Anderson 1983): a pole hinged
on a cart, pushed left or right with a fixed force, integrated with explicit Euler every
`tau = 0.02 s`. The episode terminates when the cart leaves `|x| <= 2.4` or the pole
leaves `|theta| <= 12 deg`, and is truncated after `max_episode_length` steps.

Popgym shows only part of the state: the positions `(x, theta)` or the velocities
`(x_dot, theta_dot)`, so a policy must infer the rest from memory. Gymnasium gives
reward `1` on every step including the terminal one, and popgym maps every non-zero
reward to `1 / max_episode_length`: the reward is that constant on every step and the
return measures how long the pole stayed up (1.0 for a full episode).

The physics runs in float32 (popgym: float64); one step differs by float32 rounding only.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from rlmem.envs import spaces
from rlmem.envs.popgym import noise
from rlmem.envs.popgym.base import PopgymEnv

# Gymnasium's CartPoleEnv constants.
GRAVITY = 9.8
MASS_CART = 1.0
MASS_POLE = 0.1
TOTAL_MASS = MASS_CART + MASS_POLE
HALF_LENGTH = 0.5  # "length" in gymnasium is half the pole's length
POLEMASS_LENGTH = MASS_POLE * HALF_LENGTH
FORCE_MAG = 10.0
TAU = 0.02
X_THRESHOLD = 2.4
THETA_THRESHOLD = 12 * 2 * math.pi / 360
RESET_BOUND = 0.05

# Indices of `EnvState.physics`.
X, X_DOT, THETA, THETA_DOT = range(4)


@struct.dataclass
class EnvState(environment.EnvState):
    """`time`: steps taken; `physics`: `[4]` float32 `(x, x_dot, theta, theta_dot)`."""

    physics: jax.Array


@struct.dataclass
class NoisyEnvState(EnvState):
    """Adds `noise`: `[2]` float32 noise of the current observation (drawn when it was made,
    so `get_obs` is a pure function of the state and agrees with what `step` returned)."""

    noise: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    """`max_steps_in_episode`: popgym's `max_episode_length` (time limit and reward scale)."""

    max_steps_in_episode: int = 200


@struct.dataclass
class NoisyEnvParams(EnvParams):
    """Adds `noise_sigma`: standard deviation of the Gaussian added to each observation."""

    noise_sigma: float = 0.1


def cartpole_dynamics(physics: jax.Array, action: jax.Array) -> jax.Array:
    """One explicit-Euler step of gymnasium's cart-pole.

    Args:
      physics: `[4]` `(x, x_dot, theta, theta_dot)`.
      action: int scalar, 1 pushes right, anything else pushes left (as gymnasium).

    Returns:
      `[4]` the state `tau` seconds later.
    """
    x, x_dot, theta, theta_dot = physics
    force = jnp.where(action == 1, FORCE_MAG, -FORCE_MAG)
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    temp = (force + POLEMASS_LENGTH * theta_dot**2 * sin) / TOTAL_MASS
    theta_acc = (GRAVITY * sin - cos * temp) / (
        HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * cos**2 / TOTAL_MASS)
    )
    x_acc = temp - POLEMASS_LENGTH * theta_acc * cos / TOTAL_MASS
    # Euler: positions advance with the *old* velocities (gymnasium's default integrator).
    return jnp.stack([
        x + TAU * x_dot,
        x_dot + TAU * x_acc,
        theta + TAU * theta_dot,
        theta_dot + TAU * theta_acc,
    ]).astype(jnp.float32)


def cartpole_reset_physics(key: jax.Array) -> jax.Array:
    """`[4]` float32 initial state, each variable uniform in `[-0.05, 0.05)` (gymnasium)."""
    return jax.random.uniform(key, (4,), jnp.float32, -RESET_BOUND, RESET_BOUND)


def cartpole_fallen(physics: jax.Array) -> jax.Array:
    """Bool scalar: the cart left the track or the pole tipped past 12 degrees."""
    return (jnp.abs(physics[X]) > X_THRESHOLD) | (jnp.abs(physics[THETA]) > THETA_THRESHOLD)


class _HiddenCartPole(PopgymEnv):
    """CartPole observing two of its four state variables (`observed` indices)."""

    observed: tuple[int, int]

    def __init__(self, max_episode_length: int = 200):
        super().__init__()
        if int(max_episode_length) < 1:
            raise ValueError(f"max_episode_length must be >= 1, got {max_episode_length!r}")
        self.max_episode_length = int(max_episode_length)

    @property
    def default_params(self) -> EnvParams:
        return EnvParams(max_steps_in_episode=self.max_episode_length)

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        physics = cartpole_dynamics(state.physics, action)
        terminated = cartpole_fallen(physics)
        reward = jnp.float32(1.0) / params.max_steps_in_episode
        state = state.replace(time=state.time + 1, physics=physics)
        return self.get_obs(state, params), state, reward.astype(jnp.float32), terminated, {}

    def reset_env(self, key, params: EnvParams):
        state = EnvState(time=jnp.int32(0), physics=cartpole_reset_physics(key))
        return self.get_obs(state, params), state

    def get_obs(self, state: EnvState, params=None, key=None) -> jax.Array:
        """`[2]` float32: the observed pair of state variables."""
        return state.physics[jnp.array(self.observed)]

    def action_space(self, params=None) -> spaces.Discrete:
        """0 pushes the cart left, 1 right."""
        return spaces.Discrete(2)


class PositionOnlyCartPole(_HiddenCartPole):
    """CartPole observing the positions `(x, theta)` only (velocities hidden).

    Args:
      max_episode_length: time limit in steps (Easy 200, Medium 400, Hard 600); the
        per-step reward is `1 / max_episode_length`.

    Observation: Box `[2]` float32 `(x, theta)`, bounds `+-(4.8, 0.419)` (twice the
    termination thresholds, as popgym). Action: Discrete(2).
    """

    observed = (X, THETA)

    def observation_space(self, params=None) -> spaces.Box:
        high = jnp.array([2 * X_THRESHOLD, 2 * THETA_THRESHOLD], jnp.float32)
        return spaces.Box(-high, high, (2,), jnp.float32)


class VelocityOnlyCartPole(_HiddenCartPole):
    """CartPole observing the velocities `(x_dot, theta_dot)` only (positions hidden).

    Args:
      max_episode_length: time limit in steps (Easy 200, Medium 400, Hard 600).

    Observation: Box `[2]` float32 `(x_dot, theta_dot)`, unbounded. Action: Discrete(2).

    Deviation from popgym 1.0.7: popgym's `reset` returns `(x, theta)` (the positions) while
    `step` returns velocities, so the first observation of every episode has the wrong
    meaning. We return the velocities on reset too, the evident intent.
    """

    observed = (X_DOT, THETA_DOT)

    def observation_space(self, params=None) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, (2,), jnp.float32)


class NoisyPositionOnlyCartPole(noise.NoisyObservations, PositionOnlyCartPole):
    """`PositionOnlyCartPole` whose observations carry Gaussian noise.

    Each observation is `clip((x, theta) + noise, low, high)` with `noise ~ N(0, sigma^2)`
    drawn afresh for each observation (from the whole `key` of `step_env`/`reset_env`'s
    second split), clipped to the observation bounds as popgym does.

    Args:
      noise_sigma: noise standard deviation (Easy 0.1, Medium 0.2, Hard 0.3).
      max_episode_length: time limit in steps (popgym keeps 200 for all difficulties).
    """

    noisy_state_type = NoisyEnvState
    reset_physics = staticmethod(cartpole_reset_physics)

    def __init__(self, noise_sigma: float = 0.1, max_episode_length: int = 200):
        super().__init__(max_episode_length)
        self.noise_sigma = noise.check_sigma(noise_sigma)

    @property
    def default_params(self) -> NoisyEnvParams:
        return NoisyEnvParams(
            max_steps_in_episode=self.max_episode_length, noise_sigma=self.noise_sigma
        )
