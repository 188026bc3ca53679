"""DeltaNet (Yang et al. 2024, "Parallelizing Linear Transformers with the Delta Rule over
Sequence Length") and gated DeltaNet (Yang et al. 2025, "Gated Delta Networks: Improving
Mamba2 with Delta Rule") as one memoroid.

Linear attention whose state is edited by the delta rule: each step replaces the value
stored under key k_t by a mix of the old one and v_t instead of only adding k_t v_tᵀ.
Per head (K = key_size, V = value_size; the state S holds values as rows indexed by keys):

    q_t, k_t = l2norm(silu(W_q x_t)), l2norm(silu(W_k x_t))    [K]
    v_t = W_v x_t                                               [V]
    β_t = sigmoid(w_β x_t + b_β)                                scalar in (0, 1)
    α_t = 1                                   (DeltaNet)
    α_t = exp(-exp(A_log) softplus(w_α x_t + b_α))   (gated)    scalar in (0, 1]
    S_t = α_t (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ         [K, V]
    o_t = LayerNorm(S_tᵀ q_t) ⊙ swish(W_g x_t)                  [V]
    y_t = W_o concat_heads(o_t)                                 [output_size]

(Equivalently S_t = α_t S_{t-1} + β_t k_t (v_t - α_t S_{t-1}ᵀ k_t)ᵀ: the stored value under
k_t moves a fraction β_t of the way to v_t.) The output normalisation is gla.py's: a
LayerNorm over each head's V values, then the swish output gate.

Memoroid. S ↦ M S + U is an affine map of the state, with a full `[K, K]` matrix M, so step
t lifts to the element

    (M_t, U_t) = (α_t (I - β_t k_t k_tᵀ),  β_t k_t v_tᵀ)          [K, K], [K, V]

and composing two runs (left first) is composition of affine maps,

    (M1, U1) • (M2, U2) = (M2 M1,  M2 U1 + U2),          identity (I, 0),

associative because composition of functions is. The state after a prefix is the product's
U (applied to S = 0; a carry is a whole element, so its U is the state S). Unlike the
diagonal models, one combine costs K³ + K²V per head, not K V: the associative scan pays
it at every level, the sequential fold once per step. Hence small keys (K = 16 in the
YAML). Since ‖k‖ < 1 and β, α ∈ (0, 1], every M_t (and so every product) has operator norm
at most 1: long products neither blow up nor need rescaling.

The matrix products run at `Precision.HIGHEST`: on GPUs the default float32 matmul may use
TF32 (10-bit mantissa), which would make the two scan orders disagree by 1e-3.

Left out: the short causal convolution before q, k, v (it would mix steps across an episode
start; as in `rlmem.memory.mamba2`), so q, k, v are linear maps of x_t. The gate follows
Mamba2's parametrisation as gated DeltaNet does: exp(A_log) uniform in [1, 16] per head,
softplus(b_α) log-uniform in [1e-3, 1e-1] at init, so α starts between about 0.2 and 1.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

from rlmem.memory.memoroid import Memoroid, State, check_sizes

L2_EPS = 1e-6  # l2norm(u) = u / sqrt(|u|² + eps): |k| < 1 and a finite gradient at u = 0
A_INIT_RANGE = (1.0, 16.0)  # gated: initial decay rates exp(A_log)
DT_INIT_RANGE = (1e-3, 1e-1)  # gated: initial softplus(w_α x + b_α) at x = 0
HIGHEST = jax.lax.Precision.HIGHEST


def l2norm(u: jax.Array) -> jax.Array:
    """u: [..., K] -> u / sqrt(|u|² + L2_EPS), norm just below 1."""
    return u * jax.lax.rsqrt(jnp.sum(u * u, axis=-1, keepdims=True) + L2_EPS)


def _a_log_init(key, shape, dtype=jnp.float32):
    return jnp.log(jax.random.uniform(key, shape, dtype, *A_INIT_RANGE))


def _dt_bias_init(key, shape, dtype=jnp.float32):
    """softplus⁻¹ of a log-uniform step: softplus(b) lands in DT_INIT_RANGE."""
    lo, hi = (math.log(r) for r in DT_INIT_RANGE)
    dt = jnp.exp(jax.random.uniform(key, shape, dtype, lo, hi))
    return dt + jnp.log(-jnp.expm1(-dt))  # log(exp(dt) - 1), without overflow


class DeltaNet(Memoroid):
    """Multi-head DeltaNet (or gated DeltaNet) with resets.

    Attributes:
      key_size: K per head (q, k; the transition M is `[K, K]`: cost K³ per combine).
      value_size: V per head.
      num_heads: independent heads; the state is `(M [heads, K, K], S [heads, K, V])`.
      output_size: H, width of the output projection.
      gated: False: α_t = 1 (DeltaNet); True: a learned decay α_t per head (gated DeltaNet).
      scan: "auto" | "associative" | "sequential".
    """

    key_size: int = 16
    value_size: int = 32
    num_heads: int = 4
    output_size: int = 256
    gated: bool = False
    scan: str = "auto"

    def __post_init__(self):
        owner = type(self).__name__
        check_sizes(
            owner, key_size=self.key_size, value_size=self.value_size,
            num_heads=self.num_heads, output_size=self.output_size,
        )
        if not isinstance(self.gated, bool):
            raise ValueError(f"{owner}: gated must be a bool, got {self.gated!r}")
        super().__post_init__()

    def setup(self):
        heads = self.num_heads
        hk, hv = heads * self.key_size, heads * self.value_size
        # [q | k] (each heads*K) and [v | output gate] (each heads*V).
        self.qk = nn.Dense(2 * hk, name="qk")
        self.vg = nn.Dense(2 * hv, name="vg")
        self.beta = nn.Dense(heads, name="beta")
        if self.gated:
            self.alpha = nn.Dense(heads, bias_init=_dt_bias_init, name="alpha")
            self.A_log = self.param("A_log", _a_log_init, (heads,))
        self.norm = nn.LayerNorm(name="norm")
        self.out = nn.Dense(self.output_size, name="out")

    def _heads(self, u: jax.Array, size: int) -> jax.Array:
        return u.reshape(*u.shape[:-1], self.num_heads, size)

    def _qk(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x: [T, F] -> (q, k) [T, heads, K], each of norm just below 1."""
        q, k = jnp.split(nn.silu(self.qk(x)), 2, axis=-1)
        return l2norm(self._heads(q, self.key_size)), l2norm(self._heads(k, self.key_size))

    @nn.nowrap
    def identity(self) -> State:
        h, k, v = self.num_heads, self.key_size, self.value_size
        eye = jnp.broadcast_to(jnp.eye(k, dtype=jnp.float32), (h, k, k))
        return eye, jnp.zeros((h, k, v), jnp.float32)

    def lift(self, x: jax.Array) -> State:
        """x: [T, F] -> (M [T, heads, K, K], U [T, heads, K, V])."""
        _, k = self._qk(x)
        v, _ = jnp.split(self.vg(x), 2, axis=-1)
        v = self._heads(v, self.value_size)
        beta = jax.nn.sigmoid(self.beta(x))[..., None, None]  # [T, heads, 1, 1]
        kk = k[..., :, None] * k[..., None, :]
        M = jnp.eye(self.key_size, dtype=kk.dtype) - beta * kk
        if self.gated:
            log_alpha = -jnp.exp(self.A_log) * jax.nn.softplus(self.alpha(x))  # [T, heads]
            M = jnp.exp(log_alpha)[..., None, None] * M
        return M, beta * k[..., :, None] * v[..., None, :]

    def combine(self, left: State, right: State) -> State:
        """(M1, U1) then (M2, U2): (M2 M1, M2 U1 + U2), per head (leaves [heads, ...])."""
        m1, u1 = left
        m2, u2 = right
        m = jnp.einsum("...ij,...jk->...ik", m2, m1, precision=HIGHEST)
        u = jnp.einsum("...ij,...jv->...iv", m2, u1, precision=HIGHEST) + u2
        return m, u

    def readout(self, h: State, x: jax.Array) -> jax.Array:
        """h: (M, S) [T, heads, ...], x: [T, F] -> y [T, output_size]."""
        q, _ = self._qk(x)
        _, gate = jnp.split(self.vg(x), 2, axis=-1)
        o = jnp.einsum("thk,thkv->thv", q, h[1], precision=HIGHEST)
        o = self.norm(o)  # per head over V
        o = o.reshape(*o.shape[:-2], -1) * nn.swish(gate)
        return self.out(o)


class GatedDeltaNet(DeltaNet):
    """`DeltaNet(gated=True)`: the registry's "gated_deltanet" (its own name, so that the
    generic tests of every registered model also cover the gated variant)."""

    gated: bool = True
