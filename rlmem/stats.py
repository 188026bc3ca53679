"""Aggregate scores over tasks and seeds, in the style of rliable (Agarwal et al., *Deep
RL at the Edge of the Statistical Precipice*, NeurIPS 2021).

Written here because the `rliable` package (1.2.0) does not import with today's pandas
(its `arch` dependency fails on pandas 3's `deprecate_kwarg`). The estimators follow the
paper's definitions:

* **IQM**: the mean of the middle 50 % of all `runs x tasks` scores pooled
  (`scipy.stats.trim_mean(pool, 0.25)`, as rliable computes it).
* **Optimality gap**: the mean shortfall from a target score, `mean(max(target - x, 0))`.
* **Stratified bootstrap**: each task's runs are resampled with replacement on their own
  (tasks are strata, so every replicate keeps every task), the statistic recomputed, and
  the percentile interval taken.
* **Performance profile**: for each threshold `tau`, the fraction of runs scoring above
  it, averaged over tasks (every task weighs the same).

Scores are per-task arrays of per-run scores (`strata`: a list of `[n_k]` arrays; tasks
may have different numbers of runs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as sps

Strata = Sequence[np.ndarray]  # per task: that task's per-run scores `[n_k]`


def iqm(strata: Strata) -> float:
    """Interquartile mean of every score of every task, pooled."""
    return float(sps.trim_mean(np.concatenate([np.ravel(s) for s in strata]), 0.25))


def optimality_gap(strata: Strata, target: float = 1.0) -> float:
    """Mean over all pooled scores of `max(target - score, 0)`."""
    pooled = np.concatenate([np.ravel(s) for s in strata])
    return float(np.mean(target - np.minimum(pooled, target)))


def pooled_mean(strata: Strata) -> float:
    """Mean of every score of every task, pooled."""
    return float(np.mean(np.concatenate([np.ravel(s) for s in strata])))


def performance_profile(strata: Strata, taus: np.ndarray) -> np.ndarray:
    """`[len(taus)]`: per threshold, the fraction of a task's runs scoring above it,
    averaged over tasks."""
    taus = np.asarray(taus, dtype=float)
    return np.mean([np.mean(np.ravel(s)[:, None] > taus[None, :], axis=0) for s in strata],
                   axis=0)


def stratified_bootstrap(
    strata: Strata,
    statistic: Callable[[Strata], float | np.ndarray],
    rng: np.random.Generator,
    reps: int = 2000,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(point, low, high)` of `statistic` with a stratified percentile bootstrap CI.

    Every replicate resamples each task's runs with replacement, as many as it has.
    `statistic` may return a scalar or an array (e.g. a performance profile)."""
    strata = [np.ravel(np.asarray(s, dtype=float)) for s in strata]
    if not strata or any(len(s) == 0 for s in strata):
        raise ValueError("every task needs at least one run's score")
    point = np.asarray(statistic(strata), dtype=float)
    draws = np.stack([
        np.asarray(statistic([s[rng.integers(0, len(s), len(s))] for s in strata]), float)
        for _ in range(reps)
    ])
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return point, low, high


def bootstrap_mean_ci(samples: np.ndarray, rng: np.random.Generator,
                      n: int = 2000, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of the mean over axis 0. samples: [N, ...] -> two [...]."""
    idx = rng.integers(0, samples.shape[0], size=(n, samples.shape[0]))
    means = samples[idx].mean(axis=1)  # [n, ...]
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi
