"""DeltaNet and gated DeltaNet against a plain numpy loop of the delta rule per head with
resets, S_t = α_t (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ (α_t = 1 ungated). Both are
Memoroids registered as "deltanet" and "gated_deltanet", so the generic property checks
(monoid laws, strategies, no leakage, with_next, acting) run on them in test_all_models.py."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.memory import make_memory
from rlmem.memory.deltanet import L2_EPS, DeltaNet, GatedDeltaNet
from tests.memory.properties import MemoryModelChecks, random_tape

T, F, HEADS, K, V, OUT = 16, 3, 2, 4, 3, 5


def dense(p, x):
    return x @ p["kernel"] + p["bias"]


def sigmoid(u):
    return 1.0 / (1.0 + np.exp(-u))


def layer_norm(p, o, eps=1e-6):
    o = (o - o.mean(-1, keepdims=True)) / np.sqrt(o.var(-1, keepdims=True) + eps)
    return o * p["scale"] + p["bias"]


def l2norm(u):
    return u / np.sqrt(np.sum(u * u, axis=-1, keepdims=True) + L2_EPS)


def reference(params, x, start, carry, gated):
    """numpy float64, one step at a time, from the papers' equations; the carry is
    (Π M [heads, K, K], S [heads, K, V]), reset to (I, 0) where an episode starts.

    Also returns each step's readout gain `[T]`, as in test_gla.py: how much the layer norm
    magnifies an absolute error of the float32 readout `Sᵀq`, `max_h |q_h| max|S_h| /
    sqrt(var_h + eps)`. Over V = 3 values per head the spread can be tiny, and the model's
    float32 rounding (about 1e-7 of the terms) then reaches the output magnified."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    M, S = (np.array(c, np.float64) for c in carry)
    eye = np.eye(K)
    ys, gains = [], []
    for t in range(len(x)):
        qk = dense(p["qk"], x[t])
        qk = qk * sigmoid(qk)  # silu
        q, k = (l2norm(u.reshape(HEADS, K)) for u in np.split(qk, 2))
        v, out_gate = np.split(dense(p["vg"], x[t]), 2)
        v = v.reshape(HEADS, V)
        beta = sigmoid(dense(p["beta"], x[t]))  # [heads]
        if gated:
            dt = np.logaddexp(0.0, dense(p["alpha"], x[t]))  # softplus
            alpha = np.exp(-np.exp(p["A_log"]) * dt)
        else:
            alpha = np.ones(HEADS)
        if start[t]:
            M, S = np.broadcast_to(eye, M.shape).copy(), np.zeros_like(S)
        for h in range(HEADS):
            transition = alpha[h] * (eye - beta[h] * np.outer(k[h], k[h]))
            S[h] = transition @ S[h] + beta[h] * np.outer(k[h], v[h])
            M[h] = transition @ M[h]
        o = np.einsum("hk,hkv->hv", q, S)
        terms = np.linalg.norm(q, axis=-1) * np.abs(S).max(axis=(1, 2))
        gains.append(np.max(terms / np.sqrt(o.var(-1) + 1e-6)))
        o = layer_norm(p["norm"], o).reshape(-1) * out_gate * sigmoid(out_gate)
        ys.append(dense(p["out"], o))
    return np.stack(ys), (M, S), np.array(gains)


@pytest.fixture(scope="module", params=[False, True], ids=["deltanet", "gated"])
def checks(request) -> MemoryModelChecks:
    cls = GatedDeltaNet if request.param else DeltaNet
    return MemoryModelChecks(
        functools.partial(cls, key_size=K, value_size=V, num_heads=HEADS, output_size=OUT),
        input_size=F,
        length=T,
    )


@settings(max_examples=10)
@given(seed=st.integers(0, 2**31 - 1), strategy=st.sampled_from(["associative", "sequential"]))
def test_matches_numpy_recurrence(checks, seed, strategy):
    rng = np.random.default_rng(seed)
    x, start = random_tape(rng, T, F, p_start=0.25)
    carry = checks.warm_carry(seed % 7)
    y, (M, S) = checks.apply[strategy](checks.params, x, start, carry)
    y_ref, (M_ref, S_ref), gain = reference(checks.params, x, start, carry, checks.model.gated)
    tolerance = 1e-4 + 1e-4 * np.abs(y_ref) + 1e-7 * gain[:, None]  # see `reference`
    assert np.all(np.abs(np.asarray(y) - y_ref) <= tolerance), np.abs(y - y_ref).max()
    # Every transition M_t is a contraction (norm <= 1), so |M| <= 1 and S stays of the
    # size of the written β k vᵀ: no growth over the tape, test_gla.py's tolerances.
    np.testing.assert_allclose(S, S_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(M, M_ref, rtol=1e-4, atol=1e-5)


def _with_bias(params, layer: str, value: float):
    """A copy of `params` whose `layer` outputs `value` for every input."""
    p = dict(params["params"])
    p[layer] = {"kernel": np.zeros_like(p[layer]["kernel"]),
                "bias": np.full_like(p[layer]["bias"], value)}
    return {**params, "params": p}


def test_delta_rule_overwrites(checks):
    """β = 1: writing the same (k, v) twice stores it once (up to |k|² = 1 - eps), where
    linear attention would store it twice: the delta rule replaces the value under k."""
    if checks.model.gated:
        pytest.skip("the decay α would shrink the first write: checked ungated")
    params = _with_bias(checks.params, "beta", 1e4)  # sigmoid -> 1
    x = np.repeat(checks.tape(0)[0][:1], 2, axis=0)
    start = np.array([True, False])
    _, (_, once) = checks.apply["sequential"](params, x[:1], start[:1], checks.carry0)
    _, (_, twice) = checks.apply["sequential"](params, x, start, checks.carry0)
    np.testing.assert_allclose(twice, once, atol=1e-5)
    assert np.abs(np.asarray(once)).max() > 1e-2  # something was stored


def test_gate_forgets(checks):
    """Gated, with α -> 0, only the current step's β k vᵀ remains in the state."""
    if not checks.model.gated:
        pytest.skip("α = 1 without the gate")
    params = _with_bias(checks.params, "alpha", 50.0)  # softplus = 50, α = e^{-50 A} ~ 0
    x, start = random_tape(np.random.default_rng(0), T, F)
    _, (_, S) = checks.apply["sequential"](params, x, start, checks.warm_carry(0))
    _, last = checks.model.apply(params, x[-1:], method="lift")  # (M, U) [1, ...]
    np.testing.assert_allclose(S, last[0], atol=1e-6)


def test_registry_defaults_and_bad_settings():
    plain, gated = make_memory("deltanet"), make_memory("gated_deltanet")
    assert (type(plain), plain.gated, type(gated), gated.gated) == (
        DeltaNet, False, GatedDeltaNet, True)
    assert (plain.key_size, plain.value_size, plain.num_heads, plain.output_size) == (
        16, 32, 4, 256)
    carry = plain.initialize_carry()
    assert [leaf.shape for leaf in jax.tree.leaves(carry)] == [(4, 16, 16), (4, 16, 32)]
    np.testing.assert_array_equal(carry[0][2], np.eye(16))
    with pytest.raises(ValueError, match="DeltaNet: key_size must be a positive int"):
        DeltaNet(key_size=0)
    with pytest.raises(ValueError, match="GatedDeltaNet: gated must be a bool, got 'yes'"):
        GatedDeltaNet(gated="yes")
