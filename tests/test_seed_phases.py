"""Vmapped seeds do not pay for schedule branches nobody takes: through DQN's random
phase no gradient update is computed at all (counted from inside the compiled program),
while an algorithm that cannot say so in advance computes them for every seed."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from rlmem.config import build
from rlmem.loop import Loop
from tests.compose import compose_cfg
from tests.test_episode_rollout import TINY


class Counted:
    """The algorithm with its `update` counting executions (a host callback), and
    optionally without `update_phase` (the loop can then only branch per seed)."""

    def __init__(self, algo, hoistable: bool):
        self._algo, self._hoistable, self.executed = algo, hoistable, []
        original = algo.update

        def update(state, key):
            jax.debug.callback(lambda: self.executed.append(1))
            return original(state, key)

        algo.update = update

    def __getattr__(self, name):
        if name == "update_phase" and not self._hoistable:
            raise AttributeError(name)
        return getattr(self._algo, name)


@pytest.fixture(scope="module")
def exp():
    return build(compose_cfg("env=repeat_first_easy", *TINY, "algo.random_epochs=4",
                             "algo.batch_size=60", "eval.interval=2", "num_seeds=2"))


@pytest.mark.parametrize("hoistable", [True, False])
def test_random_phase_computes_no_updates_under_vmap(exp, hoistable):
    algo = Counted(exp.algo, hoistable)
    loop = Loop(algo=algo, env=exp.env, env_params=exp.env_params, settings=exp.loop.settings)
    state, _ = loop.run_chunk(loop.init([0, 1]), 2)  # 4 iterations: all random phase
    jax.effects_barrier()
    assert int(np.asarray(state.algo.updates).sum()) == 0
    if hoistable:
        assert algo.executed == [], "updates were computed during the random phase"
    else:  # the per-seed cond became a select: the counter does see those updates
        assert len(algo.executed) > 0
    # The same chunk length again (one compiled chunk serves both calls): 4 training
    # iterations, 1 update each.
    state, _ = loop.run_chunk(state, 2)
    jax.effects_barrier()
    np.testing.assert_array_equal(state.algo.updates, [4, 4])
    if hoistable:
        assert len(algo.executed) > 0
