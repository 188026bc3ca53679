"""DQN with several envs per seed, end to end (`loop.num_envs=4`).

`rlmem.config.build` wires `loop.num_envs` into the algorithm (the replay store keeps one
stream per env); these runs compose the config through Hydra as `train.py` does, train a
tiny FFM + DQN on RepeatFirstEasy (51-step episodes) with tape, segment and stored-state
segment (R2D2, burn-in) batching, and check the counters: every env stepped every
iteration, every stream stored every step, and gradient updates ran. The segment runs
compile their own loops (~45 s each without the compilation cache), so they are slow.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from rlmem.config import build
from rlmem.runner import run
from tests.compose import compose_cfg

NUM_ENVS, ITERATIONS, EPISODE = 4, 10, 51  # RepeatFirstEasy: fixed 51-step episodes

TINY = [
    f"loop.num_envs={NUM_ENVS}", f"loop.iterations={ITERATIONS}", "eval.interval=5",
    "eval.episodes=2", "loop.chunk_periods=2", "checkpoint.interval=null", "logger=none",
    "memory.trace_size=4", "memory.context_size=2", "memory.output_size=16",
    "algo.network.hidden_size=16", "algo.batch_size=64", "algo.buffer_capacity=2048",
    "algo.random_epochs=1", "algo.train_epochs=20", "algo.optim.warmup_updates=2",
    "algo.updates_per_learn=2",
]
BATCHINGS = {
    "tape": ["batching=tape"],
    "segment": ["batching=segment", "batching.segment_length=16"],
    "stored_segment": ["batching=segment", "batching.segment_length=16",
                       "batching.initial_state=stored", "batching.burn_in=4"],
}



@pytest.mark.parametrize("batching", [
    "tape",  # in CI: ~5 s with a warm compilation cache, ~40 s cold on 2 loaded cores
    pytest.param("segment", marks=pytest.mark.slow),
    pytest.param("stored_segment", marks=pytest.mark.slow),
])
def test_dqn_with_four_envs(tmp_path, batching):
    exp = build(compose_cfg(*TINY, *BATCHINGS[batching]))
    assert exp.algo.num_envs == NUM_ENVS  # wired from loop.num_envs
    summary = run(exp, tmp_path, stream=io.StringIO(), progress=False)

    state = summary["state"]  # vmapped over the one seed: leaves [1, ...]
    env_steps = ITERATIONS * NUM_ENVS * EPISODE
    np.testing.assert_array_equal(summary["env_steps"], [env_steps])
    np.testing.assert_array_equal(state.env_steps, [env_steps])
    np.testing.assert_array_equal(state.iterations, [ITERATIONS])
    # one episode per env per iteration; all of them stored, one stream per env
    np.testing.assert_array_equal(state.episodes, [ITERATIONS * NUM_ENVS])
    np.testing.assert_array_equal(state.algo.epochs, [ITERATIONS * NUM_ENVS])
    store = state.algo.store
    assert store.ep_id.shape == (1, NUM_ENVS, 2048 // NUM_ENVS)
    assert (np.asarray(store.steps) == ITERATIONS * EPISODE).all()  # per stream
    np.testing.assert_array_equal(store.ep_hi, [[ITERATIONS] * NUM_ENVS])
    # the first iteration is the random phase (epochs 0 < random_epochs = 1), then
    # updates_per_learn updates after every later one
    np.testing.assert_array_equal(state.algo.updates, [(ITERATIONS - 1) * 2])
    assert np.isfinite(summary["eval_return"]).all()
    metrics = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == ITERATIONS // 5  # one row per evaluation period
