"""Repeat First: output the suit of the first card at every step (popgym's `RepeatFirst`).

The agent sees a stream of cards from `num_decks` shuffled decks (only the suit is shown)
and is rewarded `+1/(N-1)` for naming the suit of the *first* card it saw, `-1/(N-1)`
otherwise, where `N = 52 * num_decks`. The episode terminates after `N - 1` steps, when
the last card has been dealt. Popgym never truncates it; the time limit
`max_steps_in_episode` defaults to one past the natural length so it never fires.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlmem.envs.popgym import deck

EnvState = deck.DealState
EnvParams = deck.DealParams


class RepeatFirst(deck.SuitGame):
    """Repeat the first card's suit.

    Args:
      num_decks: decks cycled through; sets the episode length `52 * num_decks - 1`.

    Observation: Discrete(4) suit of the card just dealt. Action: Discrete(4) suit.
    """

    def reward(self, state: EnvState, action: jax.Array) -> jax.Array:
        scale = 1.0 / (self.num_cards - 1)
        correct = action == deck.suit(state.cards[0])
        return jnp.where(correct, scale, -scale).astype(jnp.float32)
