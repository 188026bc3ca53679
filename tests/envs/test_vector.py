"""VecEnv (resets only for the envs that finished) against plain envs stepped one at a
time, gymnax-style auto-reset, and the independence of the reset states it hands out."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlmem.envs import VecEnv, make
from rlmem.envs.vector import fixed_episode_length
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


def _check_against_plain_envs(venv, env, params, steps, key):
    """Steps `venv` and `PlainEnvs` side by side and compares every output per env.

    VecEnv's step key `k` splits into `(step_key, reset_key)`; env `i` steps with
    `split(step_key, N)[i]` and, where its episode ended, resets with
    `fold_in(reset_key, i)` -- gymnax's auto-reset with one fresh key per env -- so the
    reference steps and resets with the same randomness, whatever `resets_per_step` is.
    """
    n = venv.num_envs
    step = jax.jit(venv.step)
    obs, state = venv.reset(key)
    ref = PlainEnvs(env, params, [_row(state.env_state.env_state, i) for i in range(n)])
    for t in range(steps):
        key, k_act, k_step = jax.random.split(key, 3)
        action = _random_actions(k_act, n)
        out = step(k_step, state, action)
        state = out[1]
        # One transfer per step: indexing numpy copies is cheap, indexing jax arrays is not.
        obs, state_np, reward, term, trunc, info = jax.device_get(out)
        step_key, reset_key = jax.random.split(k_step)
        step_keys = jax.random.split(step_key, n)
        reset_keys = jax.vmap(jax.random.fold_in, (None, 0))(reset_key, jnp.arange(n))
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
                o, ref.states[i] = ref.reset_env(reset_keys[i], params)
            _close(obs[i], o, f"{where}: obs")
            _close(_row(state_np.env_state.env_state, i), ref.states[i], f"{where}: state")
            # The statistics wrapper's counters restart with the episode.
            assert int(state_np.env_state.episode_length[i]) == ref.length[i], where
    # Several episodes per env, ended both ways: every branch above was taken.
    assert min(ref.episodes) >= 2, ref.episodes
    assert ref.ends["terminated"] > 0 and ref.ends["truncated"] > 0, ref.ends
    return ref


def test_exact_when_every_env_gets_its_own_reset(noisy_cartpole):
    """k == N: every finished env i takes reset key i of that step, exactly as per-env
    gymnax auto-reset (plain env, Python loop) with the same keys."""
    env, params = noisy_cartpole
    venv = VecEnv(env, params, N, resets_per_step=N)
    _check_against_plain_envs(venv, env, params, 3 * LIMIT, jax.random.PRNGKey(0))


@pytest.mark.parametrize("k", [1, 3])
def test_fewer_resets_per_pass_are_still_exact(noisy_cartpole, k):
    """k < N: envs that finish together are reset k per loop pass, and every one of
    them still gets its own fresh state, exactly the plain env's reset with its key (here
    up to 8 envs finish in one step, so several passes run)."""
    env, params = noisy_cartpole
    venv = VecEnv(env, params, 2 * N, resets_per_step=k)
    ref = _check_against_plain_envs(venv, env, params, 3 * LIMIT, jax.random.PRNGKey(3))
    assert sum(ref.episodes) > 3 * k


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
    venv = VecEnv(env, params, 64)  # default k = 8 resets per loop pass
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


@pytest.mark.parametrize("k", [1, 4])
def test_simultaneous_ends_get_distinct_decks(k):
    """All N envs finish in the same step: each gets its own deck, k per pass."""
    env, params = make("RepeatFirstEasy")
    cards = _end_all_episodes(VecEnv(env, params, 4, resets_per_step=k), jax.random.PRNGKey(0))
    assert len({tuple(c) for c in cards}) == 4


def _cards(state):
    return np.asarray(state.env_state.env_state.env_state.cards)  # stats -> antialias -> raw


def test_card_episodes_stay_independent():
    """Default k (N for fixed-length games): synchronized card games draw distinct decks,
    episode after episode."""
    env, params = make("RepeatFirstEasy")
    venv = VecEnv(env, params, 16)
    assert venv.resets_per_step == 16
    step = jax.jit(venv.step)
    _, state = venv.reset(jax.random.PRNGKey(0))
    decks = {tuple(c) for c in _cards(state)}
    for t in range(3 * 51):
        _, state, _, term, _, info = step(jax.random.PRNGKey(t), state, jnp.zeros(16, jnp.int32))
        if bool(info["start"].any()):
            assert info["start"].all()
            decks |= {tuple(c) for c in _cards(state)}
    assert len(decks) == 4 * 16


def _staggered_card_envs(venv, key, starts):
    """Reset, then move env i's clock to `starts[i]`: the envs finish at different steps,
    several at once where their starts are equal."""
    _, state = venv.reset(key)
    raw = state.env_state.env_state.env_state
    raw = raw.replace(time=jnp.asarray(starts, raw.time.dtype))
    return state.replace(env_state=state.env_state.replace(
        env_state=state.env_state.env_state.replace(env_state=raw)))


@pytest.mark.parametrize("k", [1, 3, None])
def test_reset_states_handed_to_different_envs_are_never_the_same_draw(k):
    """Every fresh state VecEnv hands out is its own draw: over many steps of envs that
    finish alone, in groups larger than k and all at once, no deck is ever handed out
    twice (to two envs in one step, or in two steps), and each is exactly the deck of that
    env's own reset key, `fold_in(reset_key, i)`, for every k."""
    env, params = make("RepeatFirstEasy")
    n = 16
    venv = VecEnv(env, params, n, resets_per_step=k)
    step = jax.jit(venv.step)
    reset = jax.jit(jax.vmap(venv.env.reset_env, in_axes=(0, None)))
    # Groups of 5 envs with equal clocks end together (k = 3: two passes), env 15 alone.
    starts = [0] * 5 + [17] * 5 + [34] * 5 + [40]
    key = jax.random.PRNGKey(11)
    state = _staggered_card_envs(venv, key, starts)
    handed = {tuple(c): ("reset", i) for i, c in enumerate(_cards(state))}
    assert len(handed) == n
    most_at_once = 0
    for t in range(160):
        key, k_step = jax.random.split(key)
        _, state, _, _, _, info = step(k_step, state, jnp.zeros(n, jnp.int32))
        done = np.flatnonzero(np.asarray(info["start"]))
        if not len(done):
            continue
        most_at_once = max(most_at_once, len(done))
        reset_key = jax.random.split(k_step)[1]
        keys = jax.vmap(jax.random.fold_in, (None, 0))(reset_key, jnp.asarray(done))
        expected = np.asarray(reset(keys, params)[1].env_state.env_state.cards)
        cards = _cards(state)
        for i, deck_of_i in zip(done, expected, strict=True):
            np.testing.assert_array_equal(cards[i], deck_of_i, err_msg=f"t={t} env={i}")
            assert tuple(cards[i]) not in handed, (t, i, handed.get(tuple(cards[i])))
            handed[tuple(cards[i])] = (t, int(i))
    assert most_at_once == 5 and len(handed) > 3 * n


