"""Repeat Previous: output the suit of the card `k` deals back (popgym's `RepeatPrevious`).

The agent sees a stream of card suits from `num_decks` shuffled decks. Before the step
that deals card `t+1`, the agent has seen cards `0..t`; once at least `k` have been seen it
is rewarded `+1/(N-k)` for naming the suit of card `t+1-k`, else `-1/(N-k)`
(`N = 52 * num_decks`). So with `k = 1` it repeats the card currently shown; popgym's
docstring says "k == 1 is the previous timestep", but its code (matched here) counts the
current card as `k = 1`. The first `k - 1` steps give reward 0. The episode terminates
after `N - 1` steps; the time limit defaults to one past that, so it never fires.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlmem.envs.popgym import deck

EnvState = deck.DealState
EnvParams = deck.DealParams


class RepeatPrevious(deck.SuitGame):
    """Repeat the suit of the card dealt `k - 1` deals before the one shown.

    Args:
      num_decks: decks cycled through; sets the episode length `52 * num_decks - 1`.
      k: how far back to recall, `1 <= k < 52 * num_decks`.

    Observation: Discrete(4) suit of the card just dealt. Action: Discrete(4) suit.
    """

    def __init__(self, num_decks: int = 1, k: int = 4):
        super().__init__(num_decks)
        if not isinstance(k, int) or not 1 <= k < self.num_cards:
            raise ValueError(f"k must be an int in [1, {self.num_cards}) for "
                             f"num_decks={num_decks}, got {k!r}")
        self.k = k

    def reward(self, state: EnvState, action: jax.Array) -> jax.Array:
        scale = 1.0 / (self.num_cards - self.k)
        # The hand holds cards 0..time; popgym scores hand[-k] once the hand has k cards.
        scored = state.time + 1 >= self.k
        target = deck.suit(state.cards[jnp.maximum(state.time + 1 - self.k, 0)])
        reward = jnp.where(action == target, scale, -scale)
        return jnp.where(scored, reward, 0.0).astype(jnp.float32)
