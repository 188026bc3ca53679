"""`loop.rollout=episode`: one whole episode per env and iteration, the paper's epoch.

Checked three ways: the loop's rollouts against the env's own episode boundaries (a
masked prefix per env, nothing after the first end), the paper preset on a variable-length
task at tiny scale against the protocol's counting rules (updates == episodes after the
random phase, env steps == the sum of episode lengths, an evaluation every `eval.interval`
episodes), and a fixed-length task against `loop.rollout=steps` bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from rlmem.agents.base import Rollout
from rlmem.config import ConfigError, build
from rlmem.envs import make
from rlmem.loop import Loop, LoopSettings
from rlmem.metrics import read_metrics
from rlmem.runner import run
from tests.compose import compose_cfg

ROOT = Path(__file__).resolve().parents[1]
TINY = ["memory.trace_size=8", "memory.context_size=2", "memory.output_size=16",
        "algo.network.hidden_size=16", "algo.batch_size=64", "algo.buffer_capacity=4000",
        "algo.optim.warmup_updates=5", "eval.episodes=2", "logger=none"]



# -- the loop alone, with a random toy algorithm ---------------------------------------
@struct.dataclass
class Kept:
    rollouts: Rollout
    calls: jax.Array


class RandomToy:
    """Uniform random actions; `learn` keeps the last rollout for inspection."""

    def __init__(self, num_actions: int, obs_size: int, num_envs: int, steps: int):
        self.a, self.f, self.n, self.t = num_actions, obs_size, num_envs, steps

    def init(self, key):
        from rlmem.types import Transition

        z = lambda *s, dtype=jnp.float32: jnp.zeros((self.n, self.t, *s), dtype)
        tr = Transition(obs=z(self.f), action=z(dtype=jnp.int32), reward=z(),
                        next_obs=z(self.f), terminated=z(dtype=bool), truncated=z(dtype=bool),
                        start=z(dtype=bool), mask=z(dtype=bool))
        return Kept(Rollout(tr, {}), jnp.zeros((), jnp.int32))

    def initial_carry(self, num_envs):
        return jnp.zeros((num_envs,))

    def act(self, state, obs, start, carry, key):
        return jax.random.randint(key, start.shape, 0, self.a), carry, {}

    def act_greedy(self, state, obs, start, carry):
        return jnp.zeros(start.shape, jnp.int32), carry

    def learn(self, state, rollout, key):
        return Kept(rollout, state.calls + 1), {"calls": state.calls + 1}


@pytest.fixture(scope="module")
def cartpole_loop():
    """3 envs of PositionOnlyCartPoleEasy (variable length, time limit 200), random play."""
    env, params = make("PositionOnlyCartPoleEasy")
    n, t = 3, 200
    algo = RandomToy(int(env.action_space(params).n), int(env.observation_space(params).shape[0]),
                     n, t)
    settings = LoopSettings(num_envs=n, rollout_steps=t, resets_per_step=n, eval_interval=2,
                            eval_episodes=2, eval_max_steps=t, rollout="episode")
    return Loop(algo=algo, env=env, env_params=params, settings=settings)


def test_each_iteration_is_one_whole_episode_per_env(cartpole_loop):
    loop = cartpole_loop
    state = loop.init([0])
    seen_lengths = []
    for _ in range(3):
        steps_before = int(state.env_steps[0])
        state, _ = loop.run_chunk(state, 1)  # 2 iterations; inspect the last one's rollout
        tr = jax.tree.map(lambda x: np.asarray(x[0]), state.algo.rollouts.transition)
        ends = tr.terminated | tr.truncated
        for e in range(loop.settings.num_envs):
            length = int(tr.mask[e].sum())
            seen_lengths.append(length)
            assert 1 <= length <= 200
            assert tr.mask[e, :length].all() and not tr.mask[e, length:].any()  # a prefix
            assert tr.start[e, 0], "an iteration starts at an episode start"
            assert not tr.start[e, 1:length].any()  # one episode, not two
            np.testing.assert_array_equal(np.flatnonzero(ends[e, :length]), [length - 1])
            # Inside the episode, next_obs[t] is obs[t+1] (no reset in between).
            np.testing.assert_array_equal(tr.next_obs[e, : length - 1], tr.obs[e, 1:length])
        assert int(state.episodes[0]) == int(state.iterations[0]) * loop.settings.num_envs
        assert int(state.env_steps[0]) > steps_before
    assert len(set(seen_lengths)) > 1, f"episode lengths should vary: {seen_lengths}"


def test_vmapped_seeds_equal_single_seed_runs(cartpole_loop):
    """The while_loop runs until every seed's envs are done; seeds must not notice."""
    loop = cartpole_loop
    both, _ = loop.run_chunk(loop.init([0, 1]), 2)
    one, _ = loop.run_chunk(loop.init([1]), 2)
    for a, b in zip(jax.tree.leaves(both), jax.tree.leaves(one), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[1], np.asarray(b)[0])