def test_the_keys_of_one_step_are_pairwise_distinct():
    """The keys behind every draw of one step -- `N` step keys and `N` reset keys, for
    4,096 envs, on a few steps -- are all different, so no two envs (and no env's step and
    reset) ever share a draw."""
    env, params = make("RepeatFirstEasy")
    n = 4096
    venv = VecEnv(env, params, n)
    for t in range(3):
        step_key, reset_key = jax.random.split(jax.random.PRNGKey(t))
        keys = np.concatenate([np.asarray(jax.random.split(step_key, n)),
                               np.asarray(venv.reset_keys(reset_key, jnp.arange(n)))])
        assert len({tuple(k) for k in keys}) == 2 * n


def test_results_do_not_depend_on_resets_per_step():
    """k only sets how many finished envs one loop pass resets: every output, every step,
    is bit for bit the same for every k (card games finishing in groups; CartPole)."""
    for name, n, steps in (("RepeatFirstEasy", 8, 120), ("CartPole-v1", 8, 60)):
        env, params = make(name)
        runs = []
        for k in (1, 3, n):
            venv = VecEnv(env, params, n, resets_per_step=k)
            step = jax.jit(venv.step)
            key = jax.random.PRNGKey(4)
            if name == "RepeatFirstEasy":
                state = _staggered_card_envs(venv, key, [0, 0, 0, 9, 9, 30, 30, 30])
            else:
                _, state = venv.reset(key)
            outs = []
            for _ in range(steps):
                key, k_act, k_step = jax.random.split(key, 3)
                out = step(k_step, state, _random_actions(k_act, n))
                state = out[1]
                outs.append(jax.device_get(out))
            runs.append(outs)
        assert sum(int(o[5]["start"].sum()) for o in runs[0]) >= 2 * n
        for other in runs[1:]:
            jax.tree.map(np.testing.assert_array_equal, runs[0], other)


def test_vmapped_over_seeds_is_the_same_as_one_seed_at_a_time():
    """The training loop vmaps VecEnv over seeds: the reset loop then runs as long as the
    busiest seed needs, and each seed must come out as if stepped alone."""
    env, params = make("CountRecallEasy")
    venv = VecEnv(env, params, 6, resets_per_step=2)
    seeds = jax.random.split(jax.random.PRNGKey(2), 3)

    def rollout(key):
        key, reset_key = jax.random.split(key)
        # Stagger the seeds differently, so that they finish at different steps.
        offset = jax.random.randint(reset_key, (), 0, 40)
        _, state = venv.reset(reset_key)
        raw = state.env_state.env_state.env_state
        raw = raw.replace(time=(offset + jnp.arange(6) % 3).astype(raw.time.dtype))
        state = state.replace(env_state=state.env_state.replace(
            env_state=state.env_state.env_state.replace(env_state=raw)))

        def body(state, key):
            k_act, k_step = jax.random.split(key)
            out = venv.step(k_step, state, jax.random.randint(k_act, (6,), 0, 27))
            return out[1], (out[0], out[2], out[5]["start"])

        return jax.lax.scan(body, state, jax.random.split(key, 60))

    batched = jax.jit(jax.vmap(rollout))(seeds)
    for s in range(3):
        alone = jax.jit(rollout)(seeds[s])
        jax.tree.map(lambda b, a, s=s: np.testing.assert_array_equal(b[s], a), batched, alone)
    assert int(batched[1][2].sum()) > 6


def test_default_resets_per_step():
    cards, card_params = make("RepeatFirstEasy")
    assert fixed_episode_length(cards, card_params) == 51
    assert VecEnv(cards, card_params, 64).resets_per_step == 64
    short = card_params.replace(max_steps_in_episode=5)
    assert fixed_episode_length(cards, short) == 5
    cartpole, params = make("CartPole-v1")
    assert fixed_episode_length(cartpole, params) is None
    assert VecEnv(cartpole, params, 64).resets_per_step == 8
    assert VecEnv(cartpole, params, 4).resets_per_step == 1
    assert VecEnv(cartpole, params, 4, resets_per_step=100).resets_per_step == 4


def test_bad_arguments_raise(cartpole):
    env, params = cartpole
    with pytest.raises(ValueError, match="num_envs"):
        VecEnv(env, params, 0)
    with pytest.raises(ValueError, match="resets_per_step"):
        VecEnv(env, params, 4, resets_per_step=0)
