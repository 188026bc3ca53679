"""MultiarmedBandit: spaces, arm distribution and lock-step equality with popgym 1.0.7."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import popgym.envs as pop
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.envs.popgym.multiarmed_bandit import EnvState, MultiarmedBandit, payout_draw
from tests.envs.harness import RESET_BATCH, Lockstep, batched_resets, run_lockstep

DIFFICULTIES = {
    "Easy": {"num_bandits": 10, "episode_length": 200},
    "Medium": {"num_bandits": 20, "episode_length": 400},
    "Hard": {"num_bandits": 30, "episode_length": 600},
}
ENVS = {d: MultiarmedBandit(**kw) for d, kw in DIFFICULTIES.items()}
_resets = batched_resets(ENVS)
_draw = jax.jit(payout_draw)


def _pop(difficulty):
    return getattr(pop, f"MultiarmedBandit{difficulty}")()


def _state_from_popgym(pop_env, params) -> EnvState:
    return EnvState(
        bandits=jnp.asarray(pop_env.bandits, jnp.float32),
        last_obs=jnp.int32(0),
        time=jnp.int32(pop_env.num_steps),
    )


class _FixedDraw:
    """Stands in for popgym's `np_random`: `random()` returns the JAX step's uniform."""

    def __init__(self, u: float):
        self.u = u

    def random(self) -> float:
        return self.u


def _same_draw(pop_env, key, state, action) -> None:
    # float32 -> float64 is exact, so `u < p` decides the same way in numpy and in JAX.
    pop_env.np_random = _FixedDraw(float(_draw(key)))


@pytest.mark.parametrize("difficulty", list(DIFFICULTIES))
def test_spaces_match_popgym(difficulty):
    env, pop_env = ENVS[difficulty], _pop(difficulty)
    params = env.default_params
    assert env.observation_space(params).n == pop_env.observation_space.n
    assert env.action_space(params).n == pop_env.action_space.n == env.num_actions
    assert params.max_steps_in_episode == pop_env.max_episode_length


@pytest.mark.parametrize(("difficulty", "episodes"), [("Easy", 4), ("Medium", 2), ("Hard", 1)])
def test_lockstep_with_popgym(difficulty, episodes):
    env, pop_env = ENVS[difficulty], _pop(difficulty)
    payouts = []
    case = Lockstep(env, env.default_params, pop_env, _state_from_popgym,
                    before_pop_step=_same_draw,
                    after_step=lambda p, s: payouts.append(int(s.last_obs)))
    steps = run_lockstep(case, num_episodes=episodes, seed=len(difficulty))
    # Every episode runs to the time limit (never terminates), and pulls both pay and fail.
    assert steps == episodes * env.episode_length
    assert 0 < sum(payouts) < steps


def test_episode_is_truncated_not_terminated_after_exactly_episode_length():
    env = MultiarmedBandit(num_bandits=3, episode_length=5)
    params = env.default_params
    step, truncated = jax.jit(env.step_env), jax.jit(env.is_truncated)
    _, state = env.reset_env(jax.random.PRNGKey(0), params)
    flags = []
    for t in range(5):
        _, state, _, terminated, _ = step(jax.random.PRNGKey(t), state, jnp.int32(t % 3), params)
        flags.append((bool(terminated), bool(truncated(state, params))))
    assert flags == [(False, False)] * 4 + [(False, True)]


@pytest.mark.parametrize("difficulty", list(DIFFICULTIES))
@settings(max_examples=5)  # each example checks a batch of 64 resets
@given(seed=st.integers(0, 2**31 - 1))
def test_reset_draws_probabilities_in_unit_interval(seed, difficulty):
    env = ENVS[difficulty]
    state = _resets(difficulty, seed)[1]
    bandits = state.bandits
    assert bandits.shape == (RESET_BATCH, env.num_bandits) and bandits.dtype == np.float32
    assert ((bandits >= 0) & (bandits < 1)).all()
    assert (state.last_obs == 0).all() and (state.time == 0).all()


def test_reset_probabilities_are_uniform():
    bandits = _resets("Hard", 0, num_batches=7)[1].bandits.ravel()  # 13,440 draws
    counts = np.histogram(bandits, bins=10, range=(0, 1))[0]
    # 1,344 per decile expected; std about 35.
    assert np.abs(counts - 1344).max() < 175, counts


def test_payout_frequency_follows_arm_probability():
    env = MultiarmedBandit(num_bandits=2, episode_length=10_000)
    params = env.default_params
    state = EnvState(bandits=jnp.array([0.2, 0.9], jnp.float32), last_obs=jnp.int32(0),
                     time=jnp.int32(0))
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    step = jax.jit(jax.vmap(env.step_env, in_axes=(0, None, None, None)))
    for arm, p in ((0, 0.2), (1, 0.9)):
        obs, _, reward, _, _ = step(keys, state, jnp.int32(arm), params)
        np.testing.assert_allclose(np.asarray(obs).mean(), p, atol=0.03)
        np.testing.assert_allclose(np.abs(np.asarray(reward)), 1e-4, rtol=1e-6)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="num_bandits"):
        MultiarmedBandit(num_bandits=0)
    with pytest.raises(ValueError, match="episode_length"):
        MultiarmedBandit(episode_length=0)
