"""Config composition and validation (rlmem/config.py, conf/).

Every group option composes and validates; every memory x batching x algo combination
composes, validates and builds (env, memory model, algorithm; nothing is compiled); bad
overrides stop with a message naming the key and the allowed values.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from rlmem import config as rc
from rlmem.envs import arcade

CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


ENVS, MEMORIES = options("env"), options("memory")
# The env options this machine can build: the Arcade ones need the optional popgym-arcade
# package (rlmem/envs/arcade.py; tests/envs/test_arcade.py says when it is absent).
LOCAL_ENVS = [e for e in ENVS if not e.startswith("arcade_") or arcade.unavailable() is None]
# R2D2's presets (algo=r2d2: DQN plus its rules; batching=r2d2_l*: stored-state overlapping
# sequences) have their own tests below; the grids take the modes and algorithms.
R2D2_BATCHINGS = ("r2d2_l20", "r2d2_l80")
BATCHINGS = [b for b in options("batching") if b not in R2D2_BATCHINGS]
ALGOS = [a for a in options("algo") if a != "r2d2"]
LOGGERS = options("logger")
PAPER, R2D2 = options("experiment/paper"), options("experiment/r2d2")


@pytest.fixture(scope="module", autouse=True)
def hydra_conf():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield
    GlobalHydra.instance().clear()


def cfg(*overrides: str):
    return compose("config", overrides=list(overrides))


def fits(overrides: list[str]) -> list[str]:
    """On-policy segments (PPO, PQN) need a segment length dividing the rollout
    (RepeatFirstEasy: 51); 100 steps fit every segment option (L = 10, 20, 50, 100)."""
    on_policy = "algo=ppo" in overrides or "algo=pqn" in overrides
    if on_policy and any(o.startswith("batching=segment") for o in overrides):
        return [*overrides, "loop.rollout_steps=100"]
    return overrides


def test_groups_are_complete():
    popgym = [e for e in ENVS if re.search(r"_(easy|medium|hard)$", e)
              and not e.startswith("arcade_")]
    assert len(popgym) == 48
    assert len([e for e in ENVS if e.startswith("arcade_")]) == 30  # POPGym Arcade
    assert {"cartpole", "catch", "memory_chain"} <= set(ENVS)
    from rlmem.memory import MEMORY_MODELS

    assert set(MEMORIES) == set(MEMORY_MODELS)
    # segment_l<L>: `segment` with the paper's sweep lengths, so one -m sweep covers the grid
    assert set(BATCHINGS) == {"tape", "segment", *(f"segment_l{n}" for n in (10, 20, 50, 100))}
    assert set(ALGOS) == {"dqn", "ppo", "pqn"}
    assert set(options("algo")) - set(ALGOS) == {"r2d2"}
    assert set(options("batching")) - set(BATCHINGS) == set(R2D2_BATCHINGS)
    assert len(PAPER) == 9 and R2D2 == PAPER


def test_every_yaml_key_is_commented():
    for path in CONF.rglob("*.yaml"):
        if path.relative_to(CONF).parts[0] == "hydra":  # launchers: Hydra plugin schemas
            continue
        for line in path.read_text().splitlines():
            code = line.split("#")[0]
            if re.match(r"^\s*[a-z_]+:\s*\S", code) and not code.strip().startswith("-"):
                assert "#" in line, f"{path.relative_to(CONF)}: uncommented key: {line!r}"


def popgym_episode_length(name: str) -> int | None:
    """popgym's own bound on an episode of `name` (None if popgym cannot build it)."""
    import importlib

    import popgym.envs

    family = re.sub(r"(Easy|Medium|Hard)$", "", name)
    cls = getattr(popgym.envs, name, None)
    if cls is None:
        module = re.sub(r"(?<!^)(?=[A-Z])", "_", family).lower()
        try:
            cls = getattr(importlib.import_module(f"popgym.envs.{module}"), name)
        except ImportError:  # an optional popgym dependency is missing
            return None
    pop = cls()
    for attr in ("max_episode_length", "episode_length"):
        if getattr(pop, attr, None):
            return getattr(pop, attr)
    return pop.deck.num_cards - 1  # HigherLower: one step per card after the first


