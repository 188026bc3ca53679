"""The one place a Hydra config becomes objects: validation first, then env, memory,
algorithm and loop built by name.

Everything is checked before anything is compiled: unknown keys and names, wrong types,
values outside their ranges (`rlmem.config_ranges`), sizes that overflow or can never fit
in memory, and combinations a component cannot serve. Every error names the config
key, the value it got and what is allowed (with close matches for misspelt names).
No other rlmem module imports omegaconf or hydra.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlmem import config_ranges as cr
from rlmem.loop import Loop, LoopSettings


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
    },
    "algo": None,  # name + the algorithm's constructor fields
    "loop": {
        "iterations": _INT,
        "rollout": _STR,
        "num_envs": _INT,
        "rollout_steps": _INT,
        "resets_per_step": _OPT_INT,
        "chunk_periods": _INT,
    },
    "eval": {"interval": _INT, "episodes": _INT, "max_steps": _INT},
    "checkpoint": {
        "interval": _OPT_INT,
        "keep": _INT,
        "resume": _BOOL,
        "overwrite": _BOOL,
        "exclude_replay": _BOOL,
    },
    "logger": {"mode": _STR, "project": _STR, "group": _OPT_STR, "tags": (list,), "name": _OPT_STR},
}
BATCHING_MODES = ("tape", "segment")
ROLLOUT_MODES = ("steps", "episode")  # rlmem.loop: fixed windows, or one whole episode per env
INITIAL_STATES = ("zeros", "stored")
LOGGER_MODES = ("offline", "online", "disabled")
SCAN_STRATEGIES = ("auto", "associative", "sequential")
SEQUENTIAL_MODELS = ("gru", "lstm", "mlp")  # folds, not monoids: no associative scan
ALGORITHMS = {"dqn": "rlmem.agents.dqn:DQN", "ppo": "rlmem.agents.ppo:PPO"}


def _close(value: str, allowed) -> str:
    matches = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=3)
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


def _import(path: str):
    module, _, attr = path.partition(":")
    return getattr(__import__(module, fromlist=[attr]), attr)


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

    Raises:
      ConfigError: naming the key, the value and the allowed values.
    """
    c = to_container(cfg)
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

    from rlmem.envs import POPGYM_IDS

    names = tuple(POPGYM_IDS) + tuple(gymnax.registered_envs)
    _check_choice("env.name", env["name"], names)
    kwargs = env.get("kwargs") or {}
    if kwargs and env["name"] in POPGYM_IDS:  # gymnax ids: gymnax.make checks them
        import importlib

        from rlmem.envs.registry import make, popgym_spec

        module, cls_name, _ = popgym_spec(env["name"])
        cls = getattr(importlib.import_module(f"rlmem.envs.popgym.{module}"), cls_name)
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


def _algo_args(algo: dict) -> dict:
    """The algorithm's keyword arguments: its constructor defaults, then `algo.*`."""
    params = inspect.signature(_import(ALGORITHMS[algo["name"]])).parameters.values()
    defaults = {p.name: p.default for p in params if p.default is not p.empty}
    return defaults | {k: v for k, v in algo.items() if k != "name"}


def _validate_algo(c: dict) -> None:
    algo, batching, loop = c["algo"], c["batching"], c["loop"]
    if "name" not in algo:
        raise ConfigError(f"algo.name is required; allowed: {', '.join(ALGORITHMS)}")
    _check_choice("algo.name", algo["name"], ALGORITHMS)
    cls = _import(ALGORITHMS[algo["name"]])
    kwargs = {k: v for k, v in algo.items() if k != "name"}
    for key, source in WIRED_ALGO_ARGS.items():
        if key in kwargs:
            raise ConfigError(
                f"algo.{key}={kwargs[key]!r} is not allowed: config.py wires it from "
                f"{source}; remove it and set {source} instead"
            )
    _check_kwargs("algo", kwargs, cls, f"algo.name={algo['name']!r}", skip=WIRED_ALGO_ARGS)
    if message := cr.first_error("algo.", kwargs, cr.ALGO_RANGES):
        raise ConfigError(message)

    args = _algo_args(algo)
    batch_size, capacity = args.get("batch_size"), args.get("buffer_capacity")
    if capacity is not None:
        streams, steps = loop["num_envs"], loop["rollout_steps"]
        if capacity // streams < steps:
            raise ConfigError(
                f"algo.buffer_capacity={capacity} cannot hold one rollout per env stream: "
                f"each of the loop.num_envs={streams} streams keeps buffer_capacity // "
                f"num_envs = {capacity // streams} transitions, fewer than "
                f"loop.rollout_steps={steps}; allowed: algo.buffer_capacity >= {streams * steps}"
            )
        if batch_size is not None and batch_size > capacity:
            raise ConfigError(
                f"algo.batch_size={batch_size} must be <= algo.buffer_capacity={capacity} "
                f"(batches are drawn from the replay); allowed: algo.batch_size in "
                f"[1, {capacity}]"
            )
    if batching["mode"] == "segment" and batch_size is not None:
        length = batching["segment_length"]
        if batch_size < length:
            raise ConfigError(
                f"algo.batch_size={batch_size} cannot hold one segment of "
                f"batching.segment_length={length}; need algo.batch_size >= {length}"
            )


