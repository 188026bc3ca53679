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
from flax import struct
from gymnax.environments import environment

from rlmem.envs import spaces
from rlmem.envs.popgym import deck


@struct.dataclass
class EnvState(environment.EnvState):
    """`time`: guesses made (`cards[time]` is on the table); `cards`: `[N]` deal order."""

    cards: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    max_steps_in_episode: int = 1_000_000


class HigherLower(environment.Environment[EnvState, EnvParams]):
    """Guess higher (0) or lower (1) than the card on the table.

    Args:
      num_decks: decks combined into one shuffled deck; episode length `52 * num_decks - 1`.

    Observation: Discrete(13) rank of the card on the table. Action: Discrete(2).
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
        scale = 1.0 / self.num_cards
        current = deck.rank(state.cards[state.time])
        following = deck.rank(state.cards[jnp.minimum(state.time + 1, self.num_cards - 1)])
        correct = (following > current) == (action == 0)
        reward = jnp.where(correct, scale, -scale)
        reward = jnp.where(following == current, 0.0, reward).astype(jnp.float32)
        terminated = state.time == self.num_cards - 2
        state = state.replace(time=state.time + 1)
        return self.get_obs(state, params), state, reward, terminated, {}

    def reset_env(self, key, params: EnvParams):
        state = EnvState(time=jnp.int32(0), cards=deck.shuffled_deck(key, self.num_decks))
        return self.get_obs(state, params), state

    def get_obs(self, state: EnvState, params=None, key=None) -> jax.Array:
        """Rank of the card on the table: int32 scalar."""
        return deck.rank(state.cards[jnp.minimum(state.time, self.num_cards - 1)])

    @property
    def name(self) -> str:
        return "HigherLower"

    @property
    def num_actions(self) -> int:
        return 2

    def action_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(2)

    def observation_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(deck.NUM_RANKS)
