"""Aggregate scores over tasks x memory models per arm, in the style of rliable: IQM,
optimality gap and mean with stratified bootstrap CIs, and performance profiles.

    python scripts/aggregate_runs.py results/paper --out profiles.pdf
    python scripts/aggregate_runs.py multirun/grid --metric eval/return --range 0,1

A *task* (a bootstrap stratum) is one env x memory model; an *arm* is what varies within
a task (batching by default: tape, segment_l10, ...). A run's score is its final value of
`--metric` (default `eval/best_return`), normalised to [0, 1] by `--range` (POPGym's
returns lie in [-1, 1]); the optimality gap is measured to 1. Only tasks every arm has
are aggregated (the others are named). Estimators: `rlmem.stats` (the `rliable` package
does not import with today's pandas).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib
import numpy as np

from rlmem import stats
from rlmem.results import find_runs, load_panels, order_key

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

CELL = ("env.name", "memory.name")  # a task: one env x one memory model
TAUS = np.linspace(0.0, 1.0, 101)  # performance-profile thresholds (normalised scores)


def arm_strata(runs: list[Path], metric: str, label: str = "auto",
               score_range: tuple[float, float] = (-1.0, 1.0)
               ) -> tuple[dict[str, list[np.ndarray]], list[str], list[str]]:
    """Per arm, the normalised final scores of each task every arm has (`[seeds]` each).

    Returns `(strata by arm, tasks used, tasks dropped)`."""
    panels = load_panels(runs, label, metric, *CELL)
    arms = sorted({a for curves in panels.values() for a in curves}, key=order_key)
    used = [cell for cell in sorted(panels) if set(panels[cell]) == set(arms)]
    dropped = [" x ".join(cell) for cell in sorted(panels) if cell not in used]
    low, high = score_range
    strata = {arm: [(np.array([s[-1] for s in panels[cell][arm][1]]) - low) / (high - low)
                    for cell in used] for arm in arms}
    return strata, [" x ".join(cell) for cell in used], dropped


def _summary(strata: stats.Strata) -> np.ndarray:
    return np.array([stats.iqm(strata), stats.optimality_gap(strata),
                     stats.pooled_mean(strata)])


def aggregate_table(strata: dict[str, list[np.ndarray]], reps: int = 2000,
                    seed: int = 0) -> str:
    """Markdown: per arm, IQM, optimality gap and mean with 95 % stratified bootstrap CIs."""
    rng = np.random.default_rng(seed)
    out = ["| arm | tasks | runs | IQM (95% CI) | optimality gap (95% CI) | mean (95% CI) |",
           "|---|---|---|---|---|---|"]
    for arm, tasks in strata.items():
        point, low, high = stats.stratified_bootstrap(tasks, _summary, rng, reps)
        cells = [f"{p:.3f} [{a:.3f}, {b:.3f}]" for p, a, b in zip(point, low, high,
                                                                  strict=True)]
        out.append(f"| {arm} | {len(tasks)} | {sum(len(t) for t in tasks)} | "
                   + " | ".join(cells) + " |")
    return "\n".join(out)


def plot_profiles(strata: dict[str, list[np.ndarray]], out: Path, metric: str,
                  reps: int = 500, seed: int = 0, size: tuple[float, float] = (5, 3.4)) -> None:
    """Performance profiles (fraction of runs above each normalised score, tasks weighed
    equally) with 95 % stratified bootstrap bands."""
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=size, dpi=110, layout="constrained")
    for arm, tasks in strata.items():
        point, low, high = stats.stratified_bootstrap(
            tasks, lambda s: stats.performance_profile(s, TAUS), rng, reps)
        (line,) = ax.plot(TAUS, point, lw=1.6, label=arm)
        ax.fill_between(TAUS, low, high, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel(f"normalised final {metric} (tau)")
    ax.set_ylabel("fraction of runs > tau")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run dirs or sweep dirs")
    parser.add_argument("--metric", default="eval/best_return",
                        help="metrics.jsonl key whose final value is a run's score")
    parser.add_argument("--label", default="auto",
                        help="config keys telling arms apart (default: what varies in a task)")
    parser.add_argument("--range", default="-1,1",
                        help="min,max of the metric, normalised to 0,1 (default -1,1)")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap replicates")
    parser.add_argument("--out", type=Path, default=None,
                        help="performance-profile figure (.png, .pdf, .svg)")
    args = parser.parse_args()
    low, high = (float(x) for x in args.range.split(","))
    strata, used, dropped = arm_strata(find_runs(args.paths), args.metric, args.label,
                                       (low, high))
    if dropped:
        print(f"warning: tasks without every arm are left out: {', '.join(dropped)}",
              file=sys.stderr)
    if not used:
        sys.exit("error: no task has every arm; nothing to aggregate")
    print(f"tasks: {', '.join(used)}\n")
    print(aggregate_table(strata, args.reps))
    if args.out:
        plot_profiles(strata, args.out, args.metric)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
