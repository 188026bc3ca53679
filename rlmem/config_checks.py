"""Validation of a composed config: every key, type, range, name and combination is
checked before anything is built or compiled (`rlmem.config.build` calls `validate`).

Every error is a `ConfigError` naming the config key, the value it got and what is allowed
(with close matches for misspelt names). The numeric ranges live in `rlmem.config_ranges`;
rules that belong to a component (a batching's, an algorithm's) live in that component and
reach the user through `rlmem.config.build` with the same quality.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlmem import config_ranges as cr
from rlmem import sweep
from rlmem.agents.batching import INITIAL_STATES
from rlmem.agents.networks import ENCODERS, NetworkSettings
from rlmem.agents.optim import OptimSettings
from rlmem.registry import Registry, close_matches


class ConfigError(ValueError):
    """A config value that cannot run; the message names the key and the allowed values."""


# ---------------------------------------------------------------------------------------
# schema of the fixed sections (the algo/memory/env sections are checked against the
# constructors they feed, so adding a constructor argument needs no change here)
# ---------------------------------------------------------------------------------------
_INT, _BOOL, _STR = (int,), (bool,), (str,)
_OPT_INT, _OPT_STR = (int, type(None)), (str, type(None))

SCHEMA: dict[str, Any] = {
    "seed": _INT,
    "num_seeds": _INT,
    "env": {
        "name": _STR,
        "previous_action": _BOOL,
        "antialias": _BOOL,
        "max_episode_length": _INT,
        "kwargs": (dict,),
    },
    "memory": None,  # name + the model's constructor fields
    "batching": {
        "mode": _STR,
        "segment_length": _INT,
        "burn_in": _INT,
        "initial_state": _STR,
        "period": _OPT_INT,
    },
    "algo": None,  # name + the algorithm's constructor fields
    "loop": {
        "iterations": _INT,
        "rollout": _STR,
        "num_envs": _INT,
        "rollout_steps": _INT,
        "resets_per_step": _OPT_INT,
        "chunk_periods": _OPT_INT,
        "check_memory": _BOOL,
    },
    "eval": {"interval": _INT, "episodes": _INT, "max_steps": _INT},
    "checkpoint": {
        "interval": _OPT_INT,
        "every_minutes": (float, int, type(None)),
        "keep": _INT,
        "resume": _BOOL,
        "overwrite": _BOOL,
        "exclude_replay": _BOOL,
    },
    "logger": {"mode": _STR, "project": _STR, "group": _OPT_STR, "tags": (list,), "name": _OPT_STR},
    "early_stop": {"metric": _STR, "at_least": (float, int, type(None))},
    "sweep": {"vmap": (dict, type(None)), "objective": _STR},
}
BATCHING_MODES = ("tape", "segment")  # batching.mode -> TapeBatching | SegmentBatching
ROLLOUT_MODES = ("steps", "episode")  # rlmem.loop: fixed windows, or one whole episode per env
LOGGER_MODES = ("offline", "online", "disabled")
# The metrics the loop state holds (name -> `LoopState` field): what early stopping may
# watch (a resumed run can tell that it had already stopped) and what `train.py` can return
# to a Hydra sweeper (`sweep.objective`).
STATE_METRICS = {"eval/best_return": "best_eval_return", "eval/return": "eval_return"}
SCAN_STRATEGIES = ("auto", "associative", "sequential")
SEQUENTIAL_MODELS = ("gru", "lstm", "mlp")  # folds, not monoids: no associative scan


def _discover_algorithms() -> Registry:
    """Every module `rlmem.agents.<name>` that defines `ALGORITHM` (its class) is the
    algorithm `algo.name=<name>`: adding one is its module and `conf/algo/<name>.yaml`."""
    import pkgutil

    import rlmem.agents as agents

    found = {}
    for info in pkgutil.iter_modules(agents.__path__):
        module = importlib.import_module(f"rlmem.agents.{info.name}")
        if hasattr(module, "ALGORITHM"):
            found[info.name] = f"rlmem.agents.{info.name}:ALGORITHM"
    return Registry("algorithm", found)


ALGORITHMS = _discover_algorithms()


def _close(value: str, allowed) -> str:
    matches = close_matches(value, allowed)
    return f" (did you mean {', '.join(map(repr, matches))}?)" if matches else ""


def _unknown(key: str, value: Any, allowed) -> ConfigError:
    allowed = sorted(map(str, allowed))
    shown = ", ".join(allowed) if len(allowed) <= 60 else ", ".join(allowed[:60]) + ", ..."
    return ConfigError(f"{key}={value!r} is not allowed{_close(value, allowed)}; allowed: {shown}")


def _type_name(types: tuple) -> str:
    names = {int: "int", bool: "bool", str: "str", float: "float", dict: "mapping", list: "list"}
    return " or ".join("null" if t is type(None) else names.get(t, t.__name__) for t in types)


def _check_type(key: str, value: Any, types: tuple) -> None:
    # bool is an int in Python; `num_envs: true` must not pass as 1.
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        raise ConfigError(f"{key} must be {_type_name(types)}, got {value!r}")


def _check_choice(key: str, value: Any, allowed) -> None:
    if value not in allowed:
        raise _unknown(key, value, allowed)


def _check_section(prefix: str, section: Mapping, schema: Mapping) -> None:
    for key, value in section.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if key not in schema:
            raise ConfigError(
                f"unknown config key {name!r}{_close(key, schema)}; "
                f"allowed in {prefix or 'the top level'}: {', '.join(sorted(schema))}"
            )
        expected = schema[key]
        if isinstance(expected, dict):
            _check_type(name, value, (dict,))
            _check_section(name, value, expected)
        elif name in cr.FIXED_RANGES:  # type and range in one message
            if message := cr.FIXED_RANGES[name].error(name, value):
                raise ConfigError(message)
        elif expected is not None:
            _check_type(name, value, expected)


def _check_kwargs(prefix: str, kwargs: Mapping, target, what: str, skip=()) -> None:
    """Every key of `kwargs` must be a parameter of `target` (a class or function)."""
    params = inspect.signature(target).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    allowed = [p for p in params if p not in skip and p != "self"]
    for key in kwargs:
        if key not in allowed:
            raise ConfigError(
                f"unknown config key '{prefix}.{key}' for {what}{_close(key, allowed)}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )


# ---------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------
def to_container(cfg: DictConfig | Mapping) -> dict:
    """The composed config as plain, resolved Python containers."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def validate(cfg: DictConfig | Mapping) -> dict:
    """Check every key, type, name and combination; return the plain config dict.

    A vectorised sweep (`sweep.vmap`, rlmem.sweep) is checked as its members: the keys
    must be vmappable, and every member's own config must pass on its own.

    Raises:
      ConfigError: naming the key, the value and the allowed values.
    """
    c = _validate_one(to_container(cfg))
    vmap = c["sweep"]["vmap"]
    if vmap:
        cls = ALGORITHMS.load(c["algo"]["name"])
        if message := sweep.vmap_error(vmap, c["algo"]["name"], cls.sweepable):
            raise ConfigError(message)
        for member in sweep.members(vmap):
            try:
                _validate_one(sweep.member_config(c, member))
            except ConfigError as err:
                raise ConfigError(f"sweep.vmap member {member.index} ({member.label}): "
                                  f"{err}") from err
    return c


