"""Compact stored carries (`rlmem.data.sparse_extras`) against the reference model: every
row a segment sampler starts from a stored state gets exactly that step's value, through
evictions and ring reuse, and the DQN loss is the one per-step storage gives."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.agents.base import Rollout
from rlmem.agents.batching import SegmentBatching
from rlmem.agents.dqn import DQN
from rlmem.agents.networks import NetworkSettings
from rlmem.data import sparse_extras as sp
from rlmem.data.segment_sampler import sample_segments
from rlmem.data.tape import add, init_store
from rlmem.memory import make_memory
from tests.data.reference import EXAMPLE, EXTRAS, SHAPES, ReferenceStore, make_chunk, make_stream
from tests.data.test_segment_sampler import check_segments

# (segment_length, burn_in, period): burn-ins that are multiples of the period.
SETTINGS = [(2, 0, 1), (3, 2, 2), (4, 3, 3), (4, 0, 4)]
NUM_SEGMENTS = 4


@jax.jit
def _add(store, chunk, extras, sparse):
    return add(store, chunk, extras, sparse=sparse)


@jax.jit
def _sample(stores, key):
    return [sample_segments(s, key, NUM_SEGMENTS, length, burn, period)
            for s, (length, burn, period) in zip(stores, SETTINGS, strict=True)]


@settings(max_examples=12)  # every startable step is read back each time (below)
@given(shape=st.sampled_from(SHAPES), num_chunks=st.integers(1, 12),
       p_end=st.sampled_from([0.05, 0.3, 0.9]), seed=st.integers(0, 2**16))
def test_rows_start_from_the_stored_value_of_their_first_step(shape, num_chunks, p_end, seed):
    e, c, chunk_len = shape
    stores = [init_store(e * c, e, EXAMPLE, EXTRAS, sparse_example={"g": jnp.zeros(2)},
                         sparse_period=period) for _, _, period in SETTINGS]
    rng = np.random.default_rng(seed)
    flags = make_stream(rng, e, chunk_len * num_chunks, p_end)
    ref = ReferenceStore(e, c)
    for i in range(num_chunks):
        t0, t1 = i * chunk_len, (i + 1) * chunk_len
        chunk, extras = make_chunk(*flags, t0, t1)
        tag = {"g": extras["h"] + 0.25}  # [stream + 0.75, time + 0.5]
        stores = [_add(s, chunk, extras, tag) for s in stores]
        ref.add(flags[0][:, t0:t1], flags[1][:, t0:t1])
    # Every step a row may start from, read back directly: the exact stored value.
    for store, (_, _, period) in zip(stores, SETTINGS, strict=True):
        steps = [(s, t) for (s, t0), (n, _) in ref.valid_episodes().items()
                 for t in range(t0 + period, t0 + n, period)]
        if steps:
            stream, time = (jnp.asarray(x) for x in zip(*steps, strict=True))
            got = sp.gather_sparse(store.sparse, stream, time, jnp.ones(len(steps), bool))
            want = [[s + 0.75, t + 0.5] for s, t in steps]
            np.testing.assert_array_equal(np.asarray(got["g"]), want)
    for key in jax.random.split(jax.random.key(seed), 2):
        for batch, (length, burn, period) in zip(_sample(stores, key), SETTINGS, strict=True):
            check_segments(batch, ref, flags, length, burn, period)  # per-step extras too
            if not ref.valid_episodes():
                continue
            obs = np.asarray(batch.transition.obs[:, burn])  # the segment's first step
            g = np.asarray(batch.initial_extras["g"])
            for n in range(NUM_SEGMENTS):
                s, seg_start = int(obs[n, 0]), int(obs[n, 1])
                t0 = ref.episode_of(s, seg_start)[0]
                first = max(seg_start - burn, t0)
                want = [s + 0.75, first + 0.5] if first > t0 else [0.0, 0.0]
                np.testing.assert_array_equal(g[n], want)


def test_ring_is_a_period_smaller():
    store = init_store(1000, 2, EXAMPLE, sparse_example={"g": jnp.zeros(64)},
                       sparse_period=10)
    assert store.sparse.data["g"].shape == (2, sp.num_buckets(500, 10), 64) == (2, 52, 64)


def test_dqn_keeps_compact_carries_and_loses_nothing():
    """R2D2 segments (burn-in a multiple of the period) keep carries only where rows start
    (52 buckets per stream instead of 500 steps); the loss on a batch equals the loss with
    every step's carry stored, since rows that start at an episode's first step reset."""
    kw = dict(num_envs=2, buffer_capacity=1000, batch_size=40,
              network=NetworkSettings(hidden_size=8), random_epochs=0)
    batching = SegmentBatching(8, burn_in=4, initial_state="stored", period=4)
    assert batching.carry_period == 4
    assert SegmentBatching(8, burn_in=2, initial_state="stored", period=4).carry_period is None
    algo = DQN(make_memory("lru", d_model=8, d_hidden=8), 2, 3, batching=batching, **kw)
    state = algo.init(jax.random.key(0))
    assert state.store.extras == {} and state.store.sparse.period == 4
    full = init_store(1000, 2, jax.tree.map(lambda x: x[0, 0], state.store.data),
                      {"carry": algo.network.initialize_carry()})
    flags = make_stream(np.random.default_rng(0), 2, 240, 0.05)
    rng = np.random.default_rng(1)
    observe = jax.jit(algo.observe)
    for t0 in range(0, 240, 60):
        chunk, _ = make_chunk(*flags, t0, t0 + 60)
        chunk = jax.tree.map(jnp.asarray, chunk.replace(obs=chunk.obs / 100.0,
                                                        next_obs=chunk.next_obs / 100.0))
        carry = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=(2, 60) + x.shape),
                                                   x.dtype), algo.network.initialize_carry())
        state = observe(state, Rollout(chunk, {"carry": carry}))
        full = add(full, chunk, {"carry": carry})
    key = jax.random.key(3)
    batch, compact_carry = batching.sample(state.store, key, algo.batch_size)
    same, stored_carry = batching.sample(full, key, algo.batch_size)
    np.testing.assert_array_equal(np.asarray(batch.obs), np.asarray(same.obs))
    loss = jax.jit(algo.loss)
    a, _ = loss(state.params, state.target_params, batch, compact_carry)
    b, _ = loss(state.params, state.target_params, same, stored_carry)
    np.testing.assert_allclose(float(a), float(b), rtol=1e-5)
    differs = jax.tree.leaves(jax.tree.map(lambda x, y: np.any(np.asarray(x != y)),
                                           compact_carry, stored_carry))
    assert any(differs), "some rows start at an episode's first step (zeros vs stored)"


def test_no_two_stored_steps_share_a_bucket():
    """Step by step through 300 one-step adds to a 10-slot stream (period 3, random
    episode ends): after every add, every step a row may start from reads back its own
    value (a ring too short for the steps the store holds would overwrite one)."""
    c, period = 10, 3
    store = init_store(c, 1, EXAMPLE, sparse_example={"g": jnp.zeros(())},
                       sparse_period=period)
    flags = make_stream(np.random.default_rng(5), 1, 300, 0.08)
    ref = ReferenceStore(1, c)
    read = jax.jit(sp.gather_sparse)
    for t in range(300):
        chunk, _ = make_chunk(*flags, t, t + 1)
        store = _add(store, chunk, None, {"g": jnp.full((1, 1), t, jnp.float32)})
        ref.add(flags[0][:, t:t + 1], flags[1][:, t:t + 1])
        steps = [u for (_, t0), (n, _) in ref.valid_episodes().items()
                 for u in range(t0 + period, t0 + n, period)]
        if steps:
            got = read(store.sparse, jnp.zeros(len(steps), jnp.int32), jnp.asarray(steps),
                       jnp.ones(len(steps), bool))
            np.testing.assert_array_equal(np.asarray(got["g"]), steps)
