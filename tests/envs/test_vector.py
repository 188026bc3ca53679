"""VecEnv (optimistic resets) against plain envs stepped one at a time, and gymnax-style
auto-reset."""

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


# A short time limit, so that episodes end by truncation as well as by termination.
LIMIT = 20


@pytest.fixture(scope="module")
def noisy_cartpole():
    """CartPole whose steps are random too (observation noise drawn from the step key), so
    the per-env step keys matter, unlike gymnax CartPole's deterministic steps."""
    return make("NoisyPositionOnlyCartPoleEasy", max_episode_length=LIMIT)


def _row(tree, i):
    return jax.tree.map(lambda x: np.asarray(x[i]), tree)


def _close(actual, expected, what):
    # vmapped and single-env compiles may round differently (fused multiply-adds)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(
        np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6, err_msg=what), actual, expected)


class PlainEnvs:
    """The reference: `N` copies of the plain env (`make`'s, without VecEnv's
    EpisodeStatistics), stepped one env at a time through `step_env`/`is_truncated`, with
    episode boundaries, lengths and returns counted here in Python."""

    def __init__(self, env, params, states):
        self.env, self.params = env, params
        self.step_env = jax.jit(env.step_env)
        self.reset_env = jax.jit(env.reset_env)
        self.is_truncated = jax.jit(env.is_truncated)
        self.states = list(states)
        n = len(self.states)
        self.length, self.ret = [0] * n, [0.0] * n
        self.ends = {"terminated": 0, "truncated": 0}
        self.episodes = [0] * n

    def step(self, i, key, action):
        """One step of env `i`: (obs, reward, terminated, truncated, length, return); the
        last two are the finished episode's where it ended, else None."""
        obs, state, reward, terminated, _ = self.step_env(key, self.states[i], action,
                                                          self.params)
        terminated = bool(terminated)
        truncated = bool(self.is_truncated(state, self.params)) and not terminated
        self.states[i] = state
        self.length[i] += 1
        self.ret[i] += float(reward)
        episode = (None, None)
        if terminated or truncated:
            episode = (self.length[i], self.ret[i])
            self.length[i], self.ret[i] = 0, 0.0
            self.ends["terminated" if terminated else "truncated"] += 1
            self.episodes[i] += 1
        return obs, float(reward), terminated, truncated, *episode


