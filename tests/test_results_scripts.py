"""scripts/results_table.py and scripts/aggregate_runs.py on tiny hand-made runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from rlmem import stats
from rlmem.results import find_runs

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_run(path: Path, env: str, batching: dict, best: list[list[float]],
             chunk_seconds: float = 60.0) -> None:
    """A run with one row per seed at steps 10 and 20: eval/return = eval/best_return =
    `best[seed]`, and `perf/chunk_seconds` on every row."""
    (path / ".hydra").mkdir(parents=True)
    config = {"env": {"name": env}, "memory": {"name": "ffm"}, "algo": {"name": "dqn"},
              "batching": batching, "loop": {"rollout": "episode"}}
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"env={env}"]))
    rows = [{"step": 10 * (i + 1), "seed": seed, "eval/return": v, "eval/best_return": v,
             "perf/chunk_seconds": chunk_seconds}
            for seed, values in enumerate(best) for i, v in enumerate(values)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def grid(tmp_path):
    segment = {"mode": "segment", "segment_length": 20}
    fake_run(tmp_path / "a" / "tape", "TaskA", {"mode": "tape"}, [[0.5, 1.0], [0.2, 0.8]])
    fake_run(tmp_path / "a" / "seg", "TaskA", segment, [[0.1, 0.9], [0.0, 0.9]])
    fake_run(tmp_path / "b" / "tape", "TaskB", {"mode": "tape"}, [[-1.0, 0.0], [0.0, 0.0]])
    fake_run(tmp_path / "b" / "seg", "TaskB", segment, [[0.0, 0.5], [0.0, 0.5]])
    fake_run(tmp_path / "c" / "tape", "TaskC", {"mode": "tape"}, [[0.0, 0.0], [0.0, 0.0]])
    return find_runs([tmp_path])


def test_results_table_rows_and_verdicts(grid):
    table = load("results_table").results_table(grid)
    lines = table.splitlines()
    assert lines[2] == ("| TaskA | ffm | tape | 2 | 0.900 [0.800, 1.000] | 0.900 [0.800, 1.000] "
                        "| 20 (1/2) | 2.0 min |")
    assert lines[3].startswith("| TaskA | ffm | segment_l20 | 2 | 0.900 [0.900, 0.900] ")
    assert "| never (0/2) | 2.0 min |" in lines[4]  # TaskB tape never reaches 0.9
    assert "- TaskA x ffm: tape >= every segment length: yes (0.900)" in lines
    assert ("- TaskB x ffm: tape >= every segment length: no (tape 0.000; higher: "
            "segment_l20 0.500)") in lines
    assert not any(line.startswith("- TaskC") for line in lines)  # no segment arm to compare
    assert "`python train.py env=TaskA`" in load("results_table").commands(grid)


def test_verdict_ties_at_the_tables_precision(tmp_path):
    """Both arms solved the task; their float32 sums differ below three decimals."""
    segment = {"mode": "segment", "segment_length": 50}
    fake_run(tmp_path / "tape", "TaskD", {"mode": "tape"}, [[0.5, 0.99975]])
    fake_run(tmp_path / "seg", "TaskD", segment, [[0.5, 0.9999992]])
    table = load("results_table").results_table(find_runs([tmp_path]))
    assert "- TaskD x ffm: tape >= every segment length: yes (1.000)" in table.splitlines()
    fake_run(tmp_path / "tape2", "TaskE", {"mode": "tape"}, [[0.5, 0.998]])
    fake_run(tmp_path / "seg3", "TaskE", segment, [[0.5, 0.9994]])
    lines = load("results_table").results_table(find_runs([tmp_path])).splitlines()
    assert "- TaskE x ffm: tape >= every segment length: no (tape 0.998; higher: " \
        "segment_l50 0.999)" in lines


def test_aggregates_use_the_tasks_every_arm_has(grid):
    module = load("aggregate_runs")
    strata, used, dropped = module.arm_strata(grid, "eval/best_return")
    assert used == ["TaskA x ffm", "TaskB x ffm"] and dropped == ["TaskC x ffm"]
    # final scores normalised from [-1, 1] to [0, 1]
    np.testing.assert_allclose(strata["tape"][0], [1.0, 0.9])
    np.testing.assert_allclose(strata["segment_l20"][1], [0.75, 0.75])
    table = module.aggregate_table(strata, reps=200)
    tape_row = next(line for line in table.splitlines() if line.startswith("| tape |"))
    expected = stats.iqm([np.array([1.0, 0.9]), np.array([0.5, 0.5])])
    assert tape_row.startswith(f"| tape | 2 | 4 | {expected:.3f} [")
    gap = stats.optimality_gap([np.array([1.0, 0.9]), np.array([0.5, 0.5])])
    assert f"| {gap:.3f} [" in tape_row
    module.plot_profiles(strata, grid[0].parent.parent / "profiles.svg", "eval/best_return",
                         reps=20)
    assert (grid[0].parent.parent / "profiles.svg").stat().st_size > 0
