"""Count Recall: how often has the queried card been dealt so far? (popgym's `CountRecall`)

Each step deals one card from a shuffled *value* deck and one from a shuffled *query*
deck; the agent sees `[value, query]` (their colour, suit or rank, per `deck_type`) and
must answer how many value cards equal to the query it has seen so far, the current one
included. The answer is scored on the *next* step: `+1/(N-1)` if right, else `-1/(N-1)`
(`N = 52 * num_decks`). All `N / C + 1` counts are valid actions (`C` distinct values;
an earlier JAX port allowed only 2). The episode terminates after `N - 1` steps; the time
limit defaults to one past that, so it never fires.
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
    """`time`: steps taken; `values`, `queries`: `[N]` card ids in deal order
    (:func:`deck.card_dtype`); `counts`: `[C]` int32, how often each value was dealt in
    `values[0..time]`."""

    values: jax.Array
    queries: jax.Array
    counts: jax.Array


EnvParams = deck.DealParams


class CountRecall(deck.CardGame):
    """Count how often the queried value was dealt.

    Args:
      num_decks: decks in each of the value and query decks; episode length `52n - 1`.
      error_clamp: kept for popgym's signature; popgym 1.0.7 does not use it.
      deck_type: what identifies a card: `"colors"`, `"suits"` or `"ranks"`.

    Observation: MultiDiscrete([C, C]) `[value, query]`. Action: Discrete(N / C + 1).
    """

    def __init__(self, num_decks: int = 1, error_clamp: float = 0.5, deck_type: str = "colors"):
        if deck_type not in deck.ATTRIBUTE_SIZES:
            raise ValueError(f"deck_type must be one of {sorted(deck.ATTRIBUTE_SIZES)}, "
                             f"got {deck_type!r}")
        super().__init__(num_decks)
        self.error_clamp = error_clamp
        self.deck_type = deck_type
        self.num_distinct = deck.ATTRIBUTE_SIZES[deck_type]
        self.max_card_count = self.num_cards // self.num_distinct

    def _value(self, cards: jax.Array, time: jax.Array) -> jax.Array:
        return deck.attribute(cards[jnp.minimum(time, self.num_cards - 1)], self.deck_type)

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        # The answer to the query on the table counts the value cards dealt up to now.
        answer = state.counts[self._value(state.queries, state.time)]
        scale = 1.0 / self.episode_length
        reward = jnp.where(action == answer, scale, -scale).astype(jnp.float32)
        time = state.time + 1
        counts = state.counts.at[self._value(state.values, time)].add(1)
        state = state.replace(time=time, counts=counts)
        terminated = time == self.num_cards - 1
        return self.get_obs(state, params), state, reward, terminated, {}

    def reset_env(self, key, params: EnvParams):
        # Both decks in one batched shuffle (the same decks as two separate calls).
        values, queries = jax.vmap(self.deal)(jax.random.split(key))
        first = deck.attribute(values[0], self.deck_type)
        state = EnvState(
            time=jnp.int32(0),
            values=values,
            queries=queries,
            counts=jnp.zeros(self.num_distinct, jnp.int32).at[first].add(1),
        )
        return self.get_obs(state, params), state

    def get_obs(self, state: EnvState, params=None, key=None) -> jax.Array:
        """`[value, query]` of the cards just dealt: `[2]` int32."""
        return jnp.stack([self._value(state.values, state.time),
                          self._value(state.queries, state.time)])

    def action_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(self.max_card_count + 1)

    def observation_space(self, params=None) -> spaces.MultiDiscrete:
        return spaces.MultiDiscrete([self.num_distinct] * 2)
