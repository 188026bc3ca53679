"""GRU against flax's own `nn.GRUCell` stepped in a Python loop that resets at starts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from hypothesis import given
from hypothesis import strategies as st

from rlmem.memory.gru import GRU
from tests.memory.properties import init_on_zeros, random_tape

T, F, H = 20, 3, 6

MODEL = GRU(output_size=H)
PARAMS = init_on_zeros(MODEL, T, F)
APPLY = jax.jit(MODEL.apply)
WITH_NEXT = jax.jit(lambda p, *a: MODEL.apply(p, *a, method="with_next"))
CELL = nn.GRUCell(features=H)
CELL_APPLY = jax.jit(CELL.apply)


def cell_params(params):
    """Our parameters in flax GRUCell's layout (ir, iz, in with bias; hr, hz; hn with bias)."""
    p = params["params"]
    kernel, bias = jnp.split(p["input_proj"]["kernel"], 3, -1), jnp.split(
        p["input_proj"]["bias"], 3
    )
    cell = {f"i{g}": {"kernel": kernel[i], "bias": bias[i]} for i, g in enumerate("rzn")}
    cell |= {f"h{g}": {"kernel": p["recurrent"][i]} for i, g in enumerate("rz")}
    cell["hn"] = {"kernel": p["recurrent"][2], "bias": p["recurrent_bias"]}
    return {"params": cell}


def reference(params, x, start, carry):
    cp, h, ys = cell_params(params), carry, []
    for t in range(len(x)):
        if start[t]:
            h = jnp.zeros(H)
        h, y = CELL_APPLY(cp, h, x[t])
        ys.append(y)
    return np.stack(ys), h


@given(seed=st.integers(0, 2**31 - 1))
def test_matches_flax_cell(seed):
    rng = np.random.default_rng(seed)
    x, start = random_tape(rng, T, F, p_start=0.25)
    carry = rng.normal(size=H).astype(np.float32)
    y, new_carry = APPLY(PARAMS, x, start, carry)
    y_ref, h_ref = reference(PARAMS, x, start, carry)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_carry, h_ref, rtol=1e-5, atol=1e-6)
    _, y_next, _ = WITH_NEXT(PARAMS, x, start, carry, x[::-1])
    _, h_one = CELL_APPLY(cell_params(PARAMS), jnp.asarray(y[4]), x[::-1][4])
    np.testing.assert_allclose(y_next[4], h_one, rtol=1e-5, atol=1e-6)


def test_carry_is_zeros():
    carry = GRU(output_size=H).initialize_carry()
    assert carry.shape == (H,) and not np.any(carry)


@pytest.mark.parametrize("size", [5, 16])
@pytest.mark.parametrize("seed", [0, 1])
def test_each_gates_recurrent_kernel_is_orthogonal(size, seed):
    """Like flax's GRUCell (one orthogonal `h*` kernel per gate), every gate's [H, H] block
    is orthogonal: all singular values 1. An orthogonal init of the stacked [3, H, H]
    tensor only makes its 3H rows jointly orthonormal, leaving each block's singular
    values spread below 1, which shrinks the recurrent signal of every gate."""
    params = init_on_zeros(GRU(output_size=size), 2, F, seed=seed)
    recurrent = np.asarray(params["params"]["recurrent"], np.float64)
    assert recurrent.shape == (3, size, size)
    for gate, block in zip("rzn", recurrent, strict=True):
        singular_values = np.linalg.svd(block, compute_uv=False)
        np.testing.assert_allclose(singular_values, 1.0, atol=1e-5, err_msg=f"gate {gate}")
