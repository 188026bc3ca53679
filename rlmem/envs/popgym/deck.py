"""Card-deck helpers shared by the card-game families (popgym's `core/deck.py`, in JAX).

A popgym `Deck` of `num_decks` decks holds `52 * num_decks` cards with ids `0..N-1`; card
`i` has suit `i % 4`, rank `(i // 4) % 13` and colour `i % 2` (popgym tiles suits inside
ranks and colours alternately). Popgym shuffles the ids and deals from the *end* of the
shuffled array. rlmem stores a shuffled deck in **deal order** instead: `cards[t]` is the
`t`-th card dealt, so a family only needs a step counter to know what is on the table.

`CardGame` is the frame of the games played over one such deal (Repeat First, Repeat
Previous, Higher/Lower, Autoencode; Count Recall reuses its settings); `SuitGame` adds the
suit-in, suit-out observation and action of the two Repeat games.

Shuffling is what a card game's reset costs, and a vector env resets one env in every
`episode_length` steps, so :func:`permutation` is built for speed: it sorts random keys
with a bitonic network (plain elementwise ops; batched, the decks lie along the vector
lanes) instead of `jax.random.permutation`'s general sort, and it is exactly uniform
(ties between keys are drawn again instead of broken by index; see :func:`permutation`).
On the 2-core CPU of `docs/benchmarks.md` (loaded), vmapped over 64 to 1,024 decks: 5-18x
faster than `jax.random.permutation` for 52 and 104 cards, 4-5x for 832; the decks in the
lanes (the `custom_vmap` rule) make 1,024 decks of 52 cards 3.5x faster than a plain
`vmap` of the same network. Deals are stored as uint8 (:func:`card_dtype`), a quarter of
the bytes to move.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment
from jax.custom_batching import custom_vmap

from rlmem.envs import spaces, threefry
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


def card_dtype(num_decks: int) -> jnp.dtype:
    """The narrowest integer type the card ids of `num_decks` decks fit in: uint8 up to
    four decks, else int16. Card games store their deals in it: a vector env's resets
    copy and scatter whole decks, so a narrower deal is cheaper to move."""
    return jnp.dtype(jnp.uint8) if num_cards(num_decks) <= 256 else jnp.dtype(jnp.int16)


def shuffled_deck(key: jax.Array, num_decks: int) -> jax.Array:
    """A uniformly shuffled deck in deal order.

    Returns:
      cards: `[52 * num_decks]` int32, a uniformly random permutation of the card ids.
    """
    return permutation(key, num_cards(num_decks))


# Sort keys pack the random bits above the card index while at least this many random bits
# remain (up to 128 cards: 25 bits), so one min/max per comparison sorts key and index
# together; larger decks sort full 32-bit keys and carry the index beside them.
_MIN_PACKED_RANDOM_BITS = 25


def _layout(n: int) -> tuple[int, int, bool]:
    """`(m, index_bits, packed)`: network width `m` (a power of two `>= n`), the bits an
    index `< m` needs, and whether keys are packed with the index."""
    m = 1 << max(1, (n - 1).bit_length())
    index_bits = (m - 1).bit_length()
    return m, index_bits, 32 - index_bits >= _MIN_PACKED_RANDOM_BITS


def _bitonic_sort(keys: jax.Array, vals: jax.Array | None) -> tuple[jax.Array, jax.Array | None]:
    """Sorts `keys: [m, B]` (`m` a power of two) ascending along axis 0, each column on
    its own; `vals` (same shape, or None) follow their keys. Equal keys may come out in
    any order.

    A bitonic network: `log2(m) (log2(m) + 1) / 2` rounds of compare-exchanges between
    rows, every one a min/max over whole rows, so the `B` columns fill the vector lanes.
    Each merge starts by comparing row `i` of a block with the mirror row of its other
    half (no ascending/descending flags), then halves the distance.
    """
    m = keys.shape[0]
    rest = keys.shape[1:]

    def exchange(a, b, va, vb):
        lo, hi = jnp.minimum(a, b), jnp.maximum(a, b)
        if va is None:
            return lo, hi, None, None
        swap = a > b
        return lo, hi, jnp.where(swap, vb, va), jnp.where(swap, va, vb)

    def blocks(x, width):  # [m, ...] -> [m / (2 width), 2, width, ...]
        return None if x is None else x.reshape((m // (2 * width), 2, width) + rest)

    def rows(x):
        return None if x is None else x.reshape((m,) + rest)

    size = 2
    while size <= m:
        k, v = blocks(keys, size // 2), blocks(vals, size // 2)
        lo, hi, vlo, vhi = exchange(k[:, 0], jnp.flip(k[:, 1], 1),
                                    None if v is None else v[:, 0],
                                    None if v is None else jnp.flip(v[:, 1], 1))
        keys = rows(jnp.concatenate([lo, jnp.flip(hi, 1)], 1))
        if vals is not None:
            vals = rows(jnp.concatenate([vlo, jnp.flip(vhi, 1)], 1))
        width = size // 4
        while width >= 1:
            k, v = blocks(keys, width), blocks(vals, width)
            lo, hi, vlo, vhi = exchange(k[:, 0], k[:, 1], None if v is None else v[:, 0],
                                        None if v is None else v[:, 1])
            keys = rows(jnp.stack([lo, hi], 1))
            if vals is not None:
                vals = rows(jnp.stack([vlo, vhi], 1))
            width //= 2
        size *= 2
    return keys, vals


def _lane_words(key_data: jax.Array, attempt: jax.Array, rows: int) -> jax.Array:
    """`[rows, B]` random words: column `b` is draw `attempt[b]` from key `key_data[b]`
    (`[B, 2]`, `[B]` uint32), word `2c + j` is output `j` of Threefry-2x32 of the counter
    `(attempt, c)` under that key: counter mode, one hash per two words."""
    count = jnp.arange((rows + 1) // 2, dtype=jnp.uint32)[:, None]
    y1, y2 = threefry.threefry2x32(key_data[None, :, 0], key_data[None, :, 1],
                                   attempt[None], count)
    return jnp.stack([y1, y2], 1).reshape((-1, key_data.shape[0]))[:rows]


@functools.cache
def _shuffler(n: int):
    """`shuffle(key_data) -> order`: one uniformly random permutation of `0..n-1` per
    row of `key_data: [B, 2]` uint32, as `[B, n]` (uint8 up to 256 elements, else int16;
    jitted, cached per `n`).

    Under `vmap` the batch axes are folded into `B` (a `custom_vmap` rule), so any nesting
    of vmaps (a vector env of Count Recall's two decks, vmapped over seeds) runs one
    network with every deck in the vector lanes, whichever inputs are batched.
    """
    m, index_bits, packed = _layout(n)
    # Python and numpy scalars only (they stay literals): an array here would become a
    # constant of the custom_vmap, which jax cannot batch under a batched `cond`/`while`
    # (an AssertionError in jax); checked below, with a plain fallback.
    top = np.uint32((0xFFFFFFFF << index_bits) & 0xFFFFFFFF if packed else 0xFFFFFFFF)
    shift = index_bits if packed else 0
    # Indices travel in the narrowest type that holds them (moved and copied less).
    order_dtype = np.uint8 if m <= 256 else np.int16

    def draw(key_data, attempt):
        """Draw `attempt` of every deck: its order `[n, B]` and whether two keys tied."""
        index = jnp.arange(m, dtype=jnp.uint32)[:, None]
        keys = _lane_words(key_data, attempt, n) & top
        if m > n:  # padding rows hold the largest key, so they sort after every card
            keys = jnp.concatenate([keys, jnp.full((m - n, keys.shape[1]), top, keys.dtype)])
        if packed:  # equal random parts sort by index, so padding still comes last
            keys, _ = _bitonic_sort(keys | index, None)
            order = (keys[:n] & np.uint32(m - 1)).astype(order_dtype)
        else:
            keys, order = _bitonic_sort(
                keys, jnp.broadcast_to(index.astype(order_dtype), keys.shape))
            order = order[:n]
        # Sorted, so equal random parts are neighbours; comparing the first padding row
        # too rejects a card whose key equals the padding key (unpacked, that card could
        # otherwise sort behind a padding index).
        random_part = keys[: min(n + 1, m)] >> shift
        return order, jnp.any(random_part[1:] == random_part[:-1], axis=0)

    def shuffle(key_data):
        # Keys are often computed right before (`VecEnv`'s `fold_in`s); without the
        # barrier XLA fuses that hash into the words' and recomputes it for every word
        # (measured in `VecEnv`: resets several times slower).
        key_data = jax.lax.optimization_barrier(key_data)
        # Draw 0 for every deck, then draw again (1, 2, ...) the decks whose keys tied,
        # until none tie: each deck keeps its first tie-free draw, whatever the batch.
        # (Draw 0 inside the loop too, so that the network appears once in the program:
        # less to compile.)
        def redraw(carry):
            attempt, order, tied = carry
            new, new_tied = draw(key_data, jnp.full(tied.shape, attempt))
            return attempt + 1, jnp.where(tied, new, order), tied & new_tied

        num = key_data.shape[0]
        init = (np.uint32(0), jnp.zeros((n, num), order_dtype), jnp.ones(num, bool))
        _, order, _ = jax.lax.while_loop(lambda carry: jnp.any(carry[2]), redraw, init)
        return order.T

    batched = custom_vmap(shuffle)

    @batched.def_vmap
    def _(axis_size, in_batched, key_data):
        # `key_data` is `[axis_size, ..., 2]` when batched (batch axis first), else the
        # same key for every member of the batch.
        if not in_batched[0]:
            key_data = jnp.broadcast_to(key_data, (axis_size,) + key_data.shape)
        lead = key_data.shape[:-1]
        return batched(key_data.reshape((-1, 2))).reshape(lead + (n,)), True

    spec = jax.ShapeDtypeStruct((1, 2), jnp.uint32)
    # Compiled as one unit: outside `jit`, a custom_vmap runs its function op by op.
    return jax.jit(shuffle if jax.make_jaxpr(shuffle)(spec).consts else batched)


def _key_data(key: jax.Array) -> jax.Array:
    """Two uint32 words of key material: a threefry key's own (raw `PRNGKey` or typed),
    else two words drawn from the key."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if "threefry" in str(jax.random.key_impl(key)):
            return jax.random.key_data(key)
    elif key.shape == (2,) and key.dtype == jnp.uint32:
        return key
    return jax.random.bits(key, (2,), jnp.uint32)


def permutation(key: jax.Array, n: int) -> jax.Array:
    """A uniformly random permutation of `0..n-1`: `[n]` int32.

    Draws `n` random 32-bit words (Threefry-2x32, jax's PRNG, in counter mode under
    `key`) and returns the indices in the order of their words, sorted by a bitonic
    network (:func:`_bitonic_sort`). Up to 128 elements the sort key is a word's top
    `b = 32 - log2(m)` bits with the index below them (`m`: `n` rounded up to a power of
    two; `b` = 26 for 52 cards, 25 for 104), beyond that the whole word (`b` = 32).

    Uniformity: `n` i.i.d. keys that are all distinct are in each of the `n!` orders
    with the same probability (the event "all distinct" is symmetric in the keys). Two
    equal keys (probability about `n^2 / 2^(b+1)`: 2e-5 for 52 cards, 1.6e-4 for
    104, 8e-5 for 832) would break by index, so such a draw is rejected and drawn again
    with the next counters, and the first tie-free draw is kept. The result is therefore
    exactly uniform, with no bias bound to state, as far as Threefry's words are
    independent and uniform (the assumption all of `jax.random` rests on).
    `jax.random.permutation` instead keeps ties in index order.

    Batched (`vmap`, nested or not, any mix of batched and unbatched arguments), every
    permutation is exactly the one its key gives alone.

    `n` must be a positive Python int.
    """
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return _shuffler(int(n))(_key_data(key)[None])[0].astype(jnp.int32)


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
    """`time`: steps taken this episode; `cards`: `[N]` card ids in deal order (the games
    deal in :func:`card_dtype`; any integer type steps the same)."""

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

    @property
    def fixed_episode_length(self) -> int:
        """Every episode lasts exactly `episode_length` steps (before any time limit).

        `rlmem.envs.vector.VecEnv` reads it: envs that start together finish together.
        """
        return self.episode_length

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
        state = DealState(time=jnp.int32(0), cards=self.deal(key))
        return self.get_obs(state, params), state

    def deal(self, key: jax.Array) -> jax.Array:
        """A freshly shuffled deal: `[N]` card ids in deal order, :func:`card_dtype`."""
        return shuffled_deck(key, self.num_decks).astype(card_dtype(self.num_decks))


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
