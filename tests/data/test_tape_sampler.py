"""Tape-based batching against the reference model: whole, in-order, never stale episodes."""

import functools

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from rlmem.data import init_store, sample_tape
from tests.data.reference import EXAMPLE, EXTRAS, SHAPES, fill, small_store

BATCH = 9  # the property test's batch size: one compile per store shape


TRACES = []


@jax.jit
def sample_both(store, key):
    """Both weightings in one compiled call."""
    TRACES.append(1)
    return sample_tape(store, key, BATCH, "episode"), sample_tape(store, key, BATCH, "transition")


def many_batches(store, num):
    """`num` tapes per weighting from the shared compiled sampler, stacked: `[num, B]`."""
    out = [sample_both(store, k) for k in jax.random.split(jax.random.key(0), num)]
    return jax.tree.map(lambda *x: np.stack(x), *out)


def check_tape(batch, ref, flags, batch_size):
    """Every piece between starts is a whole valid episode, in order; the last may be cut."""
    tr = jax.tree.map(np.asarray, batch.transition)
    h = np.asarray(batch.extras["h"])
    valid = ref.valid_episodes()
    assert tr.start.shape == (batch_size,)
    if not valid:
        assert not tr.mask.any() and not tr.start.any() and not bool(batch.cut)
        assert not tr.obs.any() and not h.any()
        return
    assert tr.mask.all() and tr.start[0]
    bounds = list(np.flatnonzero(tr.start)) + [batch_size]
    for i0, i1 in zip(bounds[:-1], bounds[1:], strict=True):
        s, t0 = int(tr.obs[i0, 0]), int(tr.obs[i0, 1])
        assert (s, t0) in valid, f"piece at {i0} is not a stored episode start"
        n, running = valid[(s, t0)]
        times = t0 + np.arange(i1 - i0)
        np.testing.assert_array_equal(tr.obs[i0:i1, 0], s)  # one stream
        np.testing.assert_array_equal(tr.obs[i0:i1, 1], times)  # in order, no gaps
        last_piece = i1 == batch_size
        if last_piece:
            assert i1 - i0 <= n
            assert bool(batch.cut) == (i1 - i0 < n)
        else:
            assert i1 - i0 == n  # whole episode
        np.testing.assert_array_equal(tr.action[i0:i1], times % 3)
        np.testing.assert_array_equal(tr.reward[i0:i1], times * 0.5)
        np.testing.assert_array_equal(tr.next_obs[i0:i1], tr.obs[i0:i1] + 1)
        np.testing.assert_array_equal(h[i0:i1, 0], s + 0.5)
        np.testing.assert_array_equal(h[i0:i1, 1], times + 0.25)
        term = flags[1][s, times]
        np.testing.assert_array_equal(tr.terminated[i0:i1], term)
        cut_end = np.zeros(i1 - i0, bool)
        cut_end[-1] = running or last_piece
        np.testing.assert_array_equal(tr.truncated[i0:i1], flags[2][s, times] | (cut_end & ~term))
    # The convention holds on the tape: start[i + 1] == terminated[i] | truncated[i].
    np.testing.assert_array_equal(tr.start[1:], (tr.terminated | tr.truncated)[:-1])


@given(
    shape=st.sampled_from(SHAPES),
    num_chunks=st.integers(1, 12),
    p_end=st.sampled_from([0.05, 0.3, 0.9]),
    seed=st.integers(0, 2**16),
    ragged=st.booleans(),
)
def test_tape_batches_match_reference(shape, num_chunks, p_end, seed, ragged):
    store, ref, flags = fill(shape, seed, num_chunks, p_end, ragged)
    for key in jax.random.split(jax.random.key(seed), 3):
        for batch in sample_both(store, key):
            check_tape(batch, ref, flags, BATCH)


def test_empty_store_gives_masked_zeros():
    store = init_store(3 * 12, 3, EXAMPLE, EXTRAS)
    for batch in sample_both(store, jax.random.key(0)):
        assert not np.asarray(batch.transition.mask).any() and not bool(batch.cut)


def test_episode_longer_than_batch_and_single_episode():
    # Each stream holds one running episode of 12 steps; the reference sampler crashed.
    store, ref, flags = fill(SHAPES[1], 0, 3, 0.0)
    assert len(ref.valid_episodes()) == 3
    for batch in sample_both(store, jax.random.key(0)):
        check_tape(batch, ref, flags, BATCH)
        assert bool(batch.cut)
        np.testing.assert_array_equal(batch.transition.obs[:, 1], np.arange(BATCH))


def episode_counts(batches):
    tr = batches.transition
    start = np.asarray(tr.start)
    ids = np.asarray(tr.obs[..., 0] * 100 + tr.obs[..., 1])[start]
    return np.unique(ids, return_counts=True)


IDS = [0, 1, 3, 6, 100, 104, 106, 107, 200, 205]
LENGTHS = np.array([1, 2, 3, 2, 4, 2, 1, 1, 5, 3])


@functools.cache
def small_store_batches():
    """150 tapes per weighting from `small_store`, shared by the distribution tests."""
    return many_batches(small_store()[0], 150)


def test_episode_weighting_is_uniform():
    batches, _ = small_store_batches()
    ids, counts = episode_counts(batches)
    np.testing.assert_array_equal(ids, IDS)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_transition_weighting_is_length_proportional():
    store, _ = small_store()
    _, batches = small_store_batches()
    ids, counts = episode_counts(batches)
    np.testing.assert_array_equal(ids, IDS)
    expected = counts.sum() * LENGTHS / LENGTHS.sum()
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    with pytest.raises(ValueError, match="weighting"):
        sample_tape(store, jax.random.key(0), 8, "segment")
    with pytest.raises(ValueError, match="batch_size"):
        sample_tape(store, jax.random.key(0), 0)
