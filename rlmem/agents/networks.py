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
layers initialised at scale 0.01. For pixel observations (POPGym Arcade) the encoder can
be `ConvEncoder` instead (`algo.network.encoder=conv`): a small CNN over the image the
flat observation starts with, then the same block.
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

# ConvEncoder's layers: (channels, kernel, stride), "SAME" padding, so each halves or
# quarters the image: 128 x 128 -> 32 x 32 -> 16 x 16 -> 8 x 8 (x 32 = 2048 features).
CONV_LAYERS = ((16, 8, 4), (32, 4, 2), (32, 3, 2))


class ConvEncoder(nn.Module):
    """Pixels -> hidden, for flat observations that start with an image.

    `x[..., :H*W*C]` is the image raveled row-major (`rlmem.envs.image_shape`; values in
    `[0, 1]`), the rest flat features (first-step flag, previous action). The image goes
    through `CONV_LAYERS`, each `Conv -> LayerNorm(no affine, over channels) ->
    LeakyReLU(0.01)`; its features, flattened, are concatenated with the rest and end in
    one `Block(features)`.

    x: [..., F] with F >= H*W*C -> [..., features].

    Attributes:
      features: output width (the memory's input size).
      image_shape: `(H, W, C)` of the leading image.
    """

    features: int
    image_shape: tuple[int, int, int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h, w, c = self.image_shape
        size = h * w * c
        if x.shape[-1] < size:
            raise ValueError(f"ConvEncoder: observations have {x.shape[-1]} features, fewer "
                             f"than the image_shape {self.image_shape} needs ({size})")
        lead = x.shape[:-1]
        image = x[..., :size].reshape((-1, h, w, c))  # [N, H, W, C]
        for channels, kernel, stride in CONV_LAYERS:
            image = nn.Conv(channels, (kernel, kernel), strides=(stride, stride),
                            padding="SAME")(image)
            image = nn.LayerNorm(use_scale=False, use_bias=False)(image)
            image = nn.leaky_relu(image, LEAKY_SLOPE)
        features = image.reshape(lead + (-1,))  # [..., H' * W' * C']
        return Block(self.features)(jnp.concatenate([features, x[..., size:]], axis=-1))


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
      image_shape: None: the paper's one-block `Encoder`; `(H, W, C)`: a `ConvEncoder`
        over the image the observation starts with.
    """

    memory: nn.Module
    head: nn.Module
    hidden_size: int = 256
    image_shape: tuple[int, int, int] | None = None

    def setup(self) -> None:
        if self.image_shape is None:
            self.encoder = Encoder(self.hidden_size)
        else:
            self.encoder = ConvEncoder(self.hidden_size, tuple(self.image_shape))

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


ENCODERS = ("mlp", "conv")  # NetworkSettings.encoder


@dataclass(frozen=True)
class NetworkSettings:
    """The network block of an algorithm's config (`algo.network.*`): the encoder and
    head width, the head's residual blocks and the encoder kind (the memory model is
    `memory.*`).

    Attributes:
      hidden_size: encoder and head width.
      num_blocks: the head's blocks.
      encoder: `mlp` (the paper's one block over the flat observation) or `conv`
        (`ConvEncoder`, for observations that start with an image).
      image_shape: `(H, W, C)` of that image, `conv` only; `rlmem.config` wires it from
        the env (`rlmem.envs.image_shape`), it is not a config key.
    """

    hidden_size: int = 256
    num_blocks: int = 2
    encoder: str = "mlp"
    image_shape: tuple[int, int, int] | None = None

    def __post_init__(self):
        positive_int("hidden_size", self.hidden_size)
        if not isinstance(self.num_blocks, int) or self.num_blocks < 0:
            raise ValueError(f"num_blocks must be an int >= 0, got {self.num_blocks!r}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, "
                             f"got {self.encoder!r}")
        shape = self.image_shape
        if self.encoder == "mlp" and shape is not None:
            raise ValueError(f"image_shape={shape!r} is only read by encoder='conv'")
        if self.encoder == "conv":
            if (not isinstance(shape, tuple | list) or len(shape) != 3
                    or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                               for d in shape)):
                raise ValueError(f"encoder='conv' needs image_shape=(H, W, C), three ints "
                                 f">= 1, got {shape!r}")
            object.__setattr__(self, "image_shape", tuple(shape))


DEFAULT_NETWORK = NetworkSettings()


def q_network(
    memory: nn.Module, num_actions: int, hidden_size: int = 256, num_blocks: int = 2,
    image_shape: tuple[int, int, int] | None = None,
) -> RecurrentNetwork:
    """The paper's Q network: encoder -> memory -> dueling head. out: q [T, num_actions].

    `image_shape` `(H, W, C)`: a `ConvEncoder` (`NetworkSettings.image_shape`)."""
    head = DuelingHead(num_actions, hidden_size, num_blocks)
    return RecurrentNetwork(memory=memory, head=head, hidden_size=hidden_size,
                            image_shape=image_shape)


def actor_critic(
    memory: nn.Module, num_actions: int, hidden_size: int = 256, num_blocks: int = 2,
    image_shape: tuple[int, int, int] | None = None,
) -> RecurrentNetwork:
    """PPO's network: encoder -> memory -> (policy logits [T, A], value [T]).

    `image_shape` `(H, W, C)`: a `ConvEncoder` (`NetworkSettings.image_shape`)."""
    head = ActorCriticHead(num_actions, hidden_size, num_blocks)
    return RecurrentNetwork(memory=memory, head=head, hidden_size=hidden_size,
                            image_shape=image_shape)


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
