"""Value rescaling (Pohlen et al. 2018, used by R2D2): learn `h(Q)` instead of `Q`, so
targets of very different scales share one network.

    h(x)     = sign(x) (sqrt(|x| + 1) - 1) + eps x
    h^-1(x)  = sign(x) (((sqrt(1 + 4 eps (|x| + 1 + eps)) - 1) / (2 eps))^2 - 1)

A rescaled TD target is `h(r + gamma (1 - terminated) h^-1(Q_target(s', a*)))`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

EPS = 1e-3  # R2D2's epsilon


def rescale(x: jax.Array, eps: float = EPS) -> jax.Array:
    """h(x), elementwise."""
    return jnp.sign(x) * (jnp.sqrt(jnp.abs(x) + 1.0) - 1.0) + eps * x


def unscale(x: jax.Array, eps: float = EPS) -> jax.Array:
    """h^-1(x), elementwise (the closed form of Pohlen et al.'s Proposition A.2).

    `(sqrt(1 + 4 eps z) - 1) / (2 eps)` is computed as `2 z / (sqrt(1 + 4 eps z) + 1)`
    (z = |x| + 1 + eps): the same number without the cancellation that costs float32
    four digits."""
    z = jnp.abs(x) + 1.0 + eps
    root = 2.0 * z / (jnp.sqrt(1.0 + 4.0 * eps * z) + 1.0)
    return jnp.sign(x) * (root**2 - 1.0)
