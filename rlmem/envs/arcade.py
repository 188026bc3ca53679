"""POPGym Arcade (the optional `popgym-arcade` package) as rlmem environments: pixel POMDPs.

POPGym Arcade (Wang, He and Morad; https://github.com/bolt-research/popgym-arcade) renders
ten games (POPGym's CountRecall, AutoEncode, BattleShip, MineSweeper, CartPole and
NoisyCartPole, plus Navigator, Skittles, Breakout and Tetris; each Easy/Medium/Hard) as
`[H, W, 3]` uint8 images (`H = W = obs_size`, 128 by default or 256), five actions (four
for AutoEncode), in pure JAX. rlmem's ids are the package's with an `Arcade` prefix
(`ArcadeCountRecallEasy`): several package ids (`CountRecallEasy`, `MineSweeperEasy`, ...)
are also rlmem's own POPGym ports, which observe vectors.

**Installing.** The package is optional and imported only when an Arcade id is made:

    pip install -e ".[arcade]"                      # its runtime dependencies
    pip install --no-deps "popgym-arcade>=0.0.7"    # the package itself, without stable-gymnax

popgym-arcade (0.0.6 and later) requires `stable-gymnax`, a fork of gymnax that ships its
own top-level `gymnax` package: pip writes it over the installed gymnax's files without
reporting a conflict (`pip check` passes, `pip list` still shows gymnax), and rlmem's envs
then break (the fork's `Environment` has no `is_truncated` and a 5-tuple `step`). Hence
the two commands; `ensure_available` detects an overwritten gymnax and says how to repair it.

**What the adapter (`ArcadeEnv`) changes, and why** (everything else is the package's
`step_env`/`reset_env`, so runs match the package's own env on the same keys):

* Observations become float32 in `[0, 1]` (the uint8 pixels / 255), what networks want;
  `rlmem.envs.make`'s wrappers then flatten them to `[H * W * 3]` followed by the
  first-step flag (and previous action). `algo.network.encoder=conv` un-flattens the
  leading `H * W * 3` features (`rlmem.envs.image_shape`).
* Episode ends: the package folds its time limits into `done`, and its `info` flags
  disagree between games (Breakout's `terminated` includes the time limit), so `done` is
  rlmem's `terminated` and `is_truncated` is always False: a time-limited episode is not
  bootstrapped, as in the package's own baselines. `info` is dropped for the same reason.
* gymnax 1.0 renamed the natural-terminal hook that `Environment.discount` calls
  (`is_terminal` -> `is_terminated`). CartPole, NoisyCartPole, Skittles, Breakout and
  Tetris define only `is_terminal` and call `discount` in `step_env`, which then raises
  `NotImplementedError` under gymnax 1.0: the adapter points the instance's
  `is_terminated` at its `is_terminal` (what stable-gymnax's `discount` calls).

The package's default is fully observable (`partial_obs=False`); `conf/env/arcade_*.yaml`
choose the POMDPs (`partial_obs: true`).
"""

from __future__ import annotations

import importlib
from typing import Any

import jax
import jax.numpy as jnp
from gymnax.environments import environment

from rlmem.envs import spaces

PREFIX = "Arcade"
# The package's games (popgym-arcade 0.0.7's registration.REGISTERED_ENVIRONMENTS, each
# Easy/Medium/Hard); tests/envs/test_arcade.py checks them against the package.
GAMES = ("CartPole", "NoisyCartPole", "CountRecall", "BattleShip", "AutoEncode", "Navigator",
         "MineSweeper", "Skittles", "Breakout", "Tetris")
LEVELS = ("Easy", "Medium", "Hard")
ARCADE_IDS: tuple[str, ...] = tuple(f"{PREFIX}{game}{level}" for game in GAMES
                                    for level in LEVELS)

INSTALL = ('pip install -e ".[arcade]" && pip install --no-deps "popgym-arcade>=0.0.7" '
           "(--no-deps: its stable-gymnax dependency would overwrite gymnax)")
PIXEL_SCALE = 255.0  # uint8 pixels -> [0, 1]


