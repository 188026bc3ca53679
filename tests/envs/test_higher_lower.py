"""HigherLower against popgym's `HigherLower{Easy,Medium,Hard}`, plus closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import popgym.envs as pe
import pytest

from rlmem.envs.popgym import deck
from rlmem.envs.popgym.higher_lower import HigherLower
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
    env = HigherLower(num_decks=DIFFICULTIES[difficulty])
    pop_env = getattr(pe, f"HigherLower{difficulty}")()
    episodes = {"Easy": 8, "Medium": 4, "Hard": 3}[difficulty]
    steps = run_lockstep(Lockstep(env, env.default_params, pop_env, deal_state_from_popgym),
                         num_episodes=episodes, seed=11)
    assert steps == episodes * env.episode_length


def test_oracle_return_closed_form():
    """A clairvoyant policy earns 1/N per non-tied pair of consecutive cards."""
    env = HigherLower(num_decks=1)
    oracle = lambda s: jnp.where(deck.rank(s.cards[s.time + 1]) > deck.rank(s.cards[s.time]),
                                 0, 1)
    out = scan_rollout(env, env.default_params, jax.random.PRNGKey(4), oracle,
                       env.episode_length)
    ranks = np.asarray(deck.rank(out["reset_state"].cards))
    non_ties = int((ranks[1:] != ranks[:-1]).sum())
    assert episode_length(out["terminated"], out["truncated"]) == 51
    np.testing.assert_allclose(float(out["reward"].sum()), non_ties / 52, rtol=1e-5)


def test_spaces_match_popgym():
    env, pop_env = HigherLower(), pe.HigherLowerEasy()
    assert env.observation_space(None).n == pop_env.observation_space.n == 13
    assert env.action_space(None).n == pop_env.action_space.n == 2
