"""Mamba2 against a plain numpy loop of S_t = a_t S_{t-1} + Δ_t B_t v_tᵀ per head with
resets (y = W_o RMSNorm((C_tᵀ S_t + D v_t) ⊙ silu(z_t))), plus the generic memoroid
properties (also run on the registered name in test_all_models.py)."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.memory import make_memory
from rlmem.memory.mamba2 import Mamba2
from tests.memory.properties import MemoryModelChecks, random_tape

T, F, HEADS, P, N, OUT = 16, 3, 2, 3, 4, 5
INNER = HEADS * P
EPS = 1e-6  # flax RMSNorm's epsilon


def softplus(u):
    return np.logaddexp(0.0, u)


def reference(params, x, start, carry):
    """numpy float64, one step at a time, from the paper's equations; the carry is
    (Π a [heads, 1, 1], S [heads, N, P]), reset to (1, 0) where an episode starts."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    power, S = (np.asarray(c, np.float64) for c in carry)
    ys = []
    for t in range(len(x)):
        proj = x[t] @ p["in_proj"]["kernel"]
        z, v = proj[:INNER], proj[INNER : 2 * INNER].reshape(HEADS, P)
        b, c = proj[2 * INNER : 2 * INNER + N], proj[2 * INNER + N :]
        dt = softplus(x[t] @ p["dt_proj"]["kernel"] + p["dt_proj"]["bias"])  # [heads]
        a = np.exp(-dt * np.exp(p["A_log"]))  # [heads]
        if start[t]:
            power, S = np.ones_like(power), np.zeros_like(S)
        for h in range(HEADS):
            S[h] = a[h] * S[h] + dt[h] * np.outer(b, v[h])
            power[h] = power[h] * a[h]
        o = np.stack([c @ S[h] + p["D"][h] * v[h] for h in range(HEADS)]).reshape(INNER)
        gated = o * z / (1.0 + np.exp(-z))
        rms = np.sqrt(np.mean(gated**2) + EPS)
        ys.append((gated / rms * p["norm"]["scale"]) @ p["out"]["kernel"] + p["out"]["bias"])
    return np.stack(ys), (power, S)


@pytest.fixture(scope="module")
def checks() -> MemoryModelChecks:
    return MemoryModelChecks(
        functools.partial(
            Mamba2, num_heads=HEADS, value_size=P, d_state=N, output_size=OUT
        ),
        input_size=F,
        length=T,
    )


@settings(max_examples=10)
@given(seed=st.integers(0, 2**31 - 1), strategy=st.sampled_from(["associative", "sequential"]))
def test_matches_numpy_recurrence(checks, seed, strategy):
    rng = np.random.default_rng(seed)
    x, start = random_tape(rng, T, F, p_start=0.25)
    carry = checks.warm_carry(seed % 7)
    y, (power, S) = checks.apply[strategy](checks.params, x, start, carry)
    y_ref, (power_ref, S_ref) = reference(checks.params, x, start, carry)
    # The RMSNorm over 6 inner units magnifies float32 rounding a little: atol 2e-5, about
    # 15x the largest error seen over 2,000 random tapes.
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(S, S_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(power, power_ref, rtol=1e-4, atol=1e-7)


def test_memoroid_properties(checks):
    checks.check_all(seed=11)


def test_decay_is_scalar_per_head_and_selective(checks):
    """a_t is one number per head (it scales the whole [N, P] state), in (0, 1), and
    depends on the input."""
    x = np.random.default_rng(0).normal(size=(2, F)).astype(np.float32)
    a, update = checks.model.apply(checks.params, x, method="lift")
    assert a.shape == (2, HEADS, 1, 1) and update.shape == (2, HEADS, N, P)
    assert np.all((np.asarray(a) > 0.0) & (np.asarray(a) < 1.0))
    assert np.abs(np.asarray(a[0] - a[1])).max() > 1e-6


def test_init():
    model = Mamba2(num_heads=16, value_size=P, d_state=N, output_size=OUT, dt_min=0.01,
                   dt_max=0.02)
    params = model.init(jax.random.PRNGKey(0), np.zeros((1, F)), method="lift")["params"]
    rates = np.exp(np.asarray(params["A_log"], np.float64))
    assert rates.min() >= 1.0 - 1e-5 and rates.max() <= 16.0 + 1e-4
    dt = softplus(np.asarray(params["dt_proj"]["bias"], np.float64))
    assert dt.min() >= 0.01 - 1e-6 and dt.max() <= 0.02 + 1e-6
    np.testing.assert_array_equal(params["D"], np.ones(16))


def test_defaults_and_bad_settings():
    model = make_memory("mamba2")
    assert isinstance(model, Mamba2)
    assert (model.num_heads, model.value_size, model.d_state, model.output_size) == (
        8, 32, 16, 256)
    carry = model.initialize_carry()
    assert [leaf.shape for leaf in jax.tree.leaves(carry)] == [(8, 1, 1), (8, 16, 32)]
    with pytest.raises(ValueError, match="Mamba2: d_state must be a positive int, got 0"):
        Mamba2(d_state=0)
    with pytest.raises(ValueError, match="Mamba2: need 0 < dt_min <= dt_max"):
        Mamba2(dt_min=0.2, dt_max=0.1)
