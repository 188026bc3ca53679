"""MinGRU against a plain numpy loop of h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ g(W_h x_t) with
resets, plus the generic memoroid properties (also run on the registered name in
test_all_models.py)."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.memory import make_memory
from rlmem.memory.mingru import MinGRU, positive_activation
from tests.memory.properties import MemoryModelChecks, random_tape

T, F, D, OUT = 16, 3, 5, 4


def sigmoid(u):
    return 1.0 / (1.0 + np.exp(-u))


def g(u):
    """The paper's g: u + 1/2 for u >= 0, σ(u) below."""
    return np.where(u >= 0, u + 0.5, sigmoid(u))


def reference(params, x, start, carry):
    """numpy float64, one step at a time, from the paper's equations; the carry is
    (Π (1 - z) [D], h [D]), reset to (1, 0) where an episode starts."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    w, bias = p["gates"]["kernel"], p["gates"]["bias"]
    power, h = (np.asarray(c, np.float64) for c in carry)
    ys = []
    for t in range(len(x)):
        z = sigmoid(x[t] @ w[:, :D] + bias[:D])
        h_tilde = g(x[t] @ w[:, D:] + bias[D:])
        if start[t]:
            power, h = np.ones(D), np.zeros(D)
        h = (1.0 - z) * h + z * h_tilde
        power = power * (1.0 - z)
        ys.append(h @ p["out"]["kernel"] + p["out"]["bias"])
    return np.stack(ys), (power, h)


@pytest.fixture(scope="module")
def checks() -> MemoryModelChecks:
    return MemoryModelChecks(
        functools.partial(MinGRU, d_hidden=D, output_size=OUT), input_size=F, length=T
    )


@settings(max_examples=10)
@given(seed=st.integers(0, 2**31 - 1), strategy=st.sampled_from(["associative", "sequential"]))
def test_matches_numpy_recurrence(checks, seed, strategy):
    rng = np.random.default_rng(seed)
    x, start = random_tape(rng, T, F, p_start=0.25)
    carry = checks.warm_carry(seed % 7)
    y, (power, h) = checks.apply[strategy](checks.params, x, start, carry)
    y_ref, (power_ref, h_ref) = reference(checks.params, x, start, carry)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h, h_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(power, power_ref, rtol=1e-4, atol=1e-7)


def test_memoroid_properties(checks):
    checks.check_all(seed=11)


def test_positive_activation():
    u = np.array([-30.0, -2.0, -1e-3, 0.0, 1e-3, 2.0, 30.0], np.float32)
    np.testing.assert_allclose(positive_activation(u), g(u.astype(np.float64)), rtol=1e-6)
    assert np.all(np.asarray(positive_activation(u)) > 0.0)
    grad = jax.vmap(jax.grad(positive_activation))(u)
    assert np.all(np.isfinite(np.asarray(grad))) and float(grad[-1]) == 1.0


def test_closed_gate_keeps_the_state(checks):
    """With z -> 0 everywhere (update-gate logits -1e4) the carry passes through unchanged."""
    params = jax.tree.map(lambda a: a, checks.params)
    gates = dict(params["params"]["gates"])
    gates["bias"] = gates["bias"].at[:D].set(-1e4)
    gates["kernel"] = gates["kernel"].at[:, :D].set(0.0)
    params["params"] = {**params["params"], "gates": gates}
    x, _ = random_tape(np.random.default_rng(0), T, F)
    carry = checks.warm_carry(0)
    _, (_, h) = checks.apply["sequential"](params, x, np.zeros(T, bool), carry)
    np.testing.assert_array_equal(h, carry[1])


def test_defaults_and_bad_settings():
    model = make_memory("mingru")
    assert isinstance(model, MinGRU)
    assert (model.d_hidden, model.output_size) == (256, 256)
    assert [leaf.shape for leaf in jax.tree.leaves(model.initialize_carry())] == [(256,)] * 2
    with pytest.raises(ValueError, match="MinGRU: d_hidden must be a positive int, got 0"):
        MinGRU(d_hidden=0)
    with pytest.raises(ValueError, match="MinGRU: scan must be one of"):
        MinGRU(scan="fast")
