"""Card-deck helpers shared by the card-game families (popgym's `core/deck.py`, in JAX).

A popgym `Deck` of `num_decks` decks holds `52 * num_decks` cards with ids `0..N-1`; card
`i` has suit `i % 4`, rank `(i // 4) % 13` and colour `i % 2` (popgym tiles suits inside
ranks and colours alternately). Popgym shuffles the ids and deals from the *end* of the
shuffled array. rlmem stores a shuffled deck in **deal order** instead: `cards[t]` is the
`t`-th card dealt, so a family only needs a step counter to know what is on the table.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

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
