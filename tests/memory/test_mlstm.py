"""MLSTM against a plain numpy loop of the paper's stabilised mLSTM recurrence per head with
resets (m_t = max(log f_t + m_{t-1}, ĩ_t), C̄_t = f'_t C̄_{t-1} + i'_t k_t v_tᵀ, ...,
h_t = C̄_tᵀ q_t / max(|n̄_tᵀ q_t|, e^{-m_t})), plus the exactness of the identity and of the
stabiliser. MLSTM is registered as "mlstm", so the generic property checks (monoid laws,
strategies, no leakage, with_next, acting) run on it in test_all_models.py."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.memory import make_memory
from rlmem.memory.mlstm import MLSTM, NEG, MLSTMState
from tests.memory.properties import MemoryModelChecks, random_tape

T, F, HEADS, K, V, OUT = 16, 3, 2, 4, 3, 5


def dense(p, x):
    return x @ p["kernel"] + p["bias"]


def sigmoid(u):
    return 1.0 / (1.0 + np.exp(-u))


def reference(params, x, start, carry):
    """numpy float64, one step at a time: the paper's stabilised recurrence.

    The state is (Σ log f, m, C̄ [heads, K, V], n̄ [heads, K]), starting from the model's
    carry; at an episode start it is reset to (0, 0, 0, 0), i.e. m_0 = 0 and not the model's
    identity scale NEG: h_t does not depend on m_0 when C̄_0 = n̄_0 = 0, which this checks.

    Also returns each step's normaliser gain `[T]`, `max_h Σ_k |q_k n̄_k| / den_h`: how much
    cancellation in `n̄ᵀq` magnifies its float32 rounding (about 1e-7 of its terms) in `h`
    when the normaliser is `|n̄ᵀq|` (gain 1 without cancellation)."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    g, m, C, n = (np.array(leaf, np.float64) for leaf in (carry.log_decay, carry.m, carry.C,
                                                             carry.n))
    ys, gains = [], []
    for t in range(len(x)):
        q, k = np.split(dense(p["qk"], x[t]), 2)
        q, k = q.reshape(HEADS, K), k.reshape(HEADS, K) / np.sqrt(K)
        v, o_gate = np.split(dense(p["vo"], x[t]), 2)
        v = v.reshape(HEADS, V)
        i_pre, f_pre = np.split(dense(p["gates"], x[t]), 2)  # [heads]
        log_f = -np.logaddexp(0.0, -f_pre)  # log sigmoid
        if start[t]:
            g, m, C, n = np.zeros_like(g), np.zeros_like(m), np.zeros_like(C), np.zeros_like(n)
        m_new = np.maximum(log_f + m, i_pre)
        f_scaled, i_scaled = np.exp(log_f + m - m_new), np.exp(i_pre - m_new)
        hs, gain = [], 0.0
        for h in range(HEADS):
            C[h] = f_scaled[h] * C[h] + i_scaled[h] * np.outer(k[h], v[h])
            n[h] = f_scaled[h] * n[h] + i_scaled[h] * k[h]
            den = max(abs(n[h] @ q[h]), np.exp(-m_new[h]))
            hs.append(C[h].T @ q[h] / den)
            gain = max(gain, np.abs(n[h] * q[h]).sum() / den)
        g, m = g + log_f, m_new
        ys.append(dense(p["out"], np.concatenate(hs) * sigmoid(o_gate)))
        gains.append(gain)
    return np.stack(ys), MLSTMState(log_decay=g, m=m, C=C, n=n), np.array(gains)


def unscaled_at(state: MLSTMState, m) -> tuple[np.ndarray, np.ndarray]:
    """(C̄, n̄) of `state` expressed at the scale `m` (the same segment, another m)."""
    w = np.exp(np.asarray(state.m, np.float64) - m)
    return np.asarray(state.C) * w[:, None, None], np.asarray(state.n) * w[:, None]


