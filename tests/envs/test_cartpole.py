"""CartPole family against popgym 1.0.7 (gymnasium's CartPoleEnv underneath).

Lock-step comparison strategy: popgym integrates in float64, we in float32, and cart-pole
dynamics amplify rounding differences over an episode, so comparing free-running
trajectories would need a tolerance that grows with time. Instead, before every step we
copy the JAX state (float32, exactly representable in float64) into popgym's `state`
(`before_pop_step`): both then take one step from the same state, and observations must
agree to float32 rounding (`atol=1e-5`) at every step of every episode. Drift cannot
accumulate, and every transition of the episode is still checked. The noisy variants make
popgym draw the Gaussian JAX draws (its `np_random.normal` is patched per step with JAX's
standard normals), so their noisy observations are compared too.

Episodes are driven by an epsilon-random balancing controller so that they run into the
time limit (truncation) as well as falling over (termination).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import popgym.envs as pe
import pytest
from gymnasium.envs.classic_control import CartPoleEnv
from gymnasium.spaces import Discrete
from hypothesis import given
from hypothesis import strategies as st

from rlmem.envs.popgym import cartpole as cp
from tests.envs.harness import (
    Lockstep,
    RecordResetObs,
    copy_physics_before_step,
    run_lockstep,
)

# (popgym class, rlmem class, constructor kwargs) for every difficulty.
CASES = {
    "PositionOnlyCartPoleEasy": (pe.PositionOnlyCartPoleEasy, cp.PositionOnlyCartPole, {}),
    "PositionOnlyCartPoleMedium": (
        pe.PositionOnlyCartPoleMedium, cp.PositionOnlyCartPole, {"max_episode_length": 400}
    ),
    "PositionOnlyCartPoleHard": (
        pe.PositionOnlyCartPoleHard, cp.PositionOnlyCartPole, {"max_episode_length": 600}
    ),
    "VelocityOnlyCartPoleEasy": (pe.VelocityOnlyCartPoleEasy, cp.VelocityOnlyCartPole, {}),
    "VelocityOnlyCartPoleMedium": (
        pe.VelocityOnlyCartPoleMedium, cp.VelocityOnlyCartPole, {"max_episode_length": 400}
    ),
    "VelocityOnlyCartPoleHard": (
        pe.VelocityOnlyCartPoleHard, cp.VelocityOnlyCartPole, {"max_episode_length": 600}
    ),
    "NoisyPositionOnlyCartPoleEasy": (
        pe.NoisyPositionOnlyCartPoleEasy, cp.NoisyPositionOnlyCartPole, {"noise_sigma": 0.1}
    ),
    "NoisyPositionOnlyCartPoleMedium": (
        pe.NoisyPositionOnlyCartPoleMedium, cp.NoisyPositionOnlyCartPole, {"noise_sigma": 0.2}
    ),
    "NoisyPositionOnlyCartPoleHard": (
        pe.NoisyPositionOnlyCartPoleHard, cp.NoisyPositionOnlyCartPole, {"noise_sigma": 0.3}
    ),
}

# One JAX env per class: difficulties differ only in `EnvParams`, so compiles are shared.
_JAX_ENVS = {
    cls: cls() for cls in (
        cp.PositionOnlyCartPole, cp.VelocityOnlyCartPole, cp.NoisyPositionOnlyCartPole
    )
}


def _make(name):
    pop_cls, jax_cls, kwargs = CASES[name]
    return pop_cls, _JAX_ENVS[jax_cls], jax_cls(**kwargs).default_params


def _intended_velocity_reset(pop_cls):
    """Popgym's VelocityOnlyCartPole with its reset bug fixed (velocities on reset too)."""

    class Fixed(pop_cls):
        def reset(self, *, seed=None, options=None):
            _, info = super().reset(seed=seed, options=options)
            return np.array(self.state, np.float32)[[1, 3]], info

    return Fixed


class _Balancer(Discrete):
    """Discrete(2) whose `sample()` balances the pole (linear state feedback), with a
    random action with probability `epsilon`: long episodes that end both ways."""

    def __init__(self, env, epsilon):
        super().__init__(2)
        self.env, self.epsilon = env, epsilon
        self.rng = np.random.default_rng(0)

    def seed(self, seed=None):
        self.rng = np.random.default_rng(seed)
        return [seed]

    def sample(self):
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(2))
        x, x_dot, theta, theta_dot = self.env.state
        return int(0.05 * x + 0.2 * x_dot + 10.0 * theta + 1.5 * theta_dot > 0)


def _lockstep(name, epsilon=0.5) -> Lockstep:
    pop_cls, env, params = _make(name)
    noisy = isinstance(env, cp.NoisyPositionOnlyCartPole)
    if name.startswith("VelocityOnly"):
        pop_cls = _intended_velocity_reset(pop_cls)
    pop_env = type("Recorded", (RecordResetObs, pop_cls), {})()
    pop_env.action_space = _Balancer(pop_env, epsilon)

    def state_from_popgym(pop, params):
        physics = jnp.asarray(np.asarray(pop.state, np.float32))
        if not noisy:
            return cp.EnvState(time=jnp.int32(0), physics=physics)
        clean = np.asarray(pop.state, np.float32)[[0, 2]]
        # Clipped noise reproduces the clipped observation, so this is exact.
        noise = jnp.asarray(pop.reset_obs - clean, jnp.float32)
        return cp.NoisyEnvState(time=jnp.int32(0), physics=physics, noise=noise)

    return Lockstep(
        jax_env=env, params=params, pop_env=pop_env, state_from_popgym=state_from_popgym,
        action_to_jax=lambda a: jnp.int32(a), before_pop_step=copy_physics_before_step(noisy),
        atol=1e-5,
    )


