"""MLP: per-step numpy forward, carry passed through, start ignored."""

from __future__ import annotations

import jax
import numpy as np

from rlmem.memory.mlp import MLP
from tests.memory.properties import random_tape

T, F, H = 12, 3, 5


def test_matches_numpy_and_keeps_no_state():
    model = MLP(output_size=H)
    carry = model.initialize_carry()
    assert carry.shape == (0,)
    rng = np.random.default_rng(0)
    x, start = random_tape(rng, T, F)
    params = model.init(jax.random.PRNGKey(0), x, start, carry)
    p = jax.tree.map(np.asarray, params["params"])
    hidden = x @ p["hidden"]["kernel"] + p["hidden"]["bias"]
    hidden = np.where(hidden > 0, hidden, 0.01 * hidden)
    expected = hidden @ p["out"]["kernel"] + p["out"]["bias"]
    y, new_carry = model.apply(params, x, start, carry)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    assert new_carry.shape == (0,)
    _, y_next, _ = model.apply(params, x, ~start, carry, x[::-1], method="with_next")
    np.testing.assert_allclose(y_next, expected[::-1], rtol=1e-5, atol=1e-6)
