"""Discounted returns and GAE as memoroids over a tape of concatenated episodes.

Both are the backward recurrence `u_t = b_t + a_t u_{t+1}`, cut where an episode ends
(`u_{t+1} := 0` after the last step of an episode and after the tape's last step). Read
backwards in time, the steps are affine maps `v -> b + a v` and the prefix products of
their composition form a monoid,

    (A, B) • (a, b) = (a A, b + a B)          identity (1, 0),

which the resettable scan of `rlmem.memory.memoroid` restarts at every episode end. So
returns reuse `scan_states` and both its strategies (associative or sequential).

Flags follow `rlmem.types`: `terminated[t]` ends an episode with no bootstrap;
`truncated[t]` ends it with a bootstrap from `next_value[t] = V(next_obs[t])`; the tape's
last step is cut by the tape and also bootstraps from `next_value[-1]` unless terminated.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlmem.memory.memoroid import affine_combine, scan_states


def reverse_affine_scan(
    scale: jax.Array, offset: jax.Array, end: jax.Array, strategy: str = "auto"
) -> jax.Array:
    """u_t = offset_t + scale_t u_{t+1}, with u_{t+1} = 0 where end[t] (and after T-1).

    Args:
      scale, offset: `[T]` float.
      end: `[T]` bool, True on the last step of an episode.
      strategy: "auto" | "associative" | "sequential" (see `scan_states`).

    Returns:
      u: `[T]`.
    """
    end = jnp.asarray(end, bool).at[-1].set(True)
    elements = (scale[::-1], offset[::-1])
    identity = (jnp.ones((), scale.dtype), jnp.zeros((), offset.dtype))
    # In reversed time `u -> offset + scale * u` is a diagonal linear recurrence, so its
    # monoid is the forward models' `affine_combine` (later steps come first).
    _, values = scan_states(affine_combine, elements, end[::-1], identity, strategy)
    return values[::-1]


def _check(name: str, value, length: int | None, what: str = "[T]"):
    value = jnp.asarray(value)
    if value.ndim != 1 or (length is not None and value.shape[0] != length):
        raise ValueError(f"{name} must be {what} like reward, got shape {value.shape}")
    return value


def _check_rate(name: str, value) -> None:
    if isinstance(value, int | float) and not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def _flags(reward, terminated, truncated):
    reward = jnp.asarray(reward)
    if reward.ndim != 1 or reward.shape[0] == 0:
        raise ValueError(f"reward must be [T] with T >= 1 (vmap over tapes), got {reward.shape}")
    length = reward.shape[0]
    terminated = _check("terminated", terminated, length).astype(bool)
    truncated = _check("truncated", truncated, length).astype(bool)
    end = (terminated | truncated).at[-1].set(True)
    return reward.astype(jnp.float32), terminated, end


def discounted_returns(
    reward: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    gamma: float,
    next_value: jax.Array | None = None,
    strategy: str = "auto",
) -> jax.Array:
    """Discounted return of every step within its own episode of the tape.

    `G_t = r_t + γ G_{t+1}` inside an episode; at an episode's last step
    `G_t = r_t` if terminated, else `r_t + γ next_value[t]` (truncation or tape end;
    `next_value` defaults to zeros).

    Args:
      reward, terminated, truncated: `[T]`.
      gamma: discount in [0, 1].
      next_value: `[T]` V(next_obs), or None.
      strategy: "auto" | "associative" | "sequential".

    Returns:
      returns: `[T]` float32.
    """
    _check_rate("gamma", gamma)
    reward, terminated, end = _flags(reward, terminated, truncated)
    bootstrap = jnp.zeros_like(reward)
    if next_value is not None:
        next_value = _check("next_value", next_value, reward.shape[0])
        bootstrap = jnp.where(end & ~terminated, next_value, 0.0)
    scale = jnp.full_like(reward, gamma)
    return reverse_affine_scan(scale, reward + gamma * bootstrap, end, strategy)


def gae(
    reward: jax.Array,
    value: jax.Array,
    next_value: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    gamma: float,
    lam: float,
    strategy: str = "auto",
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation (Schulman et al. 2016) over a tape.

    `δ_t = r_t + γ (1 - terminated_t) next_value_t - value_t`,
    `A_t = δ_t + γ λ A_{t+1}` inside an episode, `A_t = δ_t` at its last step.

    Args:
      reward, value, next_value, terminated, truncated: `[T]`.
      gamma, lam: in [0, 1].
      strategy: "auto" | "associative" | "sequential".

    Returns:
      (advantage, target): `[T]` each, `target = advantage + value` (the λ-return).
    """
    _check_rate("gamma", gamma)
    _check_rate("lam", lam)
    reward, terminated, end = _flags(reward, terminated, truncated)
    value = _check("value", value, reward.shape[0])
    next_value = _check("next_value", next_value, reward.shape[0])
    delta = reward + gamma * jnp.where(terminated, 0.0, next_value) - value
    advantage = reverse_affine_scan(
        jnp.full_like(delta, gamma * lam), delta, end, strategy
    )
    return advantage, advantage + value


def q_lambda_targets(
    reward: jax.Array,
    next_q: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    gamma: float,
    lam: float,
    strategy: str = "auto",
) -> jax.Array:
    """Peng's Q(λ) targets over a tape (the PQN target, Gallici et al. 2025).

    `G_t = r_t + γ [(1 - λ) next_q_t + λ G_{t+1}]` inside an episode, with
    `next_q_t = max_a Q(next_obs_t, a)` (or any bootstrap value of `next_obs_t`); at an
    episode's last step (and the tape's) `G_t = r_t + γ (1 - terminated_t) next_q_t`:
    truncation and the tape's end bootstrap, a termination never does. λ = 0 is the
    one-step target, λ = 1 the discounted return bootstrapped where the tape cuts.

    The same backward affine recurrence as the returns above: offset
    `r_t + γ (1 - λ) next_q_t` inside an episode, `r_t + γ (1 - terminated_t) next_q_t` at
    its end, scale `γ λ`.

    Args:
      reward, next_q, terminated, truncated: `[T]`.
      gamma, lam: in [0, 1].
      strategy: "auto" | "associative" | "sequential".

    Returns:
      targets: `[T]` float32.
    """
    _check_rate("gamma", gamma)
    _check_rate("lam", lam)
    reward, terminated, end = _flags(reward, terminated, truncated)
    next_q = _check("next_q", next_q, reward.shape[0]).astype(jnp.float32)
    inside = reward + gamma * (1.0 - lam) * next_q
    last = reward + gamma * jnp.where(terminated, 0.0, next_q)
    offset = jnp.where(end, last, inside)
    return reverse_affine_scan(jnp.full_like(reward, gamma * lam), offset, end, strategy)


def n_step_targets(
    reward: jax.Array,
    next_value: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    valid: jax.Array,
    gamma: float,
    n: int,
) -> jax.Array:
    """n-step TD targets over one sequence (a tape, or one segment row).

    `G_t = sum_{i<k} γ^i r_{t+i} + γ^k (1 - terminated_{t+k-1}) next_value_{t+k-1}`, where
    the window `k <= n` stops early at the episode's last step (terminated: no bootstrap;
    truncated: bootstrap from its `next_value`) and at the sequence's last valid step (the
    data ends: bootstrap). `n = 1` is the one-step target. Not a first-order recurrence
    (the window slides), so it is `n` shifted, masked sums: O(n T), n static.

    Args:
      reward, next_value, terminated, truncated, valid: `[T]`; `valid` marks real steps
        (padding after the data is False).
      gamma: discount in [0, 1].
      n: window length >= 1 (static).

    Returns:
      targets: `[T]` float32 (meaningless where `valid` is False).
    """
    _check_rate("gamma", gamma)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    reward, terminated, _ = _flags(reward, terminated, truncated)
    length = reward.shape[0]
    end = terminated | jnp.asarray(truncated, bool)
    valid = _check("valid", valid, length).astype(bool)
    next_value = _check("next_value", next_value, length).astype(jnp.float32)

    def shift(x: jax.Array, i: int, fill) -> jax.Array:  # x[t + i], `fill` past the end
        return jnp.concatenate([x[i:], jnp.full((min(i, length),), fill, x.dtype)])[:length]

    total = jnp.zeros_like(reward)
    bootstrap = jnp.zeros_like(reward)
    scale = jnp.ones_like(reward)  # gamma^i
    open_ = valid
    for i in range(n):
        take = open_ & shift(valid, i, False)
        total = total + jnp.where(take, scale * shift(reward, i, 0.0), 0.0)
        cont = 1.0 - shift(terminated, i, True).astype(jnp.float32)
        bootstrap = jnp.where(take, scale * gamma * cont * shift(next_value, i, 0.0), bootstrap)
        scale = scale * gamma
        open_ = take & ~shift(end, i, True)
    return total + bootstrap
