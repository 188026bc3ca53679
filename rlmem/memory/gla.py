"""Gated linear attention (Yang et al. 2024, "Gated Linear Attention Transformers with
Hardware-Efficient Training") as a memoroid.

Linear attention with a data-dependent forget gate on the key dimension, per head:

    α_t = sigmoid(W_α x_t + b_α)^(1/τ)                   [K]  (τ = gate_temperature)
    S_t = diag(α_t) S_{t-1} + k_t v_tᵀ                   [K, V]
    o_t = LayerNorm(S_tᵀ q_t / sqrt(K)) ⊙ swish(W_g x_t)   [V]
    y_t = W_o concat_heads(o_t)                          [output_size]

Step t lifts to the element `(α_t, k_t v_tᵀ)` of `affine_combine` (α kept as `[K, 1]` so it
scales the rows of `S`), the monoid of a diagonal linear recurrence.

Normalisation: plain linear attention divides by `zᵀ q` with `z = Σ φ(k)`, which needs a
positive feature map to stay away from zero. With a forget gate the keys' sum decays too and
q, k are unconstrained here, so, as in the GLA paper, the output is normalised instead (a
LayerNorm over each head's `V` values, then the swish output gate). The temperature τ > 1
pushes α towards 1 at init (sigmoid(0)^(1/16) ≈ 0.96), i.e. long memory by default.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

from rlmem.memory.memoroid import AffineMemoroid, State, affine_identity, check_scan, check_sizes


class GatedLinearAttention(AffineMemoroid):
    """Multi-head gated linear attention with resets.

    Attributes:
      key_size: K per head (size of q, k and the gate α).
      value_size: V per head.
      num_heads: number of independent heads; the state is `[num_heads, K, V]`.
      output_size: H, width of the output projection.
      gate_temperature: τ >= 1 in `α = sigmoid(·)^(1/τ)`.
      scan: "auto" | "associative" | "sequential".
    """

    key_size: int = 16
    value_size: int = 16
    num_heads: int = 1
    output_size: int = 256
    gate_temperature: float = 16.0
    scan: str = "auto"

    @nn.nowrap
    def _check(self) -> None:
        check_sizes(
            "GatedLinearAttention",
            key_size=self.key_size,
            value_size=self.value_size,
            num_heads=self.num_heads,
            output_size=self.output_size,
        )
        if not self.gate_temperature >= 1.0:
            raise ValueError(
                f"GatedLinearAttention: gate_temperature must be >= 1, "
                f"got {self.gate_temperature!r}"
            )
        check_scan("GatedLinearAttention", self.scan)

    def setup(self):
        self._check()
        hk, hv = self.num_heads * self.key_size, self.num_heads * self.value_size
        # [q | k | gate logits] (each heads*K) and [v | output gate] (each heads*V).
        self.qkg = nn.Dense(3 * hk, name="qkg")
        self.vg = nn.Dense(2 * hv, name="vg")
        self.norm = nn.LayerNorm(name="norm")
        self.out = nn.Dense(self.output_size, name="out")

    def _heads(self, u: jax.Array, size: int) -> jax.Array:
        return u.reshape(*u.shape[:-1], self.num_heads, size)

    @nn.nowrap
    def identity(self) -> State:
        h, k, v = self.num_heads, self.key_size, self.value_size
        return affine_identity((h, k, 1), (h, k, v))

    def lift(self, x: jax.Array) -> State:
        """x: [T, F] -> (α [T, heads, K, 1], k vᵀ [T, heads, K, V])."""
        _, k, gate = jnp.split(self.qkg(x), 3, axis=-1)
        v, _ = jnp.split(self.vg(x), 2, axis=-1)
        # log α = log_sigmoid / τ: exact and stable for very negative logits.
        alpha = jnp.exp(jax.nn.log_sigmoid(gate) / self.gate_temperature)
        k, v = self._heads(k, self.key_size), self._heads(v, self.value_size)
        alpha = self._heads(alpha, self.key_size)[..., None]
        return alpha, k[..., :, None] * v[..., None, :]

    def readout(self, h: State, x: jax.Array) -> jax.Array:
        """h: (α, S) [T, heads, K, V], x: [T, F] -> y [T, output_size]."""
        q, _, _ = jnp.split(self.qkg(x), 3, axis=-1)
        _, gate = jnp.split(self.vg(x), 2, axis=-1)
        q = self._heads(q, self.key_size) / math.sqrt(self.key_size)
        o = self.norm(jnp.einsum("thk,thkv->thv", q, h[1]))  # per head over V
        o = o.reshape(*o.shape[:-2], -1) * nn.swish(gate)
        return self.out(o)
