"""The one place a Hydra config becomes objects: validation first
(`rlmem.config_checks`), then env, memory, batching, algorithm, loop and the run's typed
settings, built by name with every null resolved.

Everything is checked before anything is compiled: unknown keys and names, wrong types,
values outside their ranges (`rlmem.config_ranges`), sizes that overflow or can never fit
in memory, and combinations a component cannot serve. Every error names the config
key, the value it got and what is allowed (with close matches for misspelt names).
No other rlmem module imports omegaconf or hydra.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from rlmem import config_ranges as cr
from rlmem import sweep
from rlmem.agents.batching import Batching, SegmentBatching, TapeBatching
from rlmem.agents.networks import NetworkSettings
from rlmem.agents.optim import OptimSettings
from rlmem.config_checks import (  # noqa: F401  (re-exported: the config API in one place)
    ALGO_BLOCKS,
    ALGORITHMS,
    SCHEMA,
    WIRED_ALGO_ARGS,
    ConfigError,
    _algo_args,
    to_container,
    validate,
)
from rlmem.loop import Loop, LoopSettings
from rlmem.settings import CheckpointSettings, LoggerSettings
from rlmem.sweep import Member, Run

# Keys that do not change what a checkpoint holds: a run may be resumed with other values
# (None: the whole section).
RUN_ONLY_KEYS = {
    "loop": ("iterations", "chunk_periods", "check_memory"),
    "eval": ("interval", "episodes", "max_steps"),
    "checkpoint": None,
    "logger": None,
    "early_stop": None,
    "sweep": ("objective",),
}


@dataclass(frozen=True)
class Experiment:
    """Everything `train.py` needs, built from a validated config; every null resolved.

    Attributes:
      config: the validated plain config dict (recorded with the run and in checkpoints).
      env, env_params: the wrapped env.
      memory: the memory model (flax module).
      batching: `TapeBatching` or `SegmentBatching` (from `batching.*`).
      algo: the algorithm (rlmem.agents).
      loop: the training loop (its `settings` are `loop.*` and `eval.*`).
      runs: the runs trained side by side (`rlmem.sweep.Run`): the seeds, or every
        vectorised-sweep member with every seed (member-major).
      members: the vectorised sweep's members (`sweep.vmap`; `()`: not a sweep).
      hparams: `{name: [R]}` each run's sweepable hyper-parameters (`Loop.init`).
      iterations: total iterations to run.
      chunk_periods: evaluation periods per compiled call; None: chosen by the runner from
        the measured period time (`rlmem.runner.auto_chunk`).
      check_memory: refuse to start a run whose estimated memory exceeds what is available
        (`rlmem.footprint`).
      early_stop: `(metric, at_least)`: stop once every run's metric reaches it (None: no).
      objective: the metric whose mean over runs `train.py` returns (`sweep.objective`).
      checkpoint: `checkpoint.*`, the interval resolved (null: only at the end).
      logger: `logger.*`, the group resolved (null: env-memory-batching-algo).
      names: (env, memory, batching label, algo), for run names, groups and tags.
    """

    config: dict
    env: Any
    env_params: Any
    memory: Any
    batching: Batching
    algo: Any
    loop: Loop
    runs: tuple[Run, ...]
    members: tuple[Member, ...]
    hparams: dict[str, tuple[float, ...]]
    iterations: int
    chunk_periods: int | None
    check_memory: bool
    early_stop: tuple[str, float] | None
    objective: str
    checkpoint: CheckpointSettings
    logger: LoggerSettings
    names: tuple[str, str, str, str]

    @property
    def resumable_config(self) -> dict:
        """The config minus the keys a resumed run may change (`RUN_ONLY_KEYS`): what a
        checkpoint must have been written under to be restored."""
        kept = {}
        for key, value in self.config.items():
            run_only = RUN_ONLY_KEYS.get(key, ())
            if run_only is None:
                continue
            kept[key] = ({k: v for k, v in value.items() if k not in run_only}
                         if run_only else value)
        return kept

    @property
    def seeds(self) -> tuple[int, ...]:
        """Each run's seed (`[R]`; a sweep repeats them across its members)."""
        return tuple(run.seed for run in self.runs)

    def init_state(self):
        """The runs' fresh vmapped `LoopState` (leaves `[R, ...]`)."""
        return self.loop.init(self.seeds, self.hparams)

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