def unavailable() -> str | None:
    """Why the Arcade ids cannot be made here (None: they can)."""
    try:
        importlib.import_module("popgym_arcade")
    except ImportError as err:
        return (f"the POPGym Arcade envs need the optional popgym-arcade package "
                f"({type(err).__name__}: {err}); install it with {INSTALL}")
    if not hasattr(environment.Environment, "is_truncated"):
        return ("gymnax has been overwritten by stable-gymnax (popgym-arcade's dependency: "
                "its files replace gymnax's under the same import name), which rlmem's envs "
                "cannot run on; repair it with `pip uninstall -y stable-gymnax && pip install "
                "--force-reinstall --no-deps gymnax`")
    return None


def ensure_available() -> Any:
    """The `popgym_arcade` module.

    Raises:
      ImportError: the package is missing (the message says how to install it) or gymnax
        was overwritten by stable-gymnax (it says how to repair it).
    """
    if why := unavailable():
        raise ImportError(why)
    return importlib.import_module("popgym_arcade")


class ArcadeEnv(environment.Environment):
    """One popgym-arcade game as a gymnax env with `[H, W, 3]` float32 observations in
    `[0, 1]`, `terminated` = the game's `done`, never truncated (see the module docstring).

    Args:
      game: the package's env (`popgym_arcade.make(id)[0]`).
      name: its rlmem id (`ArcadeCountRecallEasy`).
    """

    def __init__(self, game: environment.Environment, name: str):
        self.game = game
        self._name = name
        base = environment.Environment
        hook = getattr(base, "is_terminated", None)
        if (hook is not None and type(game).is_terminated is hook
                and type(game).is_terminal is not base.is_terminal):
            game.is_terminated = game.is_terminal  # gymnax >= 1.0's name for the hook

    @property
    def default_params(self) -> Any:
        return self.game.default_params

    @property
    def name(self) -> str:
        return self._name

    @property
    def num_actions(self) -> int:
        return int(self.game.action_space(self.game.default_params).n)

    def _observe(self, pixels: jax.Array) -> jax.Array:
        """uint8 `[H, W, 3]` -> float32 `[H, W, 3]` in `[0, 1]`."""
        return jnp.asarray(pixels, jnp.float32) / PIXEL_SCALE

    def step_env(self, key, state, action, params):
        obs, state, reward, done, _ = self.game.step_env(key, state, action, params)
        return (self._observe(obs), state, jnp.asarray(reward, jnp.float32),
                jnp.asarray(done, bool), {})

    def reset_env(self, key, params):
        obs, state = self.game.reset_env(key, params)
        return self._observe(obs), state

    def get_obs(self, state, params=None, key=None) -> jax.Array:
        return self._observe(self.game.get_obs(state))  # some games take the state only

    def is_truncated(self, state, params) -> jax.Array:
        return jnp.zeros((), bool)  # time limits end episodes through `done`

    def observation_space(self, params=None) -> spaces.Box:
        shape = tuple(self.game.observation_space(params).shape)
        return spaces.Box(0.0, 1.0, shape, jnp.float32)

    def action_space(self, params=None) -> spaces.Space:
        return self.game.action_space(params)


def make_unwrapped(name: str, **kwargs: Any) -> tuple[ArcadeEnv, Any]:
    """The Arcade game `name` (an `ARCADE_IDS` entry) and its default params.

    `kwargs` go to the package's constructor (`partial_obs`, `obs_size`: 128 or 256).

    Raises:
      ValueError: `name` is not an Arcade id, or bad keyword arguments.
      ImportError: the package is not installed (the message says how).
    """
    if name not in ARCADE_IDS:
        raise ValueError(f"{name!r} is not a POPGym Arcade id (rlmem.envs.arcade.ARCADE_IDS)")
    arcade = ensure_available()
    try:
        game, params = arcade.make(name.removeprefix(PREFIX), **kwargs)
    except (TypeError, KeyError) as err:  # KeyError: an obs_size the game cannot render
        raise ValueError(f"bad keyword arguments {kwargs!r} for {name}: "
                         f"{type(err).__name__}: {err} (popgym-arcade takes partial_obs and "
                         f"obs_size: 128 or 256)") from err
    return ArcadeEnv(game, name), params
