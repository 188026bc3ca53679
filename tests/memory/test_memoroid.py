"""The resettable scan itself, on a non-commutative monoid, against a Python loop; the
affine monoid of the diagonal linear recurrences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlmem.memory.memoroid import (
    affine_combine,
    affine_identity,
    check_tape,
    fold_with_resets,
    resettable,
    resolve_strategy,
    scan_states,
)

T = 24


def matmul(a, b):
    """2x2 matrix product: associative, not commutative, so order mistakes show."""
    return a @ b


def python_prefix(elements, start, carry):
    h, out = carry, []
    for t in range(len(elements)):
        h = elements[t] if start[t] else h @ elements[t]
        out.append(h)
    return np.stack(out)


SCAN = {
    s: jax.jit(lambda e, b, c, s=s: scan_states(matmul, e, b, c, s))
    for s in ("associative", "sequential")
}


def random_matrices(rng, n):
    return (np.eye(2) + 0.3 * rng.normal(size=(n, 2, 2))).astype(np.float32)


@given(seed=st.integers(0, 2**31 - 1), p_start=st.sampled_from([0.0, 0.1, 0.5, 1.0]))
def test_scan_states_matches_python_loop(seed, p_start):
    rng = np.random.default_rng(seed)
    elements = random_matrices(rng, T)
    start = rng.random(T) < p_start
    carry = random_matrices(rng, 1)[0]
    expected = python_prefix(elements.astype(np.float64), start, carry.astype(np.float64))
    for strategy, fn in SCAN.items():
        np.testing.assert_allclose(
            fn(elements, start, carry), expected, rtol=1e-4, atol=1e-5, err_msg=strategy
        )


def test_resettable_is_associative_with_identity():
    rng = np.random.default_rng(0)
    combine = jax.vmap(resettable(matmul))
    n = 64
    a, b, c = (random_matrices(rng, n) for _ in range(3))
    fa, fb, fc = (jnp.asarray(rng.random(n) < 0.5) for _ in range(3))
    left = combine(combine((a, fa), (b, fb)), (c, fc))
    right = combine((a, fa), combine((b, fb), (c, fc)))
    for x, y in zip(left, right, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    eye = (np.broadcast_to(np.eye(2, dtype=np.float32), (n, 2, 2)), jnp.zeros(n, bool))
    for x, y in zip(combine(eye, (b, fb)), (b, fb), strict=True):
        np.testing.assert_allclose(x, y)
    for x, y in zip(combine((b, fb), eye), (b, fb), strict=True):
        np.testing.assert_allclose(x, y)


def test_affine_combine_applies_the_later_decay_to_the_earlier_input():
    # (a1, b1) then (a2, b2): h -> a2 (a1 h + b1) + b2; the buggy variant gives a1 b2 + b1.
    a1, b1, a2, b2 = 0.5, 1.0, 0.25, 3.0
    a, b = affine_combine((a1, b1), (a2, b2))
    h0 = 7.0
    assert a * h0 + b == a2 * (a1 * h0 + b1) + b2
    # The identity (1, 0) on either side changes nothing; `a` broadcasts against `b`.
    a, b = jnp.full((2, 1), 0.5), jnp.arange(6.0).reshape(2, 3)
    e = affine_identity((2, 1), (2, 3))
    for left, right in [(e, (a, b)), ((a, b), e)]:
        got = affine_combine(left, right)
        np.testing.assert_array_equal(got[0], a)
        np.testing.assert_array_equal(got[1], b)


def test_fold_with_resets_matches_python_loop():
    rng = np.random.default_rng(1)
    u = rng.normal(size=T).astype(np.float32)
    start = rng.random(T) < 0.3
    step = lambda h, x: 0.9 * h + x
    got = fold_with_resets(step, u, start, jnp.float32(5.0), jnp.float32(-1.0))
    h, expected = 5.0, []
    for t in range(T):
        h = step(-1.0 if start[t] else h, u[t])
        expected.append(h)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_strategy_names():
    assert resolve_strategy("associative") == "associative"
    assert resolve_strategy("sequential") == "sequential"
    expected = "sequential" if jax.default_backend() == "cpu" else "associative"
    assert resolve_strategy("auto") == expected
    with pytest.raises(ValueError, match="'parallel'"):
        resolve_strategy("parallel")


def test_check_tape_messages():
    check_tape("M", np.zeros((3, 2)), np.zeros(3, bool))
    with pytest.raises(ValueError, match=r"M: x must be \[T, F\].*\(3,\)"):
        check_tape("M", np.zeros(3), np.zeros(3, bool))
    with pytest.raises(ValueError, match=r"M: start must be \[T\]"):
        check_tape("M", np.zeros((3, 2)), np.zeros((3, 1), bool))
