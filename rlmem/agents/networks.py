"""Networks: encoder -> memory model -> head, with the memory models' call contract.

Every network here keeps the memory call contract of docs/architecture.md, so batching,
acting and the losses treat all of them alike (arrays carry no batch dimension; callers
vmap over envs or segments):

    out, carry = net.apply(params, obs, start, carry)                  obs: [T, F]
    out, out_next, carry = net.apply(params, obs, start, carry, next_obs, method="with_next")
    carry = net.initialize_carry()

`out` is the head's output for every step (`[T, A]` Q-values for `QNetwork`, a
`(logits [T, A], value [T])` pair for `ActorCritic`); `out_next[t]` is the output for
`next_obs[t]` fed right after `obs[0..t]`, i.e. with the whole episode prefix in the
recurrent state (the TD target's next state).

The paper's layers (PAPER.md): encoder `Linear(obs -> 256) -> LayerNorm(no affine) ->
LeakyReLU(0.01)`, dueling head of two 256-wide blocks then `V` and `A` with the last
layers initialised at scale 0.01.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from rlmem.checks import positive_int
from rlmem.memory.memoroid import Memoroid

PyTree = Any
LEAKY_SLOPE = 0.01


def scaled_init(scale: float) -> nn.initializers.Initializer:
    """LeCun-normal initialisation multiplied by `scale` (small last layers start near 0)."""
    base = nn.initializers.lecun_normal()

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        return scale * base(key, shape, dtype)

    return init


class Block(nn.Module):
    """`Dense(features) -> LayerNorm(no affine) -> LeakyReLU(0.01)`. x: [..., F] -> [..., D]."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Dense(self.features)(x)
        # No scale/bias: the normalisation only fixes the activations' range; the next
        # Dense layer has its own affine map.
        x = nn.LayerNorm(use_scale=False, use_bias=False)(x)
        return nn.leaky_relu(x, LEAKY_SLOPE)


Encoder = Block  # the paper's encoder is exactly one block: obs -> hidden


class DuelingHead(nn.Module):
    """Dueling Q head: `Q = V + A - mean(A)`. y: [T, H] -> q: [T, num_actions].

    Attributes:
      num_actions: number of discrete actions.
      hidden_size: width of the `num_blocks` blocks before `V` and `A`.
      num_blocks: blocks shared by `V` and `A` (the paper: 2).
      last_layer_scale: init scale of the `V` and `A` layers (the paper: 0.01).
    """

    num_actions: int
    hidden_size: int = 256
    num_blocks: int = 2
    last_layer_scale: float = 0.01

    @nn.compact
    def __call__(self, y: jax.Array) -> jax.Array:
        for _ in range(self.num_blocks):
            y = Block(self.hidden_size)(y)
        init = scaled_init(self.last_layer_scale)
        value = nn.Dense(1, kernel_init=init, name="value")(y)
        advantage = nn.Dense(self.num_actions, kernel_init=init, name="advantage")(y)
        return value + advantage - advantage.mean(axis=-1, keepdims=True)


