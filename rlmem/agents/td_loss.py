"""Double DQN's TD loss over flat transitions (both batching modes feed it `[M]` rows).

One function, with the paper's variants and R2D2's as parameters: the reduction of the
TD errors to a loss (`TD_LOSSES`), value rescaling (`rlmem.agents.rescaling`) and n-step
targets (`rlmem.memory.returns.n_step_targets`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from rlmem.agents import unroll as ur
from rlmem.agents.rescaling import rescale, unscale
from rlmem.memory.returns import n_step_targets
from rlmem.types import Transition

# How the TD errors of a batch become one loss (`algo.td_loss`): the mean of per-transition
# Hubers (the default), or the Huber of the mean |TD error| (the paper's reference SBB).
TD_LOSSES = ("per_transition", "mean_abs")


def td_loss(
    q: jax.Array,
    q_next_online: jax.Array,
    q_next_target: jax.Array,
    transition: Transition,
    gamma: float,
    huber_delta: float = 1.0,
    reduction: str = "per_transition",
    value_rescaling: bool = False,
    n_step: int = 1,
    rows: int = 1,
    weights: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Double DQN Huber loss over flat transitions.

    Args:
      q: `[M, A]` online Q of `obs`.
      q_next_online: `[M, A]` online Q of `next_obs` (after its episode prefix); picks a*.
      q_next_target: `[M, A]` target Q of `next_obs`; evaluates a*.
      transition: fields `[M]`; uses `action, reward, terminated, mask`.
      gamma: discount.
      huber_delta: Huber threshold.
      reduction: "per_transition", `mean_mask(huber(td))`, or "mean_abs",
        `huber(mean_mask(|td|))` (`TD_LOSSES`).
      value_rescaling: the network's outputs are `h(Q)` (`rlmem.agents.rescaling`): the
        target is `h(r + gamma (1 - terminated) h^-1(next_value))`.
      n_step: steps of reward before the bootstrap (`rlmem.memory.returns.n_step_targets`;
        windows stop at episode ends and at the end of each of the `rows` sequences the
        `M` transitions flatten: one tape, or the segments, row-major).
      rows: the sequences in the batch (1 for a tape; `N` segments).
      weights: `[M]` importance-sampling weights of prioritised replay (per_transition
        only): the loss is `mean_mask(weights * huber(td))`. None: all 1.

    Returns:
      `(loss [], metrics)`: the reduced Huber loss over `mask`, plus mean Q and |TD error|;
      with `weights`, also the per-transition `td_steps` (|TD error| `[M]`, 0 outside
      `mask`) for the priority update.
    """
    best = jnp.argmax(q_next_online, axis=-1)
    next_value = jnp.take_along_axis(q_next_target, best[:, None], axis=-1)[:, 0]
    cont = 1.0 - transition.terminated.astype(jnp.float32)
    if value_rescaling:
        next_value = unscale(next_value)
    if n_step == 1:
        target = transition.reward + gamma * cont * next_value
    else:
        by_row = [x.reshape(rows, -1) for x in (transition.reward, next_value,
                                                transition.terminated, transition.truncated,
                                                transition.mask)]
        target = jax.vmap(
            lambda r, v, te, tu, m: n_step_targets(r, v, te, tu, m, gamma, n_step))(*by_row)
        target = target.reshape(-1)
    if value_rescaling:
        target = rescale(target)
    target = jax.lax.stop_gradient(target)
    chosen = jnp.take_along_axis(q, transition.action[:, None].astype(jnp.int32), axis=-1)[:, 0]
    mask = transition.mask
    td_steps = jnp.abs(target - chosen)
    td_abs = ur.masked_mean(td_steps, mask)
    metrics = {"q_mean": ur.masked_mean(chosen, mask), "td_abs": td_abs}
    if weights is not None:
        if reduction != "per_transition":
            raise ValueError(f"weights need reduction='per_transition', got {reduction!r}")
        metrics["td_steps"] = jnp.where(mask, jax.lax.stop_gradient(td_steps), 0.0)
    if reduction == "per_transition":
        per_step = optax.huber_loss(chosen, target, delta=huber_delta)
        if weights is not None:
            per_step = per_step * weights
        return ur.masked_mean(per_step, mask), metrics
    if reduction == "mean_abs":
        return optax.huber_loss(td_abs, delta=huber_delta), metrics
    raise ValueError(f"reduction must be one of {TD_LOSSES}, got {reduction!r}")
