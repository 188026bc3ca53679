"""Exploration schedules, keyed on counters held in the TrainState (never Python state).

The paper's DQN explores in two phases, both counted in *epochs* (rlmem/agents/dqn.py
defines an epoch): the first `random_epochs` act uniformly at random, then epsilon falls
linearly from `eps_start` to `eps_end` over `train_epochs` and stays there.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def linear(start: float, end: float, steps: int, count: jax.Array) -> jax.Array:
    """`start` at `count = 0`, `end` from `count = steps` on, linear in between."""
    if steps <= 0:
        return jnp.asarray(end, jnp.float32)
    frac = jnp.clip(jnp.asarray(count, jnp.float32) / steps, 0.0, 1.0)
    return start + frac * (end - start)


def epsilon(
    epoch: jax.Array,
    random_epochs: int,
    train_epochs: int,
    eps_start: float = 0.2,
    eps_end: float = 0.01,
) -> jax.Array:
    """Exploration rate after `epoch` completed epochs: 1 (uniform) during the random phase,
    then linear `eps_start -> eps_end` over `train_epochs`. epoch: [] int -> [] float32."""
    decayed = linear(eps_start, eps_end, train_epochs, epoch - random_epochs)
    return jnp.where(epoch < random_epochs, 1.0, decayed).astype(jnp.float32)


def epsilon_greedy(
    key: jax.Array, q: jax.Array, eps: jax.Array
) -> jax.Array:
    """Greedy action with probability `1 - eps`, else uniform. q: [N, A] -> action [N] int32.

    Each row draws its own coin and its own random action.
    """
    coin_key, action_key = jax.random.split(key)
    num, num_actions = q.shape
    greedy = jnp.argmax(q, axis=-1).astype(jnp.int32)
    random = jax.random.randint(action_key, (num,), 0, num_actions, dtype=jnp.int32)
    explore = jax.random.uniform(coin_key, (num,)) < eps
    return jnp.where(explore, random, greedy)
