"""The real-arithmetic complex products against numpy's complex128 matmul."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.memory.complex_dense import real_part_of_product, real_times_complex

dims = st.integers(1, 5)


def complex_normal(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


@settings(max_examples=8, deadline=None)  # every shape compiles anew
@given(t=dims, m=dims, n=dims, seed=st.integers(0, 2**16))
def test_products_match_complex_matmul(t, m, n, seed):
    rng = np.random.default_rng(seed)
    u, w_in = rng.normal(size=(t, m)), complex_normal(rng, (n, m))
    h, w_out = complex_normal(rng, (t, n)), complex_normal(rng, (m, n))
    lifted = real_times_complex(jnp.asarray(u, jnp.float32), jnp.asarray(w_in, jnp.complex64))
    read = real_part_of_product(jnp.asarray(h, jnp.complex64), jnp.asarray(w_out, jnp.complex64))
    np.testing.assert_allclose(lifted, u @ w_in.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(read, (h @ w_out.T).real, rtol=1e-5, atol=1e-5)
    assert read.dtype == jnp.float32
