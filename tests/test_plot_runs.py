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
