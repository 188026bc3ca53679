"""The flag convention and the transition layout, documented once for the whole package.

Time index `t` counts the observations of one env stream in order. For every `t`:

* ``obs[t]``        the observation the agent acted on.
* ``action[t]``     the action taken on ``obs[t]``.
* ``reward[t]``     the reward for the transition ``t -> t+1``.
* ``next_obs[t]``   the observation that followed ``action[t]``. When the episode ended at
                    this transition it is the *final* observation of that episode (never
                    the first observation of the next one, which is ``obs[t+1]``).
* ``terminated[t]`` True when the transition ``t -> t+1`` ended the episode in a terminal
                    state: no bootstrapping from ``next_obs[t]``.
* ``truncated[t]``  True when the episode was cut after ``t`` without reaching a terminal
                    state: by the env's time limit, or (in sampled batches) where the
                    batch or segment cuts an episode that goes on in the store. Bootstrap
                    from ``next_obs[t]``. Never True together with ``terminated[t]``.
* ``start[t]``      True when ``obs[t]`` is the first observation of an episode. On a
                    stream, ``start[t+1] == terminated[t] | truncated[t]``.
* ``mask[t]``       True when the entry holds real data (False for padding).

Memory models and scans only ever look at ``start``; returns and TD targets use
``terminated`` and ``truncated``; losses average over ``mask``.

Batch layouts (see :mod:`rlmem.data`): tape-based batching returns every field as
``[B, ...]`` (one tape of concatenated episodes), segment-based batching as
``[N, L, ...]`` (zero-padded segments, one row per segment).
"""

from __future__ import annotations

from typing import Any

import jax
from flax import struct

PyTree = Any


@struct.dataclass
class Transition:
    """One transition per leading index; leading dims are `[...]` (e.g. `[B]` or `[N, L]`).

    Attributes:
      obs: `[..., F]` float32 observation acted on.
      action: `[...]` int32 action.
      reward: `[...]` float32 reward for `t -> t+1`.
      next_obs: `[..., F]` float32 observation after the action (final obs at episode end).
      terminated: `[...]` bool, terminal transition.
      truncated: `[...]` bool, episode cut (time limit or batch edge): bootstrap from `next_obs`.
      start: `[...]` bool, `obs` is the first observation of its episode.
      mask: `[...]` bool, real data (not padding).
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    start: jax.Array
    mask: jax.Array
