"""Long short-term memory (Hochreiter & Schmidhuber 1997): a sequential baseline.

    [i, f, g, o] = W x + b + U h
    c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g)      h' = σ(o) ⊙ tanh(c')      y = h'

The carry `(c, h)` restarts from zeros where `start` is True; the input projection of the
whole tape is one matmul outside `lax.scan`. The forget-gate bias starts at 1 (Jozefowicz
et al. 2015). `scan` is accepted for a uniform interface; an LSTM is always sequential.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from rlmem.memory.baseline import FoldedCell, gatewise_orthogonal

LSTMCarry = tuple[jax.Array, jax.Array]  # (c [H], h [H])


def init_gate_bias(key, shape, dtype=jnp.float32):
    """Zeros, except 1 for the forget gate (the second quarter of [i | f | g | o])."""
    del key
    size = shape[-1] // 4
    return jnp.zeros(shape, dtype).at[size : 2 * size].set(1.0)


class LSTM(FoldedCell):
    """LSTM over a tape with resets.

    Attributes:
      output_size: H, the hidden (and output) size; the cell state has the same size.
      scan: accepted and validated, ignored (always sequential).
    """

    def setup(self):
        size = self.output_size
        self.input_proj = nn.Dense(4 * size, bias_init=init_gate_bias, name="input_proj")
        # [U_i | U_f | U_g | U_o]: one orthogonal [H, H] block per gate, as flax's LSTMCell.
        self.recurrent = self.param(
            "recurrent", gatewise_orthogonal(4, axis=-1), (size, 4 * size)
        )

    @nn.nowrap
    def initialize_carry(self) -> LSTMCarry:
        """(c, h): two [H] zero vectors."""
        zeros = jnp.zeros((self.output_size,), jnp.float32)
        return zeros, zeros

    def cell(self, carry: LSTMCarry, u: jax.Array) -> LSTMCarry:
        """One step: carry (c, h), u = projected input [4H] -> carry'."""
        c, h = carry
        i, f, g, o = jnp.split(u + h @ self.recurrent, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return c, jax.nn.sigmoid(o) * jnp.tanh(c)

    def readout(self, carries: LSTMCarry) -> jax.Array:
        """carries (c, h) [T, H] -> y = h."""
        return carries[1]