# -- the paper preset on a variable-length task ----------------------------------------
@pytest.fixture(scope="module")
def preset_run(tmp_path_factory):
    cfg = compose_cfg("+experiment=paper/position_only_cartpole", *TINY,
                      "loop.iterations=30", "algo.random_epochs=10", "algo.train_epochs=20",
                      "eval.interval=10", "checkpoint.interval=null")
    exp = build(cfg)
    run_dir = tmp_path_factory.mktemp("episode")
    summary = run(exp, run_dir, progress=False)
    return exp, summary, read_metrics(run_dir / "metrics.jsonl"), run_dir


def test_preset_is_the_papers_epoch_protocol(preset_run):
    exp, summary, rows, _ = preset_run
    assert exp.loop.settings.rollout == "episode" and exp.loop.settings.num_envs == 1
    state = summary["state"]
    algo = state.algo
    # 30 iterations = 30 episodes; updates only after the 10 random ones, one per episode.
    assert int(state.episodes[0]) == 30 and int(algo.epochs[0]) == 30
    assert int(algo.updates[0]) == (30 - 10) * 1
    # Env steps are the episodes' lengths summed, and only those steps were stored.
    lengths = sum(r["collect/episode_length"] * r["collect/episodes"] for r in rows)
    assert int(state.env_steps[0]) == round(lengths)
    assert int(algo.store.steps[0, 0]) == int(state.env_steps[0])
    assert int(np.asarray(algo.store.data.mask[0]).sum()) == int(state.env_steps[0])
    assert int(algo.store.ep_hi[0, 0]) == 30
    assert int(state.env_steps[0]) < 30 * 200  # random play ends long before the limit
    # One evaluation every 10 episodes, logged on the episode axis.
    assert [r["step"] for r in rows] == [10, 20, 30]
    assert [r["counters/episodes"] for r in rows] == [10, 20, 30]
    assert sorted((p.name for p in (preset_run[3] / "checkpoints").iterdir()
                   if p.name.isdigit()), key=int)[-1] == "30"


def test_train_metrics_skip_the_random_phase(preset_run):
    _, _, rows, _ = preset_run
    # Period 1 is all random phase: no update ran, so losses are missing (not zeros);
    # counters are the period-end values, not period means.
    assert rows[0]["train/loss"] is None and rows[0]["train/training"] == 0.0
    assert rows[0]["train/updates"] == 0 and rows[0]["train/epochs"] == 10
    assert rows[1]["train/loss"] is not None and rows[1]["train/updates"] == 10
    assert rows[2]["train/updates"] == 20 and rows[2]["train/epochs"] == 30


def test_ppo_refuses_episode_rollouts():
    cfg = compose_cfg("algo=ppo", "loop.rollout=episode", "logger=none")
    with pytest.raises(ConfigError, match="loop.rollout='episode'"):
        build(cfg)


# -- fixed-length tasks: episode mode == steps mode, bit for bit -----------------------
@pytest.mark.parametrize("batching", [[], ["batching=segment", "batching.segment_length=10",
                                            "batching.initial_state=stored"]])
def test_fixed_length_task_is_bit_identical_to_steps_mode(batching):
    common = ["env=repeat_first_easy", *TINY, "algo.random_epochs=2", "algo.batch_size=60",
              "eval.interval=2", *batching]
    states = []
    for mode in ("steps", "episode"):
        exp = build(compose_cfg(*common, f"loop.rollout={mode}"))
        state, metrics = exp.loop.run_chunk(exp.loop.init([0, 1]), 2)
        states.append((jax.device_get(state), jax.device_get(metrics)))
    (a, ma), (b, mb) = states
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    for name in ma:
        np.testing.assert_array_equal(ma[name], mb[name])
    assert int(a.algo.updates[0]) > 0  # the comparison covered gradient updates


PRESETS = sorted(p.stem for p in (ROOT / "conf" / "experiment" / "paper").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_paper_preset_runs_the_epoch_protocol(preset):
    from rlmem.config import validate

    c = validate(compose_cfg(f"+experiment=paper/{preset}", "logger=none"))
    loop, algo = c["loop"], c["algo"]
    assert loop["rollout"] == "episode" and loop["num_envs"] == 1
    assert loop["rollout_steps"] == c["env"]["max_episode_length"]
    assert loop["iterations"] == algo["random_epochs"] + algo["train_epochs"]
    assert c["eval"]["interval"] == 10 and c["eval"]["episodes"] == 20
    assert algo["batch_size"] == 1000
