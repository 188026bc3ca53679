"""Hostile command-line overrides stop in `rlmem.config` before anything is compiled.

Every case is a list of overrides exactly as a user types them after `python train.py`;
each must raise a `ConfigError` from `rlmem.config.validate` or `build` (which builds the
env, memory model and algorithm objects but compiles nothing) whose message names the key
and the offending value and says what is allowed. Nothing here trains.

Speed: composing with Hydra costs ~0.3 s, so `user_cfg` composes each set of *group*
choices (`algo=ppo`, `memory=lru`, ...) once and applies the key overrides with Hydra's
own override parser and applier (what `compose` does after the defaults list);
`test_shortcut_equals_compose` checks that this is the config `compose` returns.
"""

from __future__ import annotations

import copy
import functools
import math
from pathlib import Path

import jax
import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from rlmem import config as rc
from rlmem import config_ranges as cr

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = {"env", "memory", "batching", "algo", "logger", "experiment"}


@pytest.fixture(scope="module", autouse=True)
def hydra_conf():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield
    GlobalHydra.instance().clear()
    base_cfg.cache_clear()


def is_group(override: str) -> bool:
    key = override.lstrip("+").partition("=")[0]
    return key.split("/")[0] in GROUPS and "." not in key


@functools.cache
def base_cfg(groups: tuple[str, ...]):
    return compose("config", overrides=list(groups))


def user_cfg(*overrides: str):
    """The config `compose("config", overrides)` returns, with the group choices cached."""
    cfg = copy.deepcopy(base_cfg(tuple(o for o in overrides if is_group(o))))
    keys = [o for o in overrides if not is_group(o)]
    ConfigLoaderImpl._apply_overrides_to_config(
        OverridesParser.create().parse_overrides(keys), cfg
    )
    return cfg


def case(*overrides: str, key: str | None = None, value: str | None = "", why: str = ""):
    """One hostile command line. `key` and `value` default to the last override's; the
    value is None where the key itself is the offence (unknown keys)."""
    last_key, _, last_value = overrides[-1].lstrip("+").partition("=")
    key = key or last_key
    value = last_value if value == "" else value
    return pytest.param(list(overrides), key, value, id=" ".join(overrides) + why)