def test_every_env_validates_and_builds():
    """Each env option validates, builds with rlmem.envs.make, and its
    `max_episode_length` (the default rollout and eval length) is popgym's own bound."""
    # One Hydra compose, then each env option merged in as Hydra would (env/*.yaml have no
    # defaults lists): composing 62 times costs ~0.3 s each on a loaded 2-core machine.
    base = cfg()
    OmegaConf.set_struct(base, False)  # env.kwargs: {} takes an option's kwargs (Arcade's)
    failures = []
    for env in LOCAL_ENVS:
        option = OmegaConf.load(CONF / "env" / f"{env}.yaml")
        c = rc.validate(OmegaConf.merge(base, {"env": option}))
        name = c["env"]["name"]
        try:
            built, params = rc.build_env(c["env"])
            assert built.observation_space(params).shape[-1] >= 1
        except Exception as err:  # noqa: BLE001 - collect them all, report once
            failures.append(f"{env}: {err}")
        assert c["loop"]["rollout_steps"] == c["eval"]["max_steps"]
        assert c["loop"]["rollout_steps"] == c["env"]["max_episode_length"]
        if "-" not in name and name not in arcade.ARCADE_IDS:  # a POPGym id (gymnax
            # ids contain a dash; tests/envs/test_arcade.py checks the Arcade lengths)
            expected = popgym_episode_length(name)
            if expected is not None:
                assert c["env"]["max_episode_length"] == expected, name
    assert not failures, "\n".join(failures)


def test_default_config():
    c = rc.validate(cfg())
    assert (c["env"]["name"], c["memory"]["name"], c["batching"]["mode"], c["algo"]["name"]) == (
        "RepeatFirstEasy", "ffm", "tape", "dqn"
    )


@pytest.mark.parametrize(
    "memory,batching,algo", list(itertools.product(MEMORIES, BATCHINGS, ALGOS))
)
def test_memory_batching_algo_grid_builds(memory, batching, algo):
    overrides = fits([f"memory={memory}", f"batching={batching}", f"algo={algo}"])
    exp = rc.build(cfg(*overrides))
    assert exp.loop.settings.rollout_steps >= 1
    assert exp.total_steps == exp.iterations * exp.loop.settings.steps_per_iteration


@settings(max_examples=15)
@given(
    st.sampled_from(LOCAL_ENVS), st.sampled_from(MEMORIES), st.sampled_from(BATCHINGS),
    st.sampled_from(ALGOS), st.sampled_from(LOGGERS),
)
def test_random_combinations_validate(env, memory, batching, algo, logger):
    c = rc.validate(cfg(f"env={env}", f"memory={memory}", f"batching={batching}",
                        f"algo={algo}", f"logger={logger}"))
    assert c["batching"]["mode"] == batching.split("_")[0]
    if batching.startswith("segment_l"):
        assert c["batching"]["segment_length"] == int(batching.removeprefix("segment_l"))


@pytest.mark.parametrize("preset", PAPER)
def test_paper_presets(preset):
    exp = rc.build(cfg(f"+experiment=paper/{preset}", "memory=lru", "batching=segment"))
    c = exp.config
    algo = c["algo"]
    assert c["loop"]["iterations"] == algo["random_epochs"] + algo["train_epochs"]
    assert (c["loop"]["num_envs"], algo["batch_size"]) == (1, 1000)
    assert c["memory"]["name"] == "lru" and c["batching"]["mode"] == "segment"


R2D2_ALGO = {"n_step": 5, "value_rescaling": True, "priority": "td", "priority_eta": 0.9,
             "priority_alpha": 0.9, "priority_beta": 0.6, "priority_beta_end": 0.6}


