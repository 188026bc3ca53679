"""Gated recurrent unit (Cho et al. 2014): the sequential baseline, not a memoroid.

    r = σ(W_r x + U_r h + b_r)          z = σ(W_z x + U_z h + b_z)
    n = tanh(W_n x + b_n + r ⊙ (U_n h + c_n))
    h' = (1 - z) ⊙ n + z ⊙ h            y = h'

The input projections `W x + b` of the whole tape are one matmul outside the loop; only
`U h` runs inside `lax.scan`. The carry restarts from zeros where `start` is True, so the
call contract (docs/architecture.md) is the memoroids' one. `scan` is accepted for a
uniform interface; a GRU is always a sequential fold.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from rlmem.memory.baseline import FoldedCell, gatewise_orthogonal


class GRU(FoldedCell):
    """GRU over a tape with resets.

    Attributes:
      output_size: H, the hidden (and output) size.
      scan: accepted and validated, ignored (always sequential).
    """

    def setup(self):
        size = self.output_size
        self.input_proj = nn.Dense(3 * size, name="input_proj")  # [r | z | n]
        # One orthogonal [H, H] block per gate, as flax's GRUCell (U_r, U_z, U_n).
        self.recurrent = self.param(
            "recurrent", gatewise_orthogonal(3, axis=0), (3, size, size)
        )
        self.recurrent_bias = self.param("recurrent_bias", nn.initializers.zeros, (size,))

    @nn.nowrap
    def initialize_carry(self) -> jax.Array:
        """h: [H] zeros."""
        return jnp.zeros((self.output_size,), jnp.float32)

    def cell(self, h: jax.Array, u: jax.Array) -> jax.Array:
        """One step: h [H], u = projected input [3H] -> h' [H]."""
        u_r, u_z, u_n = jnp.split(u, 3, axis=-1)
        r = jax.nn.sigmoid(u_r + h @ self.recurrent[0])
        z = jax.nn.sigmoid(u_z + h @ self.recurrent[1])
        n = jnp.tanh(u_n + r * (h @ self.recurrent[2] + self.recurrent_bias))
        return (1.0 - z) * n + z * h

    def readout(self, hs: jax.Array) -> jax.Array:
        """hs: [T, H] -> y = hs."""
        return hs
