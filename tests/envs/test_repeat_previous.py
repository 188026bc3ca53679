"""RepeatPrevious against popgym's `RepeatPrevious{Easy,Medium,Hard}`, plus closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import popgym.envs as pe
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.envs.popgym import deck
from rlmem.envs.popgym.repeat_previous import RepeatPrevious
from tests.envs.harness import (
    Lockstep,
    deal_state_from_popgym,
    episode_length,
    run_lockstep,
    scan_rollout,
)

DIFFICULTIES = {"Easy": (1, 4), "Medium": (2, 32), "Hard": (3, 64)}


@pytest.mark.parametrize("difficulty", list(DIFFICULTIES))
def test_lockstep(difficulty):
    num_decks, k = DIFFICULTIES[difficulty]
    env = RepeatPrevious(num_decks=num_decks, k=k)
    pop_env = getattr(pe, f"RepeatPrevious{difficulty}")()
    assert (pop_env.deck.num_decks, pop_env.k) == (num_decks, k)
    episodes = {"Easy": 6, "Medium": 3, "Hard": 2}[difficulty]
    steps = run_lockstep(Lockstep(env, env.default_params, pop_env, deal_state_from_popgym),
                         num_episodes=episodes, seed=5)
    assert steps == episodes * env.episode_length


def test_lockstep_paper_setting():
    """The paper's RepeatPrevious: 2 decks, k = 10."""
    env = RepeatPrevious(num_decks=2, k=10)
    pop_env = pe.RepeatPrevious(num_decks=2, k=10)
    run_lockstep(Lockstep(env, env.default_params, pop_env, deal_state_from_popgym),
                 num_episodes=2, seed=7)


def _oracle(env):
    # Not shifted: after seeing cards 0..t, the answer is card t+1-k (k=1: the current card).
    return lambda s: deck.suit(s.cards[jnp.maximum(s.time + 1 - env.k, 0)])


@settings(max_examples=4)
@given(k=st.sampled_from([1, 2, 10, 51]), num_decks=st.sampled_from([1, 2]))
def test_oracle_return_is_one(k, num_decks):
    env = RepeatPrevious(num_decks=num_decks, k=k)
    out = scan_rollout(env, env.default_params, jax.random.PRNGKey(k), _oracle(env),
                       env.episode_length)
    assert episode_length(out["terminated"], out["truncated"]) == env.episode_length
    rewards = np.asarray(out["reward"])
    np.testing.assert_array_equal(rewards[: k - 1], 0.0)
    assert (rewards[k - 1:] > 0).all()
    np.testing.assert_allclose(rewards.sum(), 1.0, rtol=1e-5)


def test_one_step_shift_is_penalised():
    """A policy answering one card too late (the defect of an earlier port) scores < 0."""
    env = RepeatPrevious(num_decks=1, k=4)
    late = lambda s: deck.suit(s.cards[jnp.maximum(s.time - env.k, 0)])
    out = scan_rollout(env, env.default_params, jax.random.PRNGKey(0), late, env.episode_length)
    assert float(out["reward"].sum()) < 0.5


def test_bad_k_raises():
    with pytest.raises(ValueError, match="k must be"):
        RepeatPrevious(num_decks=1, k=52)
    with pytest.raises(ValueError, match="num_decks"):
        RepeatPrevious(num_decks=0)


def test_spaces_match_popgym():
    env, pop_env = RepeatPrevious(), pe.RepeatPreviousEasy()
    assert env.observation_space(None).n == pop_env.observation_space.n
    assert env.action_space(None).n == pop_env.action_space.n