CASES = [
    # -- the issue: sizes ---------------------------------------------------------------
    case("algo.buffer_capacity=10000000000"),  # used to hang forever (int32 store times)
    case("num_seeds=8", "algo.buffer_capacity=2000000000", key="algo.buffer_capacity",
         value="2000000000", why=" (never fits in memory)"),
    case("algo.buffer_capacity=10000000", "algo.batch_size=10000000",
         "algo.network.hidden_size=65536",
         key="algo.batch_size", value="10000000", why=" (batch never fits in memory)"),
    case("algo.batch_size=1000000"),  # > buffer_capacity: used to compile, then OOM
    case("algo.buffer_capacity=10"),  # below one rollout (51 steps) per env stream
    case("loop.num_envs=4", "algo.buffer_capacity=200", key="algo.buffer_capacity",
         value="200", why=" (50 per stream < 51)"),
    case("algo.buffer_capacity=0"),
    case("algo.buffer_capacity=abc"),
    case("algo.buffer_capacity=1e6", value="1000000.0"),  # a float is not a capacity
    case("algo.batch_size=0"),
    case("algo.batch_size=-64"),
    # -- the issue: values --------------------------------------------------------------
    case("algo.optim.learning_rate=abc"),
    case("algo.gamma=abc"),
    case("algo.gamma=5"),
    case("algo.gamma=-0.1"),
    case("algo.eps_start=-0.5"),
    case("algo.eps_end=5"),
    case("algo.optim.adam_eps=-1"),
    case("algo.huber_delta=-1"),
    case("algo.network.num_blocks=-1"),
    case("algo.optim.learning_rate=inf"),
    case("algo.optim.learning_rate=nan"),
    case("algo.optim.learning_rate=0"),
    case("algo.target_delay=0.5"),
    case("algo.optim.max_grad_norm=0"),
    case("algo.optim.weight_decay=-0.1"),
    case("algo.network.hidden_size=0"),
    case("algo.network.hidden_size=1.5"),
    case("algo.network.hidden_size=1000000"),
    case("algo.network.num_blocks=true", value="True"),
    case("algo.optim.warmup_updates=-1"),
    case("algo.updates_per_learn=0"),
    case("algo.random_epochs=-5"),
    case("algo.train_epochs=[1,2]", value="[1, 2]"),
    # -- wired and unknown algo keys ------------------------------------------------------
    case("+algo.num_envs=4"),  # set from loop.num_envs
    case("+algo.rollout_steps=10"),
    case("+algo.obs_size=3"),
    case("+algo.learning_rat=0.1", value=None),
    # -- PPO ------------------------------------------------------------------------------
    case("algo=ppo", "algo.clip_eps=0"),
    case("algo=ppo", "algo.clip_eps=1.5"),
    case("algo=ppo", "algo.clip_eps=-inf"),
    case("algo=ppo", "algo.gae_lambda=1.5"),
    case("algo=ppo", "algo.vf_coef=-1"),
    case("algo=ppo", "algo.ent_coef=nan"),
    case("algo=ppo", "algo.update_epochs=0"),
    case("algo=ppo", "algo.num_minibatches=0"),
    case("algo=ppo", "algo.num_minibatches=3"),  # does not divide loop.num_envs=1
    case("algo=ppo", "loop.num_envs=4", "algo.num_minibatches=3"),
    case("algo=ppo", "algo.normalize_advantage=maybe"),
    case("algo=ppo", "+algo.buffer_capacity=1000", value=None),  # a DQN key
    case("algo=ppo", "batching=segment", "batching.segment_length=20"),  # 20 does not divide 51
    case("algo=ppo", "batching=segment", "loop.rollout_steps=60", "batching.burn_in=5"),
    case("algo=ppo", "loop.rollout=episode"),
    # -- PQN ------------------------------------------------------------------------------
    case("algo=pqn", "algo.q_lambda=2"),
    case("algo=pqn", "algo.eps_decay=-3"),
    case("algo=pqn", "loop.num_envs=4", "algo.num_minibatches=3"),
    case("algo=pqn", "loop.rollout=episode"),
    case("algo=pqn", "algo.network.encoder=cnn"),
    case("algo=pqn", "algo.network.encoder=conv", why=" (RepeatFirstEasy has no images)"),
    case("algo=pqn", "+algo.network.image_shape=[8,8,3]", value="[8, 8, 3]"),  # wired
    # -- batching -------------------------------------------------------------------------
    case("batching=segment", "batching.segment_length=0"),
    case("batching=segment", "batching.segment_length=abc"),
    case("batching=segment", "batching.segment_length=2000"),  # > algo.batch_size=1000
    case("batching=segment", "batching.burn_in=-1"),
    case("batching=segment", "batching.initial_state=zero"),
    case("batching=segment", "batching.period=0"),
    case("batching=segment", "batching.period=21"),  # > batching.segment_length=20
    case("batching=segment", "batching.period=half"),
    case("algo=ppo", "batching=segment", "loop.rollout_steps=60", "batching.period=10"),
    case("algo.td_loss=mean"),
    case("algo.priority=yes"),
    case("algo.priority_alpha=2"),
    case("algo.priority=td", "algo.td_loss=mean_abs"),
    case("algo.next_state=segment_restart"),  # tape batching has no segments to restart
    case("batching=segment", "algo.next_state=restart"),
    case("batching=segment", "batching.mode=segments"),
    case("+batching.segment_length=20"),  # tape batching has no segments
    # -- loop -----------------------------------------------------------------------------
    case("loop.num_envs=0"),
    case("loop.num_envs=two"),
    case("loop.iterations=-10"),
    case("loop.iterations=15"),  # not a multiple of eval.interval=10
    case("loop.iterations=100000000"),  # 5.1e9 env steps overflow the int32 counters
    case("loop.rollout_steps=0"),
    case("loop.rollout_steps=nan"),
    case("loop.resets_per_step=0"),
    case("loop.resets_per_step=3"),  # > loop.num_envs=1
    case("loop.chunk_periods=0"),
    case("loop.rollout=episodes"),
    case("+loop.num_env=4", value=None),
    # -- eval, checkpoint -----------------------------------------------------------------
    case("eval.interval=0"),
    case("eval.episodes=-1"),
    case("eval.episodes=1.5"),
    case("eval.max_steps=0"),
    case("checkpoint.keep=0"),
    case("checkpoint.interval=-1"),
    case("checkpoint.resume=maybe"),
    case("+checkpoint.every=5", value=None),
    # -- memory ---------------------------------------------------------------------------
    case("memory.trace_size=0"),
    case("memory.output_size=-1"),
    case("memory.context_size=abc"),
    case("memory.output_size=100000000"),
    case("memory.name=fmm"),
    case("memory.scan=parallel"),
    case("memory=gru", "memory.scan=associative"),
    case("+memory.trace_sise=3", value=None),
    case("memory=lru", "memory.r_min=0.9", "memory.r_max=0.5"),
    case("memory=lru", "memory.r_max=1.5"),
    case("memory=lru", "memory.num_layers=0"),
    case("memory=s5", "memory.d_state=7"),  # conjugate pairs: must be even
    case("memory=s5", "memory.dt_min=0"),
    case("memory=s6", "memory.dt_rank=0"),
    case("memory=gla", "memory.gate_temperature=0.5"),
    # -- env ------------------------------------------------------------------------------
    case("env.name=RepeatFrstEasy"),
    case("env.name=ArcadeCountRecalEasy"),
    case("env.max_episode_length=0"),
    case("env.previous_action=maybe"),
    case("+env.kwargs.num_deks=2", value=None),
    case("+env.kwargs.num_decks=0", key="env.kwargs", value="0"),  # RepeatFirst refuses it
    case("env=position_only_pendulum_easy", "+env.kwargs.action_bins=null", key="env.name",
         value="PositionOnlyPendulumEasy", why=" (a Box action space)"),
    # -- top level, logger ----------------------------------------------------------------
    case("seed=-1"),
    case("seed=abc"),
    case("seed=2147483647", "num_seeds=2", key="seed", value="2147483647"),
    case("num_seeds=0"),
    case("num_seeds=true", value="True"),
    case("+foo=1", value=None),
    case("logger.mode=onlin"),
    case("logger.tags=5"),
    case("logger.project=null", value="None"),
    case("+logger.entity=me", value=None),
]


