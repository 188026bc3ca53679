"""DQN's learn/act contract: epochs, random phase, updates, stored carries, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlmem.agents.batching import TAPE, SegmentBatching
from rlmem.agents.dqn import DQN
from rlmem.agents.networks import NetworkSettings
from rlmem.memory import make_memory
from tests.agents import reference as ref

F, A, E, T = 4, 3, 2, 10


def mlp_dqn(**kw) -> DQN:
    settings = dict(num_envs=E, buffer_capacity=64, batch_size=16,
                    network=NetworkSettings(hidden_size=8), updates_per_learn=2,
                    target_delay=4, random_epochs=0, train_epochs=1000)
    settings.update(kw)
    return DQN(make_memory("mlp", output_size=8), F, A, **settings)


def leaves_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                                    strict=True))


@pytest.mark.parametrize("batching", ["tape", "segment"])
def test_random_phase_only_stores_then_updates_run(batching):
    kind = SegmentBatching(4, burn_in=2, initial_state="stored") if batching == "segment" else TAPE
    algo = mlp_dqn(random_epochs=3, batching=kind)
    state = jax.jit(algo.init)(jax.random.key(0))
    learn = jax.jit(algo.learn)
    streams = ref.random_streams(np.random.default_rng(1), E, T, F, A, p_end=0.3)
    ends = int((streams.terminated | streams.truncated).sum())
    assert ends >= 3
    extras = {"carry": jnp.zeros((E, T, 0))} if algo.stores_carry else {}
    rollout = ref.as_rollout(streams, extras)

    s1, m1 = learn(state, rollout, jax.random.key(1))
    assert int(s1.epochs) == ends and int(s1.store.steps[0]) == T
    assert int(s1.updates) == 0 and float(m1["training"]) == 0.0
    assert leaves_equal(s1.params, state.params)
    # The random phase is over: epsilon has left 1 for the linear decay from 0.2.
    assert float(m1["epsilon"]) == pytest.approx(0.2 + (ends - 3) / 1000 * (0.01 - 0.2))

    s2, m2 = learn(s1, rollout, jax.random.key(2))
    assert int(s2.epochs) == 2 * ends and int(s2.updates) == 2
    assert float(m2["training"]) == 1.0 and np.isfinite(float(m2["loss"]))
    assert not leaves_equal(s2.params, s1.params)
    assert not leaves_equal(s2.target_params, s1.target_params)


def test_act_is_uniform_in_random_phase_then_mostly_greedy():
    algo = mlp_dqn(random_epochs=5, train_epochs=10, eps_start=0.2, eps_end=0.1)
    state = jax.jit(algo.init)(jax.random.key(0))
    n = 4000
    obs = jnp.tile(jax.random.normal(jax.random.key(3), (1, F)), (n, 1))
    start = jnp.ones(n, bool)
    act = jax.jit(lambda s, k: algo.act(s, obs, start, algo.initial_carry(n), k)[0])
    greedy, _ = jax.jit(algo.act_greedy)(state, obs, start, algo.initial_carry(n))
    best = int(greedy[0])
    freq = np.bincount(np.asarray(act(state, jax.random.key(4))), minlength=A) / n
    np.testing.assert_allclose(freq, np.full(A, 1 / A), atol=0.04)
    late = state.replace(epochs=jnp.int32(100))  # past the decay: eps = eps_end = 0.1
    freq = np.bincount(np.asarray(act(late, jax.random.key(5))), minlength=A) / n
    assert freq[best] == pytest.approx(0.9 + 0.1 / A, abs=0.04)


def test_stored_state_act_returns_the_carry_before_obs():
    algo = DQN(make_memory("gru", output_size=8), F, A,
               batching=SegmentBatching(4, burn_in=1, initial_state="stored"), batch_size=8,
               network=NetworkSettings(hidden_size=8), buffer_capacity=32)
    state = jax.jit(algo.init)(jax.random.key(0))
    carry = jax.random.normal(jax.random.key(1), (E, 8))
    obs, start = jnp.ones((E, F)), jnp.zeros(E, bool)
    _, new_carry, extras = jax.jit(algo.act)(state, obs, start, carry, jax.random.key(2))
    np.testing.assert_array_equal(extras["carry"], carry)
    assert not np.allclose(new_carry, carry)
    assert state.store.extras["carry"].shape == (1, 32, 8)
    tape = mlp_dqn()
    tape_state = jax.eval_shape(tape.init, jax.random.key(0))
    tape_extras = jax.eval_shape(tape.act, tape_state, obs, start, jnp.zeros((E, 0)),
                                 jax.random.key(0))[2]
    assert tape_extras == {}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(batching="tape"), r"batching must be rlmem.agents.batching.TapeBatching\(\)"),
        (dict(batching=SegmentBatching(10), batch_size=8),
         r"algo.batch_size=8 cannot hold one segment of batching.segment_length=10"),
        (dict(gamma=1.5), r"gamma must be in \[0, 1\], got 1.5"),
        (dict(target_delay=0), r"target_delay must be >= 1"),
        (dict(batch_size=0), r"batch_size must be a positive int, got 0"),
    ],
)
def test_bad_settings_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mlp_dqn(**kwargs)


def test_rollout_with_other_num_envs_is_refused():
    algo = mlp_dqn()
    state = jax.eval_shape(algo.init, jax.random.key(0))
    streams = ref.random_streams(np.random.default_rng(0), E + 1, T, F, A)
    with pytest.raises(ValueError, match=r"DQN was built with num_envs=2 .* rollout of 3 envs"):
        jax.eval_shape(algo.learn, state, ref.as_rollout(streams, {}), jax.random.key(0))
