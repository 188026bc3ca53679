"""Repeat Previous: output the suit of the card `k` deals back (popgym's `RepeatPrevious`).

The agent sees a stream of card suits from `num_decks` shuffled decks. Before the step
that deals card `t+1`, the agent has seen cards `0..t`; once at least `k` have been seen it
is rewarded `+1/(N-k)` for naming the suit of card `t+1-k`, else `-1/(N-k)`
(`N = 52 * num_decks`). So with `k = 1` it repeats the card currently shown; popgym's
docstring says "k == 1 is the previous timestep", but its code (matched here) counts the
current card as `k = 1`. The first `k - 1` steps give reward 0. The episode terminates
after `N - 1` steps; the time limit defaults to one past that, so it never fires.
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
    """`time`: steps taken (`cards[time]` was dealt last); `cards`: `[N]` deal order."""

    cards: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    max_steps_in_episode: int = 1_000_000


class RepeatPrevious(environment.Environment[EnvState, EnvParams]):
    """Repeat the suit of the card dealt `k - 1` deals before the one shown.

    Args:
      num_decks: decks cycled through; sets the episode length `52 * num_decks - 1`.
      k: how far back to recall, `1 <= k < 52 * num_decks`.

    Observation: Discrete(4) suit of the card just dealt. Action: Discrete(4) suit.
    """

    def __init__(self, num_decks: int = 1, k: int = 4):
        super().__init__()
        self.num_decks = int(num_decks)
        self.num_cards = deck.num_cards(num_decks)
        if not isinstance(k, int) or not 1 <= k < self.num_cards:
            raise ValueError(f"k must be an int in [1, {self.num_cards}) for "
                             f"num_decks={num_decks}, got {k!r}")
        self.k = k
        self.episode_length = self.num_cards - 1

    @property
    def default_params(self) -> EnvParams:
        return EnvParams(max_steps_in_episode=self.episode_length + 1)

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        scale = 1.0 / (self.num_cards - self.k)
        # The hand holds cards 0..time; popgym scores hand[-k] once the hand has k cards.
        scored = state.time + 1 >= self.k
        target = deck.suit(state.cards[jnp.maximum(state.time + 1 - self.k, 0)])
        reward = jnp.where(action == target, scale, -scale)
        reward = jnp.where(scored, reward, 0.0).astype(jnp.float32)
        terminated = state.time == self.num_cards - 2
        state = state.replace(time=state.time + 1)
        return self.get_obs(state, params), state, reward, terminated, {}

    def reset_env(self, key, params: EnvParams):
        state = EnvState(time=jnp.int32(0), cards=deck.shuffled_deck(key, self.num_decks))
        return self.get_obs(state, params), state

    def get_obs(self, state: EnvState, params=None, key=None) -> jax.Array:
        """Suit of the card just dealt: int32 scalar."""
        return deck.suit(state.cards[jnp.minimum(state.time, self.num_cards - 1)])

    @property
    def name(self) -> str:
        return "RepeatPrevious"

    @property
    def num_actions(self) -> int:
        return deck.NUM_SUITS

    def action_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(deck.NUM_SUITS)

    def observation_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(deck.NUM_SUITS)
