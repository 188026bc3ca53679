"""Concentration (memory game), a JAX port of `popgym.envs.concentration` (popgym 1.0.7).

A shuffled deck lies face down. Each step the agent flips one card; every second flip ends a
turn: two matching cards (same colour, or same rank) stay face up, otherwise both are turned
face down again. The agent must remember which card lies where.

Popgym's rules, reproduced exactly:

* The observation shows every face-up card, plus the card(s) flipped in the current turn, and
  the face-down value ``num_values`` elsewhere. The second card of a turn is shown in the
  observation of the step that flips it, then turned back.
* Rewards: ``+1 / (num_cards // 2)`` per matched pair; ``-1 / episode_length`` per card in
  play when the flipped card is already face up (the turn ends); ``-2 / episode_length`` for
  a non-matching pair, or for flipping the same card twice; 0 for the first flip of a turn.
* Terminated when every card is face up; truncated after
  ``episode_length = ceil(2n - n / (2n - 1))`` steps (``n = 52 * num_decks``), the expected
  length of a perfect player's game.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from rlmem.envs import spaces
from rlmem.envs.popgym import deck
from rlmem.envs.popgym.base import PopgymEnv

# Suits cannot be matched in pairs (13 cards per suit), so popgym offers only these two.
DECK_TYPES = ("colors", "ranks")


@struct.dataclass
class EnvState(environment.EnvState):
    """Concentration state (n = number of cards).

    Attributes:
      cards: `[n]` int32, id of the card at each position (popgym's shuffled `Deck.idx`).
      face_up: `[n]` bool, cards matched so far (they stay face up).
      first: int32, position of the first card flipped this turn, -1 when none is.
      time: int32, steps taken this episode.
    """

    cards: jax.Array
    face_up: jax.Array
    first: jax.Array
    time: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    """Concentration parameters (defaults are those of one deck; see `Concentration`).

    Attributes:
      max_steps_in_episode: popgym's `episode_length`; the failure penalty is
        `-1 / max_steps_in_episode` per card, as in popgym.
      success_reward: reward for a matched pair, `1 / (num_cards // 2)`.
    """

    max_steps_in_episode: int = 104
    success_reward: float = 1.0 / 26


class Concentration(PopgymEnv):
    """Concentration with `num_decks` decks, matching cards by `deck_type`.

    Args:
      num_decks: number of 52-card decks (>= 1).
      deck_type: `"colors"` (2 values) or `"ranks"` (13 values).

    Observation: `MultiDiscrete([num_values + 1] * n)` int32 `[n]`, `num_values` = face down.
    Action: `Discrete(n)`, the position of the card to flip.
    """

    def __init__(self, num_decks: int = 1, deck_type: str = "ranks"):
        super().__init__()
        if deck_type not in DECK_TYPES:
            raise ValueError(f"deck_type must be one of {DECK_TYPES}, got {deck_type!r}")
        self.num_decks = num_decks
        self.deck_type = deck_type
        self.num_cards = deck.num_cards(num_decks)
        n = self.num_cards
        self.episode_length = math.ceil(2 * n - (n / (2 * n - 1)))
        self.num_values = deck.ATTRIBUTE_SIZES[deck_type]
        self.facedown_card = self.num_values

    @property
    def default_params(self) -> EnvParams:
        return EnvParams(
            max_steps_in_episode=self.episode_length,
            success_reward=1.0 / (self.num_cards // 2),
        )

    def step_env(
        self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[str, Any]]:
        """Flips the card at position `action` (int in `[0, n)`)."""
        del key
        action = jnp.asarray(action, jnp.int32)
        has_first = state.first >= 0
        first = jnp.where(has_first, state.first, action)
        # Shown this step: matched cards and the cards of the current turn (before resolving).
        positions = jnp.arange(self.num_cards)
        shown = state.face_up | (positions == action) | (has_first & (positions == first))
        values = deck.attribute(state.cards, self.deck_type)
        obs = jnp.where(shown, values, self.facedown_card).astype(jnp.int32)

        # The first card of a turn can never be face up (the turn would have ended), so only the
        # card just flipped can be; popgym then charges for every card in play.
        already_up = state.face_up[action]
        failure = -1.0 / params.max_steps_in_episode
        match = has_first & (values[first] == values[action]) & (first != action)
        pair_reward = jnp.where(match, params.success_reward, 2.0 * failure)
        reward = jnp.where(
            already_up,
            failure * (1.0 + has_first),
            jnp.where(has_first, pair_reward, 0.0),
        ).astype(jnp.float32)

        face_up = state.face_up | (
            (~already_up & match) & ((positions == action) | (positions == first))
        )
        terminated = ~already_up & match & jnp.all(face_up)
        # A turn ends after a face-up card or a second flip; otherwise this card waits in play.
        turn_over = already_up | has_first
        new_first = jnp.where(turn_over, -1, action).astype(jnp.int32)
        state = EnvState(
            cards=state.cards, face_up=face_up, first=new_first, time=state.time + 1
        )
        return obs, state, reward, terminated, {}

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """Shuffles the deck(s) face down."""
        state = EnvState(
            cards=deck.shuffled_deck(key, self.num_decks),
            face_up=jnp.zeros(self.num_cards, bool),
            first=jnp.int32(-1),
            time=jnp.int32(0),
        )
        return self.get_obs(state, params), state

    def get_obs(
        self, state: EnvState, params: EnvParams | None = None, key: jax.Array | None = None
    ) -> jax.Array:
        """`[n]` int32: value of face-up cards and the card in play, `num_values` elsewhere.

        This is the observation after reset or after the first flip of a turn. The step that
        ends a turn also shows the two cards it turns back face down, so its observation
        (returned by `step_env`) can show more than `get_obs` of the resulting state.
        """
        positions = jnp.arange(self.num_cards)
        shown = state.face_up | (positions == state.first)
        values = deck.attribute(state.cards, self.deck_type)
        return jnp.where(shown, values, self.facedown_card).astype(jnp.int32)

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.num_cards)

    def observation_space(self, params: EnvParams | None = None) -> spaces.MultiDiscrete:
        return spaces.MultiDiscrete([self.num_values + 1] * self.num_cards)
