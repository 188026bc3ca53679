"""A memoryless baseline with the memory-model call contract.

`y_t = Dense(leaky_relu(Dense(x_t)))`: each output depends on its own input only, so it
trivially never crosses an episode boundary. The carry is a zero-size array, so code that
stores, vmaps or checkpoints carries treats the MLP like any other model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from rlmem.memory.baseline import Baseline
from rlmem.memory.memoroid import check_tape


class MLP(Baseline):
    """Two Dense layers per step, no memory.

    Attributes:
      output_size: H, the hidden and output size.
      scan: accepted and validated, ignored (there is nothing to scan).
    """

    def setup(self):
        self.hidden = nn.Dense(self.output_size, name="hidden")
        self.out = nn.Dense(self.output_size, name="out")

    @nn.nowrap
    def initialize_carry(self) -> jax.Array:
        """A [0] float32 array: no state."""
        return jnp.zeros((0,), jnp.float32)

    def _forward(self, x: jax.Array) -> jax.Array:
        return self.out(nn.leaky_relu(self.hidden(x), negative_slope=0.01))

    def __call__(
        self, x: jax.Array, start: jax.Array, carry: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """x: [T, F], start: [T] bool (unused), carry: [0] -> (y [T, H], carry)."""
        check_tape(type(self).__name__, x, start)
        return self._forward(x), carry

    def with_next(
        self, x: jax.Array, start: jax.Array, carry: jax.Array, next_x: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(y [T, H], y_next [T, H] = output for next_x, carry)."""
        y, carry = self(x, start, carry)
        return y, self._forward(next_x), carry
