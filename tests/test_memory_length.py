"""scripts/memory_length.py: the sensitivity of Q(s_n, a_n) to each earlier observation,
by age, against per-step gradients summed in plain Python; on the tiny reference run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rlmem.evaluate import evaluate, restore_run
from tests.tiny_run import reference_run  # noqa: F401  (session fixture)

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "memory_length.py"


def load():
    spec = importlib.util.spec_from_file_location("memory_length", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sensitivity_by_age_equals_per_step_gradients(reference_run):  # noqa: F811
    module = load()
    restored = restore_run(reference_run)
    out = evaluate(restored, episodes=2)
    network = restored.exp.algo.network
    params = jax.tree.map(lambda x: x[0], restored.state.algo.params)
    obs, action = jnp.asarray(out["obs"][0, 0]), jnp.asarray(out["action"][0, 0])
    mask = np.asarray(out["mask"][0, 0]).copy()
    mask[len(mask) // 2:] = False  # only the first half's steps count
    got = np.asarray(module.sensitivity_by_age(network, params, obs, action,
                                               jnp.asarray(mask)))
    steps = obs.shape[0]
    start = jnp.zeros((steps,), bool).at[0].set(True)
    expected = np.zeros(steps)
    for n in np.flatnonzero(mask):
        def q_n(o, n=n):
            q, _ = network.apply(params, o, start, network.initialize_carry())
            return q[n, action[n]]
        grad = np.abs(np.asarray(jax.grad(q_n)(obs))).sum(-1)  # [i]
        assert np.all(grad[n + 1:] == 0.0)  # the future never reaches Q(s_n)
        for i in range(n + 1):
            expected[n - i] += grad[i]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert expected[1:].sum() > 0  # the memory does look back

    profile = module.age_profile(reference_run, episodes=2)
    assert profile.shape[0] == 2
    np.testing.assert_allclose(profile.sum(axis=1), 1.0, rtol=1e-6)