def _check_against_plain_envs(venv, env, params, steps, key, reset_keys_known):
    """Steps `venv` and `PlainEnvs` side by side and compares every output per env.

    VecEnv's step key `k` splits into `(step_key, reset_key)`, and env `i` steps with
    `split(step_key, N)[i]`, so the reference steps with the same randomness. Where the
    reference's own episode ends: with `reset_keys_known` (k == N, no pool) it resets
    itself with `split(reset_key, N)[i]`, as gymnax's auto-reset would; otherwise the
    fresh state comes from VecEnv's pool, which the reference cannot reproduce, so it
    checks that the state VecEnv put in is a fresh, never handed-out reset state and
    continues from it.
    """
    n = venv.num_envs
    step = jax.jit(venv.step)
    get_obs = jax.jit(env.get_obs)
    obs, state = venv.reset(key)
    ref = PlainEnvs(env, params, [_row(state.env_state.env_state, i) for i in range(n)])
    handed_out = {tuple(np.asarray(o).round(6)) for o in np.asarray(obs)}
    for t in range(steps):
        key, k_act, k_step = jax.random.split(key, 3)
        action = _random_actions(k_act, n)
        out = step(k_step, state, action)
        state = out[1]
        # One transfer per step: indexing numpy copies is cheap, indexing jax arrays is not.
        obs, state_np, reward, term, trunc, info = jax.device_get(out)
        step_key, reset_key = jax.random.split(k_step)
        step_keys, reset_keys = jax.random.split(step_key, n), jax.random.split(reset_key, n)
        step_keys, reset_keys, action = jax.device_get((step_keys, reset_keys, action))
        for i in range(n):
            where = f"t={t} env={i}"
            o, r, te, tr, length, ret = ref.step(i, step_keys[i], action[i])
            done = length is not None
            _close(info["final_obs"][i], o, f"{where}: final_obs")
            assert float(reward[i]) == r, where
            assert (bool(term[i]), bool(trunc[i])) == (te, tr), where
            # The flag under test: the returned obs starts an episode exactly where the
            # reference's own episode ended.
            assert bool(info["start"][i]) == done, where
            assert bool(info["episode_done"][i]) == done, where
            if done:
                assert int(info["episode_length"][i]) == length, where
                np.testing.assert_allclose(float(info["episode_return"][i]), ret, rtol=1e-6)
                if reset_keys_known:
                    o, ref.states[i] = ref.reset_env(reset_keys[i], params)
                else:
                    fresh = _row(state_np.env_state.env_state, i)
                    # A reset state (time 0, first-step flag set) whose obs is returned...
                    assert int(fresh.env_state.time) == 0 and int(fresh.is_first) == 1, where
                    o = get_obs(fresh, params)
                    # ...and not one handed out before (the resets' observations are
                    # continuous random draws: equal ones mean a reused state).
                    assert tuple(np.asarray(o).round(6)) not in handed_out, where
                    handed_out.add(tuple(np.asarray(o).round(6)))
                    ref.states[i] = fresh
            _close(obs[i], o, f"{where}: obs")
            _close(_row(state_np.env_state.env_state, i), ref.states[i], f"{where}: state")
            # The statistics wrapper's counters restart with the episode.
            assert int(state_np.env_state.episode_length[i]) == ref.length[i], where
    # Several episodes per env, ended both ways: every branch above was taken.
    assert min(ref.episodes) >= 2, ref.episodes
    assert ref.ends["terminated"] > 0 and ref.ends["truncated"] > 0, ref.ends


def test_exact_when_every_env_gets_its_own_reset(noisy_cartpole):
    """k == N: each finished env i takes reset key i of that step, exactly as per-env
    gymnax auto-reset (plain env, Python loop) with the same keys."""
    env, params = noisy_cartpole
    venv = VecEnv(env, params, N, resets_per_step=N)
    _check_against_plain_envs(venv, env, params, 3 * LIMIT, jax.random.PRNGKey(0),
                              reset_keys_known=True)


def test_pool_resets_against_plain_envs(noisy_cartpole):
    """k < N (reset pool): outside resets every env is exactly the plain env stepped with
    the same keys, episodes end (start flag, terminated/truncated, statistics) exactly where
    the plain env's do, and a finished env continues from a fresh, unused reset state."""
    env, params = noisy_cartpole
    venv = VecEnv(env, params, 2 * N, resets_per_step=2)
    assert venv.pool_size == 2 * N
    _check_against_plain_envs(venv, env, params, 3 * LIMIT, jax.random.PRNGKey(3),
                              reset_keys_known=False)


def _episode_stats(run_step, reset, steps, key):
    """Completed-episode returns/lengths over `steps` steps."""
    obs, state = reset(key)
    returns, lengths = [], []
    for _ in range(steps):
        key, k_act, k_step = jax.random.split(key, 3)
        obs, state, reward, term, trunc, info = run_step(k_step, state, _random_actions(k_act, 64))
        done = np.asarray(info["episode_done"])
        returns += list(np.asarray(info["episode_return"])[done])
        lengths += list(np.asarray(info["episode_length"])[done])
    return np.array(returns), np.array(lengths)


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
    for a, b in zip(ours, theirs, strict=True):
        assert len(a) > 300 and len(b) > 300
        se = np.sqrt(a.var() / len(a) + b.var() / len(b))
        assert abs(a.mean() - b.mean()) < 4 * se, (a.mean(), b.mean(), se)
    # CartPole's reward is 1 per step: a completed episode's return is its length.
    np.testing.assert_allclose(ours[0], ours[1])
    # The start flags are checked step by step against plain envs in the two tests above.


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