def build_batching(batching: dict) -> Batching:
    """`TapeBatching()` or `SegmentBatching(...)` from a validated `batching.*`."""
    if batching["mode"] == "tape":
        return TapeBatching()
    try:
        return SegmentBatching(batching["segment_length"], batching["burn_in"],
                               batching["initial_state"], batching.get("period"))
    except ValueError as err:  # ranges were checked: only a combination can land here
        raise ConfigError(f"batching: {err}") from err


# Command-line overrides that never tell an ablation arm apart (seeds, outputs, logging,
# checkpoints, vectorised-sweep members: W&B groups those by member), and the config
# groups whose choice the default W&B group already names.
NOT_ARM_KEYS = ("seed", "num_seeds", "hydra", "logger", "checkpoint", "sweep",
                "loop.chunk_periods", "loop.check_memory")
NAMED_GROUPS = ("env", "memory", "batching", "algo")
WANDB_GROUP_MAX = 128  # W&B's limit on a group name


def default_group(names: tuple[str, ...], overrides: Sequence[str] = ()) -> str:
    """The default W&B group: `env-memory-batching-algo` plus every command-line override
    that can set an ablation arm apart (`batching.burn_in=10`, `algo.gamma=0.9`,
    `experiment=paper/repeat_first`), so arms of a sweep are never averaged together;
    seeds share their group. Too long for W&B: cut, with a hash of the whole."""
    arms = []
    for item in overrides:
        key, _, value = item.lstrip("+~").partition("=")
        if key in NAMED_GROUPS or any(key == k or key.startswith(k + ".")
                                      for k in NOT_ARM_KEYS):
            continue
        arms.append(f"{key}={value}")
    group = "-".join([*map(str, names), *sorted(arms)])
    if len(group) > WANDB_GROUP_MAX:
        digest = hashlib.sha1(group.encode()).hexdigest()[:8]
        group = f"{group[:WANDB_GROUP_MAX - 9]}-{digest}"
    return group


def build(cfg: DictConfig | Mapping, overrides: Sequence[str] = ()) -> Experiment:
    """Validate `cfg`, then build env, memory, batching, algorithm and loop.

    `overrides`: the job's command-line overrides (Hydra's `overrides.task`), for the
    default W&B group (`default_group`)."""
    c = validate(cfg)
    env, params = build_env(c["env"])
    memory = build_memory(c["memory"])
    batching = build_batching(c["batching"])
    loop_cfg, ev = c["loop"], c["eval"]
    cls = ALGORITHMS.load(c["algo"]["name"])
    if loop_cfg["rollout"] == "episode" and not cls.serves_episode_rollouts:
        raise ConfigError(
            f"loop.rollout='episode' cannot be served by algo.name={c['algo']['name']!r} "
            "(it learns from fixed-length rollout windows); allowed: loop.rollout=steps"
        )
    members = sweep.members(c["sweep"]["vmap"])
    seeds = tuple(c["seed"] + i for i in range(c["num_seeds"]))
    runs = sweep.runs(seeds, members)
    _check_fits_memory(c, int(env.observation_space(params).shape[-1]), len(runs))
    algo = build_algorithm(c, env, params, memory, batching)
    # Each member's algorithm is built from its own config (its constructor checks its
    # values) only to read its hyper-parameters; the runs share `algo`'s program.
    member_algos = {m.index: build_algorithm(sweep.member_config(c, m), env, params, memory,
                                             batching) for m in members}
    run_hparams = [(member_algos[r.member.index] if r.member else algo).hparams()
                   for r in runs]
    hparams = {name: tuple(h[name] for h in run_hparams) for name in algo.hparams()}
    settings = LoopSettings(
        rollout=loop_cfg["rollout"],
        num_envs=loop_cfg["num_envs"],
        rollout_steps=loop_cfg["rollout_steps"],
        resets_per_step=loop_cfg["resets_per_step"],  # null: VecEnv's default
        eval_interval=ev["interval"],
        eval_episodes=ev["episodes"],
        eval_max_steps=ev["max_steps"],
    )
    loop = Loop(algo=algo, env=env, env_params=params, settings=settings)
    names = (c["env"]["name"], c["memory"]["name"], batching.label, c["algo"]["name"])
    ckpt, log = c["checkpoint"], c["logger"]
    return Experiment(
        config=c,
        env=env,
        env_params=params,
        memory=memory,
        batching=batching,
        algo=algo,
        loop=loop,
        runs=runs,
        members=members,
        hparams=hparams,
        iterations=loop_cfg["iterations"],
        chunk_periods=loop_cfg["chunk_periods"],
        check_memory=loop_cfg["check_memory"],
        early_stop=(None if c["early_stop"]["at_least"] is None else
                    (c["early_stop"]["metric"], float(c["early_stop"]["at_least"]))),
        objective=c["sweep"]["objective"],
        checkpoint=CheckpointSettings(
            interval=ckpt["interval"] or settings.step_of(loop_cfg["iterations"]),
            every_minutes=ckpt["every_minutes"], keep=ckpt["keep"], resume=ckpt["resume"],
            overwrite=ckpt["overwrite"], exclude_replay=ckpt["exclude_replay"],
        ),
        logger=LoggerSettings(
            mode=log["mode"], project=log["project"],
            group=log["group"] or default_group(names, overrides),
            tags=(*names, *log["tags"]), name=log["name"],
        ),
        names=names,
    )


