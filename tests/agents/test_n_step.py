"""DQN's n-step targets through `td_loss`: per sequence (one tape, or each segment row),
against the per-step reference of tests/memory/test_returns.py."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from rlmem.agents.dqn import td_loss
from rlmem.types import Transition
from tests.agents import reference as ref
from tests.memory.test_returns import reference_n_step


@pytest.mark.parametrize("rows", [1, 3])
def test_n_step_loss_per_row(rows):
    rng = np.random.default_rng(rows)
    m, a, gamma, n = 12, 3, 0.8, 3
    q, q_on, q_tg = (rng.normal(size=(m, a)).astype(np.float32) for _ in range(3))
    action = rng.integers(0, a, m).astype(np.int32)
    reward = rng.normal(size=m).astype(np.float32)
    kind = rng.choice(3, size=m, p=[0.7, 0.2, 0.1])
    terminated, truncated = kind == 1, kind == 2
    mask = np.ones(m, bool)
    mask[m // rows - 1] = False  # padding at the end of the first row
    tr = Transition(obs=np.zeros((m, 1)), action=action, reward=reward,
                    next_obs=np.zeros((m, 1)), terminated=terminated, truncated=truncated,
                    start=np.zeros(m, bool), mask=mask)
    loss, _ = td_loss(jnp.asarray(q), jnp.asarray(q_on), jnp.asarray(q_tg), tr, gamma,
                      n_step=n, rows=rows)
    next_value = q_tg[np.arange(m), q_on.argmax(-1)]
    target = np.concatenate([
        reference_n_step(*(x.reshape(rows, -1)[r] for x in (reward, next_value, terminated,
                                                          truncated, mask)), gamma, n)
        for r in range(rows)])
    chosen = q[np.arange(m), action]
    expected = float((ref.huber(chosen - target) * mask).sum() / mask.sum())
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5, atol=1e-6)
