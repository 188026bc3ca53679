"""The jitted loop (rlmem/loop.py) with toy algorithms on the real RepeatFirstEasy.

RepeatFirst pays +1/51 per step for naming the suit of the episode's first card, so a
policy that remembers the first card scores exactly +1 per episode and one that always
names another suit exactly -1: closed forms that check collection, the acting carry,
episode statistics, evaluation and counters end to end. A random toy checks that seeds
never mix (seed 1 of a three-seed run equals a one-seed run of seed 1).
"""

from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from rlmem.agents.base import Rollout
from rlmem.envs import make
from rlmem.loop import Loop, LoopSettings
from rlmem.progress import Progress
from rlmem.runner import periods_per_chunk

EPISODE = 51  # RepeatFirstEasy: 52 cards, 51 steps
OBS = 6  # one-hot suit (4) + one-hot first-step flag (2)


@struct.dataclass
class ToyState:
    learns: jax.Array
    reward_sum: jax.Array
    last: Rollout


class Toy:
    """Names suit `(first card + offset) % 4`; `random=True` explores uniformly instead."""

    def __init__(self, offset: int = 0, random: bool = False, num_envs: int = 1, steps: int = 1):
        self.offset, self.random = offset, random
        self.num_envs, self.steps = num_envs, steps

    def init(self, key):
        n, t = self.num_envs, self.steps
        z = lambda *shape, dtype=jnp.float32: jnp.zeros((n, t, *shape), dtype)
        from rlmem.types import Transition

        last = Rollout(
            transition=Transition(
                obs=z(OBS), action=z(dtype=jnp.int32), reward=z(), next_obs=z(OBS),
                terminated=z(dtype=bool), truncated=z(dtype=bool), start=z(dtype=bool),
                mask=z(dtype=bool),
            ),
            extras={},
        )
        return ToyState(jnp.zeros((), jnp.int32), jnp.zeros(()), last)

    def initial_carry(self, num_envs):
        return jnp.zeros((num_envs,), jnp.int32)

    def act_greedy(self, state, obs, start, carry):
        carry = jnp.where(start, jnp.argmax(obs[:, :4], axis=-1), carry)
        return ((carry + self.offset) % 4).astype(jnp.int32), carry

    def act(self, state, obs, start, carry, key):
        action, carry = self.act_greedy(state, obs, start, carry)
        if self.random:
            action = jax.random.randint(key, action.shape, 0, 4)
        return action, carry, {}

    def learn(self, state, rollout, key):
        state = ToyState(
            state.learns + 1, state.reward_sum + rollout.transition.reward.sum(), rollout
        )
        return state, {"reward_sum": state.reward_sum}


@pytest.fixture(scope="module")
def env():
    return make("RepeatFirstEasy")


def make_loop(env, algo, *, num_envs=3, steps=EPISODE, interval=2, episodes=4):
    settings = LoopSettings(num_envs=num_envs, rollout_steps=steps, resets_per_step=num_envs,
                            eval_interval=interval, eval_episodes=episodes,
                            eval_max_steps=EPISODE)
    return Loop(algo=algo, env=env[0], env_params=env[1], settings=settings)


def test_obs_layout_is_one_hot_suit_plus_first_flag(env):
    e, p = env
    obs, _ = e.reset(jax.random.PRNGKey(0), p)
    # one-hot suit, then the one-hot "first step" flag (popgym's Antialias is Discrete(2))
    assert obs.shape == (OBS,) and float(obs[:4].sum()) == 1.0
    np.testing.assert_array_equal(obs[4:], [0.0, 1.0])


@pytest.fixture(scope="module")
def oracle_run(env):
    """Two seeds, 2 envs, 23-step windows that cut the 51-step episodes (one compile)."""
    steps = 23
    loop = make_loop(env, Toy(0, num_envs=2, steps=steps), num_envs=2, steps=steps,
                     interval=6)
    state, m = loop.run_chunk(loop.init([0, 1]), 2)
    return jax.device_get(state), jax.device_get(m)


def test_closed_form_returns_and_counters(oracle_run):
    """Remembering the first card scores exactly +1 per episode, in collection and eval."""
    state, m = oracle_run
    assert m["eval/return"].shape == (2, 2)
    np.testing.assert_allclose(m["eval/return"], 1.0, atol=1e-5)
    np.testing.assert_allclose(m["eval/best_return"], 1.0, atol=1e-5)
    np.testing.assert_allclose(m["eval/length"], EPISODE)
    np.testing.assert_allclose(m["collect/episode_return"], 1.0, atol=1e-5)
    np.testing.assert_allclose(m["collect/episode_length"], EPISODE)
    # 6 iterations x 23 steps = 138 steps per env and period: episodes end after steps
    # 51, 102 (period 1) and 153, 204, 255 (period 2), two envs each.
    np.testing.assert_array_equal(m["collect/episodes"], [[4, 6]] * 2)
    np.testing.assert_array_equal(m["counters/env_steps"], [[276, 552]] * 2)
    np.testing.assert_array_equal(m["counters/iterations"], [[6, 12]] * 2)
    np.testing.assert_array_equal(m["counters/episodes"], [[4, 10]] * 2)
    np.testing.assert_array_equal(state.algo.learns, [12, 12])
    # learn's cumulative reward (2 envs x 23 steps x 1/51 per iteration), averaged over a
    # period's iterations: the loop hands every rollout to learn exactly once.
    per_iteration = 2 * 23 / EPISODE
    np.testing.assert_allclose(m["train/reward_sum"][:, 1], per_iteration * 9.5, rtol=1e-5)
    # 276 steps per env: five whole episodes (255 steps), 21 into the sixth.
    np.testing.assert_array_equal(state.episode_length, [[21, 21]] * 2)
    np.testing.assert_allclose(state.episode_return, 21 / EPISODE, rtol=1e-5)


