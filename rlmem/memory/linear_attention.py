"""Linear attention (Katharopoulos et al. 2020) as a memoroid.

With a positive feature map `φ(u) = 1 + elu(u)`, causal softmax-free attention is

    S_t = Σ_{i≤t} φ(k_i) v_iᵀ   [K, V]        z_t = Σ_{i≤t} φ(k_i)   [K]
    o_t = S_tᵀ φ(q_t) / (z_tᵀ φ(q_t))          [V]

The state `(S, z)` is a sum, so the monoid is addition with identity `(0, 0)`. The
normaliser is the inner product `z_tᵀ φ(q_t)` (one scalar per step), not the product of the
sums `(Σz)(Σq)` found in some reference code. A final Dense maps `o_t` to `output_size`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import struct

from rlmem.memory.memoroid import Memoroid, check_sizes


@struct.dataclass
class LinearAttentionState:
    """kv: [..., K, V] = Σ φ(k) vᵀ; k: [..., K] = Σ φ(k)."""

    kv: jax.Array
    k: jax.Array


def feature_map(u: jax.Array) -> jax.Array:
    """φ(u) = 1 + elu(u) > 0, so the normaliser is positive."""
    return 1.0 + jax.nn.elu(u)


class LinearAttention(Memoroid):
    """Single-head causal linear attention with resets.

    Attributes:
      key_size: K, size of φ(q) and φ(k) (paper: 16).
      value_size: V, size of v (paper: 16).
      output_size: H, size of the output projection.
      scan: "auto" | "associative" | "sequential".
    """

    key_size: int = 16
    value_size: int = 16
    output_size: int = 256
    scan: str = "auto"

    def __post_init__(self):
        check_sizes(
            "LinearAttention", key_size=self.key_size, value_size=self.value_size,
            output_size=self.output_size,
        )
        super().__post_init__()

    def setup(self):
        self.qkv = nn.Dense(2 * self.key_size + self.value_size, name="qkv")
        self.out = nn.Dense(self.output_size, name="out")

    def _qkv(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        q, k, v = jnp.split(self.qkv(x), [self.key_size, 2 * self.key_size], axis=-1)
        return feature_map(q), feature_map(k), v

    def identity(self) -> LinearAttentionState:
        return LinearAttentionState(
            kv=jnp.zeros((self.key_size, self.value_size), jnp.float32),
            k=jnp.zeros((self.key_size,), jnp.float32),
        )

    def lift(self, x: jax.Array) -> LinearAttentionState:
        """x: [T, F] -> state [T] (kv [T, K, V], k [T, K])."""
        _, k, v = self._qkv(x)
        return LinearAttentionState(kv=k[..., :, None] * v[..., None, :], k=k)

    def combine(self, a: LinearAttentionState, b: LinearAttentionState) -> LinearAttentionState:
        return LinearAttentionState(kv=a.kv + b.kv, k=a.k + b.k)

    def readout(self, h: LinearAttentionState, x: jax.Array) -> jax.Array:
        """h: state [T], x: [T, F] -> y: [T, output_size]."""
        q, _, _ = self._qkv(x)
        numerator = jnp.einsum("tk,tkv->tv", q, h.kv)
        normaliser = jnp.einsum("tk,tk->t", q, h.k)[:, None]
        # Every readout follows at least one lifted element, so normaliser > 0; the floor
        # only guards a readout of the bare identity.
        return self.out(numerator / jnp.maximum(normaliser, 1e-6))
