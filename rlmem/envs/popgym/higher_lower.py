"""Higher/Lower: guess whether the next card ranks higher (popgym's `HigherLower`).

The agent sees the rank of the card on the table and guesses whether the next card dealt
from `num_decks` shuffled decks ranks higher (action 0) or lower (action 1). A correct
guess gives `+1/N`, a wrong one `-1/N`, a tie 0 (`N = 52 * num_decks`); counting cards
helps. The episode terminates after `N - 1` guesses; the time limit defaults to one past
that, so it never fires.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlmem.envs import spaces
from rlmem.envs.popgym import deck

EnvState = deck.DealState
EnvParams = deck.DealParams


class HigherLower(deck.CardGame):
    """Guess higher (0) or lower (1) than the card on the table.

    Args:
      num_decks: decks combined into one shuffled deck; episode length `52 * num_decks - 1`.

    Observation: Discrete(13) rank of the card on the table. Action: Discrete(2).
    """

    def reward(self, state: EnvState, action: jax.Array) -> jax.Array:
        scale = 1.0 / self.num_cards
        current = deck.rank(state.cards[state.time])
        following = deck.rank(state.cards[jnp.minimum(state.time + 1, self.num_cards - 1)])
        correct = (following > current) == (action == 0)
        reward = jnp.where(correct, scale, -scale)
        return jnp.where(following == current, 0.0, reward).astype(jnp.float32)

    def get_obs(self, state: EnvState, params=None, key=None) -> jax.Array:
        """Rank of the card on the table: int32 scalar."""
        return deck.rank(self.dealt_card(state))

    def action_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(2)

    def observation_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(deck.NUM_RANKS)
