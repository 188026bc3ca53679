"""PQN: Q(lambda) targets against prefix-by-prefix network runs and a per-episode Python
recursion; the loss against numpy; settings refused clearly; a short run learns."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlmem.agents.batching import TAPE, SegmentBatching
from rlmem.agents.networks import NetworkSettings
from rlmem.agents.pqn import PQN
from rlmem.config import build
from rlmem.memory import make_memory
from rlmem.runner import run
from tests.agents import reference as ref
from tests.compose import compose_cfg
from tests.memory.test_returns import episodes, reference_q_lambda

F, A, E, T = 4, 3, 2, 24
GAMMA, LAM = 0.9, 0.7


def build_pqn(**kw) -> PQN:
    memory = make_memory("ffm", trace_size=4, context_size=2, output_size=16)
    kw = {"gamma": GAMMA, "q_lambda": LAM, **kw}
    return PQN(memory, F, A, num_envs=E, rollout_steps=T,
               network=NetworkSettings(hidden_size=16), **kw)


@pytest.fixture(scope="module")
def setup():
    algo = build_pqn()
    state = jax.jit(algo.init)(jax.random.key(0))
    streams = ref.random_streams(np.random.default_rng(3), E, T, F, A, p_end=0.15)
    carries = jax.jit(ref.acted_carries, static_argnums=0)(algo, state, streams)
    rollout = ref.as_rollout(streams, {"carry": carries})
    return algo, state, streams, rollout


def test_targets_equal_per_episode_q_lambda_of_prefix_runs(setup):
    algo, state, streams, rollout = setup
    got = np.asarray(jax.jit(algo.targets)(state.params, rollout))
    runner = ref.prefix_runner(algo.network)
    zero = jax.tree.map(lambda x: jnp.broadcast_to(x, (T,) + x.shape),
                        algo.network.initialize_carry())
    for e in range(E):
        obs, nxt = streams.obs[e], streams.next_obs[e]
        term, trunc, reward = streams.terminated[e], streams.truncated[e], streams.reward[e]
        next_q = np.zeros(T)
        for first, last in episodes(term, trunc):
            seqs, offsets = ref.prefix_sequences(obs, nxt, first, last, T + 1)
            n = len(seqs)
            q = np.asarray(runner(state.params, jnp.asarray(seqs), jnp.ones(n, bool),
                                  jax.tree.map(lambda x, n=n: x[:n], zero)))
            next_q[first:last + 1] = q[np.arange(n), offsets + 1].max(-1)
        expected = reference_q_lambda(reward, next_q, term, trunc, GAMMA, LAM)
        np.testing.assert_allclose(got[e], expected, rtol=2e-5, atol=2e-5)


def test_loss_is_half_squared_error_over_real_steps(setup):
    algo, state, streams, rollout = setup
    targets = algo.targets(state.params, rollout)
    (data, carry) = algo.batching.cut_units((rollout.transition, targets),
                                            rollout.extras["carry"])
    loss, metrics = jax.jit(algo.loss)(state.params, data, carry)
    q, _ = jax.vmap(lambda o, s, c: algo.network.apply(state.params, o, s, c))(
        data[0].obs, data[0].start, carry)
    chosen = np.take_along_axis(np.asarray(q), np.asarray(data[0].action)[..., None], -1)[..., 0]
    expected = np.mean(0.5 * (chosen - np.asarray(targets)) ** 2)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5, atol=1e-6)


def test_learn_updates_and_decays_epsilon(setup):
    algo, state, _, rollout = setup
    new, metrics = jax.jit(algo.learn)(state, rollout, jax.random.key(1))
    assert int(new.updates) == algo.update_epochs * algo.num_minibatches
    assert int(new.rollouts) == 1 and float(metrics["epsilon"]) < algo.eps_start
    assert not np.allclose(jax.tree.leaves(new.params)[0], jax.tree.leaves(state.params)[0])


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(batching=SegmentBatching(5)), "segment_length=5 must divide the rollout length"),
    (dict(batching=SegmentBatching(8, burn_in=2)), "burn_in=2 cannot be served by "
                                                   "algo.name='pqn'"),
    (dict(batching=TAPE, num_minibatches=3), "algo.num_minibatches=3 must divide the 2"),
    (dict(q_lambda=1.5), "q_lambda"),
    (dict(eps_decay=-1), "eps_decay must be an int >= 0"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_pqn(**kwargs)


def test_short_run_learns_repeat_first(tmp_path):
    """16 envs, 200 rollouts of one episode (163k env steps, about half a minute): greedy
    returns leave random play (-0.5) far behind (measured: best 0.98)."""
    exp = build(compose_cfg("algo=pqn", "loop.num_envs=16", "loop.iterations=200",
                            "eval.interval=10", "eval.episodes=16", "algo.eps_decay=50",
                            "logger=none"))
    summary = run(exp, tmp_path, stream=open("/dev/null", "w"))  # noqa: SIM115
    assert summary["best_eval_return"].min() > 0.3, summary["best_eval_return"]
