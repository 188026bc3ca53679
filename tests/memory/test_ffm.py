"""FFM against a numpy complex128 loop of S_t = γ ⊙ S_{t-1} + x̃_t 1ᵀ with resets."""

from __future__ import annotations

import jax
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from rlmem.memory.ffm import FFM, FFMState, init_decay, init_frequency
from tests.memory.properties import init_on_zeros, random_tape

T, F, M, C, H = 20, 3, 4, 2, 6


def sigmoid(u):
    return 1.0 / (1.0 + np.exp(-u))


def dense(p, x):
    return x @ p["kernel"] + p["bias"]


def layer_norm(p, u, eps=1e-6):
    mean = u.mean(-1, keepdims=True)
    var = u.var(-1, keepdims=True)
    return (u - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def ffm_readout(p, trace, x):
    """y for one step from a [M, C] complex trace (shared with the SFFM test)."""
    flat = trace.reshape(-1)
    z = layer_norm(p["norm"], dense(p["mix"], np.concatenate([flat.real, flat.imag])))
    skip, gate = np.split(dense(p["post"], x), 2)
    return z * sigmoid(gate) + skip * (1 - sigmoid(gate))


def numpy_params(params):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])


def reference(params, x, start, carry):
    p = numpy_params(params)
    gamma = np.exp(-np.abs(p["alpha"])[:, None] - 1j * p["omega"][None, :])  # [M, C]
    S, steps = np.asarray(carry.trace, np.complex128), float(carry.steps)
    ys = []
    for t in range(len(x)):
        if start[t]:
            S, steps = np.zeros_like(S), 0.0
        value, gate = np.split(dense(p["pre"], x[t]), 2)
        S = gamma * S + (value * sigmoid(gate))[:, None]
        steps += 1
        ys.append(ffm_readout(p, S, x[t]))
    return np.stack(ys), S, steps


MODELS = {s: FFM(trace_size=M, context_size=C, output_size=H, scan=s)
          for s in ("associative", "sequential")}
PARAMS = init_on_zeros(MODELS["sequential"], T, F)
APPLY = {s: jax.jit(m.apply) for s, m in MODELS.items()}


def random_carry(rng):
    trace = rng.normal(size=(M, C)) + 1j * rng.normal(size=(M, C))
    return FFMState(trace=trace.astype(np.complex64), steps=np.float32(rng.integers(0, 50)))


@given(seed=st.integers(0, 2**31 - 1), strategy=st.sampled_from(sorted(MODELS)))
def test_matches_numpy_recurrence(seed, strategy):
    rng = np.random.default_rng(seed)
    x, start = random_tape(rng, T, F, p_start=0.25)
    carry = random_carry(rng)
    y, new_carry = APPLY[strategy](PARAMS, x, start, carry)
    y_ref, S, steps = reference(PARAMS, x, start, carry)
    np.testing.assert_allclose(y, y_ref, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(new_carry.trace, S, rtol=1e-4, atol=1e-5)
    assert float(new_carry.steps) == steps


def test_initial_decays_and_frequencies():
    alpha = np.asarray(init_decay(8)(None, (8,)))
    half_life = np.log(2) / alpha
    np.testing.assert_allclose(half_life[[0, -1]], [1.0, 1024.0], rtol=1e-5)
    assert np.all(np.diff(half_life) > 0)
    period = 2 * np.pi / np.asarray(init_frequency(3)(None, (3,)))
    np.testing.assert_allclose(period, [2.0, np.sqrt(2 * 1024), 1024.0], rtol=1e-5)


def test_paper_defaults_and_carry():
    model = FFM()
    assert (model.trace_size, model.context_size, model.output_size) == (64, 4, 256)
    carry = model.initialize_carry()
    assert carry.trace.shape == (64, 4) and carry.trace.dtype == np.complex64
    assert float(carry.steps) == 0.0
