"""Agents: networks (encoder -> memory -> head), Double Dueling DQN, recurrent PPO.

Both algorithms follow the `Algorithm` protocol of `rlmem.agents.base` and run their memory
model over replayed or collected data through `rlmem.agents.batching` (tape or segments).
"""

from rlmem.agents.base import Algorithm, Rollout
from rlmem.agents.dqn import DQN, DQNState, td_loss
from rlmem.agents.networks import RecurrentNetwork, actor_critic, q_network
from rlmem.agents.ppo import PPO, PPOState, ppo_loss
from rlmem.agents.unroll import Unrolled, unroll_segments, unroll_tape

__all__ = [
    "DQN",
    "PPO",
    "Algorithm",
    "DQNState",
    "PPOState",
    "RecurrentNetwork",
    "Rollout",
    "Unrolled",
    "actor_critic",
    "ppo_loss",
    "q_network",
    "td_loss",
    "unroll_segments",
    "unroll_tape",
]