def _validate_one(c: dict) -> dict:
    """`validate` for one config, its `sweep.vmap` taken as given."""
    missing = [k for k in SCHEMA if k not in c]
    if missing:
        raise ConfigError(f"config is missing the top-level keys {missing}")
    _check_section("", c, SCHEMA)  # with the numeric ranges (rlmem.config_ranges)

    loop, ev, batching = c["loop"], c["eval"], c["batching"]
    _check_choice("loop.rollout", loop["rollout"], ROLLOUT_MODES)
    last_seed = c["seed"] + c["num_seeds"] - 1
    if last_seed > cr.INT32_MAX:
        raise ConfigError(
            f"seed={c['seed']} with num_seeds={c['num_seeds']} reaches seed {last_seed}; "
            f"allowed: seed + num_seeds - 1 <= {cr.INT32_MAX}"
        )
    if loop["iterations"] % ev["interval"]:
        raise ConfigError(
            f"loop.iterations={loop['iterations']} must be a multiple of "
            f"eval.interval={ev['interval']} (every period ends with an evaluation)"
        )
    resets = loop["resets_per_step"]
    if resets is not None and resets > loop["num_envs"]:
        raise ConfigError(
            f"loop.resets_per_step={resets} must be <= loop.num_envs={loop['num_envs']} "
            "(or null)"
        )
    env_steps = loop["iterations"] * loop["num_envs"] * loop["rollout_steps"]
    if env_steps > cr.INT32_MAX:
        raise ConfigError(
            f"loop.iterations={loop['iterations']} x loop.num_envs={loop['num_envs']} x "
            f"loop.rollout_steps={loop['rollout_steps']} = {env_steps} env steps per seed "
            f"overflow the int32 step counters; allowed: at most {cr.INT32_MAX}"
        )
    _check_choice("logger.mode", c["logger"]["mode"], LOGGER_MODES)
    _check_choice("early_stop.metric", c["early_stop"]["metric"], STATE_METRICS)
    _check_choice("sweep.objective", c["sweep"]["objective"], STATE_METRICS)

    _check_choice("batching.mode", batching.get("mode"), BATCHING_MODES)
    if batching["mode"] == "segment":
        for key in ("segment_length", "burn_in", "initial_state"):
            if key not in batching:
                raise ConfigError(f"batching.{key} is required when batching.mode='segment'")
        _check_choice("batching.initial_state", batching["initial_state"], INITIAL_STATES)
    else:
        extra = sorted(set(batching) - {"mode"})
        if extra:
            raise ConfigError(
                f"batching.{extra[0]}={batching[extra[0]]!r} only applies to "
                "batching.mode='segment' (got batching.mode='tape'); remove it or use "
                "batching=segment"
            )

    _validate_env(c["env"])
    _validate_memory(c["memory"])
    _validate_algo(c)
    return c


