"""A tiny `train.py` run shared by the resume, sweep and sharding tests.

Tiny FFM + DQN on RepeatFirstEasy, two vmapped seeds, 40 iterations in 8 chunks of one
evaluation period each (255 env steps per chunk) and a checkpoint after every chunk, so a
run has many places to be killed and resumed. `reference_run` is the uninterrupted run
(session-scoped: the tests that import it compare against the same one).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_CHUNK = 5 * 51  # eval.interval iterations of one 51-step episode
TOTAL_STEPS = 40 * 51

# Everything but the memory model and the seed count (the sweep tests use `memory=mlp`).
TINY_BASE = [
    "algo.network.hidden_size=8", "algo.batch_size=64", "algo.buffer_capacity=2000",
    "algo.random_epochs=2", "algo.train_epochs=10", "algo.optim.warmup_updates=2",
    "loop.iterations=40", "eval.interval=5", "eval.episodes=2", "loop.chunk_periods=1",
    f"checkpoint.interval={STEPS_PER_CHUNK}", "logger=none",
]
TINY = ["memory=ffm", "memory.trace_size=4", "memory.context_size=2", "memory.output_size=8",
        *TINY_BASE, "num_seeds=2"]


def train_cmd(run_dir: Path, *extra: str) -> list[str]:
    """`python train.py <TINY> <extra> hydra.run.dir=<run_dir>`."""
    return [sys.executable, str(ROOT / "train.py"), *TINY, *extra, f"hydra.run.dir={run_dir}"]


def run_ok(cmd: list[str], env: dict | None = None, timeout: float = 600) -> str:
    """Run `cmd` in the repository root; fail the test with its output if it fails."""
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def read_metrics(run_dir: Path, drop_prefix: str = "perf/") -> list[dict]:
    """`metrics.jsonl` rows without the wall-clock metrics (`perf/*`), in file order."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if line.strip()]
    return [{k: v for k, v in row.items() if not k.startswith(drop_prefix)} for row in rows]


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Committed checkpoint steps (Orbax renames a step directory only when complete)."""
    ckpt = run_dir / "checkpoints"
    if not ckpt.is_dir():
        return []
    return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())


def leaf_checksums(run_dir: Path, step: int) -> list[tuple[str, int]]:
    """`(path, crc32)` of every saved leaf of one checkpoint (its manifest): equal lists
    mean bit-identical training states (params, optimiser, replay, envs, keys, counters)."""
    manifest = json.loads((run_dir / "checkpoints" / str(step) / "manifest" / "metadata")
                          .read_text())
    return [(leaf["path"], leaf["crc32"]) for leaf in manifest["leaves"]]


# A vectorised sweep of two learning rates x one seed (two runs, as TINY's two seeds).
SWEEP = ["num_seeds=1", "sweep.vmap={algo.optim.learning_rate:[1e-4,3e-3]}"]


def shared_run(tmp_path_factory, name: str, *extra: str) -> Path:
    """The uninterrupted tiny run with `extra` overrides, trained once per test session.

    Under pytest-xdist every worker has its own session; a lock in the directory the
    workers share makes the first one train and the others reuse its run.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    run_dir, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(run_dir, ignore_errors=True)
            run_ok(train_cmd(run_dir, *extra))
            done.touch()
    assert checkpoint_steps(run_dir)[-1] == TOTAL_STEPS
    return run_dir


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory) -> Path:
    """The uninterrupted tiny run (also warms the persistent compilation cache)."""
    return shared_run(tmp_path_factory, "tiny-reference")


# Prioritised R2D2-style replay: overlapping stored-state sequences with burn-in, n-step.
PRIORITISED = ["algo.priority=td", "batching=segment", "batching.segment_length=10",
               "batching.period=5", "batching.burn_in=3", "batching.initial_state=stored",
               "algo.n_step=3"]


@pytest.fixture(scope="session")
def prioritised_reference_run(tmp_path_factory) -> Path:
    """The uninterrupted tiny run with prioritised replay (`PRIORITISED`)."""
    return shared_run(tmp_path_factory, "tiny-prioritised-reference", *PRIORITISED)


@pytest.fixture(scope="session")
def sweep_reference_run(tmp_path_factory) -> Path:
    """The uninterrupted tiny vectorised sweep (`SWEEP`)."""
    return shared_run(tmp_path_factory, "tiny-sweep-reference", *SWEEP)
