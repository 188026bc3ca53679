"""Returns and GAE against straightforward per-episode Python loops on random tapes."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlmem.memory.returns import discounted_returns, gae, n_step_targets, q_lambda_targets

STRATEGIES = ("associative", "sequential")
LENGTHS = (1, 9, 40)  # a few fixed lengths: each compiles once

RETURNS = {
    s: jax.jit(lambda r, te, tr, g, nv, s=s: discounted_returns(r, te, tr, g, nv, strategy=s))
    for s in STRATEGIES
}
GAE = {
    s: jax.jit(lambda r, v, nv, te, tr, g, lam, s=s: gae(r, v, nv, te, tr, g, lam, strategy=s))
    for s in STRATEGIES
}

Q_LAMBDA = {
    s: jax.jit(lambda r, nq, te, tr, g, lam, s=s: q_lambda_targets(r, nq, te, tr, g, lam,
                                                                  strategy=s))
    for s in STRATEGIES
}


def random_tape(seed, length):
    """reward, terminated, truncated (never both), value, next_value; episodes cut anywhere."""
    rng = np.random.default_rng(seed)
    reward = rng.normal(size=length).astype(np.float32)
    kind = rng.choice(3, size=length, p=[0.75, 0.15, 0.1])  # 0 go on, 1 terminal, 2 cut
    value = rng.normal(size=length).astype(np.float32)
    next_value = rng.normal(size=length).astype(np.float32)
    return reward, kind == 1, kind == 2, value, next_value


def episodes(terminated, truncated):
    """[(first, last)] index ranges; the last one may be cut by the tape's end."""
    out, first = [], 0
    for t in range(len(terminated)):
        if terminated[t] or truncated[t] or t == len(terminated) - 1:
            out.append((first, t))
            first = t + 1
    return out


def reference_returns(reward, terminated, truncated, gamma, next_value):
    """Per episode, backwards from its last step; bootstrap unless it terminated."""
    out = np.zeros(len(reward))
    for first, last in episodes(terminated, truncated):
        g = 0.0 if terminated[last] else float(next_value[last])
        for t in range(last, first - 1, -1):
            g = reward[t] + gamma * g
            out[t] = g
    return out


def reference_gae(reward, value, next_value, terminated, truncated, gamma, lam):
    advantage = np.zeros(len(reward))
    for first, last in episodes(terminated, truncated):
        a = 0.0
        for t in range(last, first - 1, -1):
            delta = reward[t] + gamma * (0.0 if terminated[t] else next_value[t]) - value[t]
            a = delta + gamma * lam * a
            advantage[t] = a
    return advantage


def reference_q_lambda(reward, next_q, terminated, truncated, gamma, lam):
    """Per episode, backwards: the last step bootstraps from next_q unless it terminated;
    earlier steps mix the one-step bootstrap and the next step's target."""
    out = np.zeros(len(reward))
    for first, last in episodes(terminated, truncated):
        g = reward[last] + gamma * (0.0 if terminated[last] else next_q[last])
        out[last] = g
        for t in range(last - 1, first - 1, -1):
            g = reward[t] + gamma * ((1 - lam) * next_q[t] + lam * g)
            out[t] = g
    return out


