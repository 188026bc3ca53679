"""S5 (Smith, Warrington, Linderman 2023, "Simplified State Space Layers for Sequence
Modeling") as a memoroid, in the residual stack the paper uses.

One layer is a diagonalised continuous-time linear system, discretised by zero-order hold:

    x_t = Λ̄ ⊙ x_{t-1} + B̄ u_t,        y_t = 2 Re(C̃ x_t) + D ⊙ u_t
    Λ̄ = exp(Λ Δ),  B̄ = ((Λ̄ - 1) / Λ) ⊙ B̃                        (ZOH, per state)

Initialisation: Λ and the eigenvectors V come from the normal part of HiPPO-LegS
(`A + p pᵀ = -½ I + skew`, so `Λ = -½ + iμ`), and `B̃ = Vᴴ B` for a Gaussian `B`. The
eigenvalues of a real matrix come in conjugate pairs, so only half of them (`d_state / 2`)
are stored and the output takes `2 Re(·)`: the other half would add the complex conjugate.
Δ is learned per state as `exp(log_step)`, initialised log-uniform in `[dt_min, dt_max]`.

The memoroid element of step t is `(Λ̄, B̄ u_t)` under `affine_combine`, as for the LRU.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from rlmem.memory.complex_dense import real_part_of_product, real_times_complex
from rlmem.memory.memoroid import AffineMemoroid, State, affine_identity, check_sizes
from rlmem.memory.stack import ResidualStack


@functools.lru_cache(maxsize=8)
def hippo_legs_normal(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of the normal part of the HiPPO-LegS matrix of size `n`.

    HiPPO-LegS: `A[i, j] = -sqrt(2i+1) sqrt(2j+1)` for i > j, `-(i+1)` on the diagonal, 0
    above. With `p_i = sqrt(i + ½)`, `S = A + p pᵀ = -½ I + K` with `K` real skew-symmetric,
    so `S = V diag(-½ + iμ) Vᴴ` with `V` unitary (from the Hermitian matrix `-iK`).

    Returns:
      eigenvalues: `[n]` complex, sorted by imaginary part (conjugate pairs mirror).
      eigenvectors: `[n, n]` complex, columns.
    """
    p = np.sqrt(1 + 2 * np.arange(n))
    a = -(np.tril(np.outer(p, p)) - np.diag(np.arange(n)))
    q = np.sqrt(np.arange(n) + 0.5)
    s = a + np.outer(q, q)
    skew = s - np.diag(np.diag(s))
    mu, v = np.linalg.eigh(-1j * skew)
    return np.diag(s).mean() + 1j * mu, v


class S5Layer(AffineMemoroid):
    """One S5 system, `[T, d_model] -> [T, d_model]`, `d_state / 2` stored complex states.

    Attributes:
      d_model: input and output width.
      d_state: size P of the (real) HiPPO state; must be even (conjugate symmetry).
      dt_min, dt_max: range of the initial step sizes Δ.
    """

    d_model: int = 256
    d_state: int = 256
    dt_min: float = 1e-3
    dt_max: float = 1e-1

    def setup(self):
        check_sizes("S5", d_model=self.d_model, d_state=self.d_state)
        if self.d_state % 2:
            raise ValueError(f"S5: d_state must be even (conjugate pairs), got {self.d_state}")
        if not 0.0 < self.dt_min <= self.dt_max:
            raise ValueError(
                f"S5: need 0 < dt_min <= dt_max, got dt_min={self.dt_min}, dt_max={self.dt_max}"
            )
        eigenvalues, vectors = hippo_legs_normal(self.d_state)
        half = self.d_state // 2
        lam, v = eigenvalues[:half], vectors[:, :half]  # one of each conjugate pair
        h = self.d_model

        def b_init(key):
            b = jax.random.normal(key, (self.d_state, h)) / math.sqrt(h)
            bt = jnp.asarray(v.conj().T, jnp.complex64) @ b.astype(jnp.complex64)  # B̃ = Vᴴ B
            return jnp.stack([bt.real, bt.imag], axis=-1)

        def c_init(key):
            return jax.random.normal(key, (h, half, 2)) / math.sqrt(self.d_state)

        def log_step_init(key):
            lo, hi = math.log(self.dt_min), math.log(self.dt_max)
            return jax.random.uniform(key, (half,), minval=lo, maxval=hi)

        self.lambda_re = self.param("lambda_re", lambda _: jnp.asarray(lam.real, jnp.float32))
        self.lambda_im = self.param("lambda_im", lambda _: jnp.asarray(lam.imag, jnp.float32))
        self.B = self.param("B", b_init)
        self.C = self.param("C", c_init)
        self.D = self.param("D", nn.initializers.normal(1.0), (h,))
        self.log_step = self.param("log_step", log_step_init)

    @property
    def output_size(self) -> int:
        return self.d_model

    def discretize(self) -> tuple[jax.Array, jax.Array]:
        """ZOH: (Λ̄ [d_state/2], B̄ [d_state/2, d_model]) complex."""
        # Keep Re Λ < 0 so the discrete system stays stable whatever the optimiser does.
        lam = jax.lax.complex(jnp.minimum(self.lambda_re, -1e-4), self.lambda_im)
        lam_bar = jnp.exp(lam * jnp.exp(self.log_step))
        b = jax.lax.complex(self.B[..., 0], self.B[..., 1])
        return lam_bar, ((lam_bar - 1) / lam)[:, None] * b

    @nn.nowrap
    def identity(self) -> State:
        half = self.d_state // 2
        return affine_identity((half,), (half,), jnp.complex64)

    def lift(self, u: jax.Array) -> State:
        """u: [T, d_model] -> (a, b) [T, d_state/2] complex."""
        lam_bar, b_bar = self.discretize()
        b = real_times_complex(u, b_bar)
        return jnp.broadcast_to(lam_bar, b.shape), b

    def readout(self, h: State, u: jax.Array) -> jax.Array:
        """h: (a, x) [T, d_state/2], u: [T, d_model] -> y [T, d_model]."""
        c = jax.lax.complex(self.C[..., 0], self.C[..., 1])
        return 2 * real_part_of_product(h[1], c) + self.D * u


class S5(ResidualStack):
    """Stacked S5 (pre-LayerNorm, GLU, residual); PAPER.md: 2 layers, 256 wide, state 256.

    Attributes:
      d_model, num_layers, scan: see `ResidualStack`.
      d_state, dt_min, dt_max: see `S5Layer`.
    """

    d_state: int = 256
    dt_min: float = 1e-3
    dt_max: float = 1e-1

    @nn.nowrap
    def make_layer(self, index: int, **module_kwargs) -> S5Layer:
        return S5Layer(
            d_model=self.d_model,
            d_state=self.d_state,
            dt_min=self.dt_min,
            dt_max=self.dt_max,
            scan=self.scan,
            **module_kwargs,
        )