@pytest.mark.parametrize("name", list(CASES))
def test_spaces_and_limits_match_popgym(name):
    pop_cls, env, params = _make(name)
    pop = pop_cls()
    obs_space = env.observation_space(params)
    assert obs_space.shape == pop.observation_space.shape
    np.testing.assert_allclose(np.asarray(obs_space.low), pop.observation_space.low, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(obs_space.high), pop.observation_space.high, rtol=1e-6)
    assert env.action_space(params).n == pop.action_space.n == env.num_actions
    assert params.max_steps_in_episode == pop.max_episode_length
    if hasattr(pop, "noise_sigma"):
        np.testing.assert_allclose(params.noise_sigma, pop.noise_sigma)


@pytest.mark.parametrize("name", list(CASES))
def test_lockstep_against_popgym(name):
    case = _lockstep(name)
    horizon = case.params.max_steps_in_episode
    steps = run_lockstep(case, num_episodes=3, seed=7, max_steps=horizon)
    assert steps >= 3


def test_lockstep_reaches_both_endings():
    """The controller drives episodes into truncation as well as termination, so both
    flags are actually compared above."""
    case = _lockstep("PositionOnlyCartPoleEasy", epsilon=0.45)
    lengths = []
    for seed in range(3):
        lengths.append(run_lockstep(case, num_episodes=1, seed=seed, max_steps=200))
    assert max(lengths) == 200 and min(lengths) < 200, lengths


def test_velocity_only_reset_returns_velocities_unlike_popgym():
    """Popgym 1.0.7 bug: VelocityOnlyCartPole.reset returns (x, theta); we return the
    velocities (x_dot, theta_dot), as `step` does."""
    pop = pe.VelocityOnlyCartPoleEasy()
    obs, _ = pop.reset(seed=3)
    state = np.asarray(pop.state, np.float32)
    np.testing.assert_array_equal(obs, state[[0, 2]])  # the bug, still there
    env = cp.VelocityOnlyCartPole()
    jax_obs = env.get_obs(cp.EnvState(time=jnp.int32(0), physics=jnp.asarray(state)))
    np.testing.assert_array_equal(np.asarray(jax_obs), state[[1, 3]])
    reset_obs, reset_state = env.reset_env(jax.random.PRNGKey(0), env.default_params)
    np.testing.assert_array_equal(reset_obs, reset_state.physics[jnp.array([1, 3])])


_dynamics = jax.jit(cp.cartpole_dynamics)
_fallen = jax.jit(cp.cartpole_fallen)
_finite = dict(allow_nan=False, allow_infinity=False)


@given(
    x=st.floats(-2.4, 2.4, **_finite), x_dot=st.floats(-3, 3, **_finite),
    theta=st.floats(-0.21, 0.21, **_finite), theta_dot=st.floats(-3, 3, **_finite),
    action=st.integers(0, 1),
)
def test_one_step_matches_gymnasium(x, x_dot, theta, theta_dot, action):
    """Any state in the non-terminal box, not only those random episodes visit."""
    gym_env = CartPoleEnv()
    gym_env.reset(seed=0)
    start = np.array([x, x_dot, theta, theta_dot], np.float32)
    gym_env.state = start.astype(np.float64)
    gym_obs, _, gym_term, _, _ = gym_env.step(action)
    physics = _dynamics(jnp.asarray(start), jnp.int32(action))
    np.testing.assert_allclose(np.asarray(physics), gym_obs, atol=1e-5)
    far = min(abs(abs(gym_env.state[0]) - 2.4), abs(abs(gym_env.state[2]) - cp.THETA_THRESHOLD))
    if far > 1e-5:  # a float32/float64 tie at the threshold could go either way
        assert bool(_fallen(physics)) == gym_term


@pytest.mark.parametrize("cls", [cp.PositionOnlyCartPole, cp.NoisyPositionOnlyCartPole])
def test_reset_distribution(cls):
    env = _JAX_ENVS[cls]
    params = cls(noise_sigma=0.2).default_params if cls is cp.NoisyPositionOnlyCartPole \
        else env.default_params
    keys = jax.random.split(jax.random.PRNGKey(1), 2000)
    obs, state = jax.jit(jax.vmap(env.reset_env, in_axes=(0, None)))(keys, params)
    physics = np.asarray(state.physics)
    assert physics.min() >= -0.05 and physics.max() <= 0.05
    np.testing.assert_allclose(physics.mean(0), 0.0, atol=0.004)  # sd of mean ~0.0006
    assert (np.asarray(state.time) == 0).all()
    assert obs.shape == (2000, 2) and obs.dtype == jnp.float32
    if cls is cp.NoisyPositionOnlyCartPole:
        np.testing.assert_allclose(np.asarray(state.noise).std(0), 0.2, rtol=0.08)


def test_time_limit_is_truncation_not_termination():
    env = _JAX_ENVS[cp.PositionOnlyCartPole]
    params = env.default_params
    state = cp.EnvState(time=jnp.int32(199), physics=jnp.zeros(4, jnp.float32))
    _, state, reward, terminated, _ = jax.jit(env.step_env)(
        jax.random.PRNGKey(0), state, 1, params)
    assert not bool(terminated) and bool(env.is_truncated(state, params))
    np.testing.assert_allclose(float(reward), 1 / 200)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="max_episode_length"):
        cp.PositionOnlyCartPole(max_episode_length=0)
    with pytest.raises(ValueError, match="noise_sigma"):
        cp.NoisyPositionOnlyCartPole(noise_sigma=-1.0)
