"""scripts/plot_runs.py: the x axis says what the logged step counts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "plot_runs.py"


@pytest.fixture(scope="module")
def plot_runs():
    spec = importlib.util.spec_from_file_location("plot_runs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("rollout, unit", [("episode", "episodes"), ("steps", "env steps")])
def test_step_unit_follows_loop_rollout(plot_runs, tmp_path, rollout, unit):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(f"loop:\n  rollout: {rollout}\n")
    assert plot_runs.step_unit([run]) == unit


def test_vmap_sweep_dirs_split_into_members(plot_runs, tmp_path):
    """A vectorised sweep's run dir holds several members: grouping by a swept key (or
    two keys) gives one group per member value with every seed in it."""
    import json

    import yaml

    run = tmp_path / "sweep"
    (run / ".hydra").mkdir(parents=True)
    config = {"algo": {"gamma": 0.99, "optim": {"learning_rate": 1e-4}},
              "batching": {"mode": "tape"},
              "sweep": {"vmap": {"algo.gamma": [0.9, 0.5]}}}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    rows = [{"step": step, "seed": seed, "member": member, "algo.gamma": gamma,
             "eval/return": member + step / 100 + seed}
            for step in (10, 20) for member, gamma in ((0, 0.9), (1, 0.5)) for seed in (0, 1)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    curves = plot_runs.load_curves(plot_runs.find_runs([run]), "algo.gamma", "eval/return")
    assert sorted(curves) == ["0.5", "0.9"]
    steps, series = curves["0.5"]
    assert list(steps) == [10, 20] and [list(s) for s in series] == [[1.1, 1.2], [2.1, 2.2]]
    two = plot_runs.load_curves([run], "algo.gamma,batching", "eval/return")
    assert sorted(two) == ["0.5 / tape", "0.9 / tape"]
    with pytest.raises(ValueError, match="--metric='eval/retrun' is not logged"):
        plot_runs.load_curves([run], "algo.gamma", "eval/retrun")