def _validate_env(env: dict) -> None:
    import gymnax

    from rlmem.envs import ARCADE_IDS, POPGYM_IDS, arcade

    names = tuple(POPGYM_IDS) + tuple(gymnax.registered_envs) + tuple(ARCADE_IDS)
    _check_choice("env.name", env["name"], names)
    if env["name"] in ARCADE_IDS and (why := arcade.unavailable()):
        raise ConfigError(f"env.name={env['name']!r} cannot be made here: {why}")
    kwargs = env.get("kwargs") or {}
    if kwargs and env["name"] in POPGYM_IDS:  # gymnax ids: gymnax.make checks them
        from rlmem.envs.registry import FAMILIES, make, popgym_preset

        cls = FAMILIES.load(popgym_preset(env["name"])[0])
        params = inspect.signature(cls).parameters
        allowed = [p for p in params if p != "self"]
        allowed += [p for p in inspect.signature(make).parameters if p == "action_bins"]
        open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for key in kwargs:
            if key not in allowed and not open_ended:
                raise ConfigError(
                    f"unknown config key 'env.kwargs.{key}' for env.name={env['name']!r}"
                    f"{_close(key, allowed)}; allowed: {', '.join(sorted(allowed))}"
                )


def _validate_memory(memory: dict) -> None:
    import dataclasses

    from rlmem.memory import MEMORY_MODELS
    from rlmem.memory.registry import memory_class, model_fields

    if "name" not in memory:
        raise ConfigError(f"memory.name is required; allowed: {', '.join(sorted(MEMORY_MODELS))}")
    name = memory["name"]
    _check_choice("memory.name", name, MEMORY_MODELS)
    scan = memory.get("scan", "auto")
    _check_choice("memory.scan", scan, SCAN_STRATEGIES)
    if name in SEQUENTIAL_MODELS and scan == "associative":
        raise ConfigError(
            f"memory.scan='associative' cannot be served by memory.name={name!r}: it is a "
            f"sequential model (no associative combine); allowed: auto, sequential"
        )
    cls = memory_class(name)
    fields = model_fields(cls)
    kwargs = {k: v for k, v in memory.items() if k != "name"}
    for key in kwargs:
        if key not in fields:
            raise ConfigError(
                f"unknown config key 'memory.{key}' for memory.name={name!r}"
                f"{_close(key, fields)}; allowed: {', '.join(sorted(fields))}"
            )
    if message := cr.first_error("memory.", kwargs, cr.MEMORY_RANGES):
        raise ConfigError(message)
    args = {f.name: f.default for f in dataclasses.fields(cls) if f.name in fields} | kwargs
    if message := cr.memory_model_error(name, args):
        raise ConfigError(message)


