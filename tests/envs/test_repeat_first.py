"""RepeatFirst against popgym's `RepeatFirst{Easy,Medium,Hard}`, plus closed-form checks."""

import jax
import jax.numpy as jnp
import numpy as np
import popgym.envs as pe
import pytest

from rlmem.envs.popgym import deck
from rlmem.envs.popgym.repeat_first import RepeatFirst
from tests.envs.harness import (
    Lockstep,
    deal_state_from_popgym,
    episode_length,
    run_lockstep,
    scan_rollout,
)

DIFFICULTIES = {"Easy": 1, "Medium": 8, "Hard": 16}


@pytest.mark.parametrize("difficulty", list(DIFFICULTIES))
def test_lockstep(difficulty):
    env = RepeatFirst(num_decks=DIFFICULTIES[difficulty])
    pop_env = getattr(pe, f"RepeatFirst{difficulty}")()
    episodes = {"Easy": 6, "Medium": 2, "Hard": 1}[difficulty]
    steps = run_lockstep(Lockstep(env, env.default_params, pop_env, deal_state_from_popgym),
                         num_episodes=episodes, seed=3)
    assert steps == episodes * env.episode_length


@pytest.mark.parametrize("num_decks", [1, 2])
def test_oracle_return_is_one_and_length_exact(num_decks):
    env = RepeatFirst(num_decks)
    out = scan_rollout(env, env.default_params, jax.random.PRNGKey(0),
                       lambda s: deck.suit(s.cards[0]), env.episode_length + 3)
    n = episode_length(out["terminated"], out["truncated"])
    assert n == 52 * num_decks - 1
    np.testing.assert_allclose(float(out["reward"][:n].sum()), 1.0, rtol=1e-5)
    assert not np.asarray(out["truncated"][:n]).any()


def test_reset_deck_is_a_permutation():
    env = RepeatFirst(2)
    _, states = jax.vmap(lambda k: env.reset_env(k, env.default_params))(
        jax.random.split(jax.random.PRNGKey(1), 16))
    cards = np.sort(np.asarray(states.cards), axis=1)
    np.testing.assert_array_equal(cards, np.tile(np.arange(104), (16, 1)))
    assert len({tuple(c) for c in np.asarray(states.cards)}) == 16


def test_time_limit_is_truncation_not_termination():
    env = RepeatFirst()
    params = env.default_params.replace(max_steps_in_episode=5)
    out = scan_rollout(env, params, jax.random.PRNGKey(0), lambda s: jnp.int32(0), 6)
    assert episode_length(out["terminated"], out["truncated"]) == 5
    assert bool(out["truncated"][4]) and not bool(out["terminated"][4])


def test_spaces_match_popgym():
    env, pop_env = RepeatFirst(), pe.RepeatFirstEasy()
    assert env.observation_space(env.default_params).n == pop_env.observation_space.n
    assert env.action_space(env.default_params).n == pop_env.action_space.n