@given(
    seed=st.integers(0, 2**31 - 1),
    length=st.sampled_from(LENGTHS),
    gamma=st.sampled_from([0.0, 0.5, 0.99]),
    lam=st.sampled_from([0.0, 0.65, 1.0]),
    strategy=st.sampled_from(STRATEGIES),
)
def test_q_lambda_targets(seed, length, gamma, lam, strategy):
    reward, terminated, truncated, _, next_q = random_tape(seed, length)
    got = Q_LAMBDA[strategy](reward, next_q, terminated, truncated, gamma, lam)
    expected = reference_q_lambda(reward, next_q, terminated, truncated, gamma, lam)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_q_lambda_closed_forms():
    """λ = 0: the one-step target r + γ (1 - terminated) next_q; λ = 1: the discounted
    return bootstrapped from next_q where the episode is cut (truncation, tape end)."""
    reward, terminated, truncated, _, next_q = random_tape(5, 40)
    gamma = 0.9
    one_step = Q_LAMBDA["associative"](reward, next_q, terminated, truncated, gamma, 0.0)
    np.testing.assert_allclose(one_step, reward + gamma * np.where(terminated, 0.0, next_q),
                               rtol=1e-5, atol=1e-6)
    mc = Q_LAMBDA["sequential"](reward, next_q, terminated, truncated, gamma, 1.0)
    returns = RETURNS["sequential"](reward, terminated, truncated, gamma, next_q)
    np.testing.assert_allclose(mc, returns, rtol=1e-4, atol=1e-4)
    # hand-computed: a termination at t=1 (no bootstrap), a truncation at t=3 (next_q 10)
    got = Q_LAMBDA["associative"](np.ones(4, np.float32), np.full(4, 10.0, np.float32),
                                  np.array([0, 1, 0, 0], bool), np.array([0, 0, 0, 1], bool),
                                  0.5, 0.5)
    # t=1: 1; t=0: 1 + .5 (.5*10 + .5*1) = 3.75; t=3: 1 + .5*10 = 6; t=2: 1 + .5 (5 + 3) = 5
    np.testing.assert_allclose(got, [3.75, 1.0, 5.0, 6.0])


