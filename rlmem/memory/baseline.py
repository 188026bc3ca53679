"""The shared frame of the sequential baselines (GRU, LSTM, MLP), which are not memoroids.

`Baseline` holds the settings every baseline takes: `output_size`, and `scan`, accepted and
validated for a uniform interface although a baseline never runs a parallel scan.

`FoldedCell` gives a recurrent cell the memoroids' call contract (docs/architecture.md): the
input projection of the whole tape is one matmul outside the loop, only the cell runs inside
`lax.scan` (`fold_with_resets`), and the carry restarts from `initialize_carry()` where
`start` is True.

`gatewise_orthogonal` initialises a recurrent kernel that stacks the gates' `[H, H]` blocks
so that each block is orthogonal, as flax's `GRUCell`/`LSTMCell` do (one orthogonal Dense
per gate).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from rlmem.memory.memoroid import check_scan, check_sizes, check_tape, fold_with_resets, last_state

Carry = Any  # a pytree without time axis; a sequence of carries has leading [T]


def gatewise_orthogonal(num_gates: int, axis: int) -> nn.initializers.Initializer:
    """An initializer of a kernel holding `num_gates` gate blocks side by side along `axis`:
    each block is drawn (with its own key) by `nn.initializers.orthogonal()`, so every
    square `[H, H]` block has all singular values 1.

    An orthogonal init of the whole stacked tensor is not the same: it makes the stack's
    `num_gates * H` rows (or columns) jointly orthonormal, so each block alone is a
    contraction with singular values spread over (0, 1) (down to ~0.01), which weakens
    every gate's recurrent signal at the start of training.

    Examples: GRU `[3, H, H]` with `axis=0`; LSTM `[H, 4H]` (`[i | f | g | o]`) with
    `axis=-1`.
    """
    orthogonal = nn.initializers.orthogonal()

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        shape = tuple(shape)
        if shape[axis] % num_gates:
            raise ValueError(f"axis {axis} of {shape} does not split into {num_gates} gates")
        block = list(shape)
        block[axis] //= num_gates
        keys = jax.random.split(key, num_gates)
        blocks = [orthogonal(k, tuple(block), dtype) for k in keys]
        return jnp.concatenate(blocks, axis=axis)

    return init


class Baseline(nn.Module):
    """Base class of the sequential baselines.

    Attributes:
      output_size: H, the output size.
      scan: accepted and validated, ignored.
    """

    output_size: int = 256
    scan: str = "auto"

    def __post_init__(self):
        name = type(self).__name__
        check_sizes(name, output_size=self.output_size)
        check_scan(name, self.scan)
        super().__post_init__()


class FoldedCell(Baseline):
    """A recurrent cell folded over a tape with resets.

    Subclasses define `input_proj` in `setup` (a Dense over `x: [T, F]`, applied to the
    whole tape at once) and:

      * `initialize_carry() -> Carry`            the carry an episode starts from;
      * `cell(carry, u) -> Carry`                one step on a projected input `u`;
      * `readout(carries: Carry [T]) -> y [T, H]`  the outputs of a carry sequence.
    """

    @nn.nowrap
    def initialize_carry(self) -> Carry:
        raise NotImplementedError

    def cell(self, carry: Carry, u: jax.Array) -> Carry:
        raise NotImplementedError

    def readout(self, carries: Carry) -> jax.Array:
        raise NotImplementedError

    def _carries(self, x: jax.Array, start: jax.Array, carry: Carry) -> Carry:
        check_tape(type(self).__name__, x, start)
        u = self.input_proj(x)
        return fold_with_resets(self.cell, u, start, carry, self.initialize_carry())

    def __call__(self, x: jax.Array, start: jax.Array, carry: Carry) -> tuple[jax.Array, Carry]:
        """x: [T, F], start: [T] bool, carry -> (y [T, H], carry after x[T-1])."""
        carries = self._carries(x, start, carry)
        return self.readout(carries), last_state(carries)

    def with_next(
        self, x: jax.Array, start: jax.Array, carry: Carry, next_x: jax.Array
    ) -> tuple[jax.Array, jax.Array, Carry]:
        """Also y_next[t]: one more cell step from the carry after x[t] on next_x[t]."""
        carries = self._carries(x, start, carry)
        next_carries = jax.vmap(self.cell)(carries, self.input_proj(next_x))
        return self.readout(carries), self.readout(next_carries), last_state(carries)