class ActorCriticHead(nn.Module):
    """Separate policy and value torsos. y: [T, H] -> (logits [T, A], value [T]).

    The policy's last layer starts small (near-uniform initial policy); the value's at
    unit scale.
    """

    num_actions: int
    hidden_size: int = 256
    num_blocks: int = 2
    last_layer_scale: float = 0.01

    @nn.compact
    def __call__(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        pi, v = y, y
        for _ in range(self.num_blocks):
            pi = Block(self.hidden_size)(pi)
            v = Block(self.hidden_size)(v)
        logits = nn.Dense(
            self.num_actions, kernel_init=scaled_init(self.last_layer_scale), name="logits"
        )(pi)
        value = nn.Dense(1, kernel_init=scaled_init(1.0), name="value")(v)
        return logits, value[..., 0]


class RecurrentNetwork(nn.Module):
    """`Encoder -> memory -> head`, keeping the memory model's call contract.

    Attributes:
      memory: a memory model (rlmem.memory.make_memory) with `__call__`, `with_next` and
        `initialize_carry`.
      head: maps memory outputs `[T, H]` to the network's output pytree (leaves `[T, ...]`).
      hidden_size: width of the encoder (the memory's input size).
    """

    memory: nn.Module
    head: nn.Module
    hidden_size: int = 256

    def setup(self) -> None:
        self.encoder = Encoder(self.hidden_size)

    def __call__(
        self, obs: jax.Array, start: jax.Array, carry: PyTree
    ) -> tuple[PyTree, PyTree]:
        """obs: [T, F], start: [T] bool, carry: state before obs[0] -> (out [T, ...], carry)."""
        y, carry = self.memory(self.encoder(obs), start, carry)
        return self.head(y), carry

    def with_next(
        self, obs: jax.Array, start: jax.Array, carry: PyTree, next_obs: jax.Array
    ) -> tuple[PyTree, PyTree, PyTree]:
        """Like `__call__` plus the output for `next_obs[t]` fed right after `obs[0..t]`.

        obs, next_obs: [T, F] -> (out [T, ...], out_next [T, ...], carry after obs[T-1]).
        """
        y, y_next, carry = self.memory.with_next(
            self.encoder(obs), start, carry, self.encoder(next_obs)
        )
        return self.head(y), self.head(y_next), carry

    def with_states(
        self, obs: jax.Array, start: jax.Array, carry: PyTree
    ) -> tuple[PyTree, PyTree]:
        """Like `__call__`, plus the memory state after every step (memoroid memories only,
        see `keeps_states`). obs: [T, F] -> (out [T, ...], states, leaves [T, ...])."""
        y, states = self.memory.with_states(self.encoder(obs), start, carry)
        return self.head(y), states

    def next_from_states(self, states: PyTree, next_obs: jax.Array) -> PyTree:
        """The output for `next_obs[k]` fed right after the memory state `states[k]`
        (rows of `with_states`). next_obs: [K, F] -> out [K, ...]."""
        return self.head(self.memory.next_from_states(states, self.encoder(next_obs)))

    @nn.nowrap
    def initialize_carry(self) -> PyTree:
        """The memory's initial (identity / zero) state, no batch or time axis."""
        return self.memory.initialize_carry()


def keeps_states(network: RecurrentNetwork) -> bool:
    """True when the network's memory exposes per-step states (`with_states`,
    `next_from_states`): every memoroid."""
    return isinstance(network.memory, Memoroid)


@dataclass(frozen=True)
class NetworkSettings:
    """The network block of an algorithm's config (`algo.network.*`): the encoder and
    head width and the head's residual blocks (the memory model is `memory.*`)."""

    hidden_size: int = 256
    num_blocks: int = 2

    def __post_init__(self):
        positive_int("hidden_size", self.hidden_size)
        if not isinstance(self.num_blocks, int) or self.num_blocks < 0:
            raise ValueError(f"num_blocks must be an int >= 0, got {self.num_blocks!r}")


DEFAULT_NETWORK = NetworkSettings()


def q_network(
    memory: nn.Module, num_actions: int, hidden_size: int = 256, num_blocks: int = 2
) -> RecurrentNetwork:
    """The paper's Q network: encoder -> memory -> dueling head. out: q [T, num_actions]."""
    head = DuelingHead(num_actions, hidden_size, num_blocks)
    return RecurrentNetwork(memory=memory, head=head, hidden_size=hidden_size)


def actor_critic(
    memory: nn.Module, num_actions: int, hidden_size: int = 256, num_blocks: int = 2
) -> RecurrentNetwork:
    """PPO's network: encoder -> memory -> (policy logits [T, A], value [T])."""
    head = ActorCriticHead(num_actions, hidden_size, num_blocks)
    return RecurrentNetwork(memory=memory, head=head, hidden_size=hidden_size)


def init_params(network: RecurrentNetwork, key: jax.Array, obs_size: int) -> PyTree:
    """Initialise `network` on a one-step dummy input of `obs_size` features.

    Uses `with_next` so every parameter either path touches exists.
    """
    obs = jnp.zeros((1, obs_size), jnp.float32)
    start = jnp.ones((1,), bool)
    return network.init(
        key, obs, start, network.initialize_carry(), obs, method=RecurrentNetwork.with_next
    )


def broadcast_carry(network: RecurrentNetwork, num_envs: int) -> PyTree:
    """The zero recurrent state for `num_envs` envs: leaves `[num_envs, ...]`."""
    return jax.tree.map(
        lambda x: jnp.broadcast_to(x, (num_envs,) + jnp.shape(x)), network.initialize_carry()
    )


def step_network(
    network: RecurrentNetwork, params: PyTree, obs: jax.Array, start: jax.Array, carry: PyTree
) -> tuple[PyTree, PyTree]:
    """One step for each of `N` envs: the call contract with T = 1, vmapped over envs.

    obs: [N, F], start: [N] bool, carry: leaves [N, ...] -> (out leaves [N, ...], carry).
    """

    def one(o: jax.Array, s: jax.Array, c: PyTree) -> tuple[PyTree, PyTree]:
        out, c = network.apply(params, o[None], s[None], c)
        return jax.tree.map(lambda x: x[0], out), c

    return jax.vmap(one)(obs, start, carry)
