"""S6 (selective SSM) against a plain numpy loop of
h_t = exp(Δ_t A) h_{t-1} + (Δ_t u_t) B_tᵀ, y_t = h_t C_t + D u_t with resets, plus the
memoroid properties of one layer."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.memory.s6 import S6, S6Layer
from tests.memory.properties import LayerPropertyTests, MemoryModelChecks, random_tape

T, D, N, R = 16, 4, 8, 2


def softplus(z):
    return np.logaddexp(0.0, z)


def reference(params, u, start, carry):
    """numpy float64 loop, one step at a time; the carry is (Π Ā, h)."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    a = -np.exp(p["A_log"])  # [D, N]
    power, h = (np.asarray(c, np.float64) for c in carry)
    ys = []
    for t in range(len(u)):
        proj = u[t] @ p["x_proj"]["kernel"]
        low, b, c = proj[:R], proj[R : R + N], proj[R + N :]
        dt = softplus(low @ p["dt_proj"]["kernel"] + p["dt_proj"]["bias"])  # [D]
        if start[t]:
            power, h = np.ones((D, N)), np.zeros((D, N))
        a_bar = np.exp(dt[:, None] * a)
        h = a_bar * h + np.outer(dt * u[t], b)
        power = power * a_bar
        ys.append(h @ c + p["D"] * u[t])
    return np.stack(ys), (power, h)


@pytest.fixture(scope="module")
def checks() -> MemoryModelChecks:
    return MemoryModelChecks(
        functools.partial(S6Layer, d_model=D, d_state=N, dt_rank=R), input_size=D, length=T
    )


@settings(max_examples=10)
@given(seed=st.integers(0, 2**31 - 1), strategy=st.sampled_from(["associative", "sequential"]))
def test_matches_numpy_recurrence(checks, seed, strategy):
    rng = np.random.default_rng(seed)
    u, start = random_tape(rng, T, D, p_start=0.25)
    carry = checks.warm_carry(seed % 7)
    y, (power, h) = checks.apply[strategy](checks.params, u, start, carry)
    y_ref, (power_ref, h_ref) = reference(checks.params, u, start, carry)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h, h_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(power, power_ref, rtol=1e-4, atol=1e-7)


def test_step_size_is_selective(checks):
    """Δ (and so the decay) depends on the input: the same state decays differently."""
    rng = np.random.default_rng(0)
    u = rng.normal(size=(2, D)).astype(np.float32)
    a_bar, _ = checks.model.apply(checks.params, u, method="lift")
    assert np.abs(np.asarray(a_bar[0] - a_bar[1])).max() > 1e-4


def test_init():
    layer = S6Layer(d_model=D, d_state=N, dt_min=0.01, dt_max=0.02)
    params = layer.init(jax.random.PRNGKey(0), np.zeros((1, D)), method="lift")["params"]
    np.testing.assert_allclose(-np.exp(params["A_log"][0]), -np.arange(1, N + 1), rtol=1e-6)
    dt = softplus(np.asarray(params["dt_proj"]["bias"], np.float64))
    assert dt.min() >= 0.01 - 1e-6 and dt.max() <= 0.02 + 1e-6


class TestLayerProperties(LayerPropertyTests):
    """The shared memoroid property tests, run on this module's `checks`."""


def test_defaults_and_fields():
    model = S6()
    assert (model.num_layers, model.d_model, model.d_state) == (2, 256, 16)
    assert model.make_layer(0, parent=None).rank == 16  # ceil(256 / 16)
    assert [leaf.shape for leaf in jax.tree.leaves(model.initialize_carry())] == [(256, 16)] * 4


def test_bad_settings_raise():
    layer = S6Layer(d_model=3, d_state=2, dt_min=0.1, dt_max=0.01)
    with pytest.raises(ValueError, match="dt_min=0.1, dt_max=0.01"):
        layer.init(
            jax.random.PRNGKey(0), np.zeros((2, 3)), np.zeros(2, bool), layer.initialize_carry()
        )
