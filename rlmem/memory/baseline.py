"""The shared frame of the sequential baselines (GRU, LSTM, MLP), which are not memoroids.

`Baseline` holds the settings every baseline takes: `output_size`, and `scan`, accepted and
validated for a uniform interface although a baseline never runs a parallel scan.

`FoldedCell` gives a recurrent cell the memoroids' call contract (docs/architecture.md): the
input projection of the whole tape is one matmul outside the loop, only the cell runs inside
`lax.scan` (`fold_with_resets`), and the carry restarts from `initialize_carry()` where
`start` is True.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import linen as nn

from rlmem.memory.memoroid import check_scan, check_sizes, check_tape, fold_with_resets, last_state

Carry = Any  # a pytree without time axis; a sequence of carries has leading [T]


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
