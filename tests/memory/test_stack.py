"""The residual stack: its block structure, `with_next` through the layers, and the carry.

The generic contract checks of the stacked models (LRU, S5, S6) run in test_all_models.py;
here the stack's own claims are checked on a small LRU stack.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import linen as nn

from rlmem.memory.lru import LRU, LRULayer
from tests.memory.properties import init_on_zeros, random_tape

T, F, D, N = 10, 3, 8, 4
STRATEGIES = ("associative", "sequential")
MODELS = {s: LRU(d_model=D, d_hidden=N, num_layers=2, r_min=0.5, scan=s) for s in STRATEGIES}
CARRY0 = MODELS["sequential"].initialize_carry()
PARAMS = init_on_zeros(MODELS["sequential"], T, F)
APPLY_TAPES = {s: jax.jit(jax.vmap(m.apply, in_axes=(None, 0, 0, None))) for s, m in MODELS.items()}
WITH_NEXT = {
    s: jax.jit(lambda p, *a, m=m: m.apply(p, *a, method="with_next")) for s, m in MODELS.items()
}


def warm_carry():
    x, _ = random_tape(np.random.default_rng(99), T, F)
    return MODELS["sequential"].apply(PARAMS, x, np.zeros(T, bool), CARRY0)[1]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_with_next_equals_the_stack_run_on_the_appended_tape(strategy):
    """y_next[t] == the stack's output for the tape x[0..t] followed by next_x[t]."""
    rng = np.random.default_rng(1)
    x, start = random_tape(rng, T, F, p_start=0.3)
    next_x = rng.normal(size=(T, F)).astype(np.float32)
    carry = warm_carry()
    y, y_next, _ = WITH_NEXT[strategy](PARAMS, x, start, carry, next_x)
    # Tape t: x[0..t], next_x[t] (same episode), then x[t+1..] (causal, so it cannot matter
    # for step t + 1). One fixed length for every t, so one compile for all of them.
    tapes = np.stack(
        [np.concatenate([x[: t + 1], next_x[t : t + 1], x[t + 1 :]]) for t in range(T)]
    )
    starts = np.stack([np.concatenate([start[: t + 1], [False], start[t + 1 :]]) for t in range(T)])
    ys, _ = APPLY_TAPES[strategy](PARAMS, tapes, starts, carry)
    expected = np.asarray(ys)[np.arange(T), np.arange(T) + 1]
    np.testing.assert_allclose(y_next, expected, rtol=1e-4, atol=1e-5)
    # And y itself is unchanged by the inserted step: tape T-1 holds x unchanged before it.
    np.testing.assert_allclose(y, np.asarray(ys)[T - 1, :T], rtol=1e-4, atol=1e-5)


def layer_norm(p, z, eps=1e-6):
    z = (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + eps)
    return z * p["scale"] + p["bias"]


def test_block_structure():
    """y = z_2 with z_l = z_{l-1} + GLU(gelu(layer(LayerNorm(z_{l-1})))), z_0 = Dense(x)."""
    rng = np.random.default_rng(2)
    x, start = random_tape(rng, T, F)
    carry = warm_carry()
    y, new_carry = MODELS["sequential"].apply(PARAMS, x, start, carry)
    p = PARAMS["params"]
    layer = LRULayer(d_model=D, d_hidden=N, r_min=0.5, scan="sequential")
    z = x @ np.asarray(p["encoder"]["kernel"]) + np.asarray(p["encoder"]["bias"])
    for i in range(2):
        block = jax.tree.map(np.asarray, p[f"blocks_{i}"])
        u, layer_carry = layer.apply(
            {"params": block["layer"]}, layer_norm(block["norm"], z), start, carry[i]
        )
        np.testing.assert_allclose(new_carry[i][1], layer_carry[1], rtol=1e-4, atol=1e-5)
        glu = np.asarray(jax.nn.gelu(u)) @ block["glu"]["kernel"] + block["glu"]["bias"]
        z = z + glu[:, :D] / (1.0 + np.exp(-glu[:, D:]))
    np.testing.assert_allclose(y, z, rtol=1e-4, atol=1e-5)


def test_initialize_carry_inside_another_module():
    """An agent network may build the carry inside its own method (a bound context)."""

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, start):
            memory = LRU(d_model=D, d_hidden=N, num_layers=2)
            return memory(x, start, memory.initialize_carry())

    net = Net()
    x, start = random_tape(np.random.default_rng(3), T, F)
    params = net.init(jax.random.PRNGKey(0), x, start)
    y, carry = net.apply(params, x, start)
    assert y.shape == (T, D) and len(carry) == 2
    # Only the encoder and the two blocks hold parameters: no stray modules were adopted.
    assert sorted(params["params"]["LRU_0"]) == ["blocks_0", "blocks_1", "encoder"]


def test_bad_inputs_raise():
    model = MODELS["sequential"]
    x, start = np.zeros((T, F), np.float32), np.zeros(T, bool)
    with pytest.raises(ValueError, match="carry must be a tuple of 2 layer carries"):
        model.apply(PARAMS, x, start, CARRY0[0])
    with pytest.raises(ValueError, match="LRU: x must be"):
        model.apply(PARAMS, x[None], start, CARRY0)
    with pytest.raises(ValueError, match="next_x must have the shape of x"):
        model.apply(PARAMS, x, start, CARRY0, x[:-1], method="with_next")
    with pytest.raises(ValueError, match="scan must be one of"):
        LRU(scan="parallel").initialize_carry()
    with pytest.raises(ValueError, match="d_model must be a positive int, got 0"):
        LRU(d_model=0).initialize_carry()
