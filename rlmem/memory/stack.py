"""A residual stack of memoroid layers: pre-LayerNorm -> memoroid -> GLU -> residual.

This is the block of the LRU (Orvieto et al. 2023) and S5 (Smith et al. 2023) papers, used
by `LRU`, `S5` and `S6`:

    z_0 = Dense(d_model)(x)
    z_l = z_{l-1} + GLU(gelu(layer_l(LayerNorm(z_{l-1}))))       l = 1..num_layers
    y   = z_L                                                   [T, d_model]

with `GLU(u) = W_1 u * sigmoid(W_2 u)`. Every layer is a `Memoroid` over `[T, d_model]`
inputs; everything between layers acts per time step, so the stack keeps the whole call
contract of docs/architecture.md:

* `__call__(x, start, carry)`: the layers run one after another over the whole tape, each
  with its own resettable scan; the carry is the tuple of per-layer carries.
* `with_next(x, start, carry, next_x)`: layer `l` gets `next_z_{l-1}` (the previous layer's
  `y_next`) as its next input. Because everything between the scans is per step, this is
  exactly the output of the stack run over `x[0..t]` followed by `next_x[t]`: layer 1's
  extra step sees `Dense(next_x[t])`, its state is `h^1_t • lift(...)`, so its output is
  layer 1's `y_next[t]`; by induction the same holds at every layer.

Subclasses only say which layer to build (`make_layer`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from rlmem.memory.memoroid import Memoroid, check_scan, check_sizes, check_tape


class ResidualBlock(nn.Module):
    """`z + GLU(gelu(layer(LayerNorm(z))))` around one memoroid layer of width `d_model`."""

    layer: Memoroid
    d_model: int

    def setup(self):
        self.norm = nn.LayerNorm()
        # One Dense for both GLU halves: [value | gate].
        self.glu = nn.Dense(2 * self.d_model)

    def _post(self, z: jax.Array, y: jax.Array) -> jax.Array:
        value, gate = jnp.split(self.glu(nn.gelu(y)), 2, axis=-1)
        return z + value * jax.nn.sigmoid(gate)

    def __call__(self, z: jax.Array, start: jax.Array, carry: Any):
        """z: [T, d_model] -> (z_out [T, d_model], layer carry)."""
        y, carry = self.layer(self.norm(z), start, carry)
        return self._post(z, y), carry

    def with_next(self, z: jax.Array, start: jax.Array, carry: Any, next_z: jax.Array):
        """z, next_z: [T, d_model] -> (z_out, next_z_out, layer carry)."""
        y, y_next, carry = self.layer.with_next(self.norm(z), start, carry, self.norm(next_z))
        return self._post(z, y), self._post(next_z, y_next), carry


class ResidualStack(nn.Module):
    """Input projection to `d_model`, then `num_layers` residual memoroid blocks.

    Subclasses implement `make_layer(index, **module_kwargs) -> Memoroid` (a layer mapping
    `[T, d_model] -> [T, d_model]`) and pass `scan` to it.

    Attributes:
      d_model: width of the residual stream and of the output.
      num_layers: number of residual blocks.
      scan: "auto" | "associative" | "sequential", passed to every layer.
    """

    d_model: int = 256
    num_layers: int = 2
    scan: str = "auto"

    @nn.nowrap
    def make_layer(self, index: int, **module_kwargs) -> Memoroid:
        raise NotImplementedError

    @nn.nowrap
    def _check(self) -> None:
        name = type(self).__name__
        check_sizes(name, d_model=self.d_model, num_layers=self.num_layers)
        check_scan(name, self.scan)

    def setup(self):
        self._check()
        self.encoder = nn.Dense(self.d_model)
        self.blocks = [
            ResidualBlock(layer=self.make_layer(i), d_model=self.d_model)
            for i in range(self.num_layers)
        ]

    @property
    def output_size(self) -> int:
        return self.d_model

    @nn.nowrap
    def initialize_carry(self) -> tuple:
        """Tuple of the layers' initial carries (identities); works on an unbound module."""
        self._check()
        # parent=None: build throwaway unbound layers even when called inside another
        # module's method, where linen would otherwise try to adopt them as children.
        return tuple(
            self.make_layer(i, parent=None).initialize_carry() for i in range(self.num_layers)
        )

    def _check_inputs(self, x: jax.Array, start: jax.Array, carry: Any) -> None:
        check_tape(type(self).__name__, x, start)
        # Compare leaf counts, not tree structures: a checkpoint restore may turn the
        # tuples into lists, which is harmless.
        expected = jax.tree.leaves(self.initialize_carry())
        if (
            not isinstance(carry, tuple | list)
            or len(carry) != self.num_layers
            or len(jax.tree.leaves(carry)) != len(expected)
        ):
            raise ValueError(
                f"{type(self).__name__}: carry must be a tuple of {self.num_layers} layer "
                f"carries like initialize_carry() ({len(expected)} arrays), got "
                f"{jax.tree.structure(carry)}"
            )

    def __call__(self, x: jax.Array, start: jax.Array, carry: tuple) -> tuple[jax.Array, tuple]:
        """x: [T, F], start: [T] bool, carry: per-layer tuple -> (y [T, d_model], carry)."""
        self._check_inputs(x, start, carry)
        z = self.encoder(x)
        new_carry = []
        for block, layer_carry in zip(self.blocks, carry, strict=True):
            z, layer_carry = block(z, start, layer_carry)
            new_carry.append(layer_carry)
        return z, tuple(new_carry)

    def with_next(
        self, x: jax.Array, start: jax.Array, carry: tuple, next_x: jax.Array
    ) -> tuple[jax.Array, jax.Array, tuple]:
        """Like `__call__`, plus `y_next[t]`: the stack's output for `next_x[t]` fed after
        x[0..t] in the same episode. x, next_x: [T, F] -> (y, y_next [T, d_model], carry)."""
        self._check_inputs(x, start, carry)
        if jnp.shape(next_x) != jnp.shape(x):
            raise ValueError(
                f"{type(self).__name__}: next_x must have the shape of x {jnp.shape(x)}, "
                f"got {jnp.shape(next_x)}"
            )
        z, next_z = self.encoder(x), self.encoder(next_x)
        new_carry = []
        for block, layer_carry in zip(self.blocks, carry, strict=True):
            z, next_z, layer_carry = block.with_next(z, start, layer_carry, next_z)
            new_carry.append(layer_carry)
        return z, next_z, tuple(new_carry)
