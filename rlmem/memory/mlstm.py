"""The mLSTM cell (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory"): a matrix
memory with exponential input gating, as a memoroid that carries the stabiliser exactly.

Per head (K = key_size, V = value_size; the memory holds values as rows indexed by keys,
the transpose of the paper's C):

    q_t = W_q x_t,  k_t = W_k x_t / sqrt(K),  v_t = W_v x_t      [K], [K], [V]
    ĩ_t, f̃_t = w_i x_t + b_i, w_f x_t + b_f                     scalars
    i_t = exp(ĩ_t),  f_t = sigmoid(f̃_t)                         input, forget gate
    C_t = f_t C_{t-1} + i_t k_t v_tᵀ                             [K, V]
    n_t = f_t n_{t-1} + i_t k_t                                  [K]
    h_t = C_tᵀ q_t / max(|n_tᵀ q_t|, 1)                          [V]
    y_t = W_o concat_heads(sigmoid(W_g x_t) ⊙ h_t)                [output_size]

exp(ĩ) overflows, so the paper runs the recurrence on C̄ = e^{-m} C, n̄ = e^{-m} n with the
max-state m_t = max(log f_t + m_{t-1}, ĩ_t):

    C̄_t = e^{log f_t + m_{t-1} - m_t} C̄_{t-1} + e^{ĩ_t - m_t} k_t v_tᵀ  (n̄ likewise)
    h_t = C̄_tᵀ q_t / max(|n̄_tᵀ q_t|, e^{-m_t})                           (*)

(*) is the unstabilised h_t exactly: numerator and normaliser are both e^{-m_t} times the
unstabilised ones. Since C̄_0 = n̄_0 = 0 at an episode start, h_t does not depend on m_0.

Memoroid. A segment s..t (any run of steps) is kept in log-scaled form

    (g, m, C̄, n̄) = (Σ_{r∈seg} log f_r,  m,  e^{-m} Ĉ,  e^{-m} n̂)

where Ĉ = Σ_{s∈seg} (Π_{r>s in seg} f_r) i_s k_s v_sᵀ is the segment's own contribution to
C (n̂ likewise) and m is any finite scale (log-decay sum g: [heads], m: [heads]). Step t
lifts to (log f_t, ĩ_t, k_t v_tᵀ, k_t) (m = ĩ_t, so e^{ĩ-m} = 1). Running the left segment
and then the right one (L first) gives

    a = m_L + g_R,   m = max(a, m_R)
    (g_L, m_L, C̄_L, n̄_L) • (g_R, m_R, C̄_R, n̄_R)
        = (g_L + g_R,  m,  e^{a-m} C̄_L + e^{m_R-m} C̄_R,  e^{a-m} n̄_L + e^{m_R-m} n̄_R).

Both weights are <= 1 and one of them is 1: nothing overflows.

* Associativity. In unscaled terms an element is (g, m, Ĉ = e^m C̄) and the combine is
  (g_L + g_R, max(m_L + g_R, m_R), e^{g_R} Ĉ_L + Ĉ_R): the first and last parts are the
  affine monoid (Ĉ ↦ e^g Ĉ + b) and the middle one is the same affine monoid in the
  max-plus semiring (m ↦ m + g, then max with m_R); each is associative (three segments
  A, B, C give m = max(m_A + g_B + g_C, m_B + g_C, m_C) in either order), and C̄ = e^{-m} Ĉ
  is a function of (m, Ĉ), so the scaled combine is associative too (up to rounding).
* Identity. e = (0, NEG, 0, 0), with NEG = -1e30 standing for -inf. For an element R with
  |m_R|, |g_R| < 1e22 (every element made of finite inputs), float32 gives NEG + g_R = NEG
  exactly, m = max(NEG, m_R) = m_R, e^{NEG - m_R} = 0 and e^0 = 1, so e • R = R bit for bit;
  R • e = (g_R, max(m_R, NEG) = m_R, 1·C̄_R + 0·0, ...) = R too, and e • e = e. With m = -inf
  itself, e • e would evaluate e^{-inf - (-inf)} = NaN; any NaN inside a combine, even one
  the resettable transform discards with `where`, poisons its gradients. The resettable
  transform keeps these laws: it only ever selects the right element or this combine.
* Readout. The prefix state from an episode start (or from the identity carry) is the
  fold of this combine over lifted steps, whose m follows max(m_{t-1} + log f_t, ĩ_t) and
  whose C̄, n̄ follow the paper's stabilised update above (the lifted element has e^{ĩ-m}
  absorbed into m = ĩ). So readout (*) on (m, C̄, n̄) is the paper's output. In (*) m is
  clipped at -MAX_LOG_SCALE before exp(-m) (float32 overflows past e^88, and then the
  gradient of the max would be 0 · inf = NaN): exact for m >= -80, and below that both the
  true output and the clipped one are below e^-80 times |C̄ᵀq|.

The exponential input gate i_t = exp(ĩ_t) and the sigmoid forget gate are the paper's
mLSTM choice (log f <= 0 keeps m bounded by the largest ĩ). Gate biases start as in the
paper: input 0, forget spread over [3, 6] across heads (f ≈ 0.95..0.998: long memory).
Left out: the xLSTM block around the cell (up-projection, causal convolution, which would
mix steps across an episode start, per-head group norm, skip); the cell output goes through
its output gate to one projection, as the other memoroids here.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import struct

from rlmem.memory.memoroid import Memoroid, check_sizes

NEG = -1e30  # the identity's log-scale: stands for -inf, exactly so in float32 (see above)
MAX_LOG_SCALE = 80.0  # readout: exp(-m) with m >= -80 stays finite in float32
FORGET_BIAS_INIT = (3.0, 6.0)  # paper: forget-gate biases spread linearly over heads


@struct.dataclass
class MLSTMState:
    """One segment (or a prefix state) in log-scaled form; leaves `[..., heads, ...]`.

    log_decay: [..., heads] Σ log f over the segment.
    m: [..., heads] the scale (max-state): C and n are stored times e^{-m}.
    C: [..., heads, K, V] e^{-m} Σ (decayed) i k vᵀ.
    n: [..., heads, K] e^{-m} Σ (decayed) i k.
    """

    log_decay: jax.Array
    m: jax.Array
    C: jax.Array
    n: jax.Array


def _gate_bias_init(key, shape, dtype=jnp.float32):
    """[input gates (heads) | forget gates (heads)] biases: 0 and linspace(3, 6)."""
    heads = shape[0] // 2
    forget = jnp.linspace(*FORGET_BIAS_INIT, heads, dtype=dtype)
    return jnp.concatenate([jnp.zeros((heads,), dtype), forget])


class MLSTM(Memoroid):
    """Multi-head mLSTM cell with resets.

    Attributes:
      key_size: K per head (q, k).
      value_size: V per head (v, the output gate and h).
      num_heads: independent heads, each with its own gates and memory `[K, V]`.
      output_size: H, width of the output projection.
      scan: "auto" | "associative" | "sequential".
    """

    key_size: int = 16
    value_size: int = 32
    num_heads: int = 4
    output_size: int = 256
    scan: str = "auto"

    def __post_init__(self):
        check_sizes(
            "MLSTM", key_size=self.key_size, value_size=self.value_size,
            num_heads=self.num_heads, output_size=self.output_size,
        )
        super().__post_init__()

    def setup(self):
        heads = self.num_heads
        hk, hv = heads * self.key_size, heads * self.value_size
        # [q | k] (each heads*K), [v | output gate] (each heads*V), [ĩ | f̃] (each heads).
        self.qk = nn.Dense(2 * hk, name="qk")
        self.vo = nn.Dense(2 * hv, name="vo")
        self.gates = nn.Dense(2 * heads, bias_init=_gate_bias_init, name="gates")
        self.out = nn.Dense(self.output_size, name="out")

    def _heads(self, u: jax.Array, size: int) -> jax.Array:
        return u.reshape(*u.shape[:-1], self.num_heads, size)

    def _qk(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x: [T, F] -> (q, k / sqrt(K)) [T, heads, K]."""
        q, k = jnp.split(self.qk(x), 2, axis=-1)
        k = k / math.sqrt(self.key_size)
        return self._heads(q, self.key_size), self._heads(k, self.key_size)

    @nn.nowrap
    def identity(self) -> MLSTMState:
        h, k, v = self.num_heads, self.key_size, self.value_size
        return MLSTMState(
            log_decay=jnp.zeros((h,), jnp.float32),
            m=jnp.full((h,), NEG, jnp.float32),
            C=jnp.zeros((h, k, v), jnp.float32),
            n=jnp.zeros((h, k), jnp.float32),
        )

    def lift(self, x: jax.Array) -> MLSTMState:
        """x: [T, F] -> one-step segments [T] (log f, m = ĩ, C = k vᵀ, n = k)."""
        _, k = self._qk(x)
        v, _ = jnp.split(self.vo(x), 2, axis=-1)
        v = self._heads(v, self.value_size)
        i_pre, f_pre = jnp.split(self.gates(x), 2, axis=-1)  # [T, heads] each
        return MLSTMState(
            log_decay=jax.nn.log_sigmoid(f_pre),  # exact for very negative f̃
            m=i_pre,
            C=k[..., :, None] * v[..., None, :],
            n=k,
        )

    def combine(self, left: MLSTMState, right: MLSTMState) -> MLSTMState:
        """`left` then `right`, both rescaled to m = max(m_L + g_R, m_R) (see the module)."""
        shifted = left.m + right.log_decay
        m = jnp.maximum(shifted, right.m)
        w_left, w_right = jnp.exp(shifted - m), jnp.exp(right.m - m)  # <= 1, one is 1
        return MLSTMState(
            log_decay=left.log_decay + right.log_decay,
            m=m,
            C=w_left[..., None, None] * left.C + w_right[..., None, None] * right.C,
            n=w_left[..., None] * left.n + w_right[..., None] * right.n,
        )

    def readout(self, h: MLSTMState, x: jax.Array) -> jax.Array:
        """h: states [T], x: [T, F] -> y [T, output_size]."""
        q, _ = self._qk(x)
        _, o_gate = jnp.split(self.vo(x), 2, axis=-1)
        numerator = jnp.einsum("thk,thkv->thv", q, h.C)
        floor = jnp.exp(-jnp.maximum(h.m, -MAX_LOG_SCALE))  # e^{-m}: the scaled "1"
        normaliser = jnp.maximum(jnp.abs(jnp.einsum("thk,thk->th", q, h.n)), floor)
        hidden = numerator / normaliser[..., None]  # [T, heads, V]
        hidden = hidden.reshape(*hidden.shape[:-2], -1) * jax.nn.sigmoid(o_gate)
        return self.out(hidden)