@pytest.mark.parametrize("overrides,key,value", CASES)
def test_hostile_override_is_refused(overrides, key, value):
    cfg = user_cfg(*overrides)
    with pytest.raises(rc.ConfigError) as info:
        rc.build(cfg)
    message = str(info.value)
    assert key in message, message
    if value is not None:
        assert value.lower() in message.lower(), message
    hints = ("must", "allowed", "need", "cannot", "remove it")
    assert any(h in message for h in hints), f"no allowed range in: {message}"


TABLES = {"algo": cr.ALGO_RANGES, "memory": cr.MEMORY_RANGES}


def _yaml_numbers(group: str) -> list[tuple[str, str, object]]:
    """(option, key, value) of every int or float key of every option of `group`."""
    found = []
    for path in sorted((CONF / group).glob("*.yaml")):
        for key, value in OmegaConf.to_container(OmegaConf.load(path)).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                found.append((path.stem, key, value))
    return found


def _sweep(group: str, bad_float: tuple[str, ...], bad_int: tuple[str, ...]):
    return [
        pytest.param(f"{group}={option}", f"{group}.{key}={bad}", id=f"{option}.{key}={bad}")
        for option, key, _ in _yaml_numbers(group)
        for bad in (bad_float if TABLES[group][key].kind is float else bad_int)
    ]


# Every float hyperparameter refuses inf, -inf and nan; every int one a float and a word.
@pytest.mark.parametrize(
    "group_choice,override",
    _sweep("algo", ("inf", "-inf", "nan"), ("2.5", "abc"))
    + _sweep("memory", ("nan", "-1"), ("0", "abc")),
)
def test_every_numeric_key_refuses_bad_values(group_choice, override):
    key, _, value = override.partition("=")
    with pytest.raises(rc.ConfigError, match=rf"^{key}=\S*{value}\S* must be "):
        rc.validate(user_cfg(group_choice, override))


def test_every_numeric_constructor_argument_has_a_range():
    """Adding a numeric argument to an algorithm or a memory model needs a range here."""
    import dataclasses
    import inspect

    from rlmem.memory import MEMORY_MODELS
    from rlmem.memory.registry import memory_class, model_fields

    for name in rc.ALGORITHMS:
        for param in inspect.signature(rc.ALGORITHMS.load(name)).parameters.values():
            numeric = isinstance(param.default, int | float)  # bools included
            if numeric and param.name not in rc.WIRED_ALGO_ARGS:
                assert param.name in cr.ALGO_RANGES, f"{name}: {param.name}"
    for block, settings in rc.ALGO_BLOCKS.items():
        for field in dataclasses.fields(settings):
            if isinstance(field.default, int | float):  # encoder: a name, checked as such
                assert field.name in cr.ALGO_RANGES, f"algo.{block}.{field.name}"
    for name in MEMORY_MODELS:
        cls = memory_class(name)
        for field in dataclasses.fields(cls):
            if field.name in model_fields(cls) and isinstance(field.default, int | float):
                assert field.name in cr.MEMORY_RANGES, f"{name}: {field.name}"


def test_ranges_accept_the_shipped_configs():
    """Every option of every group, and every paper preset, passes the ranges."""
    for group, table in TABLES.items():
        for option, key, value in _yaml_numbers(group):
            assert table[key].error(key, value) is None, (option, key, value)
    for preset in sorted((CONF / "experiment" / "paper").glob("*.yaml")):
        rc.validate(user_cfg(f"+experiment=paper/{preset.stem}"))


