"""Seeds sharded over devices: the choice of mesh, and a 2-device CPU run (forced with
`XLA_FLAGS=--xla_force_host_platform_device_count=2` in a subprocess) that keeps its state
sharded and computes the metrics of the unsharded run."""

from __future__ import annotations

import json
import math
import sys

import jax
import jax.numpy as jnp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlmem.sharding import devices_for_seeds, keep_sharded, shard_seeds
from tests.tiny_run import (
    ROOT,
    TINY,
    read_metrics,
    reference_run,  # noqa: F401  (session fixture)
    run_ok,
)


@given(st.integers(1, 64), st.integers(1, 16))
def test_devices_for_seeds_is_the_largest_fitting_divisor(num_seeds, num_devices):
    d = devices_for_seeds(num_seeds, num_devices)
    assert 1 <= d <= num_devices and num_seeds % d == 0
    assert all(num_seeds % k for k in range(d + 1, num_devices + 1))


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, None])
def test_devices_for_seeds_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match="num_seeds must be an int >= 1"):
        devices_for_seeds(bad, 2)


def test_one_device_leaves_the_state_alone():
    state = {"x": jnp.arange(6.0).reshape(3, 2)}
    placed, sharding, message = shard_seeds(state, 3, devices=jax.local_devices()[:1])
    assert placed is state and sharding is None and message is None
    assert keep_sharded(state, None) is state


# Builds the tiny two-seed config exactly as train.py does, runs it on two forced CPU
# devices, and reports how the final state is placed.
_SHARDED = """
import json, sys
import jax, jax.numpy as jnp
from hydra import compose, initialize_config_dir
from rlmem.compile_cache import enable_compilation_cache
from rlmem.config import build
from rlmem.runner import run
from rlmem.sharding import shard_seeds

enable_compilation_cache()
with initialize_config_dir(config_dir=sys.argv[1], version_base="1.3"):
    exp = build(compose("config", overrides=json.loads(sys.argv[3])))
summary = run(exp, sys.argv[2])
leaves = jax.tree_util.tree_leaves_with_path(summary["state"])
_, _, fallback = shard_seeds({"x": jnp.zeros((3, 1))}, 3)
print("RESULT " + json.dumps({
    "devices": jax.device_count(),
    "leaves": len(leaves),
    "unsharded": [jax.tree_util.keystr(p) + " " + str(x.sharding) for p, x in leaves
                  if x.sharding.spec != jax.sharding.PartitionSpec("seeds")
                  or len(x.sharding.device_set) != 2],
    "fallback": fallback,
    # one compilation of the chunk for all 8 calls: the placement stayed the same
    "compiles": [f._cache_size() for f in exp.loop._compiled.values()],
}))
"""


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6)


def test_two_devices_shard_seeds_and_match_the_unsharded_run(reference_run, tmp_path):  # noqa: F811
    """The same run on two devices: state split one seed per device all along (the jitted
    loop keeps the input sharding), metrics equal to the one-device run up to float
    rounding (XLA partitions the per-seed maths differently, so not bit for bit)."""
    run_dir = tmp_path / "sharded"
    stdout = run_ok(
        [sys.executable, "-c", _SHARDED,
         str(ROOT / "conf"), str(run_dir), json.dumps(TINY)],
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    assert "sharding 2 seeds over 2 devices" in stdout
    result = json.loads(stdout.split("RESULT ", 1)[1])
    assert result["devices"] == 2
    assert result["leaves"] > 20 and result["unsharded"] == []
    assert result["compiles"] == [1, 1]  # init and run_chunk, each compiled once
    assert "num_seeds=3 has no divisor between 2 and 2: not sharding" in result["fallback"]

    got, want = read_metrics(run_dir), read_metrics(reference_run)
    assert [(r["step"], r["seed"]) for r in got] == [(r["step"], r["seed"]) for r in want]
    for a, b in zip(got, want, strict=True):
        assert a.keys() == b.keys()
        bad = {k: (a[k], b[k]) for k in a if not _close(a[k], b[k])}
        assert not bad, f"step {a['step']} seed {a['seed']}: {bad}"
