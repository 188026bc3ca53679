"""Autoencode: watch a deck of suits, then recite it backwards (popgym's `Autoencode`).

Watch phase: the agent is shown the suits of `N = 52 * num_decks` shuffled cards one per
step, with a mode flag 1 ("watch"). The observation that shows the *last* card already
carries mode 0 ("play") -- the card is still shown (an earlier JAX port hid it). Play
phase: the agent must output the suits in reverse order, `+1/N` per correct card,
`-1/N` otherwise, and sees `(0, 0)`. Actions during the watch phase are ignored (reward 0).
The episode terminates after `2N - 1` steps; the time limit defaults to one past that.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlmem.envs import spaces
from rlmem.envs.popgym import deck

WATCH = 1
PLAY = 0


EnvState = deck.DealState
EnvParams = deck.DealParams


class Autoencode(deck.CardGame):
    """Memorise a deck's suits, then output them in reverse order.

    Args:
      num_decks: decks to memorise; episode length `2 * 52 * num_decks - 1`.

    Observation: Tuple(Discrete(2) mode (1 watch, 0 play), Discrete(4) suit).
    Action: Discrete(4) suit.
    """

    def __init__(self, num_decks: int = 1):
        super().__init__(num_decks)
        self.episode_length = 2 * self.num_cards - 1

    def reward(self, state: EnvState, action: jax.Array) -> jax.Array:
        # Steps `0..N-2` deal `cards[1..N-1]`; step `t >= N-1` asks for `cards[2N-2-t]`.
        n = self.num_cards
        playing = state.time >= n - 1
        target = deck.suit(state.cards[jnp.clip(2 * n - 2 - state.time, 0, n - 1)])
        reward = jnp.where(action == target, 1.0 / n, -1.0 / n)
        return jnp.where(playing, reward, 0.0).astype(jnp.float32)

    def get_obs(self, state: EnvState, params=None, key=None) -> tuple[jax.Array, jax.Array]:
        """`(mode, suit)`, two int32 scalars; the last card is shown with mode "play"."""
        n = self.num_cards
        mode = jnp.where(state.time < n - 1, WATCH, PLAY).astype(jnp.int32)
        shown = deck.suit(self.dealt_card(state))
        card = jnp.where(state.time <= n - 1, shown, 0).astype(jnp.int32)
        return mode, card

    def action_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(deck.NUM_SUITS)

    def observation_space(self, params=None) -> spaces.Tuple:
        return spaces.Tuple([spaces.Discrete(2), spaces.Discrete(deck.NUM_SUITS)])
