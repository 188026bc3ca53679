"""MineSweeper: spaces, mine placement, wins and lock-step equality with popgym 1.0.7."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import popgym.envs as pop
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.envs.popgym.minesweeper import EnvState, MineSweeper, neighbor_counts
from tests.envs.harness import Lockstep, batched_resets, guide_sampler, run_lockstep

DIFFICULTIES = {"Easy": "easy", "Medium": "medium", "Hard": "hard"}
ENVS = {d: MineSweeper(level) for d, level in DIFFICULTIES.items()}
_resets = batched_resets(ENVS)
_step = jax.jit(ENVS["Easy"].step_env)

_CLEAR, _MINE, _VIEWED = 0, 1, 2  # popgym's HiddenSquare


def _pop(difficulty):
    return getattr(pop, f"MineSweeper{difficulty}")()


def _state_from_popgym(pop_env, params) -> EnvState:
    return EnvState(
        mines=jnp.asarray(pop_env.hidden_grid == _MINE),
        viewed=jnp.asarray(pop_env.hidden_grid == _VIEWED),
        neighbors=jnp.asarray(pop_env.neighbor_grid, jnp.int32),
        last_obs=jnp.int32(0),
        time=jnp.int32(pop_env.timestep),
    )


def _check_state(pop_env, state: EnvState) -> None:
    np.testing.assert_array_equal(np.asarray(state.viewed), pop_env.hidden_grid == _VIEWED)


def _guide(pop_env, p_smart: float) -> None:
    """Make `action_space.sample()` reveal an unseen safe tile with probability `p_smart`."""

    def reveal_safe(rng):
        safe = np.argwhere(pop_env.hidden_grid == _CLEAR)
        return safe[rng.integers(len(safe))].astype(np.int64)

    guide_sampler(pop_env, p_smart, reveal_safe)


def _neighbors_reference(mines: np.ndarray) -> np.ndarray:
    """Mines in each tile's 3x3 block (itself included), by plain loops."""
    rows, cols = mines.shape
    out = np.zeros((rows, cols), int)
    for r in range(rows):
        for c in range(cols):
            out[r, c] = mines[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2].sum()
    return out


@pytest.mark.parametrize("difficulty", list(DIFFICULTIES))
def test_spaces_match_popgym(difficulty):
    env, pop_env = ENVS[difficulty], _pop(difficulty)
    params = env.default_params
    assert env.observation_space(params).n == pop_env.observation_space.n
    np.testing.assert_array_equal(env.action_space(params).nvec, pop_env.action_space.nvec)
    assert params.max_steps_in_episode == pop_env.max_episode_length
    assert env.num_actions == int(np.prod(pop_env.dims))


@pytest.mark.parametrize(
    ("difficulty", "p_smart", "episodes"),
    [("Easy", 0.0, 30), ("Easy", 0.95, 20), ("Medium", 0.0, 15), ("Medium", 0.97, 8),
     ("Hard", 0.0, 10), ("Hard", 0.98, 5)],
)
def test_lockstep_with_popgym(difficulty, p_smart, episodes):
    env, pop_env = ENVS[difficulty], _pop(difficulty)
    _guide(pop_env, p_smart)
    outcomes = []

    def after_step(p, s):
        _check_state(p, s)
        if bool(jnp.all(s.mines | s.viewed)):
            outcomes.append("win")

    case = Lockstep(env, env.default_params, pop_env, _state_from_popgym, after_step=after_step)
    run_lockstep(case, num_episodes=episodes, seed=len(difficulty) + int(100 * p_smart))
    if p_smart > 0:
        assert "win" in outcomes, "guided play never won: the winning end went untested"


def test_popgym_neighbor_counts_include_the_tile_itself():
    """Pins down popgym's count (3x3 block, centre included) that the port reproduces."""
    pop_env = _pop("Hard")
    pop_env.reset(seed=5)
    mines = pop_env.hidden_grid == _MINE
    np.testing.assert_array_equal(pop_env.neighbor_grid, _neighbors_reference(mines))


@pytest.mark.parametrize("difficulty", list(DIFFICULTIES))
@settings(max_examples=5)  # each example checks a batch of 64 resets
@given(seed=st.integers(0, 2**31 - 1))
def test_reset_hides_exact_mine_count(seed, difficulty):
    env = ENVS[difficulty]
    state = _resets(difficulty, seed)[1]
    for mines, neighbors in zip(np.asarray(state.mines), np.asarray(state.neighbors),
                                strict=True):
        assert mines.shape == env.dims and mines.sum() == env.num_mines
        np.testing.assert_array_equal(neighbors, _neighbors_reference(mines))
    assert not state.viewed.any()
    assert (state.last_obs == 0).all() and (state.time == 0).all()


def test_reset_mines_are_uniform_over_tiles():
    env = ENVS["Medium"]
    freq = _resets("Medium", 0, num_batches=56)[1].mines.mean(0)  # 3,584 boards
    # Each tile holds a mine with probability 6/36; std of the mean is about 0.0062.
    np.testing.assert_allclose(freq, env.num_mines / 36, atol=0.035)


@pytest.mark.parametrize("seed", [7, 8])
def test_revealing_every_safe_tile_wins(seed):
    """Defect of an earlier port: a win never ended the episode. It must terminate.

    (The guided lock-step runs above win on every difficulty, against popgym.)
    """
    env = ENVS["Easy"]
    params = env.default_params
    state = jax.tree.map(lambda x: jnp.asarray(x[0]), _resets("Easy", seed)[1])
    safe = np.argwhere(~np.asarray(state.mines))
    assert len(safe) == params.max_steps_in_episode
    total = 0.0
    for i, tile in enumerate(safe):
        obs, state, reward, terminated, _ = _step(jax.random.PRNGKey(0), state, jnp.asarray(tile),
                                                  params)
        total += float(reward)
        assert int(obs) == int(state.neighbors[tuple(tile)])
        assert bool(terminated) == (i == len(safe) - 1), f"step {i}: terminated {terminated}"
    # Winning on the very last allowed step is terminal, not a time limit.
    assert bool(env.is_truncated(state, params))
    np.testing.assert_allclose(total, 1.0, rtol=1e-5)


def test_mine_and_repeat_rewards():
    env = ENVS["Easy"]
    params = env.default_params
    mines = jnp.zeros((4, 4), bool).at[0, 0].set(True).at[3, 3].set(True)
    zero = jnp.int32(0)
    state = EnvState(mines=mines, viewed=jnp.zeros_like(mines), neighbors=neighbor_counts(mines),
                     last_obs=zero, time=zero)
    step, key = _step, jax.random.PRNGKey(0)
    obs, state, r, term, _ = step(key, state, jnp.array([1, 1]), params)
    assert (int(obs), bool(term)) == (1, False)
    np.testing.assert_allclose(float(r), 1 / 14, rtol=1e-6)
    obs, state, r, term, _ = step(key, state, jnp.array([1, 1]), params)
    np.testing.assert_allclose(float(r), -0.5 / 12, rtol=1e-6)
    obs, state, r, term, _ = step(key, state, jnp.array([3, 3]), params)
    assert bool(term) and int(obs) == 1
    np.testing.assert_allclose(float(r), -0.5 - 1 / 14, rtol=1e-6)


def test_bad_difficulty_raises():
    with pytest.raises(ValueError, match="difficulty"):
        MineSweeper("impossible")
