"""Concentration: spaces, reset distribution and lock-step equality with popgym 1.0.7."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import popgym.envs as pop
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.envs.popgym import deck
from rlmem.envs.popgym.concentration import Concentration, EnvState
from tests.envs.harness import Lockstep, batched_resets, guide_sampler, run_lockstep

# popgym difficulty -> constructor kwargs, as popgym's subclasses define them.
DIFFICULTIES = {
    "Easy": {"num_decks": 1, "deck_type": "colors"},
    "Medium": {"num_decks": 2, "deck_type": "colors"},
    "Hard": {"num_decks": 1, "deck_type": "ranks"},
}
ENVS = {d: Concentration(**kw) for d, kw in DIFFICULTIES.items()}


def _pop(difficulty):
    return getattr(pop, f"Concentration{difficulty}")()


def _state_from_popgym(pop_env, params) -> EnvState:
    face_up = np.zeros(pop_env.deck.num_cards, bool)
    face_up[pop_env.deck["face_up_idx"]] = True
    in_play = pop_env.deck["in_play_idx"]
    return EnvState(
        cards=jnp.asarray(pop_env.deck.idx, jnp.int32),
        face_up=jnp.asarray(face_up),
        first=jnp.int32(in_play[0] if in_play else -1),
        time=jnp.int32(pop_env.curr_step),
    )


def _check_state(pop_env, state: EnvState) -> None:
    expected = _state_from_popgym(pop_env, None)
    np.testing.assert_array_equal(np.asarray(state.face_up), np.asarray(expected.face_up))
    assert int(state.first) == int(expected.first), "card in play differs"


def _guide(pop_env, p_smart: float) -> None:
    """Make `action_space.sample()` play well with probability `p_smart` (to reach wins).

    A smart move flips the partner of the card in play, or else a face-down card.
    """

    def flip_partner(rng):
        values = pop_env.deck_idx_type[pop_env.deck.idx]
        down = np.ones(len(values), bool)
        down[pop_env.deck["face_up_idx"]] = False
        in_play = pop_env.deck["in_play_idx"]
        if in_play:
            down[in_play[0]] = False
            partners = np.flatnonzero(down & (values == values[in_play[0]]))
            if partners.size:
                return np.int64(rng.choice(partners))
        return np.int64(rng.choice(np.flatnonzero(down)))

    guide_sampler(pop_env, p_smart, flip_partner)


@pytest.mark.parametrize("difficulty", list(DIFFICULTIES))
def test_spaces_match_popgym(difficulty):
    env, pop_env = ENVS[difficulty], _pop(difficulty)
    params = env.default_params
    np.testing.assert_array_equal(env.observation_space(params).nvec,
                                  pop_env.observation_space.nvec)
    assert env.action_space(params).n == pop_env.action_space.n == env.num_actions
    assert params.max_steps_in_episode == pop_env.episode_length
    assert params.success_reward == pytest.approx(pop_env.success_reward_scale)


@pytest.mark.parametrize(
    ("difficulty", "p_smart", "episodes"),
    [("Easy", 0.0, 3), ("Easy", 0.9, 6), ("Medium", 0.9, 3), ("Hard", 0.0, 2), ("Hard", 0.9, 6)],
)
def test_lockstep_with_popgym(difficulty, p_smart, episodes):
    env = ENVS[difficulty]
    pop_env = _pop(difficulty)
    _guide(pop_env, p_smart)
    case = Lockstep(env, env.default_params, pop_env, _state_from_popgym, after_step=_check_state)
    steps = run_lockstep(case, num_episodes=episodes, seed=len(difficulty) + int(10 * p_smart))
    assert steps > 0


def test_lockstep_reaches_wins_and_time_limits():
    """The guided player must actually win some episodes, so termination is compared too."""
    pop_env = _pop("Easy")
    _guide(pop_env, 0.95)
    env = ENVS["Easy"]
    wins = []
    case = Lockstep(env, env.default_params, pop_env, _state_from_popgym,
                    after_step=lambda p, s: wins.append(bool(np.all(np.asarray(s.face_up)))))
    steps = run_lockstep(case, num_episodes=3, seed=3)
    assert any(wins), "no episode was won: the terminal path went untested"
    assert steps <= 3 * env.episode_length


_resets = batched_resets(ENVS)


@pytest.mark.parametrize("difficulty", list(DIFFICULTIES))
@settings(max_examples=5)  # each example checks a batch of 64 resets
@given(seed=st.integers(0, 2**31 - 1))
def test_reset_deals_a_permutation_of_pairs(seed, difficulty):
    env = ENVS[difficulty]
    obs, state = _resets(difficulty, seed)
    cards = state.cards
    values = np.asarray(deck.attribute(cards, env.deck_type))
    for row, vals in zip(cards, values, strict=True):
        np.testing.assert_array_equal(np.sort(row), np.arange(env.num_cards))
        assert (np.bincount(vals) % 2 == 0).all(), "every value must come in pairs"
    assert (obs == env.facedown_card).all(), "all cards start face down"
    assert not state.face_up.any() and (state.first == -1).all() and (state.time == 0).all()


def test_reset_is_uniform_over_positions():
    """Card 0's position over many resets: every position about equally often."""
    env = ENVS["Hard"]
    _, state = _resets("Hard", 0, num_batches=81)  # 5,184 decks
    positions = np.argmax(state.cards == 0, axis=1)
    counts = np.bincount(positions, minlength=env.num_cards)
    # 99.7 expected per position; 5 sigma = 50.
    assert counts.min() > 50 and counts.max() < 150, counts


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="deck_type"):
        Concentration(deck_type="suits")
    with pytest.raises(ValueError, match="num_decks"):
        Concentration(num_decks=0)
