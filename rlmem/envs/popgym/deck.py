"""Card-deck helpers shared by the card-game families (popgym's `core/deck.py`, in JAX).

A popgym `Deck` of `num_decks` decks holds `52 * num_decks` cards with ids `0..N-1`; card
`i` has suit `i % 4`, rank `(i // 4) % 13` and colour `i % 2` (popgym tiles suits inside
ranks and colours alternately). Popgym shuffles the ids and deals from the *end* of the
shuffled array. rlmem stores a shuffled deck in **deal order** instead: `cards[t]` is the
`t`-th card dealt, so a family only needs a step counter to know what is on the table.

`CardGame` is the frame of the games played over one such deal (Repeat First, Repeat
Previous, Higher/Lower, Autoencode; Count Recall reuses its settings); `SuitGame` adds the
suit-in, suit-out observation and action of the two Repeat games.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment

from rlmem.envs import spaces
from rlmem.envs.popgym.base import PopgymEnv

DECK_SIZE = 52
NUM_SUITS = 4
NUM_RANKS = 13
NUM_COLORS = 2

# How many distinct values each card attribute takes (popgym's `deck_type` names).
ATTRIBUTE_SIZES = {"colors": NUM_COLORS, "suits": NUM_SUITS, "ranks": NUM_RANKS}


def num_cards(num_decks: int) -> int:
    """Number of cards in `num_decks` decks; raises on a non-positive count."""
    if not isinstance(num_decks, int | np.integer) or num_decks < 1:
        raise ValueError(f"num_decks must be a positive int, got {num_decks!r}")
    return DECK_SIZE * int(num_decks)


def shuffled_deck(key: jax.Array, num_decks: int) -> jax.Array:
    """A uniformly shuffled deck in deal order.

    Returns:
      cards: `[52 * num_decks]` int32, a permutation of the card ids.
    """
    return jax.random.permutation(key, num_cards(num_decks)).astype(jnp.int32)


def suit(card: jax.Array) -> jax.Array:
    """Suit index in `[0, 4)` of card ids (any shape), int32."""
    return (card % NUM_SUITS).astype(jnp.int32)


def rank(card: jax.Array) -> jax.Array:
    """Rank index in `[0, 13)` of card ids (any shape), int32; ace is 0, king 12."""
    return ((card // NUM_SUITS) % NUM_RANKS).astype(jnp.int32)


def color(card: jax.Array) -> jax.Array:
    """Colour index in `[0, 2)` of card ids (any shape), int32."""
    return (card % NUM_COLORS).astype(jnp.int32)


def attribute(card: jax.Array, name: str) -> jax.Array:
    """`color`, `suit` or `rank` of card ids by popgym's plural name (`"colors"`, ...)."""
    if name == "colors":
        return color(card)
    if name == "suits":
        return suit(card)
    if name == "ranks":
        return rank(card)
    raise ValueError(f"deck_type must be one of {sorted(ATTRIBUTE_SIZES)}, got {name!r}")


def deal_order_from_popgym(idx: np.ndarray) -> np.ndarray:
    """Popgym's shuffled `Deck.idx` (dealt from the end) as rlmem's deal order, int32."""
    return np.asarray(idx[::-1], dtype=np.int32).copy()


@struct.dataclass
class DealState(environment.EnvState):
    """`time`: steps taken this episode; `cards`: `[N]` card ids in deal order."""

    cards: jax.Array


@struct.dataclass
class DealParams(environment.EnvParams):
    max_steps_in_episode: int = 1_000_000


class CardGame(PopgymEnv):
    """A game over one shuffled deal of `num_decks` decks (`N = 52 * num_decks` cards).

    Subclasses define `reward(state, action)` for the step from `state`, `get_obs`, the
    spaces, and may lengthen `episode_length` (default `N - 1`, one step per card dealt
    after the first). The episode terminates after `episode_length` steps; popgym never
    truncates these games, so the time limit defaults to one step past that and never fires.

    Args:
      num_decks: decks combined into one shuffled deal.
    """

    def __init__(self, num_decks: int = 1):
        super().__init__()
        self.num_decks = int(num_decks)
        self.num_cards = num_cards(num_decks)
        self.episode_length = self.num_cards - 1

    @property
    def default_params(self) -> DealParams:
        return DealParams(max_steps_in_episode=self.episode_length + 1)

    def dealt_card(self, state: DealState) -> jax.Array:
        """Id of the card dealt last, `cards[time]` (the last card once all are dealt)."""
        return state.cards[jnp.minimum(state.time, self.num_cards - 1)]

    def reward(self, state: DealState, action: jax.Array) -> jax.Array:
        """float32 scalar reward for taking `action` in `state`."""
        raise NotImplementedError

    def step_env(self, key, state: DealState, action, params: DealParams):
        reward = self.reward(state, action)
        # Popgym checks "one card left in the deck" before dealing it, so the step that
        # reaches `episode_length` ends the episode.
        terminated = state.time == self.episode_length - 1
        state = state.replace(time=state.time + 1)
        return self.get_obs(state, params), state, reward, terminated, {}

    def reset_env(self, key, params: DealParams):
        state = DealState(time=jnp.int32(0), cards=shuffled_deck(key, self.num_decks))
        return self.get_obs(state, params), state


class SuitGame(CardGame):
    """A `CardGame` that shows the suit of the card dealt last and asks for a suit.

    Observation: Discrete(4) suit of the card just dealt. Action: Discrete(4) suit.
    """

    def get_obs(self, state: DealState, params=None, key=None) -> jax.Array:
        """Suit of the card just dealt: int32 scalar."""
        return suit(self.dealt_card(state))

    def action_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(NUM_SUITS)

    def observation_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(NUM_SUITS)
