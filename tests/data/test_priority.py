"""Replay priorities against plain-Python models: which slots hold units, eviction, the
sampling distribution (chi-square), the batch layouts, R2D2's sequence priority and the
importance weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from rlmem.data import priority as pr
from rlmem.data import sum_tree as sumtree
from rlmem.data.prioritised_sampler import (
    draw_units,
    sample_segments_prioritised,
    sample_tape_prioritised,
)
from rlmem.data.tape import add, init_store
from tests.data.reference import EXAMPLE, EXTRAS, SHAPES, ReferenceStore, make_chunk, make_stream
from tests.data.test_segment_sampler import check_segments

PERIODS = [pr.EPISODE_UNITS, 1, 2, 3]
ALPHA = 0.7


def expected_units(ref: ReferenceStore, period: int) -> set[tuple[int, int]]:
    """(stream, time) of every unit the store must hold: the first transition of each
    valid episode, or its transitions at offsets 0, P, 2P, ..."""
    units = set()
    for (e, t0), (n, _) in ref.valid_episodes().items():
        step = n if period == pr.EPISODE_UNITS else period
        units |= {(e, t) for t in range(t0, t0 + n, step)}
    return units


@jax.jit
def _add(store, chunk, extras):
    return add(store, chunk, extras)


@jax.jit
def _set(pri, leaf, priority, valid):
    return pr.set_priorities(pri, leaf, priority, valid, ALPHA)


def leaves_of(store) -> np.ndarray:
    pri = store.priorities
    n = store.num_envs * store.stream_capacity
    return np.asarray(sumtree.leaf_values(pri.tree, jnp.arange(n)))


@given(shape=st.sampled_from(SHAPES), period=st.sampled_from(PERIODS),
       num_chunks=st.integers(1, 10), p_end=st.sampled_from([0.05, 0.3, 0.9]),
       seed=st.integers(0, 2**16))
def test_leaves_hold_exactly_the_valid_units(shape, period, num_chunks, p_end, seed):
    """After every add (and random priority updates between adds), a leaf is non-zero
    exactly when its slot starts a unit of a valid episode, and holds the value last
    written to that unit: max_leaf when it was written, the updated priority since.
    Evicted episodes' units (their tails too) are gone."""
    e, c, chunk_len = shape
    store = init_store(e * c, e, EXAMPLE, EXTRAS, priority_period=period)
    rng = np.random.default_rng(seed)
    flags = make_stream(rng, e, chunk_len * num_chunks, p_end)
    ref = ReferenceStore(e, c)
    want: dict[tuple[int, int], float] = {}
    max_leaf = 1.0
    for i in range(num_chunks):
        t0, t1 = i * chunk_len, (i + 1) * chunk_len
        store = _add(store, *make_chunk(*flags, t0, t1))
        ref.add(flags[0][:, t0:t1], flags[1][:, t0:t1])
        units = expected_units(ref, period)
        for unit in units - set(want):
            want[unit] = max_leaf
        want = {u: v for u, v in want.items() if u in units}
        leaves = leaves_of(store)
        got = {(j // c, j % c): v for j, v in enumerate(leaves) if v > 0}
        assert set(got) == {(s, t % c) for s, t in want}, f"chunk {i}"
        for (s, t), v in want.items():
            np.testing.assert_allclose(got[(s, t % c)], v, rtol=1e-6)
        np.testing.assert_allclose(float(sumtree.total(store.priorities.tree)),
                                   leaves.sum(), rtol=1e-5)
        # Update a random half of the units (R2D2 does after every gradient step).
        chosen = [u for u in sorted(want) if rng.random() < 0.5]
        if chosen:
            prio = rng.uniform(0, 5, len(chosen)).astype(np.float32)
            leaf = np.array([s * c + t % c for s, t in chosen], np.int32)
            store = store.replace(priorities=_set(store.priorities, leaf, prio,
                                                  np.ones(len(chosen), bool)))
            for u, p in zip(chosen, prio, strict=True):
                want[u] = float((np.float32(p) + np.float32(pr.PRIORITY_EPS)) ** ALPHA)
            max_leaf = max(max_leaf, *(want[u] for u in chosen))
            np.testing.assert_allclose(float(store.priorities.max_leaf), max_leaf, rtol=1e-6)


def filled_store(period: int, seed: int = 0):
    """Three streams, 24 slots each, 60 steps of random episodes, random priorities."""
    e, c, total = 3, 24, 60
    rng = np.random.default_rng(seed)
    flags = make_stream(rng, e, total, 0.15)
    store = init_store(e * c, e, EXAMPLE, EXTRAS, priority_period=period)
    ref = ReferenceStore(e, c)
    for t0 in range(0, total, 6):
        store = _add(store, *make_chunk(*flags, t0, t0 + 6))
        ref.add(flags[0][:, t0:t0 + 6], flags[1][:, t0:t0 + 6])
    units = sorted(expected_units(ref, period))
    leaf = np.array([s * c + t % c for s, t in units], np.int32)
    prio = rng.uniform(0, 3, len(units)).astype(np.float32)
    prio[::7] = 0.0  # zero TD error: still drawable through PRIORITY_EPS
    pri = _set(store.priorities, leaf, prio, np.ones(len(units), bool))
    return store.replace(priorities=pri), ref, flags, units


def test_draws_follow_the_priorities():
    """Chi-square of 200k draws against `leaf / total` over the units; every draw names a
    unit's (stream, first transition time)."""
    store, _, _, units = filled_store(period=2)
    stream, time, leaf, prob, ok = jax.jit(draw_units, static_argnums=2)(
        store, jax.random.key(3), 200_000)
    assert bool(ok)
    drawn = set(zip(np.asarray(stream).tolist(), np.asarray(time).tolist(), strict=True))
    assert drawn <= set(units)
    c = store.stream_capacity
    ids = np.sort([s * c + t % c for s, t in units])
    leaves = leaves_of(store)[ids]
    counts = np.bincount(np.searchsorted(ids, np.asarray(leaf)), minlength=len(ids))
    expected = leaves / leaves.sum() * counts.sum()
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    np.testing.assert_allclose(np.asarray(prob), leaves_of(store)[np.asarray(leaf)]
                               / leaves.sum(), rtol=1e-5)


def test_prioritised_tape_lays_out_the_drawn_episodes():
    """The tape holds the drawn episodes, whole and in draw order, each position tagged
    with its draw; `used` marks the draws that made it in."""
    store, ref, _, _ = filled_store(period=pr.EPISODE_UNITS)
    batch, draws = jax.jit(sample_tape_prioritised, static_argnums=2)(
        store, jax.random.key(1), 40)
    tr = jax.tree.map(np.asarray, batch.transition)
    unit, leaf = np.asarray(draws.unit), np.asarray(draws.leaf)
    c = store.stream_capacity
    episodes = ref.valid_episodes()
    pos = 0
    for j in range(40):
        if pos == 40:
            assert not draws.used[j]
            continue
        s, t0 = leaf[j] // c, None
        for (es, et0) in episodes:
            if es == s and et0 % c == leaf[j] % c:
                t0 = et0
        n = min(episodes[(s, t0)][0], 40 - pos)
        np.testing.assert_array_equal(unit[pos:pos + n], j)
        np.testing.assert_array_equal(tr.obs[pos:pos + n, 0], s)
        np.testing.assert_array_equal(tr.obs[pos:pos + n, 1], np.arange(t0, t0 + n))
        assert tr.start[pos] and draws.used[j]
        pos += n


def test_prioritised_segments_start_at_the_drawn_units():
    """Each row is a valid sequence (the uniform sampler's checks) starting at its draw."""
    period, length, burn_in = 2, 4, 1
    store, ref, flags, _ = filled_store(period=period)
    batch, draws = jax.jit(sample_segments_prioritised, static_argnums=(2, 3, 4, 5))(
        store, jax.random.key(2), 6, length, burn_in, period)
    check_segments(batch, ref, flags, length, burn_in, period, num_segments=6)
    c = store.stream_capacity
    first = np.asarray(batch.transition.obs[:, burn_in])
    np.testing.assert_array_equal(first[:, 0] * c + first[:, 1] % c, np.asarray(draws.leaf))
    np.testing.assert_array_equal(np.asarray(draws.unit), np.repeat(np.arange(6), length))


@given(seed=st.integers(0, 2**16), eta=st.sampled_from([0.0, 0.9, 1.0]))
def test_unit_priority_matches_a_loop(seed, eta):
    rng = np.random.default_rng(seed)
    m, k = 30, 6
    td = rng.uniform(0, 4, m).astype(np.float32)
    unit = rng.integers(0, k, m)
    mask = rng.random(m) < 0.7
    prio, seen = pr.unit_priority(jnp.asarray(td), jnp.asarray(unit), jnp.asarray(mask), k,
                                  eta)
    for j in range(k):
        mine = td[(unit == j) & mask]
        assert bool(seen[j]) == (mine.size > 0)
        if mine.size:
            np.testing.assert_allclose(float(prio[j]),
                                       eta * mine.max() + (1 - eta) * mine.mean(), rtol=1e-5)


def test_importance_weights_match_the_formula():
    prob = np.array([0.5, 0.1, 0.02, 0.3], np.float32)
    valid = np.array([True, True, True, False])
    got = pr.importance_weights(jnp.asarray(prob), 0.6, jnp.asarray(valid))
    for num_units in (4, 10, 1000):  # PER's (N P)^-beta / max: N cancels
        raw = (num_units * prob[:3]) ** -0.6
        np.testing.assert_allclose(np.asarray(got), [*(raw / raw.max()), 0.0], rtol=1e-5)


def test_a_store_without_priorities_refuses_prioritised_sampling():
    store = init_store(12, 1, EXAMPLE, EXTRAS)
    for call in (lambda: sample_tape_prioritised(store, jax.random.key(0), 4),
                 lambda: sample_segments_prioritised(store, jax.random.key(0), 2, 3)):
        try:
            call()
        except ValueError as err:
            assert "priority_period" in str(err)
        else:
            raise AssertionError("expected a ValueError")
    with_episodes = init_store(12, 1, EXAMPLE, EXTRAS, priority_period=pr.EPISODE_UNITS)
    try:
        sample_segments_prioritised(with_episodes, jax.random.key(0), 2, 3)
    except ValueError as err:
        assert "kept for episodes" in str(err) and "priority_period=3" in str(err)
    else:
        raise AssertionError("expected a ValueError")