# The algorithm's nested settings blocks (`algo.optim.*`, `algo.network.*`): shared by every
# algorithm (rlmem.agents.base.RecurrentAgent), typed by these dataclasses.
ALGO_BLOCKS = {"optim": OptimSettings, "network": NetworkSettings}
# Keys that were flat under `algo.` before the blocks existed -> where they live now.
MOVED_ALGO_KEYS = {f.name: f"algo.{block}.{f.name}" for block, cls in ALGO_BLOCKS.items()
                   for f in dataclasses.fields(cls)}


def _algo_args(algo: dict) -> dict:
    """The algorithm's flat keyword arguments: its constructor defaults, then `algo.*`,
    plus the network block's fields (for the memory estimate of `config_ranges`)."""
    params = inspect.signature(ALGORITHMS.load(algo["name"])).parameters.values()
    defaults = {p.name: p.default for p in params if p.default is not p.empty}
    flat = defaults | {k: v for k, v in algo.items() if k != "name"}
    network = dataclasses.asdict(NetworkSettings()) | (algo.get("network") or {})
    return {k: v for k, v in flat.items() if k not in ALGO_BLOCKS} | network


def _validate_algo(c: dict) -> None:
    algo = c["algo"]
    if "name" not in algo:
        raise ConfigError(f"algo.name is required; allowed: {', '.join(ALGORITHMS)}")
    _check_choice("algo.name", algo["name"], ALGORITHMS)
    cls = ALGORITHMS.load(algo["name"])
    kwargs = {k: v for k, v in algo.items() if k != "name"}
    for key, source in WIRED_ALGO_ARGS.items():
        if key in kwargs:
            raise ConfigError(
                f"algo.{key}={kwargs[key]!r} is not allowed: config.py wires it from "
                f"{source}; remove it and set {source} instead"
            )
    accepted = inspect.signature(cls).parameters
    for key, value in kwargs.items():
        if key in accepted:
            continue
        if key in MOVED_ALGO_KEYS:
            raise ConfigError(
                f"algo.{key}={value!r}: this key is now {MOVED_ALGO_KEYS[key]} (the "
                f"optimiser and network settings have their own blocks); write "
                f"{MOVED_ALGO_KEYS[key]}={value!r}"
            )
        if moved := close_matches(key, MOVED_ALGO_KEYS, n=1):
            raise ConfigError(
                f"unknown config key 'algo.{key}' for algo.name={algo['name']!r} (did you "
                f"mean {moved[0]!r}? it is {MOVED_ALGO_KEYS[moved[0]]}); remove it or write "
                f"{MOVED_ALGO_KEYS[moved[0]]}"
            )
    _check_kwargs("algo", kwargs, cls, f"algo.name={algo['name']!r}", skip=WIRED_ALGO_ARGS)
    for block, settings in ALGO_BLOCKS.items():
        values = kwargs.pop(block, None)
        if values is None:
            continue
        _check_type(f"algo.{block}", values, (dict,))
        fields = [f.name for f in dataclasses.fields(settings)]
        for key in values:
            if key not in fields:
                raise ConfigError(
                    f"unknown config key 'algo.{block}.{key}'{_close(key, fields)}; "
                    f"allowed in algo.{block}: {', '.join(sorted(fields))}"
                )
            if key in WIRED_BLOCK_FIELDS.get(block, {}):
                source = WIRED_BLOCK_FIELDS[block][key]
                raise ConfigError(
                    f"algo.{block}.{key}={values[key]!r} is not allowed: config.py wires it "
                    f"from {source}; remove it"
                )
        if message := cr.first_error(f"algo.{block}.", values, cr.ALGO_RANGES):
            raise ConfigError(message)
        if block == "network" and "encoder" in values:
            _check_choice("algo.network.encoder", values["encoder"], ENCODERS)
    if message := cr.first_error("algo.", kwargs, cr.ALGO_RANGES):
        raise ConfigError(message)


# Settings-block fields that config.py wires itself (not user keys), and their source.
WIRED_BLOCK_FIELDS = {"network": {"image_shape": "env.name (its [H, W, C] observations)"}}

# Constructor arguments that config.py wires itself (not user keys in algo/), and the
# config key each one comes from.
WIRED_ALGO_ARGS = {
    "memory": "memory.*",
    "num_actions": "env.name",
    "obs_size": "env.name",
    "batching": "batching.*",
    "num_envs": "loop.num_envs",
    "rollout_steps": "loop.rollout_steps",
}
