"""Hyper-parameter search: `hydra/sweeper=rlmem_optuna` (the `optuna` extra) runs trials as
train.py jobs, maximises `sweep.objective`, and the same command in the same sweep dir
proposes the same trials, which resume from their checkpoints."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import yaml

from tests.tiny_run import ROOT, TINY, read_metrics, run_ok

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
    reason="the optuna extra is not installed (pip install -e '.[optuna]')",
)


def sweep_cmd(sweep_dir) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "-m", "hydra/sweeper=rlmem_optuna",
            "hydra.sweeper.n_trials=2", "sweep.objective=eval/return", *TINY,
            f"hydra.sweep.dir={sweep_dir}"]


def test_optuna_maximises_the_objective_and_reruns_resume(tmp_path):
    out = run_ok(sweep_cmd(tmp_path))
    assert out.count("no checkpoint to resume from, starting fresh") == 2
    result = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    # The objective of each trial is its seeds' mean final eval/return.
    objectives = []
    for job in ("0", "1"):
        rows = [r for r in read_metrics(tmp_path / job) if "eval/return" in r]
        last = max(r["step"] for r in rows)
        objectives.append(np.mean([r["eval/return"] for r in rows if r["step"] == last]))
    assert result["best_value"] == pytest.approx(max(objectives), rel=1e-6)
    trial = int(np.argmax(objectives))
    overrides = yaml.safe_load((tmp_path / str(trial) / ".hydra/overrides.yaml").read_text())
    for key, value in result["best_params"].items():
        assert f"{key}={value}" in overrides

    again = run_ok(sweep_cmd(tmp_path))
    assert again.count("resumed from checkpoint") == 2  # the same two trials
    rerun = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert rerun == result