@pytest.mark.parametrize("rule,good,bad", [
    (cr.POSITIVE_INT, [1, cr.INT32_MAX], [0, cr.INT32_MAX + 1, True, 1.0, "1", None]),
    (cr.UNIT, [0, 0.5, 1, 1.0], [-0.01, 1.01, math.nan, math.inf, "0.5", False]),
    (cr.POSITIVE, [1e-12, 3, 1e300], [0, -1.0, math.inf, -math.inf, math.nan]),
    (cr.FLAG, [True, False], [0, 1, "true", None]),
    (cr.Num(int, 1, 8, nullable=True), [None, 1, 8], [0, 9, 2.0]),
])
def test_range_rules(rule, good, bad):
    for value in good:
        assert rule.error("k", value) is None, value
    for value in bad:
        assert rule.error("k", value).startswith(f"k={value!r} must be {rule.allowed()}")


def test_allowed_ranges_read_well():
    assert cr.UNIT.allowed() == "a float in [0, 1]"
    assert cr.POSITIVE.allowed() == "a finite float > 0"
    assert cr.ALGO_RANGES["clip_eps"].allowed() == "a float in (0, 1]"
    assert cr.POSITIVE_INT.allowed() == f"an int in [1, {cr.INT32_MAX}]"
    assert cr.FIXED_RANGES["checkpoint.interval"].allowed().endswith(" or null")


def test_replay_estimate_is_a_lower_bound():
    """The bytes `_check_fits_memory` charges per transition never exceed the store's."""
    for extra in ([], ["batching=segment", "batching.initial_state=stored"]):
        exp = rc.build(user_cfg(*extra, "loop.num_envs=3", "algo.buffer_capacity=3000"))
        shapes = jax.eval_shape(exp.algo.init, jax.random.PRNGKey(0))
        store = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes.store))
        obs_size = exp.env.observation_space(exp.env_params).shape[-1]
        assert store >= 3000 * cr.replay_bytes_per_transition(obs_size)


@pytest.mark.parametrize("overrides", [
    ["algo=ppo", "memory=lru", "algo.clip_eps=1.5", "+algo.foo=1"],
    ["batching=segment", "+env.kwargs.num_deks=2", "loop.resets_per_step=null"],
    ["+experiment=paper/repeat_previous", "algo.gamma=0.5", "~algo.eps_end"],
])
def test_shortcut_equals_compose(overrides):
    full = OmegaConf.to_container(compose("config", overrides=overrides))
    assert OmegaConf.to_container(user_cfg(*overrides)) == full


def test_valid_multi_env_dqn_builds_with_its_envs():
    exp = rc.build(user_cfg("loop.num_envs=4"))
    assert exp.algo.num_envs == 4


def test_constructor_checks_refuse_bad_values_without_type_errors():
    """The algorithms' own backstop (rlmem.checks) for objects built without a
    config: wrong types, bools and non-finite numbers are ValueErrors naming the argument."""
    import numpy as np

    from rlmem.checks import check_positive_floats, check_unit_interval

    check_unit_interval(gamma=0.99, one=1, zero=np.float32(0.0))
    check_positive_floats(learning_rate=1e-4, clip=np.float32(0.2), delta=2)
    for bad in ("abc", None, True, math.nan, math.inf, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\], got "):
            check_unit_interval(gamma=bad)
    for bad in ("abc", None, False, math.nan, math.inf, -math.inf, 0, -1.0):
        with pytest.raises(ValueError, match=r"learning_rate must be a finite number > 0"):
            check_positive_floats(learning_rate=bad)


def test_available_memory_counts_accelerators(monkeypatch):
    """On GPUs the limit is their allocators' total, not the host's RAM."""

    class FakeGPU:
        platform, device_kind = "gpu", "NVIDIA H200"

        def memory_stats(self):
            return {"bytes_limit": 140 * 2**30}

    monkeypatch.setattr(jax, "local_devices", lambda: [FakeGPU(), FakeGPU()])
    assert cr.available_memory() == (280 * 2**30, "2 x NVIDIA H200")
    args = {"buffer_capacity": 2_000_000_000, "batch_size": 1000, "hidden_size": 256}
    tape = {"mode": "tape"}
    assert cr.fit_error(args, 1, 1, tape, obs_size=4) is None  # 104 GB fit in 280 GiB
    message = cr.fit_error(args, 8, 1, tape, obs_size=4)
    assert message.startswith("algo.buffer_capacity=2000000000 needs at least 774.9 GiB")
    assert "more than the 280.0 GiB of 2 x NVIDIA H200" in message