@pytest.fixture(scope="module")
def checks() -> MemoryModelChecks:
    model = lambda scan: MLSTM(
        key_size=K, value_size=V, num_heads=HEADS, output_size=OUT, scan=scan
    )
    return MemoryModelChecks(model, input_size=F, length=T)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**31 - 1), strategy=st.sampled_from(["associative", "sequential"]))
def test_matches_numpy_recurrence(checks, seed, strategy):
    rng = np.random.default_rng(seed)
    x, start = random_tape(rng, T, F, p_start=0.25)
    carry = checks.warm_carry(seed % 7)
    y, state = checks.apply[strategy](checks.params, x, start, carry)
    y_ref, ref, gain = reference(checks.params, x, start, carry)
    tolerance = 1e-4 + 1e-4 * np.abs(y_ref) + 1e-6 * gain[:, None]  # see `reference`
    assert np.all(np.abs(np.asarray(y) - y_ref) <= tolerance), np.abs(y - y_ref).max()
    C, n = unscaled_at(state, ref.m)  # the model's m may be lower (NEG at a reset)
    np.testing.assert_allclose(C, ref.C, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(n, ref.n, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(state.log_decay, ref.log_decay, rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(state.m) <= ref.m + 1e-5)


def test_identity_is_exact(checks):
    """e • R == R and R • e == R bit for bit (not only within the suite's tolerance), and
    e • e == e: the sentinel NEG acts as -inf without its NaN (-inf - -inf)."""
    x, _ = checks.tape(0)
    combine = jax.jit(jax.vmap(
        lambda a, b: checks.model.apply(checks.params, a, b, method="combine")))
    lifted = checks.model.apply(checks.params, x, method="lift")
    r = combine(lifted, jax.tree.map(lambda a: a[::-1], lifted))  # general elements
    e = jax.tree.map(lambda leaf: np.broadcast_to(leaf, (len(x),) + leaf.shape),
                     checks.model.initialize_carry())
    for got in (combine(e, r), combine(r, e)):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(r), strict=True):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(combine(e, e)), jax.tree.leaves(e), strict=True):
        np.testing.assert_array_equal(a, b)


def test_large_input_gates_stay_finite(checks):
    """ĩ around ±200 (exp(ĩ) overflows float32 unstabilised): outputs, carries and gradients
    stay finite and match the float64 stabilised reference."""
    p = dict(checks.params["params"])
    gates = dict(p["gates"])
    gates["kernel"] = np.asarray(gates["kernel"]).copy()
    gates["kernel"][:, :HEADS] *= 200.0 / np.abs(gates["kernel"][:, :HEADS]).max()
    params = {"params": {**p, "gates": gates}}
    x, start = checks.tape(1)
    y, state = checks.apply["associative"](params, x, start, checks.carry0)
    y_ref, ref, gain = reference(params, x, start, checks.carry0)
    i_pre = x @ gates["kernel"][:, :HEADS] + np.asarray(gates["bias"][:HEADS])
    assert np.abs(i_pre).max() > 100.0  # the regime this is about: exp(ĩ) = inf or 0
    tolerance = 1e-4 + 1e-4 * np.abs(y_ref) + 1e-6 * gain[:, None]
    assert np.all(np.abs(np.asarray(y) - y_ref) <= tolerance), np.abs(y - y_ref).max()
    loss = lambda prm: jax.numpy.sum(checks.models["associative"].apply(
        prm, x, start, checks.carry0)[0] ** 2)
    grads = jax.jit(jax.grad(loss))(params)  # compiled: op by op it takes ~50 s
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(grads))


def test_defaults_and_bad_settings():
    model = make_memory("mlstm")
    assert type(model) is MLSTM
    assert (model.key_size, model.value_size, model.num_heads, model.output_size) == (
        16, 32, 4, 256)
    carry = model.initialize_carry()
    assert [leaf.shape for leaf in jax.tree.leaves(carry)] == [
        (4,), (4,), (4, 16, 32), (4, 16)]  # log_decay, m, C, n
    assert np.all(np.asarray(carry.m) == np.float32(NEG))
    with pytest.raises(ValueError, match="MLSTM: num_heads must be a positive int"):
        MLSTM(num_heads=0)
