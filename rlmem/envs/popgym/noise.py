"""Gaussian observation noise for popgym's `Noisy*` control tasks (CartPole, Pendulum).

Each observation is `clip(clean + noise, low, high)` with `noise ~ N(0, sigma^2)` drawn
afresh for every observation and clipped to the observation space's bounds, as popgym does.
The noise is drawn when the observation is made and kept in the state (`noise`), so
`get_obs` stays a pure function of the state and agrees with what `step` returned.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def check_sigma(noise_sigma: float) -> float:
    """`noise_sigma` as a float; raises unless it is >= 0."""
    if not float(noise_sigma) >= 0:
        raise ValueError(f"noise_sigma must be >= 0, got {noise_sigma!r}")
    return float(noise_sigma)


class NoisyObservations:
    """Mixin in front of a two-observation gymnax env (`class Noisy(NoisyObservations, Env)`).

    The host provides `reset_physics(key) -> physics`, a state type `noisy_state_type` with
    fields `(time, physics, noise)` and params with a `noise_sigma` field. `step_env`
    draws the noise from its whole `key`; `reset_env` splits its key into the physics key and
    the noise key.
    """

    def step_env(self, key, state, action, params):
        _, state, reward, terminated, info = super().step_env(key, state, action, params)
        state = state.replace(noise=params.noise_sigma * jax.random.normal(key, (2,)))
        return self.get_obs(state, params), state, reward, terminated, info

    def reset_env(self, key, params):
        key_physics, key_noise = jax.random.split(key)
        state = self.noisy_state_type(
            time=jnp.int32(0),
            physics=self.reset_physics(key_physics),
            noise=params.noise_sigma * jax.random.normal(key_noise, (2,)),
        )
        return self.get_obs(state, params), state

    def get_obs(self, state, params=None, key=None) -> jax.Array:
        """`[2]` float32: the clean observation plus noise, clipped to the space's bounds."""
        space = self.observation_space(params)
        clean = super().get_obs(state, params)
        return jnp.clip(clean + state.noise, space.low, space.high).astype(jnp.float32)
