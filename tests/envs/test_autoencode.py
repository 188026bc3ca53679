"""Autoencode against popgym's `Autoencode{Easy,Medium,Hard}`, plus closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import popgym.envs as pe
import pytest

from rlmem.envs.popgym import deck
from rlmem.envs.popgym.autoencode import PLAY, WATCH, Autoencode
from tests.envs.harness import (
    Lockstep,
    deal_state_from_popgym,
    episode_length,
    run_lockstep,
    scan_rollout,
)

DIFFICULTIES = {"Easy": 1, "Medium": 2, "Hard": 3}


@pytest.mark.parametrize("difficulty", list(DIFFICULTIES))
def test_lockstep(difficulty):
    env = Autoencode(num_decks=DIFFICULTIES[difficulty])
    pop_env = getattr(pe, f"Autoencode{difficulty}")()
    episodes = {"Easy": 5, "Medium": 2, "Hard": 2}[difficulty]
    steps = run_lockstep(Lockstep(env, env.default_params, pop_env, deal_state_from_popgym),
                         num_episodes=episodes, seed=13)
    assert steps == episodes * env.episode_length


def _oracle(env):
    n = env.num_cards
    return lambda s: deck.suit(s.cards[jnp.clip(2 * n - 2 - s.time, 0, n - 1)])


def test_every_card_is_shown_and_oracle_scores_one():
    env = Autoencode(num_decks=1)
    out = scan_rollout(env, env.default_params, jax.random.PRNGKey(2), _oracle(env),
                       env.episode_length)
    n = env.num_cards
    suits = np.asarray(deck.suit(out["reset_state"].cards))
    mode, card = (np.asarray(x) for x in out["obs"])
    reset_mode, reset_card = (int(x) for x in out["reset_obs"])
    shown = np.concatenate([[reset_card], card[: n - 1]])
    # All N cards are shown, the last one together with the switch to "play".
    np.testing.assert_array_equal(shown, suits)
    assert reset_mode == WATCH and (mode[: n - 2] == WATCH).all() and mode[n - 2] == PLAY
    assert (mode[n - 1:] == PLAY).all() and (card[n - 1:] == 0).all()
    assert episode_length(out["terminated"], out["truncated"]) == 2 * n - 1
    rewards = np.asarray(out["reward"])
    np.testing.assert_array_equal(rewards[: n - 1], 0.0)
    np.testing.assert_allclose(rewards.sum(), 1.0, rtol=1e-5)


def test_spaces_match_popgym():
    env, pop_env = Autoencode(), pe.AutoencodeEasy()
    ours = env.observation_space(None)
    assert [s.n for s in ours.spaces] == [s.n for s in pop_env.observation_space.spaces]
    assert env.action_space(None).n == pop_env.action_space.n
