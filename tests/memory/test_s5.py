"""S5: the HiPPO-LegS diagonalisation, and the conjugate-symmetric half-state layer against
the real P-state system `x_t = expm(S Δ) x_{t-1} + S⁻¹(expm(S Δ) - I) B u_t` it stands for
(a plain numpy loop with resets), plus the memoroid properties of one layer."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.memory.s5 import S5, S5Layer, hippo_legs_normal
from tests.memory.properties import LayerPropertyTests, MemoryModelChecks, random_tape

T, H, P = 16, 4, 8
STEP = 0.05


def hippo_legs(n: int) -> np.ndarray:
    """HiPPO-LegS written entry by entry from its definition."""
    a = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i > j:
                a[i, j] = -np.sqrt(2 * i + 1) * np.sqrt(2 * j + 1)
            elif i == j:
                a[i, j] = -(i + 1)
    return a


def test_hippo_normal_part_is_diagonalised():
    lam, v = hippo_legs_normal(P)
    p = np.sqrt(np.arange(P) + 0.5)
    s = hippo_legs(P) + np.outer(p, p)
    np.testing.assert_allclose(v @ np.diag(lam) @ v.conj().T, s, atol=1e-10)
    np.testing.assert_allclose(v.conj().T @ v, np.eye(P), atol=1e-10)
    np.testing.assert_allclose(lam.real, -0.5)
    # Conjugate pairs: the stored first half mirrors the dropped second half.
    np.testing.assert_allclose(lam[: P // 2], np.conj(lam[P // 2 :][::-1]), atol=1e-10)


def real_system(params):
    """The real P-state SSM the half-state parameters describe (all steps Δ equal)."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    lam_half, v = hippo_legs_normal(P)
    v_half = v[:, : P // 2]
    # The layer's Λ must still be the HiPPO one for this test (it is at init).
    np.testing.assert_allclose(p["lambda_re"] + 1j * p["lambda_im"], lam_half[: P // 2], 1e-6)
    b_tilde = p["B"][..., 0] + 1j * p["B"][..., 1]  # [P/2, H] = V_halfᴴ B
    c_tilde = p["C"][..., 0] + 1j * p["C"][..., 1]  # [H, P/2]
    # With V = [V_half, conj(V_half)] unitary: B = V Vᴴ B = 2 Re(V_half B̃) for a real B,
    # and y = 2 Re(C̃ V_halfᴴ x) = C x.
    b = 2 * (v_half @ b_tilde).real
    c = 2 * (c_tilde @ v_half.conj().T).real
    s = hippo_legs(P) + np.outer(np.sqrt(np.arange(P) + 0.5), np.sqrt(np.arange(P) + 0.5))
    a_bar = scipy.linalg.expm(s * STEP)
    b_bar = np.linalg.solve(s, (a_bar - np.eye(P)) @ b)
    return a_bar, b_bar, c, p["D"]


def reference(params, u, start):
    a_bar, b_bar, c, d = real_system(params)
    x, ys = np.zeros(P), []
    for t in range(len(u)):
        if start[t]:
            x = np.zeros(P)
        x = a_bar @ x + b_bar @ u[t]
        ys.append(c @ x + d * u[t])
    return np.stack(ys)


@pytest.fixture(scope="module")
def checks() -> MemoryModelChecks:
    return MemoryModelChecks(functools.partial(S5Layer, d_model=H, d_state=P), H, length=T)


@pytest.fixture(scope="module")
def equal_step_params(checks):
    params = jax.tree.map(lambda a: a, checks.params)
    params["params"]["log_step"] = np.full(P // 2, np.log(STEP), np.float32)
    return params


@settings(max_examples=8)
@given(seed=st.integers(0, 2**31 - 1), strategy=st.sampled_from(["associative", "sequential"]))
def test_matches_real_state_space_system(checks, equal_step_params, seed, strategy):
    rng = np.random.default_rng(seed)
    u, start = random_tape(rng, T, H, p_start=0.25)
    start[0] = True  # the real system starts from x = 0
    y, _ = checks.apply[strategy](equal_step_params, u, start, checks.carry0)
    np.testing.assert_allclose(y, reference(equal_step_params, u, start), rtol=1e-4, atol=1e-4)


class TestLayerProperties(LayerPropertyTests):
    """The shared memoroid property tests, run on this module's `checks`."""


def test_paper_defaults_and_fields():
    model = S5()
    assert (model.num_layers, model.d_model, model.d_state) == (2, 256, 256)
    assert model.output_size == 256
    # Conjugate symmetry: half of the 256 states are stored.
    assert [leaf.shape for leaf in jax.tree.leaves(model.initialize_carry())] == [(128,)] * 4


def test_odd_state_size_raises():
    layer = S5Layer(d_model=3, d_state=5)
    with pytest.raises(ValueError, match="d_state must be even"):
        layer.init(
            jax.random.PRNGKey(0), np.zeros((2, 3)), np.zeros(2, bool), layer.initialize_carry()
        )
