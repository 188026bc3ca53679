"""LinearAttention against a plain numpy loop of S_t = S_{t-1} + φ(k_t) v_tᵀ with resets."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlmem.memory.linear_attention import LinearAttention, LinearAttentionState
from tests.memory.properties import init_on_zeros, random_tape

T, F, K, V, H = 20, 3, 4, 5, 6


def phi(u):
    return 1.0 + np.where(u > 0, u, np.expm1(np.minimum(u, 0)))


def reference(params, x, start, carry):
    """numpy float64: per step S += φ(k) vᵀ, z += φ(k); o = Sᵀφ(q) / zᵀφ(q); y = o W + b."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    qkv = x @ p["qkv"]["kernel"] + p["qkv"]["bias"]
    q, k, v = phi(qkv[:, :K]), phi(qkv[:, K : 2 * K]), qkv[:, 2 * K :]
    S, z = np.asarray(carry.kv, np.float64), np.asarray(carry.k, np.float64)
    ys = []
    for t in range(len(x)):
        if start[t]:
            S, z = np.zeros_like(S), np.zeros_like(z)
        S = S + np.outer(k[t], v[t])
        z = z + k[t]
        o = q[t] @ S / (z @ q[t])  # the normaliser is an inner product, one scalar
        ys.append(o @ p["out"]["kernel"] + p["out"]["bias"])
    return np.stack(ys), (S, z)


MODELS = {s: LinearAttention(key_size=K, value_size=V, output_size=H, scan=s)
          for s in ("associative", "sequential")}
PARAMS = init_on_zeros(MODELS["sequential"], T, F)
APPLY = {s: jax.jit(m.apply) for s, m in MODELS.items()}


@given(seed=st.integers(0, 2**31 - 1), strategy=st.sampled_from(sorted(MODELS)))
def test_matches_numpy_recurrence(seed, strategy):
    rng = np.random.default_rng(seed)
    x, start = random_tape(rng, T, F, p_start=0.25)
    carry = LinearAttentionState(
        kv=rng.uniform(0, 1, (K, V)).astype(np.float32),
        k=rng.uniform(0.5, 2, K).astype(np.float32),
    )
    y, new_carry = APPLY[strategy](PARAMS, x, start, carry)
    y_ref, (S, z) = reference(PARAMS, x, start, carry)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new_carry.kv, S, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new_carry.k, z, rtol=1e-4, atol=1e-5)


def test_identity_carry_and_output_size():
    model = LinearAttention(key_size=K, value_size=V, output_size=H)
    carry = model.initialize_carry()
    assert carry.kv.shape == (K, V) and carry.k.shape == (K,)
    assert not np.any(carry.kv) and not np.any(carry.k)
    assert model.output_size == H


def test_paper_defaults():
    model = LinearAttention()
    assert (model.key_size, model.value_size) == (16, 16)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="x must be"):
        APPLY["sequential"](PARAMS, np.zeros((2, T, F)), np.zeros(T, bool),
                            MODELS["sequential"].initialize_carry())
    with pytest.raises(ValueError, match="start must be"):
        APPLY["sequential"](PARAMS, np.zeros((T, F)), np.zeros(T + 1, bool),
                            MODELS["sequential"].initialize_carry())
    with pytest.raises(ValueError, match="LinearAttention: scan must be one of .*'parallel'"):
        LinearAttention(key_size=K, value_size=V, output_size=H, scan="parallel")