def _check_fits_memory(c: dict, obs_size: int, num_runs: int) -> None:
    """Refuse a replay (or a batch drawn from it) that can never fit in memory."""
    args = _algo_args(c["algo"])
    if "buffer_capacity" in args:
        message = cr.fit_error(args, num_runs, c["loop"]["num_envs"], c["batching"],
                               obs_size)
        if message:
            raise ConfigError(message)


def build_algorithm(c: dict, env, params, memory, batching: Batching):
    """The algorithm named by `algo.name`, wired to the env, memory model, batching and
    the loop's rollout shape; `algo.optim.*` / `algo.network.*` over the class defaults."""
    algo_cfg = c["algo"]
    cls = ALGORITHMS.load(algo_cfg["name"])
    action_space = env.action_space(params)
    if not hasattr(action_space, "n"):
        raise ConfigError(
            f"env.name={c['env']['name']!r} has a {type(action_space).__name__} action space, "
            f"which algo.name={algo_cfg['name']!r} cannot serve: it needs a Discrete one"
        )
    kwargs = {k: v for k, v in algo_cfg.items() if k != "name" and k not in ALGO_BLOCKS}
    try:
        return cls(
            memory=memory,
            obs_size=int(env.observation_space(params).shape[-1]),
            num_actions=int(action_space.n),
            batching=batching,
            optim=OptimSettings(**dataclasses.asdict(cls.default_optim)
                                | (algo_cfg.get("optim") or {})),
            network=build_network_settings(c, env, params),
            num_envs=c["loop"]["num_envs"],
            rollout_steps=c["loop"]["rollout_steps"],
            **kwargs,
        )
    except (TypeError, ValueError) as err:
        message = str(err)
        if re.match(r"(algo|batching|loop)\.\w+", message):  # already names its keys
            raise ConfigError(message) from err
        raise ConfigError(f"algo (algo.name={algo_cfg['name']!r}): {message}") from err


def build_network_settings(c: dict, env, params) -> NetworkSettings:
    """`algo.network.*` over the defaults, with `image_shape` wired from the env for the
    conv encoder (`rlmem.envs.image_shape`)."""
    from rlmem.envs import image_shape

    values = dict(c["algo"].get("network") or {})
    if values.get("encoder") == "conv":
        shape = image_shape(env, params)
        if shape is None:
            raise ConfigError(
                f"algo.network.encoder='conv' needs image observations ([H, W, C], e.g. "
                f"the Arcade envs); env.name={c['env']['name']!r} observes flat vectors "
                f"of {int(env.observation_space(params).shape[-1])} features; allowed: "
                f"algo.network.encoder=mlp"
            )
        values["image_shape"] = shape
    return NetworkSettings(**values)


def hydra_run_dir() -> str:
    """The output directory of the running Hydra job (`hydra.run.dir` or the sweep subdir)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir
