"""The tape store's bookkeeping against the plain-Python reference model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlmem.data import add, init_store, num_episodes, num_transitions
from tests.data.reference import EXAMPLE, EXTRAS, SHAPES, fill, make_chunk, make_stream


def test_init_shapes_and_capacity_split():
    store = init_store(capacity=23, num_envs=4, example=EXAMPLE, extras_example=EXTRAS)
    assert store.stream_capacity == 5 and store.num_envs == 4
    assert store.data.obs.shape == (4, 5, 2)
    assert store.extras["h"].shape == (4, 5, 2)
    assert int(num_transitions(store).sum()) == 0 and int(num_episodes(store).sum()) == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(capacity=3, num_envs=4), "capacity"),
        (dict(capacity=8, num_envs=0), "num_envs"),
        (dict(capacity=8.0, num_envs=2), "capacity"),
    ],
)
def test_init_rejects_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        init_store(example=EXAMPLE, **kwargs)


def test_init_rejects_non_transition():
    with pytest.raises(ValueError, match="example"):
        init_store(8, 2, example={"obs": jnp.zeros(2)})


def test_add_rejects_bad_chunks():
    store = init_store(8, 2, EXAMPLE, EXTRAS)
    flags = make_stream(np.random.default_rng(0), 2, 6, 0.3)
    chunk, extras = make_chunk(*flags, 0, 6)
    with pytest.raises(ValueError, match="T=6"):
        add(store, chunk, extras)
    chunk, extras = make_chunk(*flags, 0, 3)
    with pytest.raises(ValueError, match="extras keys"):
        add(store, chunk, None)
    with pytest.raises(ValueError, match="chunk.obs"):
        add(store, chunk.replace(obs=chunk.obs[..., :1]), extras)
    bad = jax.tree.map(lambda x: x[:1], chunk)
    with pytest.raises(ValueError, match="num_envs=2"):
        add(store, bad, jax.tree.map(lambda x: x[:1], extras))


@given(
    shape=st.sampled_from(SHAPES),
    num_chunks=st.integers(1, 12),
    p_end=st.sampled_from([0.05, 0.3, 0.9]),
    seed=st.integers(0, 2**16),
    ragged=st.booleans(),
)
def test_bookkeeping_matches_reference(shape, num_chunks, p_end, seed, ragged):
    store, ref, _ = fill(shape, seed, num_chunks, p_end, ragged)
    store = jax.tree.map(np.asarray, store)
    num_envs, c, _ = shape
    valid = ref.valid_episodes()
    for e in range(num_envs):
        eps = sorted(t0 for (s, t0) in valid if s == e)
        assert int(num_episodes(store)[e]) == len(eps)
        assert int(num_transitions(store)[e]) == sum(valid[(e, t0)][0] for t0 in eps)
        # The circular index holds exactly the valid episodes' start times, in order.
        ks = range(int(store.ep_lo[e]), int(store.ep_hi[e]))
        assert [int(store.ep_start[e, k % c]) for k in ks] == eps
    # Every slot holds the newest transition written to its stream (padding never lands).
    np.testing.assert_array_equal(store.steps, ref.clock)
    for e in range(num_envs):
        clock = ref.clock[e]
        newest = clock - 1 - (clock - 1 - np.arange(c)) % c
        written = np.arange(c) < clock
        np.testing.assert_array_equal(store.data.obs[e, written, 1], newest[written])
        np.testing.assert_array_equal(store.data.obs[e, written, 0], e)
        np.testing.assert_array_equal(store.data.mask[e], written)


def test_add_compiles_once_for_same_shapes():
    traces = []
    fresh = jax.jit(lambda *a: traces.append(1) or add(*a))
    store = init_store(12, 2, EXAMPLE, EXTRAS)
    flags = make_stream(np.random.default_rng(1), 2, 40, 0.3)
    for i in range(10):
        store = fresh(store, *make_chunk(*flags, 4 * i, 4 * i + 4))
    assert len(traces) == 1
    np.testing.assert_array_equal(store.steps, [40, 40])


def test_whole_store_can_be_donated():
    # Every leaf must be its own buffer, or donating the store to jit fails.
    donated = jax.jit(add, donate_argnums=0)
    store = init_store(4, 1, EXAMPLE, EXTRAS)
    flags = make_stream(np.random.default_rng(2), 1, 6, 0.3)
    for t0 in range(6):
        store = donated(store, *make_chunk(*flags, t0, t0 + 1))
    np.testing.assert_array_equal(store.steps, [6])
