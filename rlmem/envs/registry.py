"""`make(name)`: every POPGym id (48, popgym 1.0.7's difficulty presets), gymnax id and,
with the optional popgym-arcade package, POPGym Arcade id (`rlmem.envs.arcade`).

POPGym families are imported lazily (`rlmem.registry.Registry`), so a family module that
fails to import only breaks its own ids. The difficulty presets below copy the constructor
arguments of popgym's `<Family>{Easy,Medium,Hard}` subclasses (an empty dict: popgym's
defaults).
"""

from __future__ import annotations

from typing import Any

from gymnax.environments import environment

from rlmem.envs import arcade, wrappers
from rlmem.registry import Registry, close_matches

# family -> "module:Class" (one module of rlmem.envs.popgym per family), imported only
# when one of its ids is made
FAMILIES = Registry("POPGym family", {
    "Autoencode": "rlmem.envs.popgym.autoencode:Autoencode",
    "Battleship": "rlmem.envs.popgym.battleship:Battleship",
    "Concentration": "rlmem.envs.popgym.concentration:Concentration",
    "CountRecall": "rlmem.envs.popgym.count_recall:CountRecall",
    "HigherLower": "rlmem.envs.popgym.higher_lower:HigherLower",
    "LabyrinthEscape": "rlmem.envs.popgym.labyrinth_escape:LabyrinthEscape",
    "LabyrinthExplore": "rlmem.envs.popgym.labyrinth_explore:LabyrinthExplore",
    "MineSweeper": "rlmem.envs.popgym.minesweeper:MineSweeper",
    "MultiarmedBandit": "rlmem.envs.popgym.multiarmed_bandit:MultiarmedBandit",
    "NoisyPositionOnlyCartPole": "rlmem.envs.popgym.cartpole:NoisyPositionOnlyCartPole",
    "NoisyPositionOnlyPendulum": "rlmem.envs.popgym.pendulum:NoisyPositionOnlyPendulum",
    "PositionOnlyCartPole": "rlmem.envs.popgym.cartpole:PositionOnlyCartPole",
    "PositionOnlyPendulum": "rlmem.envs.popgym.pendulum:PositionOnlyPendulum",
    "RepeatFirst": "rlmem.envs.popgym.repeat_first:RepeatFirst",
    "RepeatPrevious": "rlmem.envs.popgym.repeat_previous:RepeatPrevious",
    "VelocityOnlyCartPole": "rlmem.envs.popgym.cartpole:VelocityOnlyCartPole",
})

_BATTLESHIP_SHIPS = (2, 3, 3, 4)

# family -> (Easy, Medium, Hard) constructor kwargs, as popgym's subclasses pass them.
DIFFICULTIES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "Autoencode": ({}, {"num_decks": 2}, {"num_decks": 3}),
    "Battleship": tuple({"board_size": b, "ship_sizes": list(_BATTLESHIP_SHIPS)}
                        for b in (8, 10, 12)),
    "Concentration": ({"num_decks": 1, "deck_type": "colors"},
                      {"num_decks": 2, "deck_type": "colors"},
                      {"num_decks": 1, "deck_type": "ranks"}),
    "CountRecall": ({}, {"num_decks": 2, "deck_type": "suits"},
                    {"num_decks": 4, "deck_type": "ranks"}),
    "HigherLower": ({"num_decks": 1}, {"num_decks": 2}, {"num_decks": 3}),
    "LabyrinthEscape": tuple({"maze_dims": (d, d), "episode_length": 1024}
                             for d in (10, 14, 18)),
    "LabyrinthExplore": tuple({"maze_dims": (d, d), "episode_length": 1024}
                              for d in (10, 14, 18)),
    "MineSweeper": ({"difficulty": "easy"}, {"difficulty": "medium"}, {"difficulty": "hard"}),
    "MultiarmedBandit": ({"num_bandits": 10, "episode_length": 200},
                         {"num_bandits": 20, "episode_length": 400},
                         {"num_bandits": 30, "episode_length": 600}),
    "NoisyPositionOnlyCartPole": ({"noise_sigma": 0.1}, {"noise_sigma": 0.2},
                                  {"noise_sigma": 0.3}),
    "NoisyPositionOnlyPendulum": ({"noise_sigma": 0.1}, {"noise_sigma": 0.2},
                                  {"noise_sigma": 0.3}),
    "PositionOnlyCartPole": ({}, {"max_episode_length": 400}, {"max_episode_length": 600}),
    "PositionOnlyPendulum": ({}, {"max_episode_length": 150}, {"max_episode_length": 100}),
    "RepeatFirst": ({"num_decks": 1}, {"num_decks": 8}, {"num_decks": 16}),
    "RepeatPrevious": ({}, {"num_decks": 2, "k": 32}, {"num_decks": 3, "k": 64}),
    "VelocityOnlyCartPole": ({}, {"max_episode_length": 400}, {"max_episode_length": 600}),
}

