"""Wrappers against popgym's wrappers and gymnasium's `flatten` on real observations."""

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import popgym.envs as pe
import pytest
from flax import struct
from gymnax.environments import environment
from hypothesis import given
from hypothesis import strategies as st
from popgym.wrappers import Antialias as PopAntialias
from popgym.wrappers import DiscreteAction as PopDiscreteAction
from popgym.wrappers import Flatten as PopFlatten
from popgym.wrappers import PreviousAction as PopPreviousAction

from rlmem.envs import spaces, wrappers
from rlmem.envs.popgym.autoencode import Autoencode
from rlmem.envs.popgym.count_recall import CountRecall
from rlmem.envs.popgym.repeat_first import RepeatFirst
from tests.envs import test_count_recall
from tests.envs.harness import Lockstep, deal_state_from_popgym, run_lockstep

# (our space, the same space in gymnasium)
SPACES = {
    "discrete": (spaces.Discrete(5), gym.spaces.Discrete(5)),
    "multidiscrete": (spaces.MultiDiscrete([3, 3, 3]), gym.spaces.MultiDiscrete([3, 3, 3])),
    "ragged": (spaces.MultiDiscrete([2, 5, 3]), gym.spaces.MultiDiscrete([2, 5, 3])),
    "board": (spaces.MultiDiscrete(np.full((3, 4), 4)),
              gym.spaces.MultiDiscrete(np.full((3, 4), 4))),
    "box": (spaces.Box(-2.0, 3.0, (2, 3)), gym.spaces.Box(-2.0, 3.0, (2, 3))),
    "tuple": (spaces.Tuple([spaces.Box(-1.0, 1.0, (2,)), spaces.Discrete(3),
                            spaces.MultiDiscrete([2, 4])]),
              gym.spaces.Tuple((gym.spaces.Box(-1.0, 1.0, (2,)), gym.spaces.Discrete(3),
                                gym.spaces.MultiDiscrete([2, 4])))),
}


def _to_jax(x):
    return tuple(jnp.asarray(v) for v in x) if isinstance(x, tuple) else jnp.asarray(x)


@given(name=st.sampled_from(sorted(SPACES)), seed=st.integers(0, 2**16))
def test_flatten_matches_gymnasium(name, seed):
    ours, theirs = SPACES[name]
    theirs.seed(seed)
    x = theirs.sample()
    expected = gym.spaces.utils.flatten(theirs, x)
    np.testing.assert_allclose(np.asarray(spaces.flatten(ours, _to_jax(x))), expected,
                               rtol=1e-6)
    flat = gym.spaces.utils.flatten_space(theirs)
    ours_flat = spaces.flatten_space(ours)
    assert ours_flat.shape == flat.shape == (spaces.flat_dim(ours),)
    np.testing.assert_allclose(ours_flat.low, flat.low)
    np.testing.assert_allclose(ours_flat.high, flat.high)


def test_flatten_rejects_unknown_space():
    with pytest.raises(TypeError, match="space must be"):
        spaces.flatten("not a space", 0)


def _pop_wrapped(pop_env, previous_action):
    if previous_action:
        pop_env = PopPreviousAction(pop_env)
    return PopDiscreteAction(PopFlatten(PopAntialias(pop_env)))


def _wrapped_reader(inner_reader, previous_action):
    """Reads popgym's reset state into the wrapped state (null previous action, flag 1)."""

    def read(pop_env, params):
        state = inner_reader(pop_env.unwrapped, params)
        if previous_action:
            state = wrappers.PreviousActionState(state, jnp.int32(0))
        return wrappers.AntialiasState(state, jnp.int32(1))

    return read


CARD_CASES = {
    "RepeatFirst": (RepeatFirst, pe.RepeatFirstEasy, deal_state_from_popgym),
    "CountRecall": (CountRecall, pe.CountRecallEasy, test_count_recall.state_from_popgym),
    "Autoencode": (Autoencode, pe.AutoencodeEasy, deal_state_from_popgym),
}


@pytest.mark.parametrize("previous_action", [False, True])
@pytest.mark.parametrize("family", sorted(CARD_CASES))
def test_wrapped_lockstep_against_popgym_wrappers(family, previous_action):
    """Whole flat observations (one-hots, flag, previous action) equal popgym's."""
    cls, pop_cls, reader = CARD_CASES[family]
    raw = cls()
    env = wrappers.wrap(raw, previous_action=previous_action)
    pop_env = _pop_wrapped(pop_cls(), previous_action)
    assert env.observation_space(None).shape == pop_env.observation_space.shape
    case = Lockstep(env, raw.default_params, pop_env, _wrapped_reader(reader, previous_action),
                    obs_to_array=lambda o: np.asarray(o, np.float32))
    run_lockstep(case, num_episodes=2, seed=1)


@struct.dataclass
class EchoState(environment.EnvState):
    last: jax.Array


