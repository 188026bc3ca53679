"""Segment-based batching against the reference model: aligned or overlapping (a start
`period`), masked, burn-in, state."""

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from rlmem.data import init_store, sample_segments
from tests.data.reference import EXAMPLE, EXTRAS, SHAPES, fill, small_store

NUM_SEGMENTS = 4
# (segment_length, burn_in, period) the property test draws: one compile each.
SETTINGS = [(1, 0, None), (3, 2, None), (4, 1, 2)]


@jax.jit
def sample_all(store, key):
    """One batch per setting in one compiled call."""
    return [sample_segments(store, key, NUM_SEGMENTS, length, burn, period)
            for length, burn, period in SETTINGS]


def check_segments(batch, ref, flags, length, burn_in, period=None, num_segments=NUM_SEGMENTS):
    """Each row: burn-in then a sequence of one valid episode starting at a multiple of
    `period` (default `length`: aligned), stopping at the episode end, zero-padded."""
    tr = jax.tree.map(np.asarray, batch.transition)
    h, h0 = np.asarray(batch.extras["h"]), np.asarray(batch.initial_extras["h"])
    learn = np.asarray(batch.learn_mask)
    width = burn_in + length
    assert tr.mask.shape == (num_segments, width) and h0.shape == (num_segments, 2)
    cols = np.arange(width)
    if not ref.valid_episodes():
        assert not tr.mask.any() and not learn.any() and not h.any() and not tr.obs.any()
        return
    for n in range(num_segments):
        s, seg_start = int(tr.obs[n, burn_in, 0]), int(tr.obs[n, burn_in, 1])
        found = ref.episode_of(s, seg_start)
        assert found is not None, f"row {n} is not inside a stored episode"
        t0, ep_len, running = found
        assert (seg_start - t0) % (period or length) == 0, "sequence not at a start offset"
        times = seg_start - burn_in + cols
        valid = (times >= t0) & (times < t0 + ep_len)
        np.testing.assert_array_equal(tr.mask[n], valid)
        np.testing.assert_array_equal(learn[n], valid & (cols >= burn_in))
        np.testing.assert_array_equal(tr.obs[n, valid, 0], s)
        np.testing.assert_array_equal(tr.obs[n, valid, 1], times[valid])
        np.testing.assert_array_equal(h[n, valid, 1], times[valid] + 0.25)
        assert not tr.obs[n, ~valid].any() and not h[n, ~valid].any()
        assert not tr.reward[n, ~valid].any() and not tr.terminated[n, ~valid].any()
        np.testing.assert_array_equal(tr.start[n], valid & (times == t0))
        safe = np.clip(times, 0, flags[1].shape[1] - 1)  # padded columns may fall outside
        term = np.where(valid, flags[1][s, safe], False)
        np.testing.assert_array_equal(tr.terminated[n], term)
        last = np.zeros(width, bool)
        last[np.flatnonzero(valid)[-1]] = True
        cut = last & ((times < t0 + ep_len - 1) | running) & ~term
        stored = np.where(valid, flags[2][s, safe], False)
        np.testing.assert_array_equal(tr.truncated[n], stored | cut)
        np.testing.assert_array_equal(h0[n], [s + 0.5, max(seg_start - burn_in, t0) + 0.25])


@given(
    shape=st.sampled_from(SHAPES),
    num_chunks=st.integers(1, 12),
    p_end=st.sampled_from([0.05, 0.3, 0.9]),
    seed=st.integers(0, 2**16),
    ragged=st.booleans(),
)
def test_segments_match_reference(shape, num_chunks, p_end, seed, ragged):
    store, ref, flags = fill(shape, seed, num_chunks, p_end, ragged)
    for key in jax.random.split(jax.random.key(seed), 2):
        for batch, setting in zip(sample_all(store, key), SETTINGS, strict=True):
            check_segments(batch, ref, flags, *setting)


def test_empty_store_gives_masked_rows():
    store = init_store(3 * 12, 3, EXAMPLE, EXTRAS)
    for batch in sample_all(store, jax.random.key(0)):
        assert not np.asarray(batch.mask).any()


def test_segments_are_uniform():
    # small_store's episodes 1,2,3,2 | 4,2,1,1 | 5,3 cut at L=3 give 12 segments.
    store, _ = small_store()
    ids = []
    for key in jax.random.split(jax.random.key(0), 100):
        tr = sample_all(store, key)[1].transition
        ids.extend(np.asarray(tr.obs[:, 2, 0] * 100 + tr.obs[:, 2, 1]))
    segs, counts = np.unique(ids, return_counts=True)
    want = [0, 1, 3, 6, 100, 103, 104, 106, 107, 200, 203, 205]
    # 12 aligned offsets (the 5-step episode has segments at 0 and 3): uniform over them.
    np.testing.assert_array_equal(segs, want)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_overlapping_sequences_are_uniform():
    # Period 2 over small_store's episodes 1,2,3,2 | 4,2,1,1 | 5,3: starts at offsets 0, 2,
    # 4 of each episode, 15 in all, every one equally likely; the L = 4 sequence at offset
    # 2 of the 5-step episode overlaps the one at 0 and stops at the episode's end.
    store, _ = small_store()
    ids, lengths = [], {}
    for key in jax.random.split(jax.random.key(1), 100):
        tr = sample_all(store, key)[2].transition
        first = np.asarray(tr.obs[:, 1, 0] * 100 + tr.obs[:, 1, 1])
        ids.extend(first)
        lengths.update(zip(first, np.asarray(tr.mask[:, 1:].sum(axis=1)), strict=True))
    segs, counts = np.unique(ids, return_counts=True)
    want = [0, 1, 3, 5, 6, 100, 102, 104, 106, 107, 200, 202, 204, 205, 207]
    np.testing.assert_array_equal(segs, want)
    assert stats.chisquare(counts).pvalue > 1e-3
    assert lengths[200] == 4 and lengths[202] == 3 and lengths[204] == 1


def test_bad_arguments_raise():
    store, _ = small_store()
    key = jax.random.key(0)
    for kwargs, match in [
        (dict(num_segments=0, segment_length=2), "num_segments"),
        (dict(num_segments=2, segment_length=0), "segment_length"),
        (dict(num_segments=2, segment_length=2, burn_in=-1), "burn_in"),
        (dict(num_segments=2, segment_length=2, period=3), "period"),
        (dict(num_segments=2, segment_length=2, period=0), "period"),
    ]:
        with pytest.raises(ValueError, match=match):
            sample_segments(store, key, **kwargs)
