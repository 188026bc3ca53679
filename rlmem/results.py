"""Finished runs, read back for figures and tables (`scripts/plot_runs.py`,
`scripts/results_table.py`, `scripts/aggregate_runs.py`).

A run directory holds `metrics.jsonl` and `.hydra/config.yaml`; a directory of runs (a
Hydra multirun sweep, `results/...`) holds them at any depth. A vectorised sweep's run
(`sweep.vmap`) is several runs in one directory: `samples` splits it into its members,
each with its own config. Runs are told apart by config keys (`run_label`,
`varying_keys`); the keys in `NOT_ARMS` never tell arms apart.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import yaml

from rlmem.loop import step_unit_of
from rlmem.metrics import METRICS_FILE, read_metrics
from rlmem.rundir import HYDRA_SUBDIR
from rlmem.sweep import member_config, members


class Sample(NamedTuple):
    """One seed of one run (or sweep member): its config, `{step: value}`, and origin."""

    config: dict[str, Any]
    series: dict[int, float]
    run: Path
    seed: int


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


def batching_label(batching: dict[str, Any]) -> str:
    """`tape`, `segment_l<L>`, or an R2D2-style arm's longer name: the batching object's
    own label (`rlmem.agents.batching`), read from a run's `batching` section (keys
    added since an older run at their defaults)."""
    from rlmem.agents.batching import SegmentBatching

    if batching["mode"] == "tape":
        return "tape"
    return SegmentBatching(batching["segment_length"], batching.get("burn_in", 0),
                           batching.get("initial_state", "zeros"), batching.get("period")).label


def run_label(config: dict[str, Any], key: str, missing: str | None = None) -> str:
    """The group of a run: `key` looked up in its config (``batching`` is special-cased);
    several comma-separated keys give their values joined by `` / ``. A key the config
    lacks is an error, or `missing` if given."""
    if "," in key:
        return " / ".join(run_label(config, part.strip(), missing) for part in key.split(","))
    if key == "batching":
        return batching_label(config["batching"])
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
BATCHING_LABEL_KEYS = {"batching.mode", "batching.segment_length", "batching.burn_in",
                       "batching.period", "batching.initial_state"}  # -> `batching`


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
    # A segment key beside tape runs (which have no `batching.segment_length`, `burn_in`,
    # ...) varies only if it takes several values where it is present. Any other key that
    # only some configs have tells them apart (a run from before an option existed, shown
    # as "-", is not pooled with one that set it).
    def values(k: str) -> set[str]:
        if k.startswith("batching."):
            return {f[k] for f in flat if k in f}
        return {f.get(k, "-") for f in flat}

    return [k for k in keys
            if not any(k == p or k.startswith(p + ".") for p in NOT_ARMS)
            and len(values(k)) > 1]


def samples(runs: list[Path], metric: str) -> list[Sample]:
    """One `Sample` per seed of every run (and sweep member)."""
    found: list[Sample] = []
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
        for (member, seed), series in per_seed.items():
            own = config if member is None else member_config(config, sweep_members[member])
            found.append(Sample(own, series, run, int(seed)))
    return found


def run_config(run: Path) -> dict[str, Any]:
    """The composed config a run recorded (`<run>/.hydra/config.yaml`), in today's terms
    when its group choices are known (`.hydra/overrides.yaml`): keys added to rlmem since
    the run at their defaults (which keep the behaviour it had), keys that moved at their
    new place (`rlmem.configs.compose_run_config`). So a run of an older version is
    compared with today's runs key by key instead of differing in every renamed key."""
    recorded = yaml.safe_load((run / HYDRA_SUBDIR / "config.yaml").read_text())
    overrides = run / HYDRA_SUBDIR / "overrides.yaml"
    if not overrides.exists():
        return recorded
    return _in_todays_terms(yaml.safe_dump(recorded), overrides.read_text())


@functools.cache
def _in_todays_terms(recorded: str, overrides: str) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from rlmem.configs import compose_run_config

    try:
        config = compose_run_config(yaml.safe_load(recorded), yaml.safe_load(overrides) or [])
    except Exception:  # noqa: BLE001  (a key removed since: compare the run as recorded)
        return yaml.safe_load(recorded)
    return OmegaConf.to_container(config, resolve=False)


def step_unit(runs: list[Path]) -> str:
    """What the logged `step` counts (`rlmem.loop.step_unit_of` the runs' `loop.rollout`;
    the first run's config decides)."""
    config = run_config(runs[0]) if runs else {}
    return step_unit_of((config.get("loop") or {}).get("rollout", "steps"))


