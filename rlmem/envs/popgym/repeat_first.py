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
from flax import struct
from gymnax.environments import environment

from rlmem.envs import spaces
from rlmem.envs.popgym import deck


@struct.dataclass
class EnvState(environment.EnvState):
    """`time`: steps taken (card `cards[time]` is on the table); `cards`: `[N]` deal order."""

    cards: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    max_steps_in_episode: int = 1_000_000


class RepeatFirst(environment.Environment[EnvState, EnvParams]):
    """Repeat the first card's suit.

    Args:
      num_decks: decks cycled through; sets the episode length `52 * num_decks - 1`.

    Observation: Discrete(4) suit of the card just dealt. Action: Discrete(4) suit.
    """

    def __init__(self, num_decks: int = 1):
        super().__init__()
        self.num_decks = int(num_decks)
        self.num_cards = deck.num_cards(num_decks)
        self.episode_length = self.num_cards - 1

    @property
    def default_params(self) -> EnvParams:
        return EnvParams(max_steps_in_episode=self.episode_length + 1)

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        scale = 1.0 / (self.num_cards - 1)
        correct = action == deck.suit(state.cards[0])
        reward = jnp.where(correct, scale, -scale).astype(jnp.float32)
        # Popgym checks "one card left in the deck" before dealing it: the N-1'th step ends.
        terminated = state.time == self.num_cards - 2
        state = state.replace(time=state.time + 1)
        return self.get_obs(state, params), state, reward, terminated, {}

    def reset_env(self, key, params: EnvParams):
        state = EnvState(time=jnp.int32(0), cards=deck.shuffled_deck(key, self.num_decks))
        return self.get_obs(state, params), state

    def get_obs(self, state: EnvState, params=None, key=None) -> jax.Array:
        """Suit of the card on the table: int32 scalar."""
        return deck.suit(state.cards[jnp.minimum(state.time, self.num_cards - 1)])

    @property
    def name(self) -> str:
        return "RepeatFirst"

    @property
    def num_actions(self) -> int:
        return deck.NUM_SUITS

    def action_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(deck.NUM_SUITS)

    def observation_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(deck.NUM_SUITS)
