"""Products of real activations with complex weights, in real arithmetic.

The diagonal complex recurrences (LRU, S5) project a real input into a complex state and
read only the real part of a complex projection back out. Written as complex matmuls both
cost four real matmuls; two suffice, because one side of the first product is real and
only the real part of the second is used. On CPU the split also runs XLA's real GEMMs
instead of its slower complex ones: `python scripts/bench_ssm.py --projections` measures
the difference (docs/benchmarks.md, "Complex projections").
"""

from __future__ import annotations

import jax


def real_times_complex(u: jax.Array, w: jax.Array) -> jax.Array:
    """u: [..., m] real, w: [n, m] complex -> u @ wᵀ: [..., n] complex."""
    return jax.lax.complex(u @ w.real.T, u @ w.imag.T)


def real_part_of_product(h: jax.Array, w: jax.Array) -> jax.Array:
    """h: [..., n] complex, w: [m, n] complex -> Re(h @ wᵀ): [..., m] real."""
    return h.real @ w.real.T - h.imag @ w.imag.T
