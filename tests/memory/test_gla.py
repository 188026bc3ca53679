"""GatedLinearAttention against a plain numpy loop of S_t = diag(α_t) S_{t-1} + k_t v_tᵀ per
head with resets. GatedLinearAttention is itself a Memoroid, so the generic property checks
(monoid laws, strategies, no leakage, with_next, acting) run on it in test_all_models.py."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.memory.gla import GatedLinearAttention
from tests.memory.properties import MemoryModelChecks, random_tape

T, F, HEADS, K, V, OUT, TAU = 16, 3, 2, 4, 3, 5, 4.0


def dense(p, x):
    return x @ p["kernel"] + p["bias"]


def layer_norm(p, o, eps=1e-6):
    o = (o - o.mean(-1, keepdims=True)) / np.sqrt(o.var(-1, keepdims=True) + eps)
    return o * p["scale"] + p["bias"]


def reference(params, x, start, carry):
    """numpy float64, one step at a time; the carry is (Π α [heads, K, 1], S [heads, K, V]).

    Also returns each step's readout gain `[T]`: how much the layer norm magnifies an
    absolute error in the float32 readout `q·S`, `max_h |q_h| max|S_h| / sqrt(var_h + eps)`.
    Over `V = 3` values per head the spread can be tiny (1e-4), and then the model's float32
    rounding of `q·S` (about 1e-7 of its terms) reaches the output magnified a thousandfold;
    the test's tolerance grows with it instead of failing on float32 arithmetic."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    power, S = (np.asarray(c, np.float64) for c in carry)
    ys, gains = [], []
    for t in range(len(x)):
        q, k, g = np.split(dense(p["qkg"], x[t]), 3)
        v, out_gate = np.split(dense(p["vg"], x[t]), 2)
        alpha = (1.0 / (1.0 + np.exp(-g))) ** (1.0 / TAU)
        q, k, alpha = q.reshape(HEADS, K), k.reshape(HEADS, K), alpha.reshape(HEADS, K, 1)
        v = v.reshape(HEADS, V)
        if start[t]:
            power, S = np.ones_like(power), np.zeros_like(S)
        S = alpha * S + k[:, :, None] * v[:, None, :]
        power = power * alpha
        o = np.einsum("hk,hkv->hv", q / np.sqrt(K), S)
        terms = np.linalg.norm(q / np.sqrt(K), axis=-1) * np.abs(S).max(axis=(1, 2))
        gains.append(np.max(terms / np.sqrt(o.var(-1) + 1e-6)))
        o = layer_norm(p["norm"], o).reshape(-1) * out_gate / (1.0 + np.exp(-out_gate))
        ys.append(dense(p["out"], o))
    return np.stack(ys), (power, S), np.array(gains)


@pytest.fixture(scope="module")
def checks() -> MemoryModelChecks:
    return MemoryModelChecks(
        functools.partial(
            GatedLinearAttention,
            key_size=K,
            value_size=V,
            num_heads=HEADS,
            output_size=OUT,
            gate_temperature=TAU,
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
    y_ref, (power_ref, S_ref), gain = reference(checks.params, x, start, carry)
    tolerance = 1e-4 + 1e-4 * np.abs(y_ref) + 1e-7 * gain[:, None]  # see `reference`
    assert np.all(np.abs(np.asarray(y) - y_ref) <= tolerance), np.abs(y - y_ref).max()
    np.testing.assert_allclose(S, S_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(power, power_ref, rtol=1e-4, atol=1e-7)


def test_gate_forgets(checks):
    """With all gates shut (α -> 0) only the current step's k vᵀ remains in the state."""
    params = jax.tree.map(lambda a: a, checks.params)
    qkg = dict(params["params"]["qkg"])
    qkg["bias"] = qkg["bias"].at[2 * HEADS * K :].set(-1e4)  # gate logits
    qkg["kernel"] = qkg["kernel"].at[:, 2 * HEADS * K :].set(0.0)
    params["params"] = {**params["params"], "qkg": qkg}
    x, start = random_tape(np.random.default_rng(0), T, F)
    _, (_, S) = checks.apply["sequential"](params, x, start, checks.warm_carry(0))
    _, last = checks.model.apply(params, x[-1:], method="lift")
    np.testing.assert_allclose(S, last[0], atol=1e-6)


def test_defaults_and_bad_settings():
    model = GatedLinearAttention()
    assert (model.key_size, model.value_size, model.num_heads) == (16, 16, 1)
    assert model.output_size == 256
    carry = model.initialize_carry()
    assert [leaf.shape for leaf in jax.tree.leaves(carry)] == [(1, 16, 1), (1, 16, 16)]
    bad = GatedLinearAttention(gate_temperature=0.5)
    with pytest.raises(ValueError, match="gate_temperature must be >= 1, got 0.5"):
        bad.init(jax.random.PRNGKey(0), np.zeros((2, 3)), np.zeros(2, bool), carry)
