"""One default per key: every default in `conf/` equals the Python default it feeds.

The YAML is what a run uses; the constructors' defaults are what a Python user gets. Where
both exist they must agree, so `DQN(memory, F, A)` and `python train.py` are one
algorithm. Keys with no Python default (wired or required) are skipped by construction.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from omegaconf import OmegaConf

from rlmem.agents.batching import SegmentBatching
from rlmem.agents.networks import NetworkSettings
from rlmem.config import ALGO_BLOCKS, ALGORITHMS
from tests.compose import compose_cfg


def python_defaults(cls) -> dict:
    """Constructor keyword defaults, with the settings blocks as plain dicts."""
    params = inspect.signature(cls).parameters.values()
    flat = {p.name: p.default for p in params if p.default is not p.empty}
    blocks = {"optim": dataclasses.asdict(cls.default_optim),
              "network": dataclasses.asdict(NetworkSettings())}
    return {k: v for k, v in flat.items() if k not in ALGO_BLOCKS} | blocks


def dotted(values: dict) -> dict:
    """The settings blocks' keys spelt out: `{"network": {"encoder": x}}` ->
    `{"network.encoder": x}`, so a block's keys are compared one by one like the others."""
    flat = {}
    for key, value in values.items():
        if key in ALGO_BLOCKS:
            flat |= {f"{key}.{k}": v for k, v in value.items()}
        else:
            flat[key] = value
    return flat


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_algo_yaml_defaults_equal_the_constructor_defaults(name):
    yaml = OmegaConf.to_container(compose_cfg(f"algo={name}").algo, resolve=True)
    yaml.pop("name")
    yaml, python = dotted(yaml), dotted(python_defaults(ALGORITHMS.load(name)))
    assert set(yaml) <= set(python), f"keys without a Python default: {set(yaml) - set(python)}"
    differ = {k: (v, python[k]) for k, v in yaml.items() if v != python[k]}
    assert not differ, f"algo={name}: YAML vs Python defaults differ: {differ}"


def test_segment_yaml_defaults_equal_segment_batching_defaults():
    yaml = OmegaConf.to_container(compose_cfg("batching=segment").batching, resolve=True)
    python = {f.name: f.default for f in dataclasses.fields(SegmentBatching)
              if f.default is not dataclasses.MISSING}
    assert yaml["mode"] == SegmentBatching.mode
    shared = set(yaml) & set(python)
    assert shared == {"burn_in", "initial_state", "period"}
    assert {k: yaml[k] for k in shared} == {k: python[k] for k in shared}


def test_a_changed_default_is_caught():
    """The comparison above is not vacuous: a drifted default shows up as a difference."""
    from rlmem.agents.dqn import DQN

    yaml = OmegaConf.to_container(compose_cfg("algo=dqn", "algo.gamma=0.5").algo,
                                  resolve=True)
    assert yaml["gamma"] != python_defaults(DQN)["gamma"]
