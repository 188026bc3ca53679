"""Pendulum family against popgym 1.0.7 (gymnasium's PendulumEnv underneath).

Lock-step comparison strategy: popgym integrates in float64, we in float32, and the
swinging pendulum amplifies rounding differences over an episode. Before every step we
copy the JAX state (float32, exact in float64) into popgym's `state` (`before_pop_step`),
so both take one step from the same state and observations and rewards must agree to
float32 rounding (`atol=1e-5`) at every step: drift cannot accumulate and every
transition is still checked. The noisy variant makes popgym draw the Gaussian JAX draws
(its `np_random.normal` is patched per step with JAX's standard normals).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import popgym.envs as pe
import pytest
from gymnasium.envs.classic_control import PendulumEnv
from hypothesis import given
from hypothesis import strategies as st

from rlmem.envs.popgym import pendulum as pd
from tests.envs.harness import (
    Lockstep,
    RecordResetObs,
    copy_physics_before_step,
    run_lockstep,
)

CASES = {
    "PositionOnlyPendulumEasy": (pe.PositionOnlyPendulumEasy, pd.PositionOnlyPendulum, {}),
    "PositionOnlyPendulumMedium": (
        pe.PositionOnlyPendulumMedium, pd.PositionOnlyPendulum, {"max_episode_length": 150}
    ),
    "PositionOnlyPendulumHard": (
        pe.PositionOnlyPendulumHard, pd.PositionOnlyPendulum, {"max_episode_length": 100}
    ),
    "NoisyPositionOnlyPendulumEasy": (
        pe.NoisyPositionOnlyPendulumEasy, pd.NoisyPositionOnlyPendulum, {"noise_sigma": 0.1}
    ),
    "NoisyPositionOnlyPendulumMedium": (
        pe.NoisyPositionOnlyPendulumMedium, pd.NoisyPositionOnlyPendulum, {"noise_sigma": 0.2}
    ),
    "NoisyPositionOnlyPendulumHard": (
        pe.NoisyPositionOnlyPendulumHard, pd.NoisyPositionOnlyPendulum, {"noise_sigma": 0.3}
    ),
}

# One JAX env per class: difficulties differ only in `EnvParams`, so compiles are shared.
_JAX_ENVS = {cls: cls() for cls in (pd.PositionOnlyPendulum, pd.NoisyPositionOnlyPendulum)}


def _make(name):
    pop_cls, jax_cls, kwargs = CASES[name]
    return pop_cls, _JAX_ENVS[jax_cls], jax_cls(**kwargs).default_params


def _lockstep(name):
    pop_cls, env, params = _make(name)
    noisy = isinstance(env, pd.NoisyPositionOnlyPendulum)
    pop_env = type("Recorded", (RecordResetObs, pop_cls), {})()

    def state_from_popgym(pop, params):
        physics = jnp.asarray(np.asarray(pop.state, np.float32))
        if not noisy:
            return pd.EnvState(time=jnp.int32(0), physics=physics)
        theta = np.float32(pop.state[0])
        clean = np.array([np.cos(theta), np.sin(theta)], np.float32)
        # Clipped noise reproduces the clipped observation; the reset obs itself was
        # computed from float64 theta, hence the float32-rounding tolerance of the harness.
        noise = jnp.asarray(pop.reset_obs - clean, jnp.float32)
        return pd.NoisyEnvState(time=jnp.int32(0), physics=physics, noise=noise)

    return Lockstep(
        jax_env=env, params=params, pop_env=pop_env, state_from_popgym=state_from_popgym,
        before_pop_step=copy_physics_before_step(noisy), atol=1e-5,
    )


@pytest.mark.parametrize("name", list(CASES))
def test_spaces_and_limits_match_popgym(name):
    pop_cls, env, params = _make(name)
    pop = pop_cls()
    for ours, theirs in [
        (env.observation_space(params), pop.observation_space),
        (env.action_space(params), pop.action_space),
    ]:
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(np.broadcast_to(ours.low, ours.shape), theirs.low)
        np.testing.assert_allclose(np.broadcast_to(ours.high, ours.shape), theirs.high)
    assert params.max_steps_in_episode == pop.max_episode_length
    if hasattr(pop, "noise_sigma"):
        np.testing.assert_allclose(params.noise_sigma, pop.noise_sigma)


@pytest.mark.parametrize("name", list(CASES))
def test_lockstep_against_popgym(name):
    """Random torques (including the clipping range edges); every episode runs into the
    time limit, which must be a truncation at exactly popgym's length."""
    case = _lockstep(name)
    horizon = case.params.max_steps_in_episode
    steps = run_lockstep(case, num_episodes=2, seed=11, max_steps=horizon)
    assert steps == 2 * horizon


_dynamics = jax.jit(pd.pendulum_dynamics)


@given(
    theta=st.floats(-30.0, 30.0), theta_dot=st.floats(-8.0, 8.0),
    torque=st.floats(-3.0, 3.0), g=st.sampled_from([10.0, 9.81]),
)
def test_one_step_matches_gymnasium(theta, theta_dot, torque, g):
    """Any state (angles far from [-pi, pi], torques beyond the clip), any gravity."""
    gym_env = PendulumEnv(g=g)
    gym_env.reset(seed=0)
    start = np.array([theta, theta_dot], np.float32)
    gym_env.state = start.astype(np.float64)
    gym_obs, gym_reward, _, _, _ = gym_env.step(np.array([torque], np.float32))
    physics, reward = _dynamics(jnp.asarray(start), jnp.float32(torque), g)
    np.testing.assert_allclose(np.asarray(physics), gym_env.state, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(reward), gym_reward, rtol=1e-5, atol=1e-4)


def test_reset_distribution_and_noise():
    env = _JAX_ENVS[pd.NoisyPositionOnlyPendulum]
    params = pd.NoisyPositionOnlyPendulum(noise_sigma=0.2).default_params
    keys = jax.random.split(jax.random.PRNGKey(2), 2000)
    obs, state = jax.jit(jax.vmap(env.reset_env, in_axes=(0, None)))(keys, params)
    theta, theta_dot = np.asarray(state.physics).T
    assert np.abs(theta).max() <= np.pi and np.abs(theta_dot).max() <= 1.0
    assert np.abs(theta).max() > 3.0 and np.abs(theta_dot).max() > 0.95  # fills the box
    np.testing.assert_allclose(np.asarray(state.noise).std(0), 0.2, rtol=0.08)
    assert obs.shape == (2000, 2) and obs.dtype == jnp.float32
    assert np.abs(np.asarray(obs)).max() <= 1.0


def test_never_terminates_and_truncates_at_limit():
    env = _JAX_ENVS[pd.PositionOnlyPendulum]
    params = pd.PositionOnlyPendulum(max_episode_length=100).default_params
    state = pd.EnvState(time=jnp.int32(99), physics=jnp.array([0.0, 0.0], jnp.float32))
    _, state, reward, terminated, _ = env.step_env(jax.random.PRNGKey(0), state, 0.0, params)
    assert not bool(terminated) and bool(env.is_truncated(state, params))
    np.testing.assert_allclose(float(reward), 1 / 100, rtol=1e-6)  # upright, still: best


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="max_episode_length"):
        pd.PositionOnlyPendulum(max_episode_length=0)
    with pytest.raises(ValueError, match="noise_sigma"):
        pd.NoisyPositionOnlyPendulum(noise_sigma=-0.5)