class EchoEnv(environment.Environment):
    """Observes the MultiDiscrete action it was given (to test action/obs plumbing)."""

    nvec = np.array([3, 4, 2])

    @property
    def default_params(self):
        return environment.EnvParams(max_steps_in_episode=3)

    def step_env(self, key, state, action, params):
        state = EchoState(time=state.time + 1, last=jnp.asarray(action, jnp.int32))
        return state.last, state, jnp.float32(1.0), jnp.bool_(False), {}

    def reset_env(self, key, params):
        state = EchoState(time=jnp.int32(0), last=jnp.zeros(3, jnp.int32))
        return state.last, state

    def get_obs(self, state, params=None, key=None):
        return state.last

    def observation_space(self, params=None):
        return spaces.MultiDiscrete(self.nvec)

    def action_space(self, params=None):
        return spaces.MultiDiscrete(self.nvec)


def test_discrete_action_unravels_like_numpy():
    env = wrappers.DiscreteAction(EchoEnv())
    params = env.default_params
    assert env.action_space(params).n == env.num_actions == 24
    _, state = env.reset_env(jax.random.PRNGKey(0), params)
    step = jax.jit(jax.vmap(env.step_env, in_axes=(None, None, 0, None)))
    obs = step(jax.random.PRNGKey(0), state, jnp.arange(24), params)[0]
    expected = np.stack(np.unravel_index(np.arange(24), EchoEnv.nvec), axis=1)
    np.testing.assert_array_equal(np.asarray(obs), expected)


def test_previous_action_and_antialias_flags():
    """Reset: flag 1 and popgym's null action 0 (one-hot); later: flag 0, last action."""
    env = wrappers.wrap(EchoEnv(), previous_action=True)
    params = env.default_params
    obs, state = env.reset_env(jax.random.PRNGKey(0), params)
    # [echo one-hots (9), previous action one-hots (9), flag one-hot (2)]
    np.testing.assert_array_equal(np.asarray(obs[9:]),
                                  [1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(np.asarray(env.get_obs(state, params)), np.asarray(obs))
    action = 23  # unravels to [2, 3, 1]
    obs, state, *_ = env.step_env(jax.random.PRNGKey(1), state, action, params)
    np.testing.assert_array_equal(np.asarray(obs[9:]),
                                  [0, 0, 1, 0, 0, 0, 1, 0, 1, 1, 0])
    np.testing.assert_array_equal(np.asarray(env.get_obs(state, params)), np.asarray(obs))
    assert bool(env.is_truncated(state, params)) is False


def test_episode_statistics_report_completed_episodes_only():
    env = wrappers.EpisodeStatistics(wrappers.wrap(EchoEnv()))
    params = env.default_params  # truncates after 3 steps, reward 1 per step
    _, state = env.reset_env(jax.random.PRNGKey(0), params)
    dones, returns, lengths = [], [], []
    for t in range(3):
        _, state, _, _, info = env.step_env(jax.random.PRNGKey(t), state, 0, params)
        dones.append(bool(info["episode_done"]))
        returns.append(float(info["episode_return"]))
        lengths.append(int(info["episode_length"]))
    assert dones == [False, False, True]
    assert returns[-1] == 3.0 and lengths[-1] == 3
    means = wrappers.completed_episode_means(
        {k: jnp.asarray(v) for k, v in
         {"episode_done": dones, "episode_return": returns, "episode_length": lengths}.items()})
    assert float(means["return"]) == 3.0 and int(means["count"]) == 1
    none = wrappers.completed_episode_means(
        {"episode_done": jnp.zeros(2, bool), "episode_return": jnp.zeros(2),
         "episode_length": jnp.zeros(2, jnp.int32)})
    assert np.isnan(float(none["return"]))


def test_discretize_box_steps_with_evenly_spaced_torques():
    """Discrete action i of Pendulum drives the raw env with torque linspace(-2, 2, 5)[i]."""
    from rlmem.envs import make

    env, params = make("PositionOnlyPendulumEasy", action_bins=5)
    assert env.num_actions == 5 and env.action_space(params).n == 5
    key = jax.random.PRNGKey(0)
    _, state = env.reset_env(key, params)
    inner = env.unwrapped
    for action, torque in enumerate(np.linspace(-2.0, 2.0, 5)):
        _, wrapped_state, wrapped_r, *_ = env.step_env(key, state, action, params)
        raw_state = state
        while hasattr(raw_state, "env_state"):  # peel the wrapper states
            raw_state = raw_state.env_state
        _, raw_next, raw_r, *_ = inner.step_env(key, raw_state, jnp.float32(torque), params)
        np.testing.assert_allclose(float(wrapped_r), float(raw_r), rtol=1e-6)
        inner_next = wrapped_state
        while hasattr(inner_next, "env_state"):
            inner_next = inner_next.env_state
        np.testing.assert_allclose(np.asarray(inner_next.physics), np.asarray(raw_next.physics))
    with pytest.raises(ValueError, match="action_bins"):
        make("PositionOnlyPendulumEasy", action_bins=1)
