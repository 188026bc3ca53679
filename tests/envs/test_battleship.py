"""Battleship: spaces, ship placement and lock-step equality with popgym 1.0.7."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import popgym.envs as pop
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.envs.popgym.battleship import Battleship, EnvState
from tests.envs.harness import RESET_BATCH, Lockstep, batched_resets, guide_sampler, run_lockstep

DIFFICULTIES = {
    "Easy": {"board_size": 8, "ship_sizes": (2, 3, 3, 4)},
    "Medium": {"board_size": 10, "ship_sizes": (2, 3, 3, 4)},
    "Hard": {"board_size": 12, "ship_sizes": (2, 3, 3, 4)},
}
ENVS = {d: Battleship(**kw) for d, kw in DIFFICULTIES.items()}
_resets = batched_resets(ENVS)


def _pop(difficulty):
    return getattr(pop, f"Battleship{difficulty}")()


def _state_from_popgym(pop_env, params) -> EnvState:
    return EnvState(
        board=jnp.asarray(pop_env.board.astype(bool)),
        guesses=jnp.asarray(pop_env.guesses.astype(bool)),
        hits=jnp.int32(pop_env.hits),
        last_obs=jnp.int32(pop_env.last_obs),
        time=jnp.int32(pop_env.num_steps),
    )


def _check_state(pop_env, state: EnvState) -> None:
    np.testing.assert_array_equal(np.asarray(state.guesses), pop_env.guesses.astype(bool))
    assert int(state.hits) == pop_env.hits


def _guide(pop_env, p_smart: float) -> None:
    """Make `action_space.sample()` fire at an unhit ship tile with probability `p_smart`."""

    def fire_at_ship(rng):
        targets = np.argwhere((pop_env.board == 1) & (pop_env.guesses == 0))
        return targets[rng.integers(len(targets))].astype(np.int64)

    guide_sampler(pop_env, p_smart, fire_at_ship)


@pytest.mark.parametrize("difficulty", list(DIFFICULTIES))
def test_spaces_match_popgym(difficulty):
    env, pop_env = ENVS[difficulty], _pop(difficulty)
    params = env.default_params
    assert env.observation_space(params).n == pop_env.observation_space.n
    np.testing.assert_array_equal(env.action_space(params).nvec, pop_env.action_space.nvec)
    assert params.max_steps_in_episode == pop_env.max_episode_length
    assert env.num_actions == pop_env.board_size**2


@pytest.mark.parametrize(
    ("difficulty", "p_smart", "episodes"),
    [("Easy", 0.0, 3), ("Easy", 0.3, 8), ("Medium", 0.3, 5), ("Hard", 0.0, 1), ("Hard", 0.3, 4)],
)
def test_lockstep_with_popgym(difficulty, p_smart, episodes):
    env, pop_env = ENVS[difficulty], _pop(difficulty)
    _guide(pop_env, p_smart)
    ends = []
    case = Lockstep(env, env.default_params, pop_env, _state_from_popgym,
                    after_step=lambda p, s: (_check_state(p, s), ends.append(int(s.time))))
    run_lockstep(case, num_episodes=episodes, seed=len(difficulty) + int(10 * p_smart))
    if p_smart > 0:
        # Guided play sinks every ship before the time limit: the terminal path is exercised.
        assert min(ends[-1:]) < env.board_size**2


def _tile_with_ships(board: np.ndarray, sizes: list[int]) -> bool:
    """Whether `board`'s ship tiles split exactly into straight ships of `sizes`.

    Backtracking: the first uncovered ship tile (row-major) must be the top or left end of
    some remaining ship.
    """
    tiles = np.argwhere(board)
    if not sizes:
        return len(tiles) == 0
    if len(tiles) == 0:
        return False
    r, c = tiles[0]
    for size in sorted(set(sizes)):
        for dr, dc in ((0, 1), (1, 0)):
            rows, cols = r + dr * np.arange(size), c + dc * np.arange(size)
            if rows[-1] >= board.shape[0] or cols[-1] >= board.shape[1]:
                continue
            if not board[rows, cols].all():
                continue
            rest = board.copy()
            rest[rows, cols] = False
            remaining = list(sizes)
            remaining.remove(size)
            if _tile_with_ships(rest, remaining):
                return True
    return False


@pytest.mark.parametrize("difficulty", list(DIFFICULTIES))
@settings(max_examples=5)  # each example checks a batch of 64 resets
@given(seed=st.integers(0, 2**31 - 1))
def test_reset_places_valid_ships(seed, difficulty):
    env = ENVS[difficulty]
    state = _resets(difficulty, seed)[1]
    for board in state.board:
        assert board.sum() == sum(env.ship_sizes), "ships overlap or are missing"
        assert _tile_with_ships(board, list(env.ship_sizes)), board.astype(int)
    assert not state.guesses.any() and (state.hits == 0).all()
    assert (state.last_obs == 0).all() and (state.time == 0).all()


def test_reset_distribution_matches_popgym():
    """Per-tile ship frequency of JAX boards vs popgym's rejection sampler."""
    pop_env, n = _pop("Easy"), 47 * RESET_BATCH  # 3,008 boards
    jax_freq = _resets("Easy", 1, num_batches=47)[1].board.mean(0)
    pop_freq = np.zeros_like(jax_freq)
    pop_env.reset(seed=0)
    for _ in range(n):
        pop_env.reset()
        pop_freq += pop_env.board / n
    # Per-tile std of the difference is below 0.011; edges (~0.1) differ from centre (~0.25).
    assert np.abs(jax_freq - pop_freq).max() < 0.05, np.round(jax_freq - pop_freq, 3)
    assert pop_freq[0, 0] < pop_freq[3, 3] - 0.05


def test_repeat_shot_is_a_miss_and_sinking_all_terminates():
    env = Battleship(board_size=4, ship_sizes=(2,))
    params = env.default_params
    board = jnp.zeros((4, 4), bool).at[1, 1:3].set(True)
    zero = jnp.int32(0)
    state = EnvState(board=board, guesses=jnp.zeros_like(board), hits=zero, last_obs=zero,
                     time=zero)
    step = jax.jit(env.step_env)
    key = jax.random.PRNGKey(0)
    rewards, terms, obs_seq = [], [], []
    for action in ([1, 1], [1, 1], [0, 0], [1, 2]):
        obs, state, r, term, _ = step(key, state, jnp.array(action), params)
        rewards.append(float(r)), terms.append(bool(term)), obs_seq.append(int(obs))
    miss = -1 / (16 - 2)
    np.testing.assert_allclose(rewards, [0.5, miss, miss, 0.5], rtol=1e-6)
    assert obs_seq == [1, 0, 0, 1] and terms == [False, False, False, True]


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="ship_sizes"):
        Battleship(board_size=3, ship_sizes=(4,))
    with pytest.raises(ValueError, match="board_size"):
        Battleship(board_size=0)
