"""LSTM against flax's own `nn.LSTMCell` stepped in a Python loop that resets at starts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from hypothesis import given
from hypothesis import strategies as st

from rlmem.memory.lstm import LSTM
from tests.memory.properties import init_on_zeros, random_tape

T, F, H = 20, 3, 6

MODEL = LSTM(output_size=H)
PARAMS = init_on_zeros(MODEL, T, F)
APPLY = jax.jit(MODEL.apply)
WITH_NEXT = jax.jit(lambda p, *a: MODEL.apply(p, *a, method="with_next"))
CELL = nn.LSTMCell(features=H)
CELL_APPLY = jax.jit(CELL.apply)


def cell_params(params):
    """Our [i | f | g | o] parameters in flax LSTMCell's layout (i* no bias, h* with bias)."""
    p = params["params"]
    kernel = jnp.split(p["input_proj"]["kernel"], 4, -1)
    bias = jnp.split(p["input_proj"]["bias"], 4)
    recurrent = jnp.split(p["recurrent"], 4, -1)
    cell = {}
    for i, g in enumerate("ifgo"):
        cell[f"i{g}"] = {"kernel": kernel[i]}
        cell[f"h{g}"] = {"kernel": recurrent[i], "bias": bias[i]}
    return {"params": cell}


def reference(params, x, start, carry):
    cp, c, ys = cell_params(params), carry, []
    for t in range(len(x)):
        if start[t]:
            c = (jnp.zeros(H), jnp.zeros(H))
        c, y = CELL_APPLY(cp, c, x[t])
        ys.append(y)
    return np.stack(ys), c


@given(seed=st.integers(0, 2**31 - 1))
def test_matches_flax_cell(seed):
    rng = np.random.default_rng(seed)
    x, start = random_tape(rng, T, F, p_start=0.25)
    carry = tuple(rng.normal(size=(2, H)).astype(np.float32))
    y, new_carry = APPLY(PARAMS, x, start, carry)
    y_ref, c_ref = reference(PARAMS, x, start, carry)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(new_carry, c_ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_forget_bias_and_carry():
    bias = np.asarray(PARAMS["params"]["input_proj"]["bias"])
    np.testing.assert_array_equal(bias, np.r_[np.zeros(H), np.ones(H), np.zeros(2 * H)])
    c, h = LSTM(output_size=H).initialize_carry()
    assert c.shape == h.shape == (H,) and not np.any(c) and not np.any(h)


@pytest.mark.parametrize("size", [5, 16])
@pytest.mark.parametrize("seed", [0, 1])
def test_each_gates_recurrent_kernel_is_orthogonal(size, seed):
    """Like flax's LSTMCell (one orthogonal `h*` kernel per gate), every gate's [H, H] block
    of the [H, 4H] recurrent kernel is orthogonal: all singular values 1. An orthogonal
    init of the whole [H, 4H] kernel only makes its H rows orthonormal, leaving each
    block's singular values spread below 1."""
    params = init_on_zeros(LSTM(output_size=size), 2, F, seed=seed)
    recurrent = np.asarray(params["params"]["recurrent"], np.float64)
    assert recurrent.shape == (size, 4 * size)
    for gate, block in zip("ifgo", np.split(recurrent, 4, axis=-1), strict=True):
        singular_values = np.linalg.svd(block, compute_uv=False)
        np.testing.assert_allclose(singular_values, 1.0, atol=1e-5, err_msg=f"gate {gate}")