# ---------------------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------------------
# Constructor arguments that config.py wires itself (not user keys in algo/), and the
# config key each one comes from.
WIRED_ALGO_ARGS = {
    "memory": "memory.*",
    "num_actions": "env.name",
    "obs_size": "env.name",
    "batching": "batching.mode",
    "segment_length": "batching.segment_length",
    "burn_in": "batching.burn_in",
    "initial_state": "batching.initial_state",
    "num_envs": "loop.num_envs",
    "rollout_steps": "loop.rollout_steps",
}


@dataclass(frozen=True)
class Experiment:
    """Everything `train.py` needs, built from a validated config.

    Attributes:
      config: the validated plain config dict.
      env, env_params: the wrapped env.
      memory: the memory model (flax module).
      algo: the algorithm (rlmem.agents).
      loop: the training loop.
      seeds: the seed values trained side by side.
      iterations: total iterations to run.
    """

    config: dict
    env: Any
    env_params: Any
    memory: Any
    algo: Any
    loop: Loop
    seeds: tuple[int, ...]
    iterations: int

    @property
    def total_steps(self) -> int:
        """The run's length on its step axis (`LoopSettings.step_of`: env steps, or
        episodes with `loop.rollout=episode`)."""
        return self.loop.settings.step_of(self.iterations)


def build_env(env_cfg: dict):
    """`rlmem.envs.make` from `env.*`; bad constructor kwargs name the key."""
    from rlmem.envs import make

    kwargs = dict(env_cfg.get("kwargs") or {})
    try:
        return make(
            env_cfg["name"],
            previous_action=env_cfg["previous_action"],
            antialias=env_cfg["antialias"],
            **kwargs,
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"env.kwargs={kwargs!r} do not fit env.name={env_cfg['name']!r}: {err}"
        ) from err


def build_memory(memory_cfg: dict):
    """`rlmem.memory.make_memory` from `memory.*` (unknown fields raise naming the key)."""
    from rlmem.memory import make_memory

    kwargs = {k: v for k, v in memory_cfg.items() if k != "name"}
    try:
        return make_memory(memory_cfg["name"], **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"memory (memory.name={memory_cfg['name']!r}): {err}") from err


def build(cfg: DictConfig | Mapping) -> Experiment:
    """Validate `cfg`, then build env, memory, algorithm and loop."""
    c = validate(cfg)
    env, params = build_env(c["env"])
    memory = build_memory(c["memory"])
    loop_cfg, ev = c["loop"], c["eval"]
    rollout_steps, eval_max_steps = loop_cfg["rollout_steps"], ev["max_steps"]
    num_envs = loop_cfg["num_envs"]
    resets = loop_cfg["resets_per_step"] or num_envs
    _check_algo_fits_loop(c, int(rollout_steps))
    _check_fits_memory(c, int(env.observation_space(params).shape[-1]))
    algo = build_algorithm(c, env, params, memory)
    settings = LoopSettings(
        rollout=loop_cfg["rollout"],
        num_envs=num_envs,
        rollout_steps=int(rollout_steps),
        resets_per_step=int(resets),
        eval_interval=ev["interval"],
        eval_episodes=ev["episodes"],
        eval_max_steps=int(eval_max_steps),
    )
    seeds = tuple(c["seed"] + i for i in range(c["num_seeds"]))
    return Experiment(
        config=c,
        env=env,
        env_params=params,
        memory=memory,
        algo=algo,
        loop=Loop(algo=algo, env=env, env_params=params, settings=settings),
        seeds=seeds,
        iterations=loop_cfg["iterations"],
    )


