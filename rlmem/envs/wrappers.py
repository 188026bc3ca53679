"""Observation/action wrappers in the style of popgym's, as gymnax environments.

Each wrapper is itself a gymnax `Environment` that overrides `step_env`, `reset_env`,
`get_obs`, `is_truncated` and the spaces, so wrappers compose *below* an auto-resetting
or vectorised env (`rlmem.envs.vector.VecEnv` calls `step_env`/`reset_env` only).
:func:`rlmem.envs.make` applies, innermost first (popgym's composition
`DiscreteAction(Flatten(Antialias(PreviousAction(env))))`):

1. :class:`PreviousAction` (optional): append the action just taken; popgym's null action
   `0` on reset, so after flattening the reset observation holds the one-hot of action 0.
2. :class:`Antialias`: append a Discrete(2) "is first step" flag, 1 on the reset obs.
3. :class:`FlattenObservation`: one-hot/concatenate into one `[F]` float32 vector,
   exactly gymnasium's `flatten` (so popgym's `Flatten`).
4. :class:`DiscreteAction`: MultiDiscrete actions become one Discrete (`np.unravel_index`
   order, as popgym's `DiscreteAction`).
5. :class:`DiscretizeBox` (Box actions only, e.g. Pendulum): `bins ** D` evenly spaced
   actions, so every env has one Discrete action.

:class:`EpisodeStatistics` adds the return and length of *completed* episodes to `info`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment

from rlmem.envs import spaces


class Wrapper(environment.Environment):
    """Forwards everything to the wrapped env; subclasses override what they change."""

    def __init__(self, env: environment.Environment):
        self._env = env

    def __getattr__(self, name: str) -> Any:
        if name == "_env":  # not yet set (e.g. during copy): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self._env, name)

    @property
    def unwrapped(self) -> environment.Environment:
        env = self._env
        return env.unwrapped if isinstance(env, Wrapper) else env

    @property
    def default_params(self):
        return self._env.default_params

    @property
    def name(self) -> str:
        return self._env.name

    @property
    def num_actions(self) -> int:
        return self._env.num_actions

    def step_env(self, key, state, action, params):
        return self._env.step_env(key, state, action, params)

    def reset_env(self, key, params):
        return self._env.reset_env(key, params)

    def get_obs(self, state, params=None, key=None):
        return self._env.get_obs(state, params, key)

    def is_truncated(self, state, params) -> jax.Array:
        return self._env.is_truncated(state, params)

    def observation_space(self, params=None):
        return self._env.observation_space(params)

    def action_space(self, params=None):
        return self._env.action_space(params)


def _append(space: spaces.Space, obs: Any, extra: Any) -> tuple:
    """Popgym's rule: a Tuple observation gets `extra` appended, anything else is paired."""
    if isinstance(space, spaces.Tuple):
        return (*obs, extra)
    return (obs, extra)


def _append_space(space: spaces.Space, extra: spaces.Space) -> spaces.Tuple:
    if isinstance(space, spaces.Tuple):
        return spaces.Tuple([*space.spaces, extra])
    if isinstance(space, spaces.Dict):
        raise TypeError(f"Dict observation spaces are not supported by this wrapper: {space!r}")
    return spaces.Tuple([space, extra])


class StateWrapper(Wrapper):
    """A wrapper with a state of its own that holds the wrapped env's as `env_state`."""

    def get_obs(self, state, params=None, key=None):
        return self._env.get_obs(state.env_state, params, key)

    def is_truncated(self, state, params) -> jax.Array:
        return self._env.is_truncated(state.env_state, params)


class AppendToObservation(StateWrapper):
    """Appends one value kept in the state to the wrapped env's observation (`_append`).

    Subclasses define `extra(state)`, the appended value, and `extra_space(params)`, its
    space, besides `step_env` and `reset_env`.
    """

    def extra(self, state) -> jax.Array:
        raise NotImplementedError

    def extra_space(self, params=None) -> spaces.Space:
        raise NotImplementedError

    def _observe(self, obs: Any, state, params) -> tuple:
        """The wrapped env's `obs` with `extra(state)` appended."""
        return _append(self._env.observation_space(params), obs, self.extra(state))

    def get_obs(self, state, params=None, key=None):
        return self._observe(super().get_obs(state, params, key), state, params)

    def observation_space(self, params=None):
        return _append_space(self._env.observation_space(params), self.extra_space(params))


@struct.dataclass
class PreviousActionState:
    env_state: Any
    prev_action: jax.Array