Curves = dict[str, tuple[np.ndarray, list[np.ndarray]]]  # label -> (steps [S], per-seed [S])


def order_key(name: str) -> tuple[int, float, str, str]:
    """tape first, then segment lengths ascending (the paper's SBB before an R2D2-style
    arm of the same length), then anything else by name."""
    head, _, rest = name.replace(" / ", ", ", 1).partition(", ")  # `--label batching,key`
    if head == "tape":
        return (0, 0.0, "", rest)
    length, _, variant = head[9:].partition("_")  # segment_l20_b10_p10_stored: an R2D2 arm
    if head.startswith("segment_l") and length.isdigit():
        return (1, float(length), variant, rest)
    return (2, 0.0, "", name)


FAMILY_KEYS = ("algo.name", "memory.name")  # choose a section's other keys


def _implied(key: str, configs: list[dict[str, Any]]) -> bool:
    """Whether `key` (say `algo.clip_eps`) only varies with its section's family key
    (`algo.name`): constant among the runs of each algorithm, so the name says it all."""
    section = key.split(".")[0]
    family = f"{section}.name"
    if family not in FAMILY_KEYS or key == family:
        return False
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for config in configs:
        groups[flatten(config).get(family, "-")].append(config)
    return len(groups) > 1 and all(key not in varying_keys(g) for g in groups.values())


def auto_label(configs: list[dict[str, Any]], facets: tuple[str, ...] = ()) -> str:
    """Every key that varies within a panel (the runs that share the `facets`' values;
    the keys that make `batching`'s label folded into it, and an algorithm's or
    memory model's own keys into its name when they differ only with it), or `batching`
    when nothing varies ("" if batching is a facet)."""
    covered = set(facets) | (BATCHING_LABEL_KEYS if "batching" in facets else set())
    panels: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for config in configs:
        panels[run_label(config, ",".join(facets), "-") if facets else ""].append(config)
    varying = sorted(set().union(*(varying_keys(group) for group in panels.values())))
    keys = [k for k in varying if k not in covered and not _implied(k, configs)]
    if not keys or set(keys) & BATCHING_LABEL_KEYS:
        keys = ["batching", *(k for k in keys if k not in BATCHING_LABEL_KEYS)]
    if keys == ["batching"] and "batching" in facets:
        return ""
    return ",".join(keys)


def auto_name(config: dict[str, Any], label: str) -> str:
    """An automatic group's legend: the batching's label alone (`tape`,
    `segment_l20_b10_stored`), else with `key=value` pairs by the keys' last parts
    (`segment_l20, gamma=0.9`)."""
    keys = [k.strip() for k in label.split(",")]
    if not label:
        return "all runs"
    if keys == ["batching"]:
        return run_label(config, "batching")
    return ", ".join(run_label(config, k, "-") if k == "batching"
                     else f"{k.rsplit('.', 1)[-1]}={run_label(config, k, '-')}" for k in keys)


def check_not_pooled(samples: list[Sample], label: str) -> None:
    """Refuse to pool, in one group, runs whose configs differ in a key not in `label`."""
    named = {k.strip() for k in label.split(",") if k.strip()}
    if "batching" in named:
        named |= BATCHING_LABEL_KEYS
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sample in samples:
        groups[run_label(sample.config, label, "-") if label else ""].append(sample.config)
    for name, configs in groups.items():
        hidden = [k for k in varying_keys(configs) if k not in named]
        if hidden:
            values = {k: sorted({flatten(c).get(k, "-") for c in configs}) for k in hidden}
            shown = "; ".join(f"{k}: {', '.join(v)}" for k, v in values.items())
            raise ValueError(
                f"group {name!r} would pool runs that differ in {shown}; add the key(s) "
                f"to --label, --rows or --cols (e.g. --label {label},{hidden[0]}) or plot "
                "them separately")


def check_seeds_once(name: str, group: list[Sample]) -> None:
    """Refuse a group holding one seed twice: two runs of the same config and seed (say,
    before and after a code change, or a run copied twice) are not two samples, and
    pooling them would narrow every interval."""
    first: dict[int, Path] = {}
    for sample in group:
        if sample.seed in first:
            raise ValueError(
                f"group {name!r} has seed {sample.seed} twice, from {first[sample.seed]} and "
                f"{sample.run}: one seed run twice is one sample, not two; pass only one of "
                "the runs (or plot them separately)")
        first[sample.seed] = sample.run


