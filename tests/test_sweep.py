"""Sweeps: `train.py -m` end to end, the paper-grid batching presets, and swept
hyper-parameters that do not change the compiled training loop."""

from __future__ import annotations

import subprocess
import sys

import jax
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from rlmem.config import build
from tests.tiny_run import ROOT, TINY_BASE, read_metrics, run_ok

PAPER_LENGTHS = (10, 20, 50, 100)


def _compose(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_multirun_gives_each_job_its_run_directory(tmp_path):
    """`-m` with a range: two jobs, one directory each, each with its config and metrics."""
    sweep = tmp_path / "sweep"
    stdout = run_ok([sys.executable, str(ROOT / "train.py"), "-m", *TINY_BASE, "memory=mlp",
                     "memory.output_size=8", "loop.iterations=10", "seed=range(3,5)",
                     f"hydra.sweep.dir={sweep}"])
    assert "#0 : " in stdout and "#1 : " in stdout  # Hydra's per-job launch lines
    for job, seed in ((0, 3), (1, 4)):
        run_dir = sweep / str(job)
        cfg = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
        assert cfg["seed"] == seed and cfg["memory"]["name"] == "mlp"
        assert f"seed={seed}" in (run_dir / ".hydra" / "overrides.yaml").read_text()
        rows = read_metrics(run_dir)
        assert {r["seed"] for r in rows} == {seed}
        assert [r["step"] for r in rows] == [255, 510]
        assert (run_dir / "checkpoints" / "510").is_dir()


@pytest.mark.parametrize("length", PAPER_LENGTHS)
def test_segment_presets(length):
    """`batching=segment_lL` is the paper's SBB with segment length L (validated)."""
    exp_cfg = _compose(f"batching=segment_l{length}", "+experiment=paper/repeat_first")
    batching = dict(exp_cfg.batching)
    assert batching == {"mode": "segment", "segment_length": length, "burn_in": 0,
                        "initial_state": "zeros", "period": None}


def _lowered_chunk(*overrides: str) -> str:
    """The HLO of one `run_chunk` call for a tiny config (traced, not compiled)."""
    exp = build(_compose(*TINY_BASE, "memory=mlp", "memory.output_size=8", *overrides))
    state = jax.eval_shape(lambda: exp.loop.init(exp.seeds))
    return jax.jit(exp.loop.run_chunk, static_argnums=1).lower(state, 1).as_text()


def test_swept_scalars_share_one_compiled_loop():
    """Every sweepable hyper-parameter (the optimiser's scalars, gamma, the target delay,
    the exploration ends) is a value in the loop state, not a constant of the program:
    configs that differ only in them lower to the same HLO, so one compilation (and one
    persistent-cache entry) serves a whole `-m` sweep over them."""
    base = _lowered_chunk("algo.optim.learning_rate=1e-4")
    assert _lowered_chunk("algo.optim.learning_rate=3e-3", "algo.optim.adam_eps=1e-6",
                          "algo.optim.weight_decay=0.1", "algo.optim.max_grad_norm=0.5",
                          "algo.gamma=0.5", "algo.target_delay=20", "algo.eps_start=0.5",
                          "algo.eps_end=0.1", "algo.huber_delta=2.0") == base
    # The comparison can fail: a key that changes array shapes changes the HLO.
    assert _lowered_chunk("algo.optim.learning_rate=1e-4", "algo.batch_size=40") != base


def test_a_refused_job_does_not_stop_the_sweep_and_is_reported_with_its_directory(tmp_path):
    """Job 0 is refused (gamma out of range): job 1 still runs, and the sweep ends with
    exit status 1 and job 0's message naming its directory."""
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", *TINY_BASE, "memory=mlp",
         "memory.output_size=8", "loop.iterations=10", "algo.gamma=1.5,0.5",
         f"hydra.sweep.dir={sweep}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert (f"rlmem: error: algo.gamma=1.5 must be a float in [0, 1] (job 0: {sweep / '0'})"
            in proc.stderr)
    assert [r["step"] for r in read_metrics(sweep / "1")] == [255, 510]