@pytest.mark.parametrize("preset", R2D2)
def test_r2d2_presets_are_the_paper_protocol_plus_r2d2(preset):
    """`+experiment=r2d2/<task>` differs from `paper/<task>` only in R2D2's algo rules and
    its sequences: R2D2's published L = 80 / burn-in 40 / period 40 where the episodes
    hold them (200 steps), the same proportions at L = 20 for the short tasks."""
    paper = rc.validate(cfg(f"+experiment=paper/{preset}"))
    r2d2 = rc.build(cfg(f"+experiment=r2d2/{preset}")).config
    for key in ("env", "loop", "eval", "memory"):
        assert r2d2[key] == paper[key], key
    changed = {k for k, v in r2d2["algo"].items() if paper["algo"].get(k) != v}
    assert changed <= set(R2D2_ALGO) and {k: r2d2["algo"][k] for k in R2D2_ALGO} == R2D2_ALGO
    length = 80 if paper["env"]["max_episode_length"] >= 200 else 20
    assert r2d2["batching"] == {"mode": "segment", "segment_length": length,
                                "burn_in": length // 2, "period": length // 2,
                                "initial_state": "stored"}
    tape = rc.build(cfg(f"+experiment=r2d2/{preset}", "batching=tape")).config  # prioritised TBB
    assert tape["batching"] == {"mode": "tape"} and tape["algo"]["priority"] == "td"


@pytest.mark.parametrize("batching", R2D2_BATCHINGS)
def test_r2d2_batchings_are_replay_only(batching):
    exp = rc.build(cfg("algo=r2d2", f"batching={batching}"))
    b = exp.batching
    assert b.label == f"segment_l{b.segment_length}_b{b.burn_in}_p{b.period}_stored"
    for algo in ("ppo", "pqn"):
        with pytest.raises(rc.ConfigError, match=r"batching\.burn_in=\d+ cannot be served"):
            rc.build(cfg(f"algo={algo}", f"batching={batching}", "loop.rollout_steps=160"))


def test_paper_table_values():
    rf = rc.validate(cfg("+experiment=paper/repeat_first"))
    assert (rf["algo"]["random_epochs"], rf["algo"]["train_epochs"]) == (5000, 5000)
    rp = rc.validate(cfg("+experiment=paper/repeat_previous"))
    assert (rp["algo"]["gamma"], rp["algo"]["eps_end"]) == (0.5, 0.1)
    assert rp["env"]["kwargs"] == {"num_decks": 2, "k": 10}
    ms = rc.validate(cfg("+experiment=paper/minesweeper"))
    assert (ms["algo"]["train_epochs"], ms["algo"]["target_delay"]) == (40000, 400)
    assert ms["algo"]["buffer_capacity"] == 1_000_000 and ms["env"]["previous_action"]
    ae = rc.validate(cfg("+experiment=paper/autoencode"))
    assert ae["algo"]["updates_per_learn"] == 4


# -- bad overrides ----------------------------------------------------------------------
BAD = [
    (["env.name=RepeatFrstEasy"], r"env\.name='RepeatFrstEasy'.*RepeatFirstEasy"),
    (["memory.name=fmm"], r"memory\.name='fmm'.*'ffm'"),
    (["loop.num_envs=two"], r"loop\.num_envs='two' must be an int in \[1, 2147483647\]"),
    (["loop.num_envs=0"], r"loop\.num_envs=0 must be an int in \[1, 2147483647\]"),
    (["num_seeds=true"], r"num_seeds=True must be an int in \[1, "),
    (["batching=segment", "batching.segment_length=0"],
     r"batching\.segment_length=0 must be an int in \[1, "),
    (["batching=segment", "batching.segment_length=2000"],
     r"algo\.batch_size=1000 cannot hold one segment of batching\.segment_length=2000"),
    (["batching=segment", "batching.initial_state=zero"],
     r"batching\.initial_state='zero'.*'zeros'.*allowed: stored, zeros"),
    (["batching=segment", "batching.mode=segments"], r"batching\.mode='segments'.*'segment'"),
    (["+batching.segment_length=20"], r"batching\.segment_length=20 only applies to .*segment"),
    (["memory=gru", "memory.scan=associative"],
     r"memory\.scan='associative' cannot be served by memory\.name='gru'"),
    (["memory.scan=parallel"], r"memory\.scan='parallel'.*allowed: associative, auto, sequential"),
    (["+loop.num_env=4"], r"unknown config key 'loop\.num_env'.*'num_envs'"),
    (["+algo.learning_rat=0.1"], r"unknown config key 'algo\.learning_rat'.*'learning_rate'"),
    (["algo.name=dqnn"], r"algo\.name='dqnn'.*'dqn'"),
    (["logger.mode=onlin"], r"logger\.mode='onlin'.*'online'"),
    (["loop.iterations=15"], r"loop\.iterations=15 must be a multiple of eval\.interval=10"),
    (["+memory.trace_sise=3"], r"trace_sise"),
]


