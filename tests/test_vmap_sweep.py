"""Vectorised sweeps (`sweep.vmap`, rlmem/sweep.py): K members x S seeds in one compiled
program, each run equal to its member's own plain run; bad keys refused before building."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from rlmem.config import ConfigError, build
from rlmem.sweep import Member, Run, member_config, members, runs
from tests.compose import compose_cfg
from tests.tiny_run import TINY_BASE

# A tiny MLP agent whose random phase ends after 2 iterations, so 2 periods of 5
# iterations run 8 iterations of updates under every member's values.
BASE = (*TINY_BASE, "memory=mlp", "memory.output_size=8")
VMAP = "sweep.vmap={algo.optim.learning_rate:[1e-4,3e-3],algo.target_delay:[5,50]}"


def _leaves(state, run: int) -> list[np.ndarray]:
    return [np.asarray(x)[run] for x in jax.tree.leaves(state)]


@pytest.fixture(scope="module")
def sweep_exp():
    return build(compose_cfg(*BASE, "num_seeds=2", VMAP))


def test_members_are_the_product_first_key_slowest(sweep_exp):
    assert [m.values for m in sweep_exp.members] == [
        {"algo.optim.learning_rate": 1e-4, "algo.target_delay": 5},
        {"algo.optim.learning_rate": 1e-4, "algo.target_delay": 50},
        {"algo.optim.learning_rate": 3e-3, "algo.target_delay": 5},
        {"algo.optim.learning_rate": 3e-3, "algo.target_delay": 50},
    ]
    assert [(r.member.index, r.seed) for r in sweep_exp.runs] == [
        (k, s) for k in range(4) for s in (0, 1)]
    assert sweep_exp.hparams["optim.learning_rate"] == (1e-4,) * 4 + (3e-3,) * 4
    assert sweep_exp.hparams["target_delay"] == (5, 5, 50, 50) * 2
    assert sweep_exp.hparams["gamma"] == (0.99,) * 8  # not swept: the config's value


def test_every_run_equals_its_members_plain_run():
    """Run (member k, seed s) of a sweep ends bit-identical (parameters, optimiser,
    replay, envs, counters) to seed s of a plain run of member k's config, and logs the
    same metrics; the members really differ (the comparison can fail).

    Like with like: the plain runs vmap as many runs side by side (4) as the sweep, since
    XLA's batched CPU kernels may round differently at another width (measured: seed 1
    of 8 vmapped seeds differs from seed 1 of 2 in the last bits after some updates).
    """
    vmap = "sweep.vmap={algo.target_delay:[5,50],algo.optim.learning_rate:[3e-3]}"
    sweep = build(compose_cfg(*BASE, "num_seeds=2", vmap))
    state, metrics = sweep.loop.run_chunk(sweep.init_state(), 2)
    for index, delay in enumerate((5, 50)):
        plain = build(compose_cfg(*BASE, "num_seeds=4", f"algo.target_delay={delay}",
                                  "algo.optim.learning_rate=3e-3"))
        want_state, want_metrics = plain.loop.run_chunk(plain.init_state(), 2)
        for seed in (0, 1):
            run = 2 * index + seed
            assert sweep.runs[run].seed == seed and sweep.runs[run].member.index == index
            for got, want in zip(_leaves(state, run), _leaves(want_state, seed), strict=True):
                np.testing.assert_array_equal(got, want)
            for name, value in want_metrics.items():
                np.testing.assert_array_equal(np.asarray(metrics[name])[run],
                                              np.asarray(value)[seed], err_msg=name)
    params = lambda run: _leaves(state.algo.params, run)
    assert any((a != b).any() for a, b in zip(params(0), params(2), strict=True))


@pytest.mark.parametrize(("override", "message"), [
    ("sweep.vmap={algo.batch_size:[32,64]}",
     "sweep.vmap key 'algo.batch_size' cannot be vmapped with algo.name='dqn' (it changes "
     "array shapes"),
    ("sweep.vmap={memory.output_size:[8,16]}", "memory.* chooses the code and the array"),
    ("sweep.vmap={algo.gama:[0.9]}", "Vmappable keys: algo.eps_end, algo.eps_start, "
     "algo.gamma, algo.huber_delta, algo.optim.adam_eps"),
    ("sweep.vmap={algo.gamma:[]}", "sweep.vmap.algo.gamma must be a non-empty list"),
    ("sweep.vmap={algo.gamma:0.9}", "sweep.vmap.algo.gamma must be a non-empty list"),
    ("sweep.vmap={algo.gamma:[0.9,high]}", "sweep.vmap.algo.gamma must be a list of numbers"),
    ("sweep.vmap={algo.gamma:[0.9,0.9]}", "repeats a value"),
    ("sweep.vmap={algo.gamma:[0.9,1.5]}", "sweep.vmap member 1 (algo.gamma=1.5): algo.gamma"),
    ("sweep.vmap={algo.target_delay:[0.5]}", "target_delay"),
    ("sweep.vmap=[0.1]", "sweep.vmap must be"),
])
def test_bad_vmap_is_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        build(compose_cfg(*BASE, override))
    assert message in str(err.value)


def test_ppo_vmaps_its_own_hyper_parameters():
    exp = build(compose_cfg(*BASE[:1], "memory=mlp", "algo=ppo", "logger=none",
                            "loop.num_envs=2", "loop.rollout_steps=8", "loop.iterations=10",
                            "eval.interval=5", "sweep.vmap={algo.clip_eps:[0.1,0.3]}"))
    assert exp.hparams["clip_eps"] == (0.1, 0.3)
    with pytest.raises(ConfigError, match="Vmappable keys: .*algo.clip_eps"):
        build(compose_cfg("algo=ppo", "logger=none", "sweep.vmap={algo.target_delay:[5]}"))


def test_loop_init_refuses_unknown_or_misshapen_hparams(sweep_exp):
    with pytest.raises(ValueError, match="'lr' is not a sweepable"):
        sweep_exp.loop.init([0], {"lr": [1e-3]})
    with pytest.raises(ValueError, match="one value per run"):
        sweep_exp.loop.init([0, 1], {"gamma": [0.9]})


def test_run_names_and_member_configs():
    m = members({"algo.gamma": [0.9, 0.5], "algo.optim.learning_rate": [1e-3]})
    assert [x.label for x in m] == ["algo.gamma=0.9,algo.optim.learning_rate=0.001",
                                    "algo.gamma=0.5,algo.optim.learning_rate=0.001"]
    assert m[1].hparams == {"gamma": 0.5, "optim.learning_rate": 1e-3}
    config = {"algo": {"gamma": 0.99, "optim": {"learning_rate": 1e-4}}, "seed": 0}
    assert member_config(config, m[1]) == {
        "algo": {"gamma": 0.5, "optim": {"learning_rate": 1e-3}}, "seed": 0}
    assert config["algo"]["gamma"] == 0.99  # a copy
    assert [r.key for r in runs([3, 4], m)] == ["m0-s3", "m0-s4", "m1-s3", "m1-s4"]
    assert runs([3], ()) == (Run(3),) and Run(3).label == "seed 3"
    assert Run(3, Member(1, {"algo.gamma": 0.5})).label == "member 1 (algo.gamma=0.5) seed 3"
    assert members({}) == () and members(None) == ()
