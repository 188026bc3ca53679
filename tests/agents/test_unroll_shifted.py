"""`unroll_tape_shifted` against `unroll_tape`: the same `out`, the same `out_next` on the
rows asked for, whatever the episode ends, the chunk size (one pass or the `while_loop`)
and even when `next_obs` never continues the tape; and DQN's loss and gradient through it
equal the two-pass computation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlmem.agents import unroll as ur
from rlmem.agents.dqn import DQN, td_loss
from rlmem.agents.networks import NetworkSettings
from rlmem.data.tape_sampler import sample_tape
from rlmem.memory import make_memory
from tests.agents import reference as ref

F, A, E, T, B = 4, 3, 2, 40, 48
MEMORIES = {
    "ffm": dict(trace_size=4, context_size=2, output_size=16),
    "linear_attention": dict(key_size=4, value_size=4, output_size=16),
}


def build(name: str) -> DQN:
    return DQN(make_memory(name, **MEMORIES[name]), F, A, num_envs=E, buffer_capacity=E * T,
               batch_size=B, gamma=0.9, network=NetworkSettings(hidden_size=16))


@pytest.fixture(scope="module", params=sorted(MEMORIES))
def setup(request):
    algo = build(request.param)
    params = jax.jit(algo.init)(jax.random.key(0)).params
    target = jax.jit(algo.init)(jax.random.key(1)).params

    @jax.jit
    def sample(streams, key):
        return sample_tape(ref.filled_store(streams, E * T), key, B).transition

    return algo, params, target, sample


def tape(sample, seed: int, p_end: float, scramble: bool):
    streams = ref.random_streams(np.random.default_rng(seed), E, T, F, A, p_end)
    if scramble:  # no next_obs equals the following obs: every row is computed
        noise = np.random.default_rng(seed + 1).normal(size=streams.next_obs.shape)
        streams = streams.replace(next_obs=noise.astype(np.float32))
    return sample(streams, jax.random.key(seed))


@pytest.mark.parametrize("chunk", [1, 5, 64])
@pytest.mark.parametrize("p_end,scramble", [(0.05, False), (0.5, False), (0.2, True)])
def test_same_outputs_on_wanted_rows(setup, chunk, p_end, scramble):
    algo, params, _, sample = setup
    batch = tape(sample, 3, p_end, scramble)
    wanted = jnp.asarray(np.random.default_rng(5).random(B) < 0.7)
    full = jax.jit(lambda p, b: ur.unroll_tape(algo.network, p, b))(params, batch)
    fast = jax.jit(lambda p, b, w: ur.unroll_tape_shifted(
        algo.network, p, b, wanted=w, chunk=chunk))(params, batch, wanted)
    np.testing.assert_allclose(fast.out, full.out, rtol=1e-6, atol=1e-7)
    w = np.asarray(wanted)
    np.testing.assert_allclose(np.asarray(fast.out_next)[w], np.asarray(full.out_next)[w],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_dqn_loss_and_gradient_equal_two_passes(setup, seed):
    algo, params, target, sample = setup
    batch = tape(sample, seed, 0.2, False)

    def two_passes(p):
        online = algo.unroll(p, batch, None)
        tgt = algo.unroll(target, batch, None)
        return td_loss(online.out, online.out_next, tgt.out_next, batch, algo.gamma)

    (loss, metrics), grads = jax.jit(jax.value_and_grad(
        lambda p: algo.loss(p, target, batch, None), has_aux=True))(params)
    (loss2, metrics2), grads2 = jax.jit(jax.value_and_grad(two_passes, has_aux=True))(params)
    np.testing.assert_allclose(loss, loss2, rtol=1e-6)
    for name in metrics:
        np.testing.assert_allclose(metrics[name], metrics2[name], rtol=1e-6, atol=1e-8)
    for g, g2 in zip(jax.tree.leaves(grads), jax.tree.leaves(grads2), strict=True):
        np.testing.assert_allclose(g, g2, rtol=1e-5, atol=1e-8)


def test_needs_a_memoroid():
    algo = DQN(make_memory("gru", output_size=8), F, A, network=NetworkSettings(hidden_size=8))
    batch = jax.tree.map(lambda x: x[0], ref.random_streams(np.random.default_rng(0), 1, 6, F, A))
    with pytest.raises(ValueError, match="memoroid"):
        ur.unroll_tape_shifted(algo.network, None, batch)
