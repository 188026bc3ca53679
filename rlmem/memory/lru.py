"""Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for
Long Sequences") as a memoroid, in the residual stack the paper uses.

One layer is a diagonal complex recurrence over a `d_hidden`-wide state:

    h_t = λ ⊙ h_{t-1} + γ ⊙ (B u_t),      y_t = Re(C h_t) + D ⊙ u_t

with the stable exponential parametrisation `λ = exp(-exp(ν) + i exp(θ))` (so |λ| < 1 for
any ν), `γ = exp(γ_log)` initialised to `sqrt(1 - |λ|²)` (keeps the state's scale at init),
and λ drawn uniformly on the ring `r_min <= |λ| <= r_max`, phase in `[0, max_phase]`.

As a memoroid the element of step t is `(a, b) = (λ, γ ⊙ B u_t)`, and the state after a run
of steps is `(λ^n, Σ_k λ^(n-1-k) b_k)`. `rlmem.memory.memoroid.affine_combine` composes two
such runs; it is the monoid of every diagonal linear recurrence here (LRU, S5, S6, gated
linear attention, and the reverse scans of `rlmem.memory.returns`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

from rlmem.memory.complex_dense import real_part_of_product, real_times_complex
from rlmem.memory.memoroid import AffineMemoroid, State, affine_identity, check_sizes
from rlmem.memory.stack import ResidualStack


def _complex_normal(key: jax.Array, shape: tuple, std: float) -> jax.Array:
    """Complex Gaussian whose real and imaginary parts each have standard deviation `std`."""
    re, im = jax.random.normal(key, (2, *shape)) * std
    return jnp.stack([re, im], axis=-1)


class LRULayer(AffineMemoroid):
    """One LRU recurrence, `[T, d_model] -> [T, d_model]`, state `d_hidden` complex values.

    Attributes:
      d_model: input and output width.
      d_hidden: number of complex state units.
      r_min, r_max: ring of the initial eigenvalue moduli, 0 <= r_min < r_max <= 1.
      max_phase: initial eigenvalue phases are uniform in [0, max_phase].
    """

    d_model: int = 256
    d_hidden: int = 128
    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 2 * math.pi

    def setup(self):
        check_sizes("LRU", d_model=self.d_model, d_hidden=self.d_hidden)
        if not 0.0 <= self.r_min < self.r_max <= 1.0:
            raise ValueError(
                f"LRU: need 0 <= r_min < r_max <= 1, got r_min={self.r_min}, r_max={self.r_max}"
            )
        n, h = self.d_hidden, self.d_model

        def nu_init(key):
            # |λ|² uniform on [r_min², r_max²] gives λ uniform on the ring's area.
            u = jax.random.uniform(key, (n,))
            r2 = u * (self.r_max**2 - self.r_min**2) + self.r_min**2
            # Clamp both ends: r2 -> 0 (r_min = 0) and r2 -> 1 (r_max = 1) would give ±inf.
            return jnp.log(jnp.maximum(-0.5 * jnp.log(jnp.maximum(r2, 1e-12)), 1e-8))

        def theta_init(key):
            u = jax.random.uniform(key, (n,))
            return jnp.log(jnp.maximum(u * self.max_phase, 1e-12))

        self.nu_log = self.param("nu_log", nu_init)
        self.theta_log = self.param("theta_log", theta_init)
        nu = self.nu_log  # only read at init: γ starts at sqrt(1 - |λ|²) of the drawn λ
        self.gamma_log = self.param(
            "gamma_log", lambda _: 0.5 * jnp.log1p(-jnp.exp(-2 * jnp.exp(nu)) + 1e-12)
        )
        self.B = self.param("B", lambda k: _complex_normal(k, (n, h), 1 / math.sqrt(2 * h)))
        self.C = self.param("C", lambda k: _complex_normal(k, (h, n), 1 / math.sqrt(n)))
        self.D = self.param("D", nn.initializers.normal(1.0), (h,))

    @property
    def output_size(self) -> int:
        return self.d_model

    def eigenvalues(self) -> jax.Array:
        """λ: [d_hidden] complex, |λ| < 1."""
        return jnp.exp(-jnp.exp(self.nu_log) + 1j * jnp.exp(self.theta_log))

    @nn.nowrap
    def identity(self) -> State:
        return affine_identity((self.d_hidden,), (self.d_hidden,), jnp.complex64)

    def lift(self, u: jax.Array) -> State:
        """u: [T, d_model] -> (a [T, d_hidden], b [T, d_hidden]) complex."""
        B = jax.lax.complex(self.B[..., 0], self.B[..., 1])
        b = real_times_complex(u, B) * jnp.exp(self.gamma_log)
        a = jnp.broadcast_to(self.eigenvalues(), b.shape)
        return a, b

    def readout(self, h: State, u: jax.Array) -> jax.Array:
        """h: (a, b) [T, d_hidden], u: [T, d_model] -> y [T, d_model] = Re(C b) + D u."""
        C = jax.lax.complex(self.C[..., 0], self.C[..., 1])
        return real_part_of_product(h[1], C) + self.D * u


class LRU(ResidualStack):
    """Stacked LRU (pre-LayerNorm, GLU, residual); PAPER.md: 2 layers, 256 wide, state 128.

    Attributes:
      d_model, num_layers, scan: see `ResidualStack`.
      d_hidden, r_min, r_max, max_phase: see `LRULayer`.
    """

    d_hidden: int = 128
    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 2 * math.pi

    @nn.nowrap
    def make_layer(self, index: int, **module_kwargs) -> LRULayer:
        return LRULayer(
            d_model=self.d_model,
            d_hidden=self.d_hidden,
            r_min=self.r_min,
            r_max=self.r_max,
            max_phase=self.max_phase,
            scan=self.scan,
            **module_kwargs,
        )
