"""Optimiser chain, Polyak update and exploration schedules against closed forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlmem.agents.optim import (
    get_learning_rate,
    make_optimizer,
    polyak_update,
    set_learning_rate,
    warmup_factor,
)
from rlmem.agents.schedules import epsilon, epsilon_greedy


def test_warmup_factor_is_linear_then_flat():
    f = warmup_factor(4)
    np.testing.assert_allclose([float(f(k)) for k in range(6)], [0.25, 0.5, 0.75, 1, 1, 1])
    assert float(warmup_factor(0)(7)) == 1.0
    with pytest.raises(ValueError, match="warmup_updates must be >= 0, got -1"):
        warmup_factor(-1)


def test_first_steps_match_adam_closed_form_with_clip_and_warmup():
    # Adam's first step is -lr * g / (|g| + eps) elementwise, for the clipped g.
    tx = make_optimizer(learning_rate=1e-3, warmup_updates=4, max_grad_norm=0.01, eps=1e-8)
    params = {"w": jnp.zeros(3)}
    grads = {"w": jnp.array([3.0, -4.0, 0.0])}  # global norm 5 -> clipped to 0.01
    state = tx.init(params)
    updates, state = jax.jit(tx.update)(grads, state, params)
    g = np.array([3.0, -4.0, 0.0]) * 0.01 / 5.0
    expected = -1e-3 * 0.25 * g / (np.abs(g) + 1e-8)
    np.testing.assert_allclose(updates["w"], expected, rtol=1e-5, atol=1e-12)
    # The learning rate lives in the state: changing it rescales the next step, no rebuild.
    assert float(get_learning_rate(state)) == pytest.approx(1e-3)
    twice = set_learning_rate(state, 2e-3)
    a, _ = tx.update(grads, state, params)
    b, _ = tx.update(grads, twice, params)
    np.testing.assert_allclose(b["w"], 2 * a["w"], rtol=1e-6)


def test_nan_gradients_are_zeroed():
    tx = make_optimizer(learning_rate=1e-3, warmup_updates=0)
    params = {"w": jnp.zeros(2)}
    updates, _ = tx.update({"w": jnp.array([jnp.nan, 1.0])}, tx.init(params), params)
    assert np.all(np.isfinite(updates["w"]))
    assert updates["w"][0] == 0.0 and updates["w"][1] < 0.0


def test_optimizer_rejects_bad_values():
    with pytest.raises(ValueError, match="learning_rate must be > 0, got 0"):
        make_optimizer(learning_rate=0)
    with pytest.raises(ValueError, match="max_grad_norm must be > 0"):
        make_optimizer(max_grad_norm=-1.0)


def test_polyak_update():
    out = polyak_update({"w": jnp.array([1.0, 3.0])}, {"w": jnp.array([5.0, 7.0])}, 0.25)
    np.testing.assert_allclose(out["w"], [2.0, 4.0])


def test_epsilon_schedule():
    eps = [float(epsilon(jnp.int32(k), 3, 4, 0.2, 0.04)) for k in range(10)]
    np.testing.assert_allclose(eps, [1, 1, 1, 0.2, 0.16, 0.12, 0.08, 0.04, 0.04, 0.04], atol=1e-7)
    assert float(epsilon(jnp.int32(0), 0, 0, 0.2, 0.05)) == pytest.approx(0.05)


def test_epsilon_greedy_frequencies():
    n, num_actions = 20_000, 4
    q = jnp.tile(jnp.array([0.0, 2.0, 1.0, -1.0]), (n, 1))
    fn = jax.jit(epsilon_greedy)
    assert np.all(np.asarray(fn(jax.random.key(0), q, 0.0)) == 1)
    for eps in (0.3, 1.0):
        action = np.asarray(fn(jax.random.key(1), q, eps))
        freq = np.bincount(action, minlength=num_actions) / n
        expected = np.full(num_actions, eps / num_actions)
        expected[1] += 1 - eps
        np.testing.assert_allclose(freq, expected, atol=0.015)
