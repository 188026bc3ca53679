"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?") as a memoroid.

The minimal GRU drops the hidden state from the gates, so both only depend on the input:

    z_t = σ(W_z x_t + b_z)                          [D]  update gate
    h̃_t = g(W_h x_t + b_h)                          [D]  candidate state
    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t           [D]  (D = d_hidden)
    y_t = W_o h_t + b_o                              [output_size]

with the paper's positive activation `g(u) = u + 1/2` for `u >= 0`, `σ(u)` otherwise
(continuous at 0; the paper uses it so that h stays positive and can be scanned in log
space). The recurrence is the diagonal linear one `h_t = a_t ⊙ h_{t-1} + b_t` with
`a_t = 1 - z_t` and `b_t = z_t ⊙ h̃_t`, so step t lifts to the element `(a_t, b_t)` of
`affine_combine`. The associative scan of that monoid needs no log space: `a_t ∈ (0, 1)`
only ever multiplies, and an underflowing product is the exact limit 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from rlmem.memory.memoroid import AffineMemoroid, State, affine_identity, check_sizes


def positive_activation(u: jax.Array) -> jax.Array:
    """g(u) = u + 1/2 for u >= 0, σ(u) for u < 0: positive, continuous, linear for large u."""
    # Both branches are finite everywhere, so `where` passes finite gradients.
    return jnp.where(u >= 0, u + 0.5, jax.nn.sigmoid(u))


class MinGRU(AffineMemoroid):
    """Minimal GRU with resets; the state is `h [d_hidden]` (plus the affine decay product).

    Attributes:
      d_hidden: D, size of the recurrent state h.
      output_size: H, width of the output projection.
      scan: "auto" | "associative" | "sequential".
    """

    d_hidden: int = 256
    output_size: int = 256
    scan: str = "auto"

    def __post_init__(self):
        check_sizes("MinGRU", d_hidden=self.d_hidden, output_size=self.output_size)
        super().__post_init__()

    def setup(self):
        # One Dense for both input maps: [update-gate logits | candidate pre-activation].
        self.gates = nn.Dense(2 * self.d_hidden, name="gates")
        self.out = nn.Dense(self.output_size, name="out")

    @nn.nowrap
    def identity(self) -> State:
        return affine_identity((self.d_hidden,), (self.d_hidden,))

    def lift(self, x: jax.Array) -> State:
        """x: [T, F] -> (a = 1 - z [T, D], b = z ⊙ h̃ [T, D])."""
        logits, candidate = jnp.split(self.gates(x), 2, axis=-1)
        # 1 - σ(k) = σ(-k): exact where σ(k) rounds to 1 (the gate then keeps a tiny decay).
        return jax.nn.sigmoid(-logits), jax.nn.sigmoid(logits) * positive_activation(candidate)

    def readout(self, h: State, x: jax.Array) -> jax.Array:
        """h: (a, h) [T, D], x: [T, F] -> y [T, output_size]."""
        return self.out(h[1])