def load_curves(runs: list[Path], label: str, metric: str) -> Curves:
    """Per group: the common env steps and one curve per seed (`metric` at those steps).

    `label="auto"` groups by every config key that varies between the runs (see
    `auto_label`); any label refuses to pool runs that differ in keys it does not name."""
    return load_panels(runs, label, metric)[("", "")]


Panels = dict[tuple[str, str], Curves]  # (row value, column value) -> that panel's curves


def load_panels(runs: list[Path], label: str, metric: str, rows: str = "",
                cols: str = "") -> Panels:
    """`load_curves` split into panels: one per value of the `rows` keys x one per value
    of the `cols` keys (comma-separated; "" = one). An automatic label leaves the facet
    keys out of the line names; nothing is pooled over keys no option names."""
    found = samples(runs, metric)
    facets = tuple(k.strip() for k in f"{rows},{cols}".split(",") if k.strip())
    auto = label == "auto"
    if auto:
        label = auto_label([sample.config for sample in found], facets)
    check_not_pooled(found, ",".join(k for k in (label, *facets) if k))
    grouped: dict[tuple[str, str, str], list[Sample]] = defaultdict(list)
    for sample in found:
        config = sample.config
        name = auto_name(config, label) if auto else run_label(config, label)
        grouped[(*panel_of(config, rows, cols), name)].append(sample)
    panels: Panels = defaultdict(dict)
    for (row, col, name), group in grouped.items():
        check_seeds_once(name, group)
        series = [sample.series for sample in group]
        # Steps every seed logged (seeds of one run share steps; unfinished runs are cut).
        steps = sorted(set.intersection(*(set(s) for s in series)))
        if not steps:
            raise ValueError(f"group {name!r} has no step with {metric!r} in every seed")
        panels[(row, col)][name] = (np.array(steps),
                                    [np.array([s[t] for t in steps]) for s in series])
    return dict(panels)


def panel_of(config: dict[str, Any], rows: str = "", cols: str = "") -> tuple[str, str]:
    """The `(row, column)` panel a run falls in: its values of the `rows` / `cols` keys
    (`"-"` for a key its config lacks, `""` when there is no such facet)."""
    return tuple(run_label(config, keys, "-") if keys else "" for keys in (rows, cols))


def panel_values(runs: list[Path], key: str, rows: str = "",
                 cols: str = "") -> dict[tuple[str, str], float]:
    """`key`'s value (a number) in each panel's runs, e.g. ``algo.random_epochs`` where
    each task's random phase ends. Every run of a panel must agree: a panel whose runs
    differ, or lack the key, is an error naming the panel and what was found."""
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for run in runs:
        config = run_config(run)
        found[panel_of(config, rows, cols)].add(run_label(config, key, "-"))
    out = {}
    for where, values in found.items():
        panel = " / ".join(v for v in where if v) or "the figure"
        if len(values) != 1 or "-" in values:
            raise ValueError(f"{key!r} must have one value in each panel; {panel} has "
                             f"{sorted(values)} ('-': a run whose config lacks the key)")
        (value,) = values
        try:
            out[where] = float(value)
        except ValueError:
            raise ValueError(f"{key!r} is {value!r} in {panel}, not a number") from None
    return out


# -- table cells shared by the scripts ---------------------------------------------------
def mean_ci_cell(values: np.ndarray, rng: np.random.Generator) -> str:
    """`mean [low, high]`: values `[seeds]`, with the 95 % bootstrap CI of the mean."""
    from rlmem.stats import bootstrap_mean_ci

    low, high = bootstrap_mean_ci(values, rng)
    return f"{values.mean():.3f} [{low:.3f}, {high:.3f}]"


def first_reach_cell(steps: np.ndarray, series: list[np.ndarray], threshold: float,
                     thousands: bool = False) -> str:
    """`mean step (reaching/seeds)`: the first logged step at which each seed's curve is
    >= `threshold`, averaged over the seeds that get there; `never (0/n)` if none does."""
    hits = [steps[np.argmax(v >= threshold)] for v in series if (v >= threshold).any()]
    if not hits:
        return f"never (0/{len(series)})"
    mean = f"{np.mean(hits):,.0f}" if thousands else f"{np.mean(hits):.0f}"
    return f"{mean} ({len(hits)}/{len(series)})"
