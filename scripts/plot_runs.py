"""Plot a metric against env steps for groups of runs: mean and 95% bootstrap CI over seeds.

    python scripts/plot_runs.py multirun/tbb_vs_sbb --label batching --out tbb_vs_sbb.png \
        --threshold 0.9 --vline 5100
    python scripts/plot_runs.py runs/a runs/b --label memory.name --metric eval/best_return
    python scripts/plot_runs.py outputs/lr_sweep --label algo.optim.learning_rate,algo.gamma
    python scripts/plot_runs.py multirun/paper-grid --rows env.name --cols memory.name

Each argument is a run directory (holding ``metrics.jsonl`` and ``.hydra/config.yaml``) or
a directory with runs below it, at any depth (a Hydra multirun sweep dir). A vectorised
sweep's directory (``sweep.vmap``) is split into its members, each with its own config.
``--rows``/``--cols`` (config keys) split the runs into a grid of panels, one per value,
with shared axes (``--sharex col``: each column its own x range, for tasks of different
lengths) and one legend. Within a panel, runs are grouped into lines by
``--label``: by default (``auto``) every config key that varies between them and no facet
names (seeds and output settings aside), else dotted config keys, comma-separated
(``memory.name``, ``algo.optim.learning_rate,algo.gamma``), or ``batching`` (``tape`` or
``segment_l<L>``, as in the W&B group names). Runs whose configs differ in a key that
neither the label nor a facet names are never pooled into one line: that is refused,
naming the key. Every seed
of every run in a group is one sample (a warning says when a group has fewer than 5).
Writes the figure (``--out``: ``.png``, ``.pdf`` or ``.svg``; ``--size 3.5x2.6`` for a
paper column) and prints a markdown table per group (mean over seeds and the 95% bootstrap
CI of that mean): the final value, the best over steps, the mean over steps after
``--vline`` (a normalised area under the curve) and, with ``--threshold``, the first step
at which seeds reach that value. ``--vline`` is a number or a config key read per panel
(``--vline algo.random_epochs``: where each task's random phase ends, for the paper's
presets, whose x axis counts episodes and whose epochs are episodes). ``--smooth N``
draws each seed's trailing mean over its last N logged points (a noisy eval metric, such
as CartPole's ten-episode eval return); the table always reads the raw values.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from rlmem.results import (
    Curves,
    Panels,
    find_runs,
    first_reach_cell,
    load_panels,
    mean_ci_cell,
    order_key,
    panel_values,
    run_config,
    step_unit,
)
from rlmem.stats import bootstrap_mean_ci

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)


def _panel_title(rows: str, cols: str, where: tuple[str, str]) -> str:
    """`memory.name=lru, batching=tape`: the facet keys' last parts and this panel's values."""
    parts = []
    for keys, values in zip((rows, cols), where, strict=True):
        if keys:
            names = [k.strip() for k in keys.split(",")]
            parts += [f"{n}={v}" for n, v in zip(names, values.split(" / "), strict=True)]
    return ", ".join(parts)


def plot_and_table(curves: Curves, metric: str, out: Path, title: str,
                   threshold: float | None = None, vline: float | None = None,
                   seed: int = 0, unit: str = "env steps",
                   size: tuple[float, float] = (7, 4.2)) -> str:
    """One panel of `plot_panels`: write the figure to `out`, return the markdown table."""
    return plot_panels({("", ""): curves}, metric, out, title, threshold, vline, seed,
                       unit, size)


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """values: [seeds, S] -> [seeds, S], each point the mean of its seed's last `window`
    points (fewer at the start). Trailing, so a curve never borrows from later steps."""
    if window < 1:
        raise ValueError(f"--smooth={window}: a window of at least 1 logged point")
    sums = np.cumsum(values, axis=1)
    sums[:, window:] = sums[:, window:] - sums[:, :-window]
    counts = np.minimum(np.arange(1, values.shape[1] + 1), window)
    return sums / counts


Vline = float | Mapping[tuple[str, str], float] | None  # one x, or one per (row, col) panel
SHAREX = {"all": True, "row": "row", "col": "col", "none": False}  # --sharex -> matplotlib


def plot_panels(panels: Panels, metric: str, out: Path, title: str,
                threshold: float | None = None, vline: Vline = None,
                seed: int = 0, unit: str = "env steps", size: tuple[float, float] = (7, 4.2),
                rows: str = "", cols: str = "", sharex: str = "all",
                vline_name: str = "the line", smooth: int = 1) -> str:
    """Write the figure (a grid of panels, `size` each when there are several) to `out`;
    return the markdown table (a row per panel and line).

    The "mean over steps" column (a normalised area under the curve, a sample-efficiency
    summary) averages each seed's curve over the logged steps after `vline` (all if None).
    `threshold` adds a column: the first logged step at which a seed's value is
    >= threshold (mean over the seeds that reach it, and how many do). `vline` marks an
    x position (e.g. the end of the random-action phase) with a dotted line; a mapping
    gives each panel its own (`vline_name` names it in the table). `sharex`: which panels
    share an x axis (`SHAREX`). `smooth`: the drawn curves are each seed's
    `trailing_mean` over that many logged points (the table reads the raw values). A line
    keeps its colour in every panel; a panel without runs says so.
    """
    rng = np.random.default_rng(seed)
    row_values = sorted({r for r, _ in panels}, key=order_key)
    col_values = sorted({c for _, c in panels}, key=order_key)
    grid = len(row_values) * len(col_values) > 1
    figsize = (size[0] * len(col_values), size[1] * len(row_values)) if grid else size
    fig, axes = plt.subplots(len(row_values), len(col_values), figsize=figsize, dpi=110,
                             squeeze=False, sharex=SHAREX[sharex], sharey=True,
                             layout="constrained")
    names = sorted({n for curves in panels.values() for n in curves}, key=order_key)
    colors = {n: f"C{i % 10}" for i, n in enumerate(names)}
    extra = "" if threshold is None else f" first step >= {threshold:g} (seeds reaching) |"
    per_panel = isinstance(vline, Mapping)
    after = "" if vline is None else f" after {vline_name if per_panel else f'{vline:g}'}"
    table = [f"| group | seeds | final {metric} (95% CI) | best {metric} (95% CI) "
             f"| mean over steps{after} (95% CI) |{extra}",
             "|---|---|---|---|---|" + ("---|" if extra else "")]
    handles = {}
    for i, row in enumerate(row_values):
        for j, col in enumerate(col_values):
            ax, curves = axes[i][j], panels.get((row, col), {})
            where = _panel_title(rows, cols, (row, col))
            x_line = vline.get((row, col)) if per_panel else vline
            if not curves:
                ax.text(0.5, 0.5, "no runs", transform=ax.transAxes, ha="center",
                        color="grey")
            for name in sorted(curves, key=order_key):
                steps, series = curves[name]
                values = np.stack(series)  # [seeds, S]
                drawn = trailing_mean(values, smooth) if smooth > 1 else values
                lo, hi = bootstrap_mean_ci(drawn, rng)
                (line,) = ax.plot(steps, drawn.mean(axis=0), color=colors[name], lw=1.6,
                                  label=f"{name} (n={len(series)})")
                handles.setdefault(name, line)
                ax.fill_between(steps, lo, hi, color=colors[name], alpha=0.2, lw=0)
                later = steps > (-np.inf if x_line is None else x_line)
                if not later.any():
                    raise ValueError(f"--vline={x_line:g} is past the last step {steps[-1]} "
                                     f"of {name!r}")
                # final, best over steps, mean over steps (after vline)
                cells = [mean_ci_cell(per_seed, rng) for per_seed in (
                    values[:, -1], values.max(axis=1), values[:, later].mean(axis=1))]
                if threshold is not None:
                    cells.append(first_reach_cell(steps, series, threshold))
                group = f"{where}: {name}" if where else name
                table.append(f"| {group} | {len(series)} | " + " | ".join(cells) + " |")
            if x_line is not None:
                ax.axvline(x_line, color="grey", ls=":", lw=1)
            if where:
                ax.set_title(where, fontsize=8)
            ax.grid(alpha=0.3)
            if i == len(row_values) - 1:
                ax.set_xlabel(f"{unit} (per seed)")
            if j == 0:
                ax.set_ylabel(metric)
    if grid:
        fig.suptitle(title, fontsize=9)
        fig.legend([handles[n] for n in names if n in handles],
                   [handles[n].get_label() for n in names if n in handles],
                   loc="outside lower center", ncol=min(4, len(handles)), fontsize=8)
    else:
        axes[0][0].set_title(title, fontsize=8.5)
        axes[0][0].legend(fontsize=8, loc="best")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return "\n".join(table)


def default_title(config: dict[str, Any] | list[dict[str, Any]], metric: str) -> str:
    """`RepeatFirstEasy, dqn, 10000 iterations: eval/return, mean and 95% CI over seeds`;
    of several runs' configs, only what they share."""
    configs = config if isinstance(config, list) else [config]
    parts = []
    for section, key, suffix in (("env", "name", ""), ("algo", "name", ""),
                                 ("loop", "iterations", " iterations")):
        values = {str((c.get(section) or {}).get(key, "?")) for c in configs}
        if len(values) == 1:
            parts.append(values.pop() + suffix)
    return f"{', '.join(parts)}: {metric}, mean and 95% CI over seeds"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run dirs or sweep dirs")
    parser.add_argument("--label", default="auto",
                        help="config keys to group by, comma-separated; `batching` reads "
                             "tape/segment_l<L> (default auto: every key that varies)")
    parser.add_argument("--rows", default="",
                        help="config keys whose values make rows of panels (comma-separated)")
    parser.add_argument("--cols", default="",
                        help="config keys whose values make columns of panels")
    parser.add_argument("--metric", default="eval/return",
                        help="metrics.jsonl key (default eval/return; e.g. eval/best_return)")
    parser.add_argument("--out", type=Path, default=Path("runs.png"),
                        help="figure path; the suffix picks the format (.png, .pdf, .svg)")
    parser.add_argument("--size", default="7x4.2",
                        help="figure size in inches, WxH (a paper column: 3.5x2.6); with "
                             "--rows/--cols, each panel's size")
    parser.add_argument("--title", default=None,
                        help="plot title (default: env, algorithm, schedule and metric)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="add a column: first step at which the metric reaches this")
    parser.add_argument("--vline", default=None,
                        help="x position of a dotted vertical line (e.g. end of random phase): "
                             "a number, or a config key read per panel (algo.random_epochs)")
    parser.add_argument("--sharex", choices=sorted(SHAREX), default="all",
                        help="which panels share the x axis (col: one range per column)")
    parser.add_argument("--smooth", type=int, default=1,
                        help="draw each seed's trailing mean over this many logged points "
                             "(the table reads the raw values)")
    args = parser.parse_args()
    if args.smooth < 1:
        parser.error(f"--smooth={args.smooth}: a window of at least 1 logged point")
    runs = find_runs(args.paths)
    panels = load_panels(runs, args.label, args.metric, args.rows, args.cols)
    for curves in panels.values():
        for name, (_, series) in curves.items():
            if len(series) < 5:
                print(f"warning: {name!r} has {len(series)} seed(s); a bootstrap CI over "
                      "fewer than 5 seeds is rough", file=sys.stderr)
    title = args.title or default_title([run_config(r) for r in runs], args.metric)
    width, height = (float(x) for x in args.size.lower().split("x"))
    vline: Vline = None
    if args.vline is not None:
        try:
            vline = float(args.vline)
        except ValueError:
            vline = panel_values(runs, args.vline, args.rows, args.cols)
    print(plot_panels(panels, args.metric, args.out, title, args.threshold, vline,
                      unit=step_unit(runs), size=(width, height), rows=args.rows,
                      cols=args.cols, sharex=args.sharex, vline_name=str(args.vline),
                      smooth=args.smooth))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
