"""Simplified, stable Fast and Forgetful Memory (SFFM): FFM reading out a decayed *mean*.

FFM's trace `S_t = Σ_i γ^{t-i} ⊙ x̃_i` is a decayed *sum*: for slow decays (|γ| → 1) its
magnitude grows with episode length like `1 / (1 - |γ|)`, so the features the readout sees
drift in scale over an episode and between tasks with different horizons. SFFM is our
variant that fixes this and drops a gate:

    x̃_t = ℓ_in(x_t)                                    [m]   (no input gate)
    S_t = γ ⊙ S_{t-1} + x̃_t 1_cᵀ                       [m, c] as in FFM
    n_j(τ) = Σ_{i<τ} |γ_j|^i = expm1(-|α_j| τ) / expm1(-|α_j|)
    M_t = S_t / n(τ_t)                                  a decay-weighted mean of x̃
    y_t = LayerNorm(ℓ_mix([Re M_t, Im M_t])) ⊙ σ(g) + ℓ_skip(x_t) ⊙ (1 - σ(g)),  g = ℓ_gate(x_t)

Because `|M_t| ≤ max_i |x̃_i|` whatever the decay and the episode length, the readout's
input stays on one scale (stable). The normaliser needs no extra state: it is a closed form
of the number of steps `τ` the FFM state already carries, so SFFM's monoid is exactly FFM's
(`(S, τ) • (S', τ') = (γ^{τ'} S + S', τ + τ')`) and only `lift` and the readout's features
change. After a reset `τ` counts the steps of the current episode (plus the incoming carry's
steps when a tape continues an episode), so the mean is over exactly the states `S` sums.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from rlmem.memory.ffm import FFM, FFMState, init_decay, init_frequency


def decayed_count(alpha: jax.Array, steps: jax.Array) -> jax.Array:
    """n(τ) = Σ_{i<τ} exp(-|α| i): [..., m] for alpha [m], steps [...].

    expm1 keeps slow decays accurate (n → τ as |α| → 0); a tiny floor on |α| avoids 0/0.
    """
    rate = jnp.maximum(jnp.abs(alpha), 1e-12)
    return jnp.expm1(-rate * steps[..., None]) / jnp.expm1(-rate)


class SFFM(FFM):
    """Simplified, stable FFM (see the module docstring).

    Attributes:
      trace_size: m, number of decay rates (default as FFM: 64).
      context_size: c, number of frequencies (default 4).
      output_size: H (default 256).
      scan: "auto" | "associative" | "sequential".
    """

    def setup(self):
        m, c = self.trace_size, self.context_size
        self.alpha = self.param("alpha", init_decay(m), (m,))
        self.omega = self.param("omega", init_frequency(c), (c,))
        self.pre = nn.Dense(m, name="pre")
        self.mix = nn.Dense(self.output_size, name="mix")
        self.norm = nn.LayerNorm(name="norm")
        self.post = nn.Dense(2 * self.output_size, name="post")  # [skip | output gate]

    def lift(self, x: jax.Array) -> FFMState:
        """x: [T, F] -> FFMState [T]: the projected input on every context column."""
        value = self.pre(x)
        trace = jnp.broadcast_to(value[..., None], value.shape + (self.context_size,))
        return FFMState(trace=trace.astype(jnp.complex64), steps=jnp.ones(x.shape[:-1]))

    def memory_features(self, h: FFMState) -> jax.Array:
        """[T, m, c] trace, [T] steps -> [T, 2 m c] features of the decayed mean."""
        count = jnp.maximum(decayed_count(self.alpha, h.steps), 1e-6)  # [T, m]
        return super().memory_features(h.replace(trace=h.trace / count[..., None]))
