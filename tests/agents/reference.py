"""Plain references for the agent tests: prefix-by-prefix network runs and numpy losses.

The agents compute every Q-value of a batch in one pass (`with_next` over a tape, or vmapped
segments). The references here recompute each one from scratch: for transition `t` of an
episode, the network runs over the episode's observations up to `t` (q) and over those
followed by `next_obs[t]` (q_next), as its own fresh sequence, padded at the end to one
fixed length so a single compiled function serves every prefix.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rlmem.agents.base import Rollout
from rlmem.data.tape import add, init_store
from rlmem.types import Transition


def prefix_runner(network):
    """Jitted `run(params, seqs [S, W, F], start0 [S], carry [S, ...]) -> out [S, W, ...]`.

    Each row is one sequence whose first step has `start = start0` and all others False.
    """

    def one(params, seq, start0, carry):
        start = jnp.zeros(seq.shape[0], bool).at[0].set(start0)
        out, _ = network.apply(params, seq, start, carry)
        return out

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0)))


def prefix_sequences(obs, next_obs, first, last, width):
    """Sequences `obs[first..t] + [next_obs[t]]` for every `t` in `[first, last]`.

    Returns `(seqs [n, width, F], offsets [n])`, offset `t - first` so that
    `out[offset]` is q[t] and `out[offset + 1]` is q_next[t].
    """
    seqs, offsets = [], []
    for t in range(first, last + 1):
        seq = np.concatenate([obs[first : t + 1], next_obs[t : t + 1]])
        pad = np.zeros((width - len(seq), obs.shape[-1]), obs.dtype)
        seqs.append(np.concatenate([seq, pad]))
        offsets.append(t - first)
    return np.stack(seqs), np.asarray(offsets)


def huber(x: np.ndarray, delta: float = 1.0) -> np.ndarray:
    a = np.abs(x)
    return np.where(a <= delta, 0.5 * x**2, delta * (a - 0.5 * delta))


def double_dqn_loss(q, q_next_online, q_next_target, action, reward, terminated, mask, gamma):
    """numpy Double DQN Huber loss, mean over `mask`. q*: [M, A]; the rest [M]."""
    best = q_next_online.argmax(-1)
    target = reward + gamma * (1.0 - terminated) * q_next_target[np.arange(len(best)), best]
    chosen = q[np.arange(len(action)), action]
    per_step = huber(chosen - target)
    return float((per_step * mask).sum() / max(mask.sum(), 1))


def random_streams(
    rng: np.random.Generator, num_envs: int, length: int, obs_size: int, num_actions: int,
    p_end: float = 0.2,
) -> Transition:
    """Random env streams `[E, T]` obeying the flag convention of rlmem/types.py."""
    ends = rng.random((num_envs, length)) < p_end
    terminal = rng.random((num_envs, length)) < 0.5
    terminated, truncated = ends & terminal, ends & ~terminal
    start = np.zeros((num_envs, length), bool)
    start[:, 0] = True
    start[:, 1:] = ends[:, :-1]
    obs = rng.normal(size=(num_envs, length, obs_size)).astype(np.float32)
    # next_obs[t] is obs[t+1] inside an episode, a fresh final observation at its end.
    final = rng.normal(size=(num_envs, length, obs_size)).astype(np.float32)
    next_obs = np.concatenate([obs[:, 1:], final[:, -1:]], axis=1)
    next_obs = np.where(ends[..., None], final, next_obs)
    return Transition(
        obs=obs,
        action=rng.integers(0, num_actions, (num_envs, length)).astype(np.int32),
        reward=rng.normal(size=(num_envs, length)).astype(np.float32),
        next_obs=next_obs,
        terminated=terminated,
        truncated=truncated,
        start=start,
        mask=np.ones((num_envs, length), bool),
    )


def acted_carries(algo, state, streams: Transition) -> Any:
    """The carry before every step, as `algo.act` produces it: leaves `[E, T, ...]`."""
    num_envs = streams.obs.shape[0]

    def step(carry, xs):
        obs, start = xs
        _, new_carry, extras = algo.act(state, obs, start, carry, jax.random.key(0))
        return new_carry, extras["carry"]

    xs = (jnp.swapaxes(streams.obs, 0, 1), jnp.swapaxes(streams.start, 0, 1))
    _, carries = jax.lax.scan(step, algo.initial_carry(num_envs), xs)
    return jax.tree.map(lambda c: jnp.swapaxes(c, 0, 1), carries)


def filled_store(streams: Transition, capacity: int, carries: Any = None):
    """A real TapeStore holding `streams` (and stored carries when given)."""
    example = jax.tree.map(lambda x: x[0, 0], streams)
    extras, example_extras = None, None
    if carries is not None:
        extras = {"carry": carries}
        example_extras = {"carry": jax.tree.map(lambda c: c[0, 0], carries)}
    store = init_store(capacity, streams.obs.shape[0], example, example_extras)
    return add(store, streams, extras)


def as_rollout(streams: Transition, extras: dict) -> Rollout:
    return Rollout(transition=jax.tree.map(jnp.asarray, streams), extras=extras)
