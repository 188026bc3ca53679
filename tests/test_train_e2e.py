"""End-to-end training: `train.py` and the runner learn, log, checkpoint and resume.

The task is RepeatFirstEasy: a uniformly random policy scores about -0.5 (it names the
first card's suit a quarter of the time), remembering the first card scores exactly +1.
The default run trains small networks for 600 episodes (two seeds side by side); the
algorithm x batching x memory grid is marked slow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rlmem.checkpoint import CheckpointMismatchError
from rlmem.config import build
from rlmem.runner import run
from tests.compose import compose_cfg

ROOT = Path(__file__).resolve().parents[1]
RANDOM_RETURN = -0.5

# Small networks and a short schedule that still learns RepeatFirstEasy reliably.
SMALL = [
    "memory.output_size=32", "algo.network.hidden_size=32", "algo.batch_size=256",
    "algo.buffer_capacity=10000", "algo.optim.learning_rate=1e-3", "algo.optim.warmup_updates=20",
    "algo.target_delay=20", "algo.random_epochs=20", "algo.train_epochs=400",
    "loop.iterations=600", "eval.episodes=10", "loop.chunk_periods=20", "logger=none",
]
FFM_SMALL = ["memory.trace_size=16", "memory.context_size=2"]



def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`python train.py` with two vmapped seeds, as a user would run it."""
    run_dir = tmp_path_factory.mktemp("run")
    cmd = [sys.executable, str(ROOT / "train.py"), *SMALL, *FFM_SMALL, "num_seeds=2",
           "checkpoint.interval=10000", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir, proc.stdout


def test_train_py_learns_repeat_first(trained):
    run_dir, stdout = trained
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert {r["seed"] for r in rows} == {0, 1}
    for seed in (0, 1):
        evals = [r["eval/return"] for r in rows if r["seed"] == seed]
        steps = [r["step"] for r in rows if r["seed"] == seed]
        assert steps == sorted(set(steps)) and steps[-1] == 600 * 51
        assert len(evals) == 60  # one evaluation every 10 episodes
        first, best = np.mean(evals[:3]), max(evals)
        assert first < 0.0, f"seed {seed} started suspiciously well: {evals[:3]}"
        assert best > 0.5 and best - first > 0.8, f"seed {seed} did not learn: {evals}"
    assert f"outputs in {run_dir.resolve()}" in stdout
    assert "seed 0: eval return" in stdout and "seed 1: eval return" in stdout


def test_train_py_writes_checkpoints_and_config(trained):
    run_dir, _ = trained
    steps = sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == 600 * 51 and len(steps) <= 3  # checkpoint.keep
    assert (run_dir / ".hydra" / "config.yaml").exists()


def test_resume_continues_the_same_run(trained):
    """The same run directory with a longer schedule resumes from the last checkpoint: it
    starts at 600 episodes, logs only new steps, and keeps the learned policy."""
    run_dir, _ = trained
    overrides = [*SMALL, *FFM_SMALL, "num_seeds=2", "checkpoint.interval=10000",
                 "loop.iterations=800"]  # same chunk length (20 periods): no new compile
    exp = build(compose_cfg(*overrides))
    out = []

    class Stream:
        def write(self, text):
            out.append(text)

        def flush(self):
            pass

    summary = run(exp, run_dir, stream=Stream())
    text = "".join(out)
    assert f"resumed from checkpoint at env step {600 * 51}" in text
    np.testing.assert_array_equal(summary["env_steps"], 800 * 51)
    rows = read_jsonl(run_dir / "metrics.jsonl")
    for seed in (0, 1):
        steps = [r["step"] for r in rows if r["seed"] == seed]
        assert steps == sorted(set(steps)) and steps[-1] == 800 * 51 and len(steps) == 80
    assert summary["first_eval_return"].mean() > 0.5  # the restored policy, not a fresh one

    with pytest.raises(FileExistsError, match="checkpoint.resume=false"):
        run(build(compose_cfg(*overrides, "checkpoint.resume=false")), run_dir, stream=Stream())
    # Another model size in the same directory is refused, naming what differs.
    with pytest.raises(CheckpointMismatchError, match="output_size"):
        run(build(compose_cfg(*overrides, "memory.output_size=16")), run_dir, stream=Stream())


GRID = [
    (algo, batching, memory)
    for algo in ("dqn", "ppo", "pqn")
    for batching in ("tape", "segment", "r2d2")
    for memory in ("ffm", "lru")
    if not (algo != "dqn" and batching == "r2d2")  # on-policy segments have no burn-in
]


@pytest.mark.slow
@pytest.mark.parametrize("algo,batching,memory", GRID)  # r2d2: segments, stored state, burn-in
def test_grid_improves_over_random(tmp_path, algo, batching, memory):
    r2d2 = ["batching.initial_state=stored", "batching.burn_in=5"] if batching == "r2d2" else []
    batching = "segment" if batching == "r2d2" else batching
    overrides = [f"algo={algo}", f"batching={batching}", f"memory={memory}", *r2d2,
                 "memory.output_size=32" if memory == "ffm" else "memory.d_model=32",
                 *(FFM_SMALL if memory == "ffm" else ["memory.d_hidden=32"]),
                 "algo.network.hidden_size=32", "eval.episodes=10", "logger=none"]
    if algo == "dqn":
        overrides += [o for o in SMALL if o.split("=")[0] not in
                      ("memory.output_size", "algo.network.hidden_size", "eval.episodes", "logger")]
        overrides += ["loop.iterations=800", "algo.train_epochs=500"]
        if batching == "segment":
            overrides += ["batching.segment_length=17"]
    elif algo == "pqn":
        overrides += ["loop.num_envs=16", "loop.iterations=300", "algo.eps_decay=50"]
        if batching == "segment":
            overrides += ["batching.segment_length=17"]
    else:
        overrides += ["loop.num_envs=8", "loop.iterations=400", "algo.optim.learning_rate=1e-3",
                      "algo.num_minibatches=2", "loop.chunk_periods=20"]
        if batching == "segment":
            overrides += ["batching.segment_length=17"]
    exp = build(compose_cfg(*overrides))
    summary = run(exp, tmp_path, stream=open("/dev/null", "w"))  # noqa: SIM115
    best = summary["best_eval_return"]
    assert best.min() > RANDOM_RETURN + 0.3, f"{algo}/{batching}/{memory}: best {best}"
