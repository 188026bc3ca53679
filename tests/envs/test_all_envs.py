"""Every POPGym id (and a few gymnax ids): made, jitted and vmapped over 1,024 envs, with
stable shapes/dtypes and the same wrapped spaces as popgym's wrapper stack."""


import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import popgym.envs as pe
import pytest
from popgym.wrappers import Antialias, DiscreteAction, Flatten, PreviousAction

from rlmem.envs import POPGYM_IDS, make, spaces

NUM_ENVS = 1024
NUM_STEPS = 2  # lax.scan itself fails if a step changes a shape or dtype
GYMNAX_IDS = ("CartPole-v1", "MemoryChain-bsuite")
# Compiling 48 vmapped envs costs minutes on 2 shared cores: the default run covers one
# difficulty per family (+ gymnax); the other difficulties run with `-m slow`.
DEFAULT_IDS = tuple(i for i in POPGYM_IDS if i.endswith("Easy"))
SLOW_IDS = tuple(i for i in POPGYM_IDS if not i.endswith("Easy"))


def _make(name, **kwargs):
    return make(name, **kwargs)


def _rollout_fn(env, params):
    """One compile: vmapped reset, then NUM_STEPS vmapped steps with random actions."""
    action_space = env.action_space(params)

    def step(carry, key):
        state = carry
        act_keys, step_keys = jnp.split(jax.random.split(key, 2 * NUM_ENVS), 2)
        action = jax.vmap(action_space.sample)(act_keys)
        obs, state, reward, terminated, _ = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))(
            step_keys, state, action, params)
        truncated = jax.vmap(env.is_truncated, in_axes=(0, None))(state, params)
        return state, (obs, reward, terminated, truncated)

    @jax.jit
    def run(key):
        reset_key, key = jax.random.split(key)
        obs, state = jax.vmap(env.reset_env, in_axes=(0, None))(
            jax.random.split(reset_key, NUM_ENVS), params)
        _, out = jax.lax.scan(step, state, jax.random.split(key, NUM_STEPS))
        return obs, out

    return run


@pytest.mark.parametrize("name", [
    *DEFAULT_IDS, *GYMNAX_IDS, *(pytest.param(i, marks=pytest.mark.slow) for i in SLOW_IDS)])
def test_jit_vmap_1024_envs(name):
    env, params = _make(name)
    space = env.observation_space(params)
    assert isinstance(space, spaces.Box) and len(space.shape) == 1
    reset_obs, (obs, reward, terminated, truncated) = _rollout_fn(env, params)(
        jax.random.PRNGKey(0))
    assert reset_obs.shape == (NUM_ENVS, *space.shape) and reset_obs.dtype == jnp.float32
    assert obs.shape == (NUM_STEPS, NUM_ENVS, *space.shape) and obs.dtype == jnp.float32
    assert reward.shape == terminated.shape == truncated.shape == (NUM_STEPS, NUM_ENVS)
    assert reward.dtype == jnp.float32 and terminated.dtype == jnp.bool_
    assert truncated.dtype == jnp.bool_
    for o in (np.asarray(reset_obs), np.asarray(obs)):
        assert np.isfinite(o).all()
        if name in POPGYM_IDS:  # some gymnax envs declare bounds they exceed (MemoryChain)
            assert (o >= space.low - 1e-6).all() and (o <= space.high + 1e-6).all()


def _popgym_wrapped(name, previous_action):
    pop_env = getattr(pe, name)()
    if previous_action:
        pop_env = PreviousAction(pop_env)
    pop_env = Flatten(Antialias(pop_env))
    if isinstance(pop_env.action_space, gym.spaces.Box):
        return pop_env  # popgym's DiscreteAction rejects Box actions (Pendulum)
    return DiscreteAction(pop_env)


@pytest.mark.parametrize("previous_action", [False, True])
@pytest.mark.parametrize("name", POPGYM_IDS)
def test_wrapped_spaces_match_popgym(name, previous_action):
    env, params = _make(name, previous_action=previous_action)
    pop_env = _popgym_wrapped(name, previous_action)
    ours, theirs = env.observation_space(params), pop_env.observation_space
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours.low, theirs.low, rtol=1e-6)
    np.testing.assert_allclose(ours.high, theirs.high, rtol=1e-6)
    ours_a, theirs_a = env.action_space(params), pop_env.action_space
    if isinstance(theirs_a, gym.spaces.Discrete):
        assert isinstance(ours_a, spaces.Discrete) and ours_a.n == theirs_a.n
        assert env.num_actions == theirs_a.n
    else:  # Box actions (Pendulum): discretised by default, popgym's Box with bins=None
        assert isinstance(ours_a, spaces.Discrete) and ours_a.n == 5 ** theirs_a.shape[0]
        box_env, _ = _make(name, previous_action=previous_action, action_bins=None)
        box = box_env.action_space(params)
        assert box.shape == theirs_a.shape
        np.testing.assert_allclose(box.low, theirs_a.low)
        np.testing.assert_allclose(box.high, theirs_a.high)
