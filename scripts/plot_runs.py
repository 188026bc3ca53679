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
with shared axes and one legend. Within a panel, runs are grouped into lines by
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
at which seeds reach that value.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import yaml

from rlmem.loop import step_unit_of
from rlmem.metrics import METRICS_FILE, read_metrics
from rlmem.rundir import HYDRA_SUBDIR
from rlmem.sweep import member_config, members

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

Curves = dict[str, tuple[np.ndarray, list[np.ndarray]]]  # label -> (steps [S], per-seed [S])


def find_runs(paths: list[Path]) -> list[Path]:
    """Run directories in `paths`: each path itself, or its subdirectories holding metrics."""
    runs: list[Path] = []
    for path in paths:
        if (path / METRICS_FILE).exists():
            runs.append(path)
        elif path.is_dir():  # every run below it, at any depth (0, 1, ..., 10 in order)
            found = [p.parent for p in path.rglob(METRICS_FILE)]
            runs.extend(sorted(found, key=lambda p: [(len(part), part) for part in p.parts]))
        else:
            raise ValueError(f"path={str(path)!r} is neither a run dir nor a directory of runs")
    if not runs:
        raise ValueError(f"no {METRICS_FILE} found under paths={[str(p) for p in paths]}")
    return runs


def run_label(config: dict[str, Any], key: str, missing: str | None = None) -> str:
    """The group of a run: `key` looked up in its config (``batching`` is special-cased);
    several comma-separated keys give their values joined by `` / ``. A key the config
    lacks is an error, or `missing` if given."""
    if "," in key:
        return " / ".join(run_label(config, part.strip(), missing) for part in key.split(","))
    if key == "batching":
        b = config["batching"]
        return "tape" if b["mode"] == "tape" else f"segment_l{b['segment_length']}"
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            if missing is not None:
                return missing
            raise ValueError(f"--label key={key!r} not in the run config (missing {part!r})")
        value = value[part]
    if isinstance(value, dict):
        raise ValueError(f"--label key={key!r} is a section, not a value; name one of its "
                         f"keys: {', '.join(f'{key}.{k}' for k in sorted(value))}")
    return str(value)


# Keys that never tell runs apart: seeds (the samples), where outputs and logs go, and
# the sweep spec itself (its members' values are set in their configs).
NOT_ARMS = ("seed", "num_seeds", "logger", "checkpoint", "sweep", "hydra",
            "loop.chunk_periods", "loop.check_memory")
