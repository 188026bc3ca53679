"""CountRecall against popgym's `CountRecall{Easy,Medium,Hard}`, plus closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import popgym.envs as pe
import pytest

from rlmem.envs.popgym import deck
from rlmem.envs.popgym.count_recall import CountRecall, EnvState
from tests.envs.harness import Lockstep, episode_length, run_lockstep, scan_rollout

DIFFICULTIES = {"Easy": (1, "colors"), "Medium": (2, "suits"), "Hard": (4, "ranks")}


def state_from_popgym(pop_env, params):
    return EnvState(
        time=jnp.int32(0),
        values=jnp.asarray(deck.deal_order_from_popgym(pop_env.value_deck.idx)),
        queries=jnp.asarray(deck.deal_order_from_popgym(pop_env.query_deck.idx)),
        counts=jnp.asarray(pop_env.counts, jnp.int32),
    )


def _check_counts(pop_env, state):
    np.testing.assert_array_equal(np.asarray(state.counts), pop_env.counts)


@pytest.mark.parametrize("difficulty", list(DIFFICULTIES))
def test_lockstep(difficulty):
    num_decks, deck_type = DIFFICULTIES[difficulty]
    env = CountRecall(num_decks=num_decks, deck_type=deck_type)
    pop_env = getattr(pe, f"CountRecall{difficulty}")()
    assert pop_env.action_space.n == env.num_actions
    episodes = {"Easy": 6, "Medium": 3, "Hard": 1}[difficulty]
    case = Lockstep(env, env.default_params, pop_env, state_from_popgym,
                    after_step=_check_counts)
    steps = run_lockstep(case, num_episodes=episodes, seed=17)
    assert steps == episodes * env.episode_length


def test_lockstep_with_correct_answers():
    """Random actions are almost always wrong; also drive both with the right count."""
    env = CountRecall()
    pop_env = pe.CountRecallEasy()
    pop_env.reset(seed=0)
    state = state_from_popgym(pop_env, env.default_params)
    step = jax.jit(env.step_env)
    for t in range(env.episode_length):
        action = int(pop_env.counts[pop_env.query])
        _, pop_r, pop_term, _, _ = pop_env.step(action)
        _, state, r, term, _ = step(jax.random.PRNGKey(t), state, action, env.default_params)
        assert pop_r > 0 and float(r) == pytest.approx(pop_r) and bool(term) == pop_term


def test_all_counts_are_actions_and_oracle_scores_one():
    env = CountRecall()  # 26 cards of each colour: answers 0..26
    assert env.num_actions == 27 == env.action_space(None).n
    oracle = lambda s: s.counts[deck.color(s.queries[s.time])]
    out = scan_rollout(env, env.default_params, jax.random.PRNGKey(3), oracle,
                       env.episode_length)
    assert episode_length(out["terminated"], out["truncated"]) == 51
    np.testing.assert_allclose(float(out["reward"].sum()), 1.0, rtol=1e-5)
    # Late in the deck the right answer is well above 1 (a 2-action port could not score).
    values = np.asarray(deck.color(out["reset_state"].values))
    assert np.bincount(values[:40]).max() > 2


def test_reset_counts_first_card():
    env = CountRecall(num_decks=2, deck_type="ranks")
    obs, state = env.reset_env(jax.random.PRNGKey(0), env.default_params)
    assert int(state.counts.sum()) == 1 and int(state.counts[obs[0]]) == 1


def test_bad_deck_type_raises():
    with pytest.raises(ValueError, match="deck_type"):
        CountRecall(deck_type="jokers")