def _check_algo_fits_loop(c: dict, rollout_steps: int) -> None:
    """Combinations the algorithm cannot serve, now that the rollout length is known."""
    algo, batching, num_envs = c["algo"], c["batching"], c["loop"]["num_envs"]
    if algo["name"] != "ppo":
        return
    if c["loop"]["rollout"] == "episode":
        raise ConfigError(
            "loop.rollout='episode' cannot be served by algo.name='ppo' (PPO learns from "
            "fixed-length rollout windows); allowed: loop.rollout=steps"
        )
    segment = batching["mode"] == "segment"
    if segment and batching["burn_in"]:
        raise ConfigError(
            f"batching.burn_in={batching['burn_in']} cannot be served by algo.name='ppo' "
            "(PPO segments have no burn-in); allowed: batching.burn_in=0"
        )
    if segment and rollout_steps % batching["segment_length"]:
        raise ConfigError(
            f"batching.segment_length={batching['segment_length']} must divide the rollout "
            f"length loop.rollout_steps={rollout_steps} (default: env.max_episode_length) "
            f"for algo.name='ppo'; allowed: {_divisors(rollout_steps)}"
        )
    units = num_envs * (rollout_steps // batching["segment_length"] if segment else 1)
    minibatches = algo.get("num_minibatches", 1)
    if isinstance(minibatches, int) and minibatches >= 1 and units % minibatches:
        raise ConfigError(
            f"algo.num_minibatches={minibatches} must divide the {units} training sequences "
            "per rollout (loop.num_envs"
            + (" * rollout_steps / batching.segment_length)" if segment else ")")
            + f"; allowed: {_divisors(units)}"
        )


def _divisors(n: int, shown: int = 12) -> str:
    found = [d for d in range(1, n + 1) if n % d == 0]
    return ", ".join(map(str, found[:shown])) + (", ..." if len(found) > shown else "")


def _check_fits_memory(c: dict, obs_size: int) -> None:
    """Refuse a replay (or a batch drawn from it) that can never fit in memory."""
    args = _algo_args(c["algo"])
    if "buffer_capacity" in args:
        message = cr.fit_error(args, c["num_seeds"], c["loop"]["num_envs"], c["batching"],
                               obs_size)
        if message:
            raise ConfigError(message)


def build_algorithm(c: dict, env, params, memory):
    """The algorithm named by `algo.name`, wired to the env, memory model and batching."""
    algo_cfg, batching = c["algo"], c["batching"]
    cls = _import(ALGORITHMS[algo_cfg["name"]])
    kwargs = {k: v for k, v in algo_cfg.items() if k != "name"}
    obs_size = int(env.observation_space(params).shape[-1])
    action_space = env.action_space(params)
    if not hasattr(action_space, "n"):
        raise ConfigError(
            f"env.name={c['env']['name']!r} has a {type(action_space).__name__} action space, "
            f"which algo.name={algo_cfg['name']!r} cannot serve: it needs a Discrete one"
        )
    num_actions = int(action_space.n)
    wiring = {
        "memory": memory,
        "num_actions": num_actions,
        "obs_size": obs_size,
        "batching": batching["mode"],
        "num_envs": c["loop"]["num_envs"],  # the store's env streams (DQN)
        "rollout_steps": c["loop"]["rollout_steps"],
    }
    if batching["mode"] == "segment":
        wiring.update(
            segment_length=batching["segment_length"],
            burn_in=batching["burn_in"],
            # the YAML says "zeros"; the agents call the zero state "zero".
            initial_state={"zeros": "zero", "stored": "stored"}[batching["initial_state"]],
        )
    accepted = inspect.signature(cls).parameters
    wiring = {k: v for k, v in wiring.items() if k in accepted}
    try:
        return cls(**wiring, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"algo (algo.name={algo_cfg['name']!r}): {err}") from err


def hydra_run_dir() -> str:
    """The output directory of the running Hydra job (`hydra.run.dir` or the sweep subdir)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir
