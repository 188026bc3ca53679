"""The paper's optimiser, one gradient step with it, and the target-network update.

    zero_nans -> clip_by_global_norm(max_grad_norm) -> adamw(lr, eps, weight_decay) -> warm-up

The learning rate sits in the optimiser *state* (`optax.inject_hyperparams`), so sweeping
it changes an array, not the compiled update. The linear warm-up is a separate factor
`min(1, (k + 1) / warmup_updates)` on update `k` (0-based), so the rate rises from near 0
to its full value at update `warmup_updates` and the very first update already moves.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

from rlmem.checks import check_positive_floats

PyTree = Any


def warmup_factor(warmup_updates: int) -> optax.Schedule:
    """`k -> min(1, (k + 1) / warmup_updates)`; constant 1 when `warmup_updates == 0`."""
    if warmup_updates < 0:
        raise ValueError(f"warmup_updates must be >= 0, got {warmup_updates!r}")

    def schedule(count: jax.Array) -> jax.Array:
        if warmup_updates == 0:
            return jnp.ones((), jnp.float32)
        return jnp.minimum(1.0, (count + 1.0) / warmup_updates)

    return schedule


def make_optimizer(
    learning_rate: float = 1e-4,
    warmup_updates: int = 200,
    max_grad_norm: float = 0.01,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    """The chain above. Read or set the rate with `get/set_learning_rate(opt_state, lr)`.

    The scalars may be traced arrays (a vectorised sweep binds each run's values inside
    the compiled loop, `RecurrentAgent.bind`); only Python numbers are range-checked here.
    """
    for name, value in (("learning_rate", learning_rate), ("max_grad_norm", max_grad_norm)):
        if isinstance(value, int | float) and value <= 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
    return optax.chain(
        optax.zero_nans(),
        optax.clip_by_global_norm(max_grad_norm),
        optax.inject_hyperparams(optax.adamw)(
            learning_rate=learning_rate, eps=eps, weight_decay=weight_decay
        ),
        # Scaling the final step equals scaling the rate: adamw's decay (if any) is applied
        # inside adamw, already multiplied by the rate.
        optax.scale_by_schedule(warmup_factor(warmup_updates)),
    )


# The scalars that stay numbers inside the compiled update (a vectorised sweep may vary
# them per run); `warmup_updates` is a Python branch of the schedule and is not one.
SWEEPABLE_OPTIM = ("learning_rate", "max_grad_norm", "adam_eps", "weight_decay")


@dataclass(frozen=True)
class OptimSettings:
    """The optimiser block of an algorithm's config (`algo.optim.*`).

    Defaults are DQN's (the paper's); an algorithm with other defaults declares its own
    instance (`PPO.default_optim`). `tests/test_defaults.py` checks them against the YAML.
    """

    learning_rate: float = 1e-4
    warmup_updates: int = 200
    max_grad_norm: float = 0.01
    adam_eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self):
        check_positive_floats(learning_rate=self.learning_rate,
                              max_grad_norm=self.max_grad_norm, adam_eps=self.adam_eps)
        if not isinstance(self.warmup_updates, int) or self.warmup_updates < 0:
            raise ValueError(f"warmup_updates must be an int >= 0, got {self.warmup_updates!r}")

    def with_values(self, **values: float | jax.Array) -> OptimSettings:
        """A copy with some scalars replaced by (possibly traced) values, unchecked: the
        config checked every sweep member's values before anything was compiled."""
        bound = copy.copy(self)
        for name, value in values.items():
            if name not in SWEEPABLE_OPTIM:
                raise ValueError(f"optim.{name} cannot be bound to a traced value; "
                                 f"allowed: {', '.join(SWEEPABLE_OPTIM)}")
            object.__setattr__(bound, name, value)  # frozen: bypass __setattr__ on purpose
        return bound

    def make(self) -> optax.GradientTransformation:
        """`make_optimizer` with these settings."""
        return make_optimizer(self.learning_rate, self.warmup_updates, self.max_grad_norm,
                              self.adam_eps, self.weight_decay)


_ADAM_INDEX = 2  # position of the injected adamw in the chain above


def get_learning_rate(opt_state: PyTree) -> jax.Array:
    """The (peak) learning rate held in a `make_optimizer` state."""
    return opt_state[_ADAM_INDEX].hyperparams["learning_rate"]


def set_learning_rate(opt_state: PyTree, learning_rate: float | jax.Array) -> PyTree:
    """A copy of a `make_optimizer` state with a new (peak) learning rate."""
    adam = opt_state[_ADAM_INDEX]
    hyper = dict(adam.hyperparams)
    hyper["learning_rate"] = jnp.asarray(learning_rate, hyper["learning_rate"].dtype)
    states = list(opt_state)
    states[_ADAM_INDEX] = adam._replace(hyperparams=hyper)
    return tuple(states)


def gradient_step(
    optimizer: optax.GradientTransformation,
    loss_fn: Callable[..., tuple[jax.Array, dict[str, jax.Array]]],
    params: PyTree,
    opt_state: PyTree,
    *args: Any,
) -> tuple[PyTree, PyTree, dict[str, jax.Array]]:
    """One optimiser step on `loss_fn(params, *args) -> (loss [], metrics)`.

    Returns:
      `(params, opt_state, metrics)`: the updated parameters and optimiser state, and the
      loss's metrics plus `"loss"` and `"grad_norm"` (global norm of the raw gradients,
      before clipping).
    """
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *args)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}
    return optax.apply_updates(params, updates), opt_state, metrics


def polyak_update(target: PyTree, online: PyTree, tau: float) -> PyTree:
    """`target <- (1 - tau) * target + tau * online`, leafwise (tau = 1 / target_delay)."""
    return optax.incremental_update(online, target, step_size=tau)
