"""VecEnv (optimistic resets) against gymnax-style auto-reset."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlmem.envs import VecEnv, make
from rlmem.envs.wrappers import EpisodeStatistics

N = 4


@pytest.fixture(scope="module")
def cartpole():
    return make("CartPole-v1")


def _random_actions(key, n):
    return jax.random.randint(key, (n,), 0, 2)


def test_exact_when_every_env_gets_its_own_reset(cartpole):
    """k == N: each finished env i takes reset key i of that step, as a per-env reference
    (a plain Python loop over envs with gymnax's step-then-select auto-reset) does."""
    env, params = cartpole
    venv = VecEnv(env, params, N, resets_per_step=N)
    stats_env = venv.env
    step = jax.jit(venv.step)
    step_one = jax.jit(stats_env.step_env)
    reset_one = jax.jit(stats_env.reset_env)
    trunc_one = jax.jit(stats_env.is_truncated)
    key = jax.random.PRNGKey(0)
    obs, state = venv.reset(key)
    ref = [jax.tree.map(lambda x, i=i: x[i], state.env_state) for i in range(N)]
    ends = 0
    for t in range(40):
        key, k_act, k_step = jax.random.split(key, 3)
        action = _random_actions(k_act, N)
        obs, state, reward, term, trunc, info = step(k_step, state, action)
        step_key, reset_key = jax.random.split(k_step)
        step_keys, reset_keys = jax.random.split(step_key, N), jax.random.split(reset_key, N)
        for i in range(N):
            o, s, r, te, _ = step_one(step_keys[i], ref[i], action[i], params)
            done = bool(te) or bool(trunc_one(s, params))
            np.testing.assert_allclose(np.asarray(info["final_obs"][i]), np.asarray(o),
                                       rtol=1e-5, atol=1e-6)
            if done:
                o, s = reset_one(reset_keys[i], params)
                ends += 1
            ref[i] = s
            assert bool(info["start"][i]) == done and float(reward[i]) == float(r)
            assert bool(term[i] | trunc[i]) == done
            np.testing.assert_allclose(np.asarray(obs[i]), np.asarray(o), rtol=1e-5,
                                       atol=1e-6, err_msg=f"t={t} i={i}")
            # vmapped and single-env compiles may round differently (fused multiply-adds)
            jax.tree.map(lambda a, b, i=i: np.testing.assert_allclose(
                np.asarray(a[i]), b, rtol=1e-5, atol=1e-6), state.env_state, s)
    assert ends > N  # resets really happened


def _episode_stats(run_step, reset, steps, key):
    """Completed-episode returns/lengths and the stream flags over `steps` steps."""
    obs, state = reset(key)
    returns, lengths, flags = [], [], []
    for _ in range(steps):
        key, k_act, k_step = jax.random.split(key, 3)
        obs, state, reward, term, trunc, info = run_step(k_step, state, _random_actions(k_act, 64))
        done = np.asarray(info["episode_done"])
        returns += list(np.asarray(info["episode_return"])[done])
        lengths += list(np.asarray(info["episode_length"])[done])
        flags.append((np.asarray(term), np.asarray(trunc), np.asarray(info.get("start", done))))
    return np.array(returns), np.array(lengths), flags


def test_statistics_match_gymnax_auto_reset(cartpole):
    env, params = cartpole
    venv = VecEnv(env, params, 64)  # k = 8 fresh resets per step
    stats_env = EpisodeStatistics(env)
    gymnax_step = jax.jit(jax.vmap(stats_env.step, in_axes=(0, 0, 0, None)))
    gymnax_reset = jax.jit(jax.vmap(stats_env.reset, in_axes=(0, None)))

    def g_step(key, state, action):
        return gymnax_step(jax.random.split(key, 64), state, action, params)

    def g_reset(key):
        return gymnax_reset(jax.random.split(key, 64), params)

    ours = _episode_stats(jax.jit(venv.step), jax.jit(venv.reset), 200, jax.random.PRNGKey(1))
    theirs = _episode_stats(g_step, g_reset, 200, jax.random.PRNGKey(2))
    for a, b in zip(ours[:2], theirs[:2], strict=True):
        assert len(a) > 300 and len(b) > 300
        se = np.sqrt(a.var() / len(a) + b.var() / len(b))
        assert abs(a.mean() - b.mean()) < 4 * se, (a.mean(), b.mean(), se)
    # CartPole's reward is 1 per step: a completed episode's return is its length.
    np.testing.assert_allclose(ours[0], ours[1])
    # The flag convention: start[t] == terminated[t] | truncated[t], never both.
    for term, trunc, start in ours[2]:
        assert not (term & trunc).any()
        np.testing.assert_array_equal(start, term | trunc)


def test_card_episodes_have_popgym_length_and_stats():
    env, params = make("RepeatFirstEasy")
    venv = VecEnv(env, params, 4, resets_per_step=4)
    step = jax.jit(venv.step)
    obs, state = venv.reset(jax.random.PRNGKey(0))
    rewards = []
    for t in range(51):
        obs, state, reward, term, trunc, info = step(jax.random.PRNGKey(t), state,
                                                     jnp.zeros(4, jnp.int32))
        rewards.append(np.asarray(reward))
        assert bool(term.all()) == (t == 50) and not trunc.any()
    np.testing.assert_allclose(np.asarray(info["episode_return"]), np.sum(rewards, axis=0),
                               rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(info["episode_length"]), 51)
    # final_obs is the last card of the old episode, obs the first of the new one (flag 1).
    assert (np.asarray(info["final_obs"])[:, -2:] == [1, 0]).all()
    assert (np.asarray(obs)[:, -2:] == [0, 1]).all()


def _end_all_episodes(venv, key):
    """Reset, move every env to its last card, step once: all N episodes end together."""
    _, state = venv.reset(key)
    raw = state.env_state.env_state.env_state.replace(time=jnp.full(venv.num_envs, 50))
    state = state.replace(env_state=state.env_state.replace(
        env_state=state.env_state.env_state.replace(env_state=raw)))
    _, state, _, term, _, _ = jax.jit(venv.step)(jax.random.PRNGKey(1), state,
                                                 jnp.zeros(venv.num_envs, jnp.int32))
    assert term.all()
    return np.asarray(state.env_state.env_state.env_state.cards)  # stats -> antialias -> raw


def test_simultaneous_ends_get_distinct_pool_states():
    """k = 1 < N: the pool (size N) still gives all N finished envs their own deck."""
    env, params = make("RepeatFirstEasy")
    cards = _end_all_episodes(VecEnv(env, params, 4, resets_per_step=1), jax.random.PRNGKey(0))
    assert len({tuple(c) for c in cards}) == 4


def test_too_small_pool_shares_states():
    """The documented correlation: more ends than unused pool entries reuse entries."""
    env, params = make("RepeatFirstEasy")
    venv = VecEnv(env, params, 4, resets_per_step=1, pool_size=1)
    cards = _end_all_episodes(venv, jax.random.PRNGKey(0))
    assert (cards == cards[0]).all()


def test_pool_keeps_card_episodes_independent():
    """Default k = N // 8: synchronized card games keep drawing distinct decks, episode
    after episode (the pool refills k * 51 >= N entries between the mass ends)."""
    env, params = make("RepeatFirstEasy")
    venv = VecEnv(env, params, 16)  # k = 2, pool of 16
    step = jax.jit(venv.step)
    _, state = venv.reset(jax.random.PRNGKey(0))
    decks = set()
    for t in range(3 * 51):
        _, state, _, term, _, info = step(jax.random.PRNGKey(t), state, jnp.zeros(16, jnp.int32))
        if bool(info["start"].any()):
            assert info["start"].all()
            cards = np.asarray(state.env_state.env_state.env_state.cards)
            decks |= {tuple(c) for c in cards}
    assert len(decks) == 3 * 16


def test_bad_arguments_raise(cartpole):
    env, params = cartpole
    with pytest.raises(ValueError, match="num_envs"):
        VecEnv(env, params, 0)
    with pytest.raises(ValueError, match="resets_per_step"):
        VecEnv(env, params, 4, resets_per_step=0)
    with pytest.raises(ValueError, match="pool_size"):
        VecEnv(env, params, 4, resets_per_step=1, pool_size=0)
