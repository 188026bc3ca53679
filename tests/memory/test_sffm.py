"""SFFM against a numpy loop that keeps the decayed sum and the decayed count separately."""

from __future__ import annotations

import jax
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from rlmem.memory.ffm import FFMState
from rlmem.memory.memoroid import scan_states
from rlmem.memory.sffm import SFFM, decayed_count
from tests.memory.properties import init_on_zeros, random_tape
from tests.memory.test_ffm import dense, ffm_readout, numpy_params

T, F, M, C, H = 20, 3, 4, 2, 6


def reference(params, x, start, carry):
    """S = γ S + x̃ and n = |γ| n + 1 (a running count, not the closed form); y from S / n."""
    p = numpy_params(params)
    gamma = np.exp(-np.abs(p["alpha"])[:, None] - 1j * p["omega"][None, :])
    S = np.asarray(carry.trace, np.complex128)
    n = np.asarray(decayed_count(np.asarray(p["alpha"]), np.asarray(carry.steps)), np.float64)
    ys = []
    for t in range(len(x)):
        if start[t]:
            S, n = np.zeros_like(S), np.zeros_like(n)
        S = gamma * S + dense(p["pre"], x[t])[:, None]
        n = np.exp(-np.abs(p["alpha"])) * n + 1.0
        ys.append(ffm_readout(p, S / n[:, None], x[t]))
    return np.stack(ys), S


MODELS = {s: SFFM(trace_size=M, context_size=C, output_size=H, scan=s)
          for s in ("associative", "sequential")}
PARAMS = init_on_zeros(MODELS["sequential"], T, F, seed=1)
APPLY = {s: jax.jit(m.apply) for s, m in MODELS.items()}


@given(seed=st.integers(0, 2**31 - 1), strategy=st.sampled_from(sorted(MODELS)))
def test_matches_numpy_recurrence(seed, strategy):
    rng = np.random.default_rng(seed)
    x, start = random_tape(rng, T, F, p_start=0.25)
    trace = rng.normal(size=(M, C)) + 1j * rng.normal(size=(M, C))
    carry = FFMState(trace=trace.astype(np.complex64), steps=np.float32(rng.integers(1, 30)))
    y, new_carry = APPLY[strategy](PARAMS, x, start, carry)
    y_ref, S = reference(PARAMS, x, start, carry)
    np.testing.assert_allclose(y, y_ref, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(new_carry.trace, S, rtol=1e-4, atol=1e-5)


def test_decayed_count_closed_form():
    alpha = np.array([0.0, 1e-7, 1e-3, 0.1, 2.0], np.float32)
    for steps in (1, 5, 1000):
        expected = sum(np.exp(-np.abs(alpha).astype(np.float64) * i) for i in range(steps))
        got = decayed_count(alpha, np.float32(steps))
        np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_mean_stays_bounded_on_long_episodes():
    """|S / n| <= max |x̃| for any decay and length: the memory features cannot blow up."""
    x = np.ones((2000, F), np.float32)
    start = np.zeros(2000, bool)
    model = MODELS["associative"]

    def features(module, x, start):
        states = module.lift(x)
        h = scan_states(module.combine, states, start, module.identity(), "associative")
        return module.memory_features(h), module.pre(x)

    feats, x_tilde = jax.jit(lambda p: model.apply(p, x, start, method=features))(PARAMS)
    assert np.abs(np.asarray(feats)).max() <= np.abs(np.asarray(x_tilde)).max() * (1 + 1e-4)