def test_rollout_follows_the_flag_convention(oracle_run):
    """The last rollout (steps 253..275 of each env) as rlmem/types.py says: the fifth
    episode ends at its index 1 (step 254), the sixth starts at index 2."""
    state, _ = oracle_run
    tr = jax.tree.map(lambda x: np.asarray(x[0]), state.algo.last.transition)
    assert tr.obs.shape == (2, 23, OBS)
    done = tr.terminated | tr.truncated
    expected_done = np.zeros((2, 23), bool)
    expected_done[:, 1] = True
    np.testing.assert_array_equal(tr.terminated, expected_done)
    np.testing.assert_array_equal(tr.start[:, 1:], done[:, :-1])
    assert tr.start[:, 2].all() and tr.start.sum() == 2
    same = ~done[:, :-1]
    np.testing.assert_array_equal(tr.next_obs[:, :-1][same], tr.obs[:, 1:][same])
    assert not tr.truncated.any() and tr.mask.all()
    np.testing.assert_allclose(tr.reward, 1 / EPISODE, rtol=1e-6)
    suit = tr.obs[..., :4].argmax(-1)
    first = tr.obs[..., 5] == 1.0
    np.testing.assert_array_equal(first, tr.start)
    np.testing.assert_array_equal(tr.action[first], suit[first])


class RandomToy(Toy):
    """Explores uniformly at random; greedy play always names suit 0."""

    def act_greedy(self, state, obs, start, carry):
        return jnp.zeros(obs.shape[:1], jnp.int32), carry


@pytest.fixture(scope="module")
def random_loop(env):
    return make_loop(env, RandomToy(random=True, num_envs=2, steps=10), num_envs=2, steps=10,
                     interval=1, episodes=4)


def test_seeds_never_mix(random_loop):
    """Seed 1 trained beside seeds 0 and 2 equals seed 1 trained alone (vmap vs unbatched)."""
    three, m3 = random_loop.run_chunk(random_loop.init([0, 1, 2]), 6)
    one, m1 = random_loop.run_chunk(random_loop.init([1]), 6)
    for name in m1:
        np.testing.assert_allclose(m3[name][1], m1[name][0], rtol=1e-5, err_msg=name)
    actions = np.asarray(three.algo.last.transition.action)
    np.testing.assert_array_equal(actions[1], one.algo.last.transition.action[0])
    assert not np.array_equal(actions[0], actions[1])

    # Evaluation draws fresh decks every time: always naming suit 0 scores +1 or -1 per
    # episode by the first card alone, so with fixed eval seeds every mean would repeat.
    returns = np.asarray(m3["eval/return"])
    assert len(np.unique(np.round(returns, 4))) > 2
    assert set(np.round(np.abs(returns * 4), 4).ravel()) <= {0.0, 2.0, 4.0}
    np.testing.assert_allclose(m3["eval/best_return"], np.maximum.accumulate(returns, axis=1))
    np.testing.assert_allclose(three.best_eval_return, returns.max(axis=1))


def test_periods_per_chunk():
    assert periods_per_chunk(100, 10) == 10
    assert periods_per_chunk(12, 10) == 6
    assert periods_per_chunk(7, 10) == 7
    assert periods_per_chunk(13, 5) == 1


def test_progress_bar():
    quiet = io.StringIO()
    bar = Progress(1000, stream=quiet)  # not a TTY: no bar, plain lines at most every 30 s
    bar.update(500, 0.25)
    bar.close()
    assert quiet.getvalue() == ""
    bar.update(1000)  # the last update always leaves a line in batch logs
    assert quiet.getvalue().startswith("rlmem: [") and quiet.getvalue().count("\n") == 1
    assert "\r" not in quiet.getvalue()
    loud = io.StringIO()
    bar = Progress(1000, stream=loud, enabled=True)
    bar.update(100, 0.25)  # the first update (compilation included) sets the baseline
    assert "? steps/s" in bar.line() and "ETA ?" in bar.line()
    bar._base = (bar._base[0] - 2.0, bar._base[1])  # pretend 2 s passed since then
    bar.update(600)  # 500 steps in 2 s; 400 to go
    line = bar.line()
    assert "600/1.0k steps" in line and "60%" in line and "eval 0.250" in line
    assert "250 steps/s" in line and "ETA 00:02" in line
    assert loud.getvalue().startswith("\r[")
