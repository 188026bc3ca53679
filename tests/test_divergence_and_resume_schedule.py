"""Runs that fail loudly: divergence stops the run before anything non-finite is saved,
and a resume whose `eval.interval` cannot land on `loop.iterations` is refused."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlmem.config import ConfigError, build
from rlmem.loop import Loop, LoopSettings
from rlmem.metrics import read_metrics
from rlmem.runner import DivergenceError, run
from tests.compose import compose_cfg
from tests.test_episode_rollout import TINY, RandomToy


class NanAt(RandomToy):
    """A toy whose learn metric `loss` is NaN at call `bad_call` (1-based) only."""

    def __init__(self, *args, bad_call: int):
        super().__init__(*args)
        self.bad_call = bad_call

    def learn(self, state, rollout, key):
        state, metrics = super().learn(state, rollout, key)
        bad = state.calls == self.bad_call
        return state, {**metrics, "loss": jnp.where(bad, jnp.nan, 1.0)}


def test_loop_flags_the_first_non_finite_metric_and_its_env_step():
    from rlmem.envs import make

    env, params = make("RepeatFirstEasy")
    algo = NanAt(4, int(env.observation_space(params).shape[0]), 1, 51, bad_call=3)
    settings = LoopSettings(num_envs=1, rollout_steps=51, resets_per_step=1, eval_interval=2,
                            eval_episodes=1, eval_max_steps=51)
    loop = Loop(algo=algo, env=env, env_params=params, settings=settings)
    state, _ = loop.run_chunk(loop.init([0]), 1)  # calls 1, 2: finite
    assert int(state.nonfinite_metric[0]) == -1 and int(state.nonfinite_env_step[0]) == -1
    state, _ = loop.run_chunk(state, 2)  # call 3 is NaN, call 4 is not: the first is kept
    assert loop.nonfinite_names[int(state.nonfinite_metric[0])] == "loss"
    assert int(state.nonfinite_env_step[0]) == 3 * 51


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    # A finite but absurd learning rate: the parameters overflow on the first updates.
    cfg = compose_cfg("env=repeat_first_easy", *TINY, "algo.random_epochs=2",
                      "algo.optim.learning_rate=1e30", "algo.optim.max_grad_norm=1e30",
                      "loop.iterations=40", "eval.interval=10", "loop.chunk_periods=2",
                      "checkpoint.interval=510", "num_seeds=2")
    run_dir = tmp_path_factory.mktemp("diverged")
    with pytest.raises(DivergenceError) as err:
        run(build(cfg), run_dir, progress=False)
    return run_dir, str(err.value)


def test_divergence_names_seed_step_and_metric(diverged):
    _, message = diverged
    assert "training diverged" in message
    assert "seed 0:" in message and "seed 1:" in message
    assert "non-finite by env step" in message
    assert "train/" in message or "the parameters" in message


def test_divergence_saves_nothing_non_finite(diverged):
    run_dir, _ = diverged
    ckpts = [p for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()]
    assert not ckpts, "the diverged state of the first chunk must not be checkpointed"
    for row in read_metrics(run_dir / "metrics.jsonl"):
        assert row["train/loss"] is None or np.isfinite(row["train/loss"])


# -- resuming with another eval.interval -----------------------------------------------
SCHEDULE = ["env=repeat_first_easy", *TINY, "algo.random_epochs=2", "checkpoint.interval=null"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("sched")
    run(build(compose_cfg(*SCHEDULE, "loop.iterations=20", "eval.interval=10")), run_dir,
        progress=False)
    return run_dir


def test_resume_refuses_an_interval_that_overshoots(finished_run):
    cfg = compose_cfg(*SCHEDULE, "loop.iterations=30", "eval.interval=15")
    with pytest.raises(ConfigError, match=r"eval.interval=15 .* iteration 20.*e\.g\. 35"):
        run(build(cfg), finished_run, progress=False)
    steps = sorted(int(p.name) for p in (finished_run / "checkpoints").iterdir()
                   if p.name.isdigit())
    assert steps[-1] == 20 * 51  # untouched


def test_resume_with_a_fitting_interval_lands_exactly(finished_run):
    cfg = compose_cfg(*SCHEDULE, "loop.iterations=30", "eval.interval=5")
    summary = run(build(cfg), finished_run, progress=False)
    assert int(np.asarray(summary["state"].iterations)[0]) == 30
    steps = sorted(int(p.name) for p in (finished_run / "checkpoints").iterdir()
                   if p.name.isdigit())
    assert steps[-1] == 30 * 51
    logged = [r["step"] for r in read_metrics(finished_run / "metrics.jsonl")]
    assert logged == [10 * 51, 20 * 51, 25 * 51, 30 * 51]
    assert jax.tree.leaves(summary["state"])  # a real state came back
