"""The run's memory estimate (rlmem/footprint.py): exact state sizes from abstract shapes,
a refusal naming the keys before anything is allocated, and the estimated peak against
the measured peak resident size of a real `train.py` run."""

from __future__ import annotations

import re
import subprocess
import sys

import jax
import pytest

from rlmem.config import ConfigError, build
from rlmem.footprint import Footprint, available_bytes, estimate
from rlmem.runner import run
from tests.compose import compose_cfg
from tests.tiny_run import ROOT, TINY_BASE

# A burn-in that is no multiple of the segment length: a carry beside every transition (with
# burn-in 0 the store would keep one per segment start only, rlmem.data.sparse_extras).
STORED = ("batching=segment", "batching.segment_length=10", "batching.initial_state=stored",
          "batching.burn_in=3")

# train.py under a wrapper that prints its own peak resident size (KiB) at exit.
_PEAK = """
import atexit, resource, runpy, sys
atexit.register(lambda: print("PEAK_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                              flush=True))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _nbytes(tree) -> int:
    return sum(x.nbytes for x in jax.tree.leaves(tree))


def test_estimate_is_the_exact_size_of_the_state():
    exp = build(compose_cfg(*TINY_BASE, *STORED, "memory=ffm", "num_seeds=2"))
    footprint = estimate(exp)
    state = exp.init_state()
    assert footprint.state == _nbytes(state) and footprint.runs == 2
    assert footprint.replay == _nbytes(state.algo.store)
    assert footprint.carries == _nbytes(state.algo.store.extras) > 0
    assert estimate(build(compose_cfg(*TINY_BASE, "memory=ffm"))).carries == 0
    compact = build(compose_cfg(*TINY_BASE, *STORED[:3], "memory=ffm"))  # burn-in 0
    store = compact.init_state().algo.store
    assert estimate(compact).carries == _nbytes(store.sparse) > 0 and not store.extras
    assert 9 * _nbytes(store.sparse) < footprint.carries / 2  # one per 10 steps, 2 seeds


def test_error_names_the_keys_to_change():
    fits = Footprint(state=2**30, replay=2**29, carries=2**28, runs=4, process=2**28,
                     host_copy=True, checkpoint_replay=True, available=2**34)
    assert fits.error() is None
    short = Footprint(state=2**30, replay=2**29, carries=2**28, runs=4, process=2**28,
                      host_copy=True, checkpoint_replay=True, available=2**30)
    message = short.error()
    for key in ("algo.buffer_capacity", "num_seeds or sweep.vmap (4 run(s)",
                "batching.initial_state=zeros (stored carries take 256.0 MiB)",
                "checkpoint.exclude_replay=true", "loop.check_memory=false"):
        assert key in message


def test_a_run_that_cannot_fit_is_refused_before_anything_is_allocated(tmp_path):
    """Stored carries the config's lower bound does not count: only the exact estimate
    sees that they exceed this machine's memory; refused in well under a second's work."""
    small = estimate(build(compose_cfg(*TINY_BASE, *STORED)))
    per_transition = small.carries / 2000  # TINY_BASE's capacity
    capacity = int(1.5 * available_bytes() / per_transition)
    exp = build(compose_cfg(*TINY_BASE, *STORED, f"algo.buffer_capacity={capacity}"))
    with pytest.raises(ConfigError, match="batching.initial_state=zeros") as err:
        run(exp, tmp_path, progress=False)
    assert "loop.check_memory=false" in str(err.value)
    assert not (tmp_path / "checkpoints").exists()
    unchecked = build(compose_cfg(*TINY_BASE, *STORED, f"algo.buffer_capacity={capacity}",
                                  "loop.check_memory=false"))
    assert unchecked.check_memory is False and estimate(unchecked).error() is not None


def test_estimated_peak_within_25_percent_of_the_measured_one(tmp_path):
    """FFM at its default sizes with stored carries, 450k transitions: about 0.9 GiB of
    state, nearly all replay, so the estimate's model of copies matters, not the noise of
    the process's own size."""
    cmd = [sys.executable, "-c", _PEAK, str(ROOT / "train.py"), *STORED,
           "algo.buffer_capacity=450000", "loop.iterations=20", "eval.interval=10",
           "logger=none", "checkpoint.interval=null", f"hydra.run.dir={tmp_path / 'run'}"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    estimated = re.search(r"peak about ([\d.]+) GiB", out.stdout)
    measured = int(re.search(r"PEAK_KIB (\d+)", out.stdout).group(1)) / 2**20  # GiB
    assert estimated, out.stdout
    ratio = float(estimated.group(1)) / measured
    assert 0.75 <= ratio <= 1.25, (float(estimated.group(1)), measured)