BATCHING_LABEL_KEYS = {"batching.mode", "batching.segment_length"}  # -> `batching`


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """`{"a.b": "value"}` for every leaf of a nested config (values as strings)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)
    return out


def varying_keys(configs: list[dict[str, Any]]) -> list[str]:
    """The config keys whose values differ between `configs` (seeds and outputs aside)."""
    flat = [flatten(c) for c in configs]
    keys = sorted(set().union(*flat)) if flat else []
    # A key only some configs have (a segment length beside tape runs) varies only if it
    # takes several values where it is present.
    return [k for k in keys
            if not any(k == p or k.startswith(p + ".") for p in NOT_ARMS)
            and len({f[k] for f in flat if k in f}) > 1]


def auto_label(configs: list[dict[str, Any]], facets: tuple[str, ...] = ()) -> str:
    """Every key that varies within a panel (the runs that share the `facets`' values;
    the two keys that make `batching`'s label folded into it), or `batching` when
    nothing varies ("" if batching is a facet)."""
    covered = set(facets) | (BATCHING_LABEL_KEYS if "batching" in facets else set())
    panels: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for config in configs:
        panels[run_label(config, ",".join(facets), "-") if facets else ""].append(config)
    varying = sorted(set().union(*(varying_keys(group) for group in panels.values())))
    keys = [k for k in varying if k not in covered]
    if not keys or set(keys) & BATCHING_LABEL_KEYS:
        keys = ["batching", *(k for k in keys if k not in BATCHING_LABEL_KEYS)]
    if keys == ["batching"] and "batching" in facets:
        return ""
    return ",".join(keys)


def auto_name(config: dict[str, Any], label: str) -> str:
    """An automatic group's legend: `tape` alone, else `key=value` pairs by the keys' last
    parts (`segment_l20, burn_in=10, initial_state=stored`)."""
    keys = [k.strip() for k in label.split(",")]
    if not label:
        return "all runs"
    if keys == ["batching"]:
        return run_label(config, "batching")
    return ", ".join(run_label(config, k, "-") if k == "batching"
                     else f"{k.rsplit('.', 1)[-1]}={run_label(config, k, '-')}" for k in keys)


def check_not_pooled(samples: list[tuple[dict[str, Any], Any]], label: str) -> None:
    """Refuse to pool, in one group, runs whose configs differ in a key not in `label`."""
    named = {k.strip() for k in label.split(",") if k.strip()}
    if "batching" in named:
        named |= BATCHING_LABEL_KEYS
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for config, _ in samples:
        groups[run_label(config, label, "-") if label else ""].append(config)
    for name, configs in groups.items():
        hidden = [k for k in varying_keys(configs) if k not in named]
        if hidden:
            values = {k: sorted({flatten(c).get(k, "-") for c in configs}) for k in hidden}
            shown = "; ".join(f"{k}: {', '.join(v)}" for k, v in values.items())
            raise ValueError(
                f"group {name!r} would pool runs that differ in {shown}; add the key(s) "
                f"to --label, --rows or --cols (e.g. --label {label},{hidden[0]}) or plot "
                "them separately")


def load_curves(runs: list[Path], label: str, metric: str) -> Curves:
    """Per group: the common env steps and one curve per seed (`metric` at those steps).

    `label="auto"` groups by every config key that varies between the runs (see
    `auto_label`); any label refuses to pool runs that differ in keys it does not name."""
    return load_panels(runs, label, metric)[("", "")]


def _samples(runs: list[Path], metric: str) -> list[tuple[dict[str, Any], dict[int, float]]]:
    """One `(config, {step: value})` per seed of every run (and sweep member)."""
    samples: list[tuple[dict[str, Any], dict[int, float]]] = []
    for run in runs:
        config = run_config(run)
        sweep_members = members((config.get("sweep") or {}).get("vmap"))
        per_seed: dict[tuple[int | None, int], dict[int, float]] = defaultdict(dict)
        rows = read_metrics(run / METRICS_FILE)
        if rows and metric not in set().union(*rows):
            raise ValueError(f"--metric={metric!r} is not logged in {run / METRICS_FILE}; "
                             f"logged: {', '.join(sorted(k for k in rows[0] if '/' in k))}")
        for row in rows:
            if row.get(metric) is not None:  # null = no data at that step
                per_seed[row.get("member"), row["seed"]][row["step"]] = float(row[metric])
        for (member, _), series in per_seed.items():
            own = config if member is None else member_config(config, sweep_members[member])
            samples.append((own, series))
    return samples


Panels = dict[tuple[str, str], Curves]  # (row value, column value) -> that panel's curves


def load_panels(runs: list[Path], label: str, metric: str, rows: str = "",
                cols: str = "") -> Panels:
    """`load_curves` split into panels: one per value of the `rows` keys x one per value
    of the `cols` keys (comma-separated; "" = one). An automatic label leaves the facet
    keys out of the line names; nothing is pooled over keys no option names."""
    samples = _samples(runs, metric)
    facets = tuple(k.strip() for k in f"{rows},{cols}".split(",") if k.strip())
    auto = label == "auto"
    if auto:
        label = auto_label([config for config, _ in samples], facets)
    check_not_pooled(samples, ",".join(k for k in (label, *facets) if k))
    grouped: dict[tuple[str, str, str], list[dict[int, float]]] = defaultdict(list)
    for config, series in samples:
        name = auto_name(config, label) if auto else run_label(config, label)
        where = tuple(run_label(config, keys, "-") if keys else "" for keys in (rows, cols))
        grouped[(*where, name)].append(series)
    panels: Panels = defaultdict(dict)
    for (row, col, name), series in grouped.items():
        # Steps every seed logged (seeds of one run share steps; unfinished runs are cut).
        steps = sorted(set.intersection(*(set(s) for s in series)))
        if not steps:
            raise ValueError(f"group {name!r} has no step with {metric!r} in every seed")
        panels[(row, col)][name] = (np.array(steps),
                                    [np.array([s[t] for t in steps]) for s in series])
    return dict(panels)


def bootstrap_ci(samples: np.ndarray, rng: np.random.Generator,
                 n: int = 2000, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of the mean over axis 0. samples: [N, ...] -> two [...]."""
    idx = rng.integers(0, samples.shape[0], size=(n, samples.shape[0]))
    means = samples[idx].mean(axis=1)  # [n, ...]
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi


def _order(name: str) -> tuple[int, float, str]:
    """tape first, then segment lengths ascending, then anything else by name."""
    head, _, rest = name.partition(", ")
    if head == "tape":
        return (0, 0.0, rest)
    if head.startswith("segment_l") and head[9:].isdigit():
        return (1, float(head[9:]), rest)
    return (2, 0.0, name)


def run_config(run: Path) -> dict[str, Any]:
    """The composed config a run recorded (`<run>/.hydra/config.yaml`)."""
    return yaml.safe_load((run / HYDRA_SUBDIR / "config.yaml").read_text())


def step_unit(runs: list[Path]) -> str:
    """What the logged `step` counts (`rlmem.loop.step_unit_of` the runs' `loop.rollout`;
    the first run's config decides)."""
    config = run_config(runs[0]) if runs else {}
    return step_unit_of((config.get("loop") or {}).get("rollout", "steps"))


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


def plot_panels(panels: Panels, metric: str, out: Path, title: str,
                threshold: float | None = None, vline: float | None = None,
                seed: int = 0, unit: str = "env steps", size: tuple[float, float] = (7, 4.2),
                rows: str = "", cols: str = "") -> str:
    """Write the figure (a grid of panels, `size` each when there are several) to `out`;
    return the markdown table (a row per panel and line).

    The "mean over steps" column (a normalised area under the curve, a sample-efficiency
    summary) averages each seed's curve over the logged steps after `vline` (all if None).
    `threshold` adds a column: the first logged step at which a seed's value is
    >= threshold (mean over the seeds that reach it, and how many do). `vline` marks an
    x position (e.g. the end of the random-action phase) with a dotted line. A line keeps
    its colour in every panel.
    """
    rng = np.random.default_rng(seed)
    row_values = sorted({r for r, _ in panels}, key=_order)
    col_values = sorted({c for _, c in panels}, key=_order)
    grid = len(row_values) * len(col_values) > 1
    figsize = (size[0] * len(col_values), size[1] * len(row_values)) if grid else size
    fig, axes = plt.subplots(len(row_values), len(col_values), figsize=figsize, dpi=110,
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    names = sorted({n for curves in panels.values() for n in curves}, key=_order)
    colors = {n: f"C{i % 10}" for i, n in enumerate(names)}
    extra = "" if threshold is None else f" first step >= {threshold:g} (seeds reaching) |"
    after = "" if vline is None else f" after {vline:g}"
    table = [f"| group | seeds | final {metric} (95% CI) | best {metric} (95% CI) "
             f"| mean over steps{after} (95% CI) |{extra}",
             "|---|---|---|---|---|" + ("---|" if extra else "")]
    handles = {}
    for i, row in enumerate(row_values):
        for j, col in enumerate(col_values):
            ax, curves = axes[i][j], panels.get((row, col), {})
            where = _panel_title(rows, cols, (row, col))
            for name in sorted(curves, key=_order):
                steps, series = curves[name]
                values = np.stack(series)  # [seeds, S]
                lo, hi = bootstrap_ci(values, rng)
                (line,) = ax.plot(steps, values.mean(axis=0), color=colors[name], lw=1.6,
                                  label=f"{name} (n={len(series)})")
                handles.setdefault(name, line)
                ax.fill_between(steps, lo, hi, color=colors[name], alpha=0.2, lw=0)
                cells = []
                later = steps > (-np.inf if vline is None else vline)
                if not later.any():
                    raise ValueError(f"--vline={vline} is past the last step {steps[-1]} of "
                                     f"{name!r}")
                # final, best over steps, mean over steps (after vline)
                for per_seed in (values[:, -1], values.max(axis=1),
                                 values[:, later].mean(axis=1)):
                    a, b = bootstrap_ci(per_seed, rng)
                    cells.append(f"{per_seed.mean():.3f} [{a:.3f}, {b:.3f}]")
                if threshold is not None:
                    hits = [steps[np.argmax(v >= threshold)] for v in values
                            if (v >= threshold).any()]
                    cells.append(f"{np.mean(hits):.0f} ({len(hits)}/{len(series)})" if hits
                                 else f"never (0/{len(series)})")
                group = f"{where}: {name}" if where else name
                table.append(f"| {group} | {len(series)} | " + " | ".join(cells) + " |")
            if vline is not None:
                ax.axvline(vline, color="grey", ls=":", lw=1)
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
    parser.add_argument("--vline", type=float, default=None,
                        help="x position of a dotted vertical line (e.g. end of random phase)")
    args = parser.parse_args()
    runs = find_runs(args.paths)
    panels = load_panels(runs, args.label, args.metric, args.rows, args.cols)
    for curves in panels.values():
        for name, (_, series) in curves.items():
            if len(series) < 5:
                print(f"warning: {name!r} has {len(series)} seed(s); a bootstrap CI over "
                      "fewer than 5 seeds is rough", file=sys.stderr)
    title = args.title or default_title([run_config(r) for r in runs], args.metric)
    width, height = (float(x) for x in args.size.lower().split("x"))
    print(plot_panels(panels, args.metric, args.out, title, args.threshold, args.vline,
                      unit=step_unit(runs), size=(width, height), rows=args.rows,
                      cols=args.cols))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
