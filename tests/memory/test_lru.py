"""LRU against a plain numpy loop of h_t = λ h_{t-1} + γ B u_t with resets, its init, and
the memoroid properties of one layer (the stack's are in test_all_models.py)."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.memory.lru import LRU, LRULayer
from tests.memory.properties import LayerPropertyTests, MemoryModelChecks, random_tape

T, H, N = 16, 4, 8


def as_complex(pair) -> np.ndarray:
    pair = np.asarray(pair, np.float64)
    return pair[..., 0] + 1j * pair[..., 1]


def reference(params, u, start, carry):
    """numpy complex128 loop; the carry is (λ^n, h) and restarts from (1, 0) at a start."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    B, C = as_complex(p["B"]), as_complex(p["C"])
    gamma = np.exp(p["gamma_log"])
    power, h = (np.asarray(c, np.complex128) for c in carry)
    ys = []
    for t in range(len(u)):
        if start[t]:
            power, h = np.ones(N), np.zeros(N)
        h = lam * h + gamma * (B @ u[t])
        power = power * lam
        ys.append((C @ h).real + p["D"] * u[t])
    return np.stack(ys), (power, h)


@pytest.fixture(scope="module")
def checks() -> MemoryModelChecks:
    return MemoryModelChecks(
        functools.partial(LRULayer, d_model=H, d_hidden=N, r_min=0.4, r_max=0.99),
        input_size=H,
        length=T,
    )


@settings(max_examples=10)
@given(seed=st.integers(0, 2**31 - 1), strategy=st.sampled_from(["associative", "sequential"]))
def test_matches_numpy_recurrence(checks, seed, strategy):
    rng = np.random.default_rng(seed)
    u, start = random_tape(rng, T, H, p_start=0.25)
    carry = checks.warm_carry(seed % 7)
    y, (power, h) = checks.apply[strategy](checks.params, u, start, carry)
    y_ref, (power_ref, h_ref) = reference(checks.params, u, start, carry)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h, h_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(power, power_ref, rtol=1e-4, atol=1e-6)


class TestLayerProperties(LayerPropertyTests):
    """The shared memoroid property tests, run on this module's `checks`."""


def test_ring_init():
    layer = LRULayer(d_model=H, d_hidden=256, r_min=0.5, r_max=0.9, max_phase=1.0)
    # Initialise through `eigenvalues` (setup creates every parameter): no scan to compile.
    lam, params = jax.jit(lambda key: layer.init_with_output(key, method="eigenvalues"))(
        jax.random.PRNGKey(0)
    )
    modulus, phase = np.abs(lam), np.angle(lam)
    assert modulus.min() >= 0.5 - 1e-5 and modulus.max() <= 0.9 + 1e-5
    assert phase.min() >= 0.0 and phase.max() <= 1.0 + 1e-5
    # Uniform on the ring's area: |λ|² is uniform on [0.25, 0.81], mean 0.53.
    assert abs(np.mean(modulus**2) - 0.53) < 0.05
    gamma = np.exp(np.asarray(params["params"]["gamma_log"]))
    np.testing.assert_allclose(gamma, np.sqrt(1 - modulus**2), rtol=1e-4)


def test_paper_defaults_and_fields():
    model = LRU()
    assert (model.num_layers, model.d_model, model.d_hidden) == (2, 256, 128)
    assert model.output_size == 256
    carry = model.initialize_carry()
    assert len(carry) == 2
    assert [leaf.shape for leaf in jax.tree.leaves(carry)] == [(128,)] * 4
    # Every layer gets the stack's scan strategy.
    assert LRU(scan="associative").make_layer(0, parent=None).scan == "associative"


def test_bad_settings_raise():
    x, start = np.zeros((2, 3)), np.zeros(2, bool)
    with pytest.raises(ValueError, match="r_min=0.9, r_max=0.5"):
        layer = LRULayer(d_model=3, d_hidden=2, r_min=0.9, r_max=0.5)
        layer.init(jax.random.PRNGKey(0), x, start, layer.initialize_carry())
    with pytest.raises(ValueError, match="num_layers must be a positive int, got 0"):
        LRU(num_layers=0).initialize_carry()
