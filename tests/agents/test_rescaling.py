"""R2D2's value rescaling: closed-form values, h^-1(h(x)) = x, and DQN's rescaled target
against numpy."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.agents.dqn import td_loss
from rlmem.agents.rescaling import EPS, rescale, unscale
from rlmem.types import Transition
from tests.agents import reference as ref


def test_closed_form_values():
    x = jnp.array([0.0, 3.0, -8.0, 99.0])
    # sign(x) (sqrt(|x| + 1) - 1) + eps x
    np.testing.assert_allclose(rescale(x), [0.0, 1.003, -2.008, 9.099], rtol=1e-6)
    np.testing.assert_allclose(unscale(rescale(x)), x, rtol=1e-5, atol=1e-5)


@settings(max_examples=50, deadline=None)
@given(st.floats(-1e4, 1e4, allow_nan=False))
def test_inverse_and_monotone(x):
    y = np.float64(x)
    # float64 here: the inverse loses float32 precision for |x| >> 1
    h = np.sign(y) * (np.sqrt(abs(y) + 1) - 1) + EPS * y
    np.testing.assert_allclose(float(rescale(jnp.float32(x))), h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(unscale(jnp.float32(h))), y, rtol=2e-4, atol=2e-4)
    assert float(rescale(jnp.float32(x) + 1.0)) > float(rescale(jnp.float32(x)))


def test_dqn_target_is_rescaled():
    rng = np.random.default_rng(0)
    q, q_on, q_tg = (rng.normal(size=(6, 3)).astype(np.float32) * 5 for _ in range(3))
    action = rng.integers(0, 3, 6).astype(np.int32)
    reward = rng.normal(size=6).astype(np.float32)
    terminated = np.array([0, 1, 0, 0, 1, 0], bool)
    mask = np.ones(6, bool)
    tr = Transition(obs=np.zeros((6, 1)), action=action, reward=reward,
                    next_obs=np.zeros((6, 1)), terminated=terminated,
                    truncated=np.zeros(6, bool), start=np.zeros(6, bool), mask=mask)
    loss, _ = td_loss(jnp.asarray(q), jnp.asarray(q_on), jnp.asarray(q_tg), tr, 0.9,
                      value_rescaling=True)
    best = q_on.argmax(-1)
    nxt = q_tg[np.arange(6), best].astype(np.float64)
    inv = np.sign(nxt) * (((np.sqrt(1 + 4 * EPS * (np.abs(nxt) + 1 + EPS)) - 1)
                           / (2 * EPS)) ** 2 - 1)
    raw = reward + 0.9 * (1 - terminated) * inv
    target = np.sign(raw) * (np.sqrt(np.abs(raw) + 1) - 1) + EPS * raw
    expected = float(np.mean(ref.huber(q[np.arange(6), action] - target)))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5, atol=1e-6)


def test_dqn_refuses_a_non_bool():
    from rlmem.agents.dqn import DQN
    from rlmem.memory import make_memory

    with pytest.raises(ValueError, match="algo.value_rescaling must be true or false"):
        DQN(make_memory("mlp", output_size=4), 3, 2, value_rescaling="yes")