@given(
    seed=st.integers(0, 2**31 - 1),
    length=st.sampled_from(LENGTHS),
    gamma=st.sampled_from([0.0, 0.5, 0.99, 1.0]),
    bootstrap=st.booleans(),
    strategy=st.sampled_from(STRATEGIES),
)
def test_discounted_returns(seed, length, gamma, bootstrap, strategy):
    reward, terminated, truncated, _, next_value = random_tape(seed, length)
    got = RETURNS[strategy](
        reward, terminated, truncated, gamma, next_value if bootstrap else None
    )
    expected = reference_returns(
        reward, terminated, truncated, gamma, next_value if bootstrap else 0 * next_value
    )
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@given(
    seed=st.integers(0, 2**31 - 1),
    length=st.sampled_from(LENGTHS),
    gamma=st.sampled_from([0.5, 0.99]),
    lam=st.sampled_from([0.0, 0.9, 1.0]),
    strategy=st.sampled_from(STRATEGIES),
)
def test_gae(seed, length, gamma, lam, strategy):
    reward, terminated, truncated, value, next_value = random_tape(seed, length)
    advantage, target = GAE[strategy](
        reward, value, next_value, terminated, truncated, gamma, lam
    )
    expected = reference_gae(reward, value, next_value, terminated, truncated, gamma, lam)
    np.testing.assert_allclose(advantage, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(target, expected + value, rtol=1e-4, atol=1e-4)


def test_gae_closed_forms():
    """λ = 0: one-step TD error; λ = 1: the bootstrapped discounted return minus V.

    The λ = 1 identity telescopes, so it needs next_value[t] == value[t+1] inside episodes.
    """
    reward, terminated, truncated, value, next_value = random_tape(3, 40)
    inside = ~(terminated | truncated)[:-1]
    next_value[:-1] = np.where(inside, value[1:], next_value[:-1])
    gamma = 0.9
    adv0, _ = GAE["associative"](reward, value, next_value, terminated, truncated, gamma, 0.0)
    delta = reward + gamma * np.where(terminated, 0.0, next_value) - value
    np.testing.assert_allclose(adv0, delta, rtol=1e-5, atol=1e-6)
    _, target1 = GAE["sequential"](reward, value, next_value, terminated, truncated, gamma, 1.0)
    returns = RETURNS["sequential"](reward, terminated, truncated, gamma, next_value)
    np.testing.assert_allclose(target1, returns, rtol=1e-4, atol=1e-4)


def test_hand_computed_tape():
    """Terminal, truncation (bootstraps 10) and a tape-end cut (bootstraps 10)."""
    reward = np.ones(5, np.float32)
    terminated = np.array([0, 1, 0, 0, 0], bool)
    truncated = np.array([0, 0, 0, 1, 0], bool)
    got = RETURNS["associative"](reward, terminated, truncated, 0.5, np.full(5, 10.0))
    np.testing.assert_allclose(got, [1.5, 1.0, 4.0, 6.0, 6.0])


def test_long_tape_strategies_agree():
    reward, terminated, truncated, _, next_value = random_tape(7, 10_000)
    a = RETURNS["associative"](reward, terminated, truncated, 0.99, next_value)
    s = RETURNS["sequential"](reward, terminated, truncated, 0.99, next_value)
    np.testing.assert_allclose(a, s, rtol=1e-4, atol=1e-4)


def test_bad_input():
    ones = np.ones(4, np.float32)
    flags = np.zeros(4, bool)
    with pytest.raises(ValueError, match=r"terminated must be \[T\]"):
        discounted_returns(ones, np.zeros(3, bool), flags, 0.9)
    with pytest.raises(ValueError, match="gamma must be in"):
        discounted_returns(ones, flags, flags, 1.5)
    with pytest.raises(ValueError, match="lam must be in"):
        gae(ones, ones, ones, flags, flags, 0.9, -0.1)
    with pytest.raises(ValueError, match=r"reward must be \[T\]"):
        discounted_returns(np.ones((2, 4)), flags, flags, 0.9)


def reference_n_step(reward, next_value, terminated, truncated, valid, gamma, n):
    """Per step, walk forward at most n steps inside the episode and the valid data."""
    out = np.zeros(len(reward))
    for t in np.flatnonzero(valid):
        g, last = 0.0, t
        for i in range(n):
            j = t + i
            if j >= len(reward) or not valid[j]:
                break
            g += gamma**i * reward[j]
            last = j
            if terminated[j] or truncated[j]:
                break
        k = last - t + 1
        out[t] = g + (0.0 if terminated[last] else gamma**k * next_value[last])
    return out


N_STEP = jax.jit(n_step_targets, static_argnums=(5, 6))


@given(seed=st.integers(0, 2**31 - 1), length=st.sampled_from(LENGTHS),
       gamma=st.sampled_from([0.0, 0.9, 1.0]), n=st.sampled_from([1, 3, 5]),
       padded=st.booleans())
def test_n_step_targets(seed, length, gamma, n, padded):
    reward, terminated, truncated, _, next_value = random_tape(seed, length)
    valid = np.ones(length, bool)
    if padded and length > 2:
        valid[-(length // 3):] = False  # a segment row zero-padded after its data
    got = np.asarray(N_STEP(reward, next_value, terminated, truncated, valid, gamma, n))
    expected = reference_n_step(reward, next_value, terminated, truncated, valid, gamma, n)
    np.testing.assert_allclose(got[valid], expected[valid], rtol=1e-5, atol=1e-5)


def test_n_step_hand_computed_and_one_step():
    reward = np.ones(5, np.float32)
    terminated = np.array([0, 0, 1, 0, 0], bool)
    truncated = np.zeros(5, bool)
    nv = np.full(5, 10.0, np.float32)
    got = N_STEP(reward, nv, terminated, truncated, np.ones(5, bool), 0.5, 2)
    # t0: 1 + .5 + .25*10; t1: 1 + .5 (t2 terminates); t2: 1; t3: 1 + .5 + .25*10 (the
    # tape ends after t4: bootstrap from its next value); t4: 1 + .5*10
    np.testing.assert_allclose(got, [4.0, 1.5, 1.0, 4.0, 6.0])
    one = N_STEP(reward, nv, terminated, truncated, np.ones(5, bool), 0.5, 1)
    np.testing.assert_allclose(one, reward + 0.5 * np.where(terminated, 0.0, nv))