@pytest.mark.parametrize("overrides,message", BAD)
def test_bad_override_message(overrides, message):
    with pytest.raises(rc.ConfigError, match=message):
        rc.build(cfg(*overrides))


BAD_AT_BUILD = [
    (["env=position_only_pendulum_easy", "+env.kwargs.action_bins=null"],  # keep the Box
     r"env\.name='PositionOnlyPendulumEasy' has a Box action space, which algo\.name='dqn' "
     r"cannot serve"),
    (["algo=ppo", "batching=segment", "batching.segment_length=20"],
     r"batching\.segment_length=20 must divide the rollout length loop\.rollout_steps=51"),
    (["algo=ppo", "batching=segment", "batching.burn_in=4", "loop.rollout_steps=60"],
     r"batching\.burn_in=4 cannot be served by algo\.name='ppo'"),
    (["algo=ppo", "loop.num_envs=3", "algo.num_minibatches=2"],
     r"algo\.num_minibatches=2 must divide the 3 training sequences"),
    (["loop.num_envs=2", "loop.resets_per_step=3"], r"loop\.resets_per_step=3 must be <= "),
    (["+env.kwargs.num_deks=2"],
     r"unknown config key 'env\.kwargs\.num_deks' for env\.name='RepeatFirstEasy' \(did you "
     r"mean 'num_decks'\?\); allowed: action_bins, num_decks"),
    (["+env.kwargs.num_decks=0"], r"env\.kwargs=\{'num_decks': 0\} do not fit env\.name="),
]


@pytest.mark.parametrize("overrides,message", BAD_AT_BUILD)
def test_bad_combination_message(overrides, message):
    with pytest.raises(rc.ConfigError, match=message):
        rc.build(cfg(*overrides))


def test_unknown_group_option_lists_the_options():
    match = r"(?s)env/repeat_frist_easy.*repeat_first_easy"
    with pytest.raises(ConfigCompositionException, match=match):
        cfg("env=repeat_frist_easy")


def test_validate_returns_plain_containers():
    c = rc.validate(OmegaConf.create(OmegaConf.to_container(cfg(), resolve=True)))
    assert isinstance(c["loop"], dict)


def test_default_wandb_group_keeps_ablation_arms_apart():
    """The R2D2 arms of one sweep get different groups; seeds and output settings do not
    split a group; a group too long for W&B is cut with a hash."""
    from rlmem.config import WANDB_GROUP_MAX, default_group

    names = ("RepeatFirstEasy", "lru", "segment_l20", "dqn")
    arm = ["+experiment=paper/repeat_first", "memory=lru", "batching=segment_l20",
           "batching.burn_in=10", "batching.initial_state=stored", "seed=3", "num_seeds=2",
           "logger=none", "checkpoint.keep=1", "hydra.sweep.dir=/x"]
    assert default_group(names, arm) == (
        "RepeatFirstEasy-lru-segment_l20-dqn-batching.burn_in=10-"
        "batching.initial_state=stored-experiment=paper/repeat_first")
    other = [a.replace("burn_in=10", "burn_in=0") for a in arm]
    assert default_group(names, other) != default_group(names, arm)
    assert default_group(names, [a.replace("seed=3", "seed=4") for a in arm]) == \
        default_group(names, arm)
    assert default_group(names) == "RepeatFirstEasy-lru-segment_l20-dqn"
    long = default_group(names, [f"algo.gamma={'9' * 200}"])
    assert len(long) == WANDB_GROUP_MAX and long != default_group(names, ["algo.gamma=1"])


@pytest.mark.parametrize("algo", ALGOS)
def test_conv_encoder_reaches_every_algorithm(algo):
    """`algo.network.encoder=conv` on an image env (MinAtar's [10, 10, 4] planes here; the
    Arcade envs are optional): every algorithm's network gets the env's image shape."""
    exp = rc.build(cfg(f"algo={algo}", "env=breakout_minatar", "algo.network.encoder=conv",
                       "loop.rollout_steps=100"))
    assert exp.algo.network.image_shape == (10, 10, 4)
    plain = rc.build(cfg(f"algo={algo}", "env=breakout_minatar", "loop.rollout_steps=100"))
    assert plain.algo.network.image_shape is None