class PreviousAction(AppendToObservation):
    """Append the previous action to the observation (popgym's `PreviousAction`).

    On reset the appended action is popgym's null action: zeros of the action's shape
    (popgym's `get_null_action` for Discrete, MultiDiscrete and Box spaces containing 0).
    """

    def _null_action(self, params) -> jax.Array:
        space = self._env.action_space(params)
        return jnp.zeros(space.shape, space.dtype)

    def step_env(self, key, state, action, params):
        obs, env_state, reward, terminated, info = self._env.step_env(
            key, state.env_state, action, params)
        action = jnp.asarray(action, state.prev_action.dtype).reshape(state.prev_action.shape)
        state = PreviousActionState(env_state, action)
        return self._observe(obs, state, params), state, reward, terminated, info

    def reset_env(self, key, params):
        obs, env_state = self._env.reset_env(key, params)
        state = PreviousActionState(env_state, self._null_action(params))
        return self._observe(obs, state, params), state

    def extra(self, state) -> jax.Array:
        return state.prev_action

    def extra_space(self, params=None) -> spaces.Space:
        return self._env.action_space(params)


@struct.dataclass
class AntialiasState:
    env_state: Any
    is_first: jax.Array


class Antialias(AppendToObservation):
    """Append a Discrete(2) flag that is 1 on the reset observation only (popgym's)."""

    def step_env(self, key, state, action, params):
        obs, env_state, reward, terminated, info = self._env.step_env(
            key, state.env_state, action, params)
        state = AntialiasState(env_state, jnp.int32(0))
        return self._observe(obs, state, params), state, reward, terminated, info

    def reset_env(self, key, params):
        obs, env_state = self._env.reset_env(key, params)
        state = AntialiasState(env_state, jnp.int32(1))
        return self._observe(obs, state, params), state

    def extra(self, state) -> jax.Array:
        return state.is_first

    def extra_space(self, params=None) -> spaces.Space:
        return spaces.Discrete(2)


class FlattenObservation(Wrapper):
    """Observations become one `[F]` float32 vector (gymnasium's `flatten` layout)."""

    def _flatten(self, obs, params):
        return spaces.flatten(self._env.observation_space(params), obs)

    def step_env(self, key, state, action, params):
        obs, state, reward, terminated, info = self._env.step_env(key, state, action, params)
        return self._flatten(obs, params), state, reward, terminated, info

    def reset_env(self, key, params):
        obs, state = self._env.reset_env(key, params)
        return self._flatten(obs, params), state

    def get_obs(self, state, params=None, key=None):
        return self._flatten(self._env.get_obs(state, params, key), params)

    def observation_space(self, params=None) -> spaces.Box:
        return spaces.flatten_space(self._env.observation_space(params))


class DiscreteAction(Wrapper):
    """A MultiDiscrete action space becomes `Discrete(prod(nvec))` (popgym's).

    Action `a` maps to `np.unravel_index(a, nvec)` (row-major: the last entry varies
    fastest). Discrete and Box action spaces pass through unchanged.
    """

    def __init__(self, env: environment.Environment):
        super().__init__(env)
        space = env.action_space(env.default_params)
        self._nvec = space.nvec if isinstance(space, spaces.MultiDiscrete) else None

    def step_env(self, key, state, action, params):
        if self._nvec is not None:
            flat = jnp.stack(jnp.unravel_index(jnp.asarray(action), self._nvec.reshape(-1)))
            action = flat.reshape(self._nvec.shape).astype(jnp.int32)
        return self._env.step_env(key, state, action, params)

    @property
    def num_actions(self) -> int:
        if self._nvec is not None:
            return int(np.prod(self._nvec))
        return self._env.num_actions

    def action_space(self, params=None):
        if self._nvec is not None:
            return spaces.Discrete(int(np.prod(self._nvec)))
        return self._env.action_space(params)


class DiscretizeBox(Wrapper):
    """A Box action space `[D]` (Pendulum's torque) becomes `Discrete(bins ** D)`.

    Action `a` picks, per dimension, one of `bins` evenly spaced values from `low` to
    `high` (`np.unravel_index` order), so value-based agents such as DQN can act. Popgym
    has no such wrapper (its `DiscreteAction` rejects Box spaces); this is rlmem's.
    """

    def __init__(self, env: environment.Environment, bins: int):
        super().__init__(env)
        if int(bins) < 2:
            raise ValueError(f"action_bins must be an int >= 2, got {bins!r}")
        space = env.action_space(env.default_params)
        self._bins = int(bins)
        self._shape = tuple(space.shape) or (1,)
        low = np.broadcast_to(np.asarray(space.low, np.float32), self._shape).reshape(-1)
        high = np.broadcast_to(np.asarray(space.high, np.float32), self._shape).reshape(-1)
        self._grid = np.linspace(low, high, self._bins, axis=-1)  # [D, bins]
        self._scalar = tuple(space.shape) == ()

    def step_env(self, key, state, action, params):
        dims = len(self._grid)
        index = jnp.stack(jnp.unravel_index(jnp.asarray(action), (self._bins,) * dims))
        torque = jnp.asarray(self._grid)[jnp.arange(dims), index]
        torque = torque[0] if self._scalar else torque.reshape(self._shape)
        return self._env.step_env(key, state, torque, params)

    @property
    def num_actions(self) -> int:
        return self._bins ** len(self._grid)

    def action_space(self, params=None):
        return spaces.Discrete(self.num_actions)


@struct.dataclass
class EpisodeStatisticsState:
    env_state: Any
    episode_return: jax.Array
    episode_length: jax.Array


class EpisodeStatistics(StateWrapper):
    """Running return and length; `info` reports them for episodes that just ended.

    `info["episode_done"]` (bool) marks the steps that end an episode (terminated or
    truncated); `info["episode_return"]` / `info["episode_length"]` hold that episode's
    total reward / number of steps there, and 0 elsewhere -- never average them without
    the mask (:func:`completed_episode_means` does it right).

    The counters live in the state, so any reset of the whole state (gymnax's auto-reset,
    `VecEnv`'s optimistic reset) restarts them.
    """

    def step_env(self, key, state, action, params):
        obs, env_state, reward, terminated, info = self._env.step_env(
            key, state.env_state, action, params)
        done = jnp.logical_or(terminated, self._env.is_truncated(env_state, params))
        ret = state.episode_return + reward
        length = state.episode_length + 1
        info = {
            **info,
            "episode_done": done,
            "episode_return": jnp.where(done, ret, 0.0).astype(jnp.float32),
            "episode_length": jnp.where(done, length, 0).astype(jnp.int32),
        }
        return obs, EpisodeStatisticsState(env_state, ret, length), reward, terminated, info

    def reset_env(self, key, params):
        obs, env_state = self._env.reset_env(key, params)
        return obs, EpisodeStatisticsState(env_state, jnp.float32(0.0), jnp.int32(0))


def completed_episode_means(info: dict) -> dict[str, jax.Array]:
    """Mean return/length over the completed episodes in `info` (any leading shape).

    Returns `{"return", "length", "count"}`; the means are NaN when no episode ended.
    """
    done = info["episode_done"]
    count = done.sum()
    safe = jnp.maximum(count, 1)
    nan_if_none = lambda x: jnp.where(count > 0, x, jnp.nan)
    return {
        "return": nan_if_none(jnp.where(done, info["episode_return"], 0.0).sum() / safe),
        "length": nan_if_none(jnp.where(done, info["episode_length"], 0).sum() / safe),
        "count": count,
    }


def image_shape(env: environment.Environment, params: Any = None) -> tuple[int, ...] | None:
    """`(H, W, C)` when the flat observations of `env` (built by :func:`wrap`) start with an
    image, else None.

    An image is a 3-D Box observation of the innermost env (POPGym Arcade's pixels,
    MinAtar's `[10, 10, C]` planes). :class:`FlattenObservation` ravels it first, row-major,
    so `obs[:H * W * C].reshape(H, W, C)` is the image; the first-step flag and previous
    action follow it. The conv encoder (`algo.network.encoder=conv`) reads it so.
    """
    raw = env.unwrapped if isinstance(env, Wrapper) else env
    space = raw.observation_space(raw.default_params if params is None else params)
    if isinstance(space, spaces.Box) and len(space.shape) == 3:
        return tuple(int(d) for d in space.shape)
    return None


def wrap(env: environment.Environment, *, previous_action: bool = False,
         antialias: bool = True, action_bins: int | None = 5) -> environment.Environment:
    """Apply rlmem's standard wrappers (see the module docstring for the order).

    `action_bins`: a Box action space becomes `Discrete(action_bins ** D)` (outermost, so
    the observation stays popgym's); `None` keeps Box actions.
    """
    if previous_action:
        env = PreviousAction(env)
    if antialias:
        env = Antialias(env)
    env = DiscreteAction(FlattenObservation(env))
    if action_bins is not None and isinstance(env.action_space(env.default_params), spaces.Box):
        env = DiscretizeBox(env, action_bins)
    return env
