"""Fast and Forgetful Memory (FFM; Morad et al., NeurIPS 2023) as a memoroid.

FFM keeps a complex trace `S ∈ C^{m×c}` (m = trace_size, c = context_size) that decays
and rotates at fixed, learned rates:

    x̃_t = ℓ_in(x_t) ⊙ σ(ℓ_gate(x_t))                         [m]  gated input
    S_t = γ ⊙ S_{t-1} + x̃_t 1_cᵀ,   γ_jk = exp(-|α_j| - i ω_k)   [m, c]
    z_t = LayerNorm(ℓ_mix([Re S_t, Im S_t]))                   [output_size]
    y_t = z_t ⊙ σ(ℓ_out_gate(x_t)) + ℓ_skip(x_t) ⊙ (1 - σ(ℓ_out_gate(x_t)))

Unrolled, `S_t = Σ_i γ^{t-i} ⊙ x̃_i`. To make that a monoid the state also carries the
number of steps `τ` it spans: `(S, τ) • (S', τ') = (γ^{τ'} ⊙ S + S', τ + τ')` with identity
`(0, 0)`; `γ^{τ'} = exp(τ' (-|α| - iω))` is computed in closed form, so the combine is
associative for any split of the tape.

Initialisation (ours): decay rates `|α_j|` so that `|γ_j|^{h_j} = 1/2` for half-lives `h_j`
log-spaced in [1, 1024] steps, and periods `2π/ω_k` log-spaced in [2, 1024] steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import struct

from rlmem.memory.memoroid import Memoroid, check_sizes


@struct.dataclass
class FFMState:
    """trace: [..., m, c] complex64, the decayed sum; steps: [...] float32, steps spanned."""

    trace: jax.Array
    steps: jax.Array


def init_decay(trace_size: int, max_half_life: float = 1024.0):
    """|α_j| = ln 2 / h_j, half-lives h_j log-spaced in [1, max_half_life]."""

    def init(key, shape, dtype=jnp.float32):
        del key
        half_life = np.geomspace(1.0, max_half_life, trace_size)
        return jnp.asarray(np.log(2.0) / half_life, dtype).reshape(shape)

    return init


def init_frequency(context_size: int, max_period: float = 1024.0):
    """ω_k = 2π / p_k, periods p_k log-spaced in [2, max_period]."""

    def init(key, shape, dtype=jnp.float32):
        del key
        period = np.geomspace(2.0, max_period, context_size)
        return jnp.asarray(2.0 * np.pi / period, dtype).reshape(shape)

    return init


def decay_power(alpha: jax.Array, omega: jax.Array, steps: jax.Array) -> jax.Array:
    """γ^steps: [..., m, c] complex64 for alpha [m], omega [c], steps [...]."""
    log_gamma = -jnp.abs(alpha)[:, None] - 1j * omega[None, :]  # [m, c]
    return jnp.exp(steps[..., None, None] * log_gamma)


class FFM(Memoroid):
    """Fast and Forgetful Memory.

    Attributes:
      trace_size: m, number of decay rates (paper: 64).
      context_size: c, number of frequencies (paper: 4).
      output_size: H (paper: 256).
      scan: "auto" | "associative" | "sequential".
    """

    trace_size: int = 64
    context_size: int = 4
    output_size: int = 256
    scan: str = "auto"

    def setup(self):
        m, c = self.trace_size, self.context_size
        self.alpha = self.param("alpha", init_decay(m), (m,))
        self.omega = self.param("omega", init_frequency(c), (c,))
        self.pre = nn.Dense(2 * m, name="pre")  # [input | input gate]
        self.mix = nn.Dense(self.output_size, name="mix")
        self.norm = nn.LayerNorm(name="norm")
        self.post = nn.Dense(2 * self.output_size, name="post")  # [skip | output gate]

    def __post_init__(self):
        check_sizes(
            type(self).__name__, trace_size=self.trace_size,
            context_size=self.context_size, output_size=self.output_size,
        )
        super().__post_init__()

    def identity(self) -> FFMState:
        shape = (self.trace_size, self.context_size)
        return FFMState(trace=jnp.zeros(shape, jnp.complex64), steps=jnp.zeros((), jnp.float32))

    def lift(self, x: jax.Array) -> FFMState:
        """x: [T, F] -> FFMState [T]: the gated input on every context column, one step."""
        value, gate = jnp.split(self.pre(x), 2, axis=-1)
        gated = value * jax.nn.sigmoid(gate)  # [T, m]
        trace = jnp.broadcast_to(gated[..., None], gated.shape + (self.context_size,))
        return FFMState(trace=trace.astype(jnp.complex64), steps=jnp.ones(x.shape[:-1]))

    def combine(self, a: FFMState, b: FFMState) -> FFMState:
        trace = decay_power(self.alpha, self.omega, b.steps) * a.trace + b.trace
        return FFMState(trace=trace, steps=a.steps + b.steps)

    def combine_step(self):
        """`combine` for a right operand that is one lifted step (`steps` = 1).

        `γ¹` is computed once per call, outside the sequential fold, instead of a complex
        `exp` over `[m, c]` at every step (and its gradient once instead of per step).
        """
        decay = decay_power(self.alpha, self.omega, jnp.ones((), jnp.float32))

        def step(a: FFMState, b: FFMState) -> FFMState:
            return FFMState(trace=decay * a.trace + b.trace, steps=a.steps + b.steps)

        return step

    def memory_features(self, h: FFMState) -> jax.Array:
        """[T, m, c] complex -> [T, 2 m c] real features [Re S, Im S]."""
        flat = h.trace.reshape(h.trace.shape[:-2] + (-1,))
        return jnp.concatenate([flat.real, flat.imag], axis=-1)

    def readout(self, h: FFMState, x: jax.Array) -> jax.Array:
        """h: FFMState [T], x: [T, F] -> y: [T, output_size]."""
        z = self.norm(self.mix(self.memory_features(h)))
        skip, gate = jnp.split(self.post(x), 2, axis=-1)
        gate = jax.nn.sigmoid(gate)
        return z * gate + skip * (1.0 - gate)
