"""rlmem.stats against hand-computed values and the bootstrap's defining properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem import stats


def test_hand_computed_values():
    # 8 pooled scores 0..7: the middle half is 2, 3, 4, 5
    assert stats.iqm([np.arange(4.0), np.arange(4.0, 8.0)]) == 3.5
    assert stats.optimality_gap([np.array([0.5, 1.2]), np.array([0.0])]) == pytest.approx(0.5)
    assert stats.optimality_gap([np.array([0.5])], target=0.8) == pytest.approx(0.3)
    profile = stats.performance_profile([np.array([0.1, 0.6]), np.array([0.9])],
                                        np.array([0.0, 0.5, 0.95]))
    np.testing.assert_allclose(profile, [1.0, 0.75, 0.0])  # tasks weigh the same
    assert stats.pooled_mean([np.array([1.0, 2.0]), np.array([6.0])]) == 3.0


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.floats(-1, 1), min_size=4, max_size=40))
def test_iqm_lies_between_the_quartiles(values):
    pool = np.asarray(values)
    iqm = stats.iqm([pool[: len(pool) // 2], pool[len(pool) // 2:]])
    q1, q3 = np.quantile(pool, [0.25, 0.75])
    assert q1 - 1e-9 <= iqm <= q3 + 1e-9


def test_bootstrap_keeps_every_task_and_its_run_count():
    rng = np.random.default_rng(0)
    strata = [np.array([1.0, 2.0, 3.0]), np.array([5.0]), np.array([0.0, 1.0])]
    point, low, high = stats.stratified_bootstrap(
        strata, lambda s: np.array([len(x) for x in s], float), rng, reps=50)
    np.testing.assert_array_equal(point, [3, 1, 2])
    np.testing.assert_array_equal(low, [3, 1, 2])
    np.testing.assert_array_equal(high, [3, 1, 2])
    # A task with one run (or constant runs) never varies: its mean's CI is a point.
    _, low, high = stats.stratified_bootstrap([np.array([5.0]), np.full(4, 2.0)],
                                              stats.pooled_mean, rng, reps=50)
    assert low == high == pytest.approx(2.6)  # (5 + 4 * 2) / 5


def test_bootstrap_ci_of_a_mean_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    sample = rng.normal(0.3, 1.0, 400)
    point, low, high = stats.stratified_bootstrap([sample], stats.pooled_mean, rng,
                                                  reps=4000)
    half = 1.96 * sample.std(ddof=1) / np.sqrt(len(sample))
    assert point == pytest.approx(sample.mean())
    assert low == pytest.approx(sample.mean() - half, abs=0.02)
    assert high == pytest.approx(sample.mean() + half, abs=0.02)


def test_empty_task_is_refused():
    with pytest.raises(ValueError, match="every task needs at least one run"):
        stats.stratified_bootstrap([np.array([1.0]), np.array([])], stats.iqm,
                                   np.random.default_rng(0))