LEVELS = ("Easy", "Medium", "Hard")

# The 48 POPGym ids, grouped by family.
POPGYM_IDS: tuple[str, ...] = tuple(f"{family}{level}" for family in FAMILIES
                                    for level in LEVELS)


def _gymnax_ids() -> tuple[str, ...]:
    import gymnax

    return tuple(gymnax.registered_envs)


def popgym_preset(name: str) -> tuple[str, dict[str, Any]]:
    """`(family, constructor kwargs)` of a POPGym id (`"CountRecallEasy"`) or family name
    (popgym's defaults: no kwargs).

    Raises:
      ValueError: `name` is neither.
    """
    if name in FAMILIES:
        return name, {}
    for i, level in enumerate(LEVELS):
        family = name.removesuffix(level)
        if name.endswith(level) and family in FAMILIES:
            return family, dict(DIFFICULTIES[family][i])
    raise ValueError(f"{name!r} is not a POPGym id")


def popgym_spec(name: str) -> tuple[str, str, dict[str, Any]]:
    """`(module in rlmem.envs.popgym, class name, kwargs)` for a POPGym id or family name
    (see `popgym_preset`; `FAMILIES.load(family)` imports the class)."""
    family, preset = popgym_preset(name)
    module, cls = FAMILIES[family].split(":")
    return module.removeprefix("rlmem.envs.popgym."), cls, preset


def make_unwrapped(name: str, **kwargs: Any) -> tuple[environment.Environment, Any]:
    """The raw environment (popgym-structured observations) and its default params.

    `kwargs` override a POPGym preset's constructor arguments (e.g.
    `make_unwrapped("RepeatPrevious", num_decks=2, k=10)`); for gymnax ids they go to
    `gymnax.make`, for Arcade ids to popgym-arcade's constructor (`rlmem.envs.arcade`).

    Raises:
      ValueError: unknown name (with close matches) or bad keyword arguments.
      ImportError: an Arcade id without the optional popgym-arcade package (the message
        says how to install it).
    """
    if name in arcade.ARCADE_IDS:
        return arcade.make_unwrapped(name, **kwargs)
    if name in FAMILIES or name in POPGYM_IDS:
        family, preset = popgym_preset(name)
        env_cls = FAMILIES.load(family)
        try:
            env = env_cls(**{**preset, **kwargs})
        except TypeError as err:
            raise ValueError(f"bad keyword arguments {kwargs!r} for {name}: {err}") from err
        return env, env.default_params
    if name in _gymnax_ids():
        import gymnax

        return gymnax.make(name, **kwargs)
    known = (*POPGYM_IDS, *FAMILIES, *_gymnax_ids(), *arcade.ARCADE_IDS)
    close = close_matches(name, known, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown environment name {name!r}{hint} "
                     f"(known: the {len(POPGYM_IDS)} POPGym ids in rlmem.envs.POPGYM_IDS, "
                     f"their family names, gymnax.registered_envs and the "
                     f"{len(arcade.ARCADE_IDS)} POPGym Arcade ids in rlmem.envs.ARCADE_IDS)")


def make(name: str, *, previous_action: bool = False, antialias: bool = True,
         action_bins: int | None = 5, **kwargs: Any) -> tuple[environment.Environment, Any]:
    """Build an environment by name, wrapped for the agents.

    Args:
      name: a POPGym id (`"RepeatFirstEasy"`, see `POPGYM_IDS`), a POPGym family name
        (`"RepeatPrevious"`, popgym's defaults), a gymnax id (`"CartPole-v1"`) or a POPGym
        Arcade id (`"ArcadeCountRecallEasy"`, see `ARCADE_IDS`; pixels, needs the optional
        popgym-arcade package).
      previous_action: append the previous action to the observation (popgym's
        `PreviousAction`).
      antialias: append the "is first step" flag (popgym's `Antialias`).
      action_bins: Box action spaces (Pendulum) become `Discrete(action_bins ** D)`
        with evenly spaced values; `None` keeps the Box.
      **kwargs: constructor overrides, see :func:`make_unwrapped`.

    Returns:
      `(env, params)`: observations are flat float32 `[F]`; actions one Discrete
      (MultiDiscrete flattened, Box discretised unless `action_bins=None`). An image
      observation (Arcade, MinAtar) is raveled first: `image_shape(env, params)`.

    Raises:
      ValueError: unknown name (with close matches) or bad keyword arguments.
      ImportError: an Arcade id without the optional popgym-arcade package.
    """
    env, params = make_unwrapped(name, **kwargs)
    wrapped = wrappers.wrap(env, previous_action=previous_action, antialias=antialias,
                            action_bins=action_bins)
    return wrapped, params
