"""A Mamba2-style layer (Dao & Gu 2024, "Transformers are SSMs: Generalized Models and
Efficient Algorithms Through Structured State Space Duality") as a memoroid.

Mamba2 restricts Mamba's diagonal decay to one scalar per head, which makes each head a
linear recurrence with a scalar, input-dependent forget factor. Per head h (P = value_size,
N = d_state; B and C are shared by all heads, Mamba2's single group):

    Δ_t = softplus(W_Δ x_t + b_Δ)                   [heads]
    a_t = exp(-Δ_t exp(A_log))                      [heads]   (A = -exp(A_log) < 0)
    v_t = W_v x_t,  B_t = W_B x_t,  C_t = W_C x_t     [heads, P], [N], [N]
    S_t = a_t S_{t-1} + Δ_t B_t v_tᵀ                 [heads, N, P]
    o_t = C_tᵀ S_t + D ⊙ v_t                         [heads, P]  (D: one skip weight per head)
    y_t = W_o RMSNorm(o_t ⊙ silu(W_z x_t))            [output_size] (heads flattened, H·P)

Step t lifts to the element `(a_t, Δ_t B_t v_tᵀ)` of `affine_combine` (a kept as
`[heads, 1, 1]` so it scales each head's whole `[N, P]` state): the monoid of a
scalar-decay linear recurrence. The gated RMSNorm is Mamba2's (normalise after gating).

Left out: Mamba2's short causal depthwise convolution over (v, B, C) and the SiLU after it
(the convolution would mix steps across episode starts; as in `rlmem.memory.s6`), so v, B
and C are plain linear maps of x_t. Initialisation follows Mamba2: `exp(A_log)` uniform in
[1, 16] per head, Δ log-uniform in `[dt_min, dt_max]` through the inverse softplus of b_Δ,
D = 1.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

from rlmem.memory.memoroid import AffineMemoroid, State, affine_identity, check_sizes

A_INIT_RANGE = (1.0, 16.0)  # Mamba2's range of the initial decay rates exp(A_log)


class Mamba2(AffineMemoroid):
    """Multi-head scalar-decay selective SSM (SSD) with resets.

    Attributes:
      num_heads: heads, each with its own decay a_t and state `[d_state, value_size]`.
      value_size: P, values per head (the inner width is num_heads * value_size).
      d_state: N, size of B_t and C_t.
      output_size: H, width of the output projection.
      dt_min, dt_max: range of the initial step sizes Δ.
      scan: "auto" | "associative" | "sequential".
    """

    num_heads: int = 8
    value_size: int = 32
    d_state: int = 16
    output_size: int = 256
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    scan: str = "auto"

    def __post_init__(self):
        check_sizes(
            "Mamba2", num_heads=self.num_heads, value_size=self.value_size,
            d_state=self.d_state, output_size=self.output_size,
        )
        if not 0.0 < self.dt_min <= self.dt_max:
            raise ValueError(
                f"Mamba2: need 0 < dt_min <= dt_max, got dt_min={self.dt_min}, "
                f"dt_max={self.dt_max}"
            )
        super().__post_init__()

    @property
    def inner_size(self) -> int:
        return self.num_heads * self.value_size

    def setup(self):
        heads, inner, n = self.num_heads, self.inner_size, self.d_state

        def dt_bias_init(key, shape, dtype=jnp.float32):
            lo, hi = math.log(self.dt_min), math.log(self.dt_max)
            dt = jnp.exp(jax.random.uniform(key, shape, dtype, lo, hi))
            return dt + jnp.log(-jnp.expm1(-dt))  # softplus⁻¹(dt)

        def a_log_init(key, shape, dtype=jnp.float32):
            return jnp.log(jax.random.uniform(key, shape, dtype, *A_INIT_RANGE))

        # [output gate z | values v | B | C]; no bias, as Mamba2's in_proj.
        self.in_proj = nn.Dense(2 * inner + 2 * n, use_bias=False, name="in_proj")
        self.dt_proj = nn.Dense(heads, bias_init=dt_bias_init, name="dt_proj")
        self.A_log = self.param("A_log", a_log_init, (heads,))
        self.D = self.param("D", nn.initializers.ones, (heads,))
        self.norm = nn.RMSNorm(name="norm")
        self.out = nn.Dense(self.output_size, name="out")

    def _project(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """x: [T, F] -> (z [T, heads·P], v [T, heads, P], B [T, N], C [T, N])."""
        inner, n = self.inner_size, self.d_state
        z, v, b, c = jnp.split(self.in_proj(x), [inner, 2 * inner, 2 * inner + n], axis=-1)
        return z, v.reshape(*v.shape[:-1], self.num_heads, self.value_size), b, c

    @nn.nowrap
    def identity(self) -> State:
        heads, n, p = self.num_heads, self.d_state, self.value_size
        return affine_identity((heads, 1, 1), (heads, n, p))

    def lift(self, x: jax.Array) -> State:
        """x: [T, F] -> (a [T, heads, 1, 1], Δ B vᵀ [T, heads, N, P])."""
        _, v, b, _ = self._project(x)
        dt = jax.nn.softplus(self.dt_proj(x))  # [T, heads]
        a = jnp.exp(-dt * jnp.exp(self.A_log))
        update = dt[..., None, None] * b[..., None, :, None] * v[..., None, :]
        return a[..., None, None], update

    def readout(self, h: State, x: jax.Array) -> jax.Array:
        """h: (a, S) [T, heads, N, P], x: [T, F] -> y [T, output_size]."""
        z, v, _, c = self._project(x)
        o = jnp.einsum("tn,thnp->thp", c, h[1]) + self.D[:, None] * v
        o = o.reshape(*o.shape[:-2], self.inner_size) * nn.silu(z)
        return self.out(self.norm(o))
