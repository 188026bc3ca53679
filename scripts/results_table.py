"""The evidence table of finished runs: per task x memory model x arm, over seeds.

    python scripts/results_table.py results/paper
    python scripts/results_table.py multirun/my-grid --threshold 0.9 --commands

Columns (mean over seeds and the 95 % bootstrap CI of that mean): the final running-best
eval return (`eval/best_return`, the paper's metric), the final plain eval return
(`eval/return` on fresh env seeds), the first step at which seeds' eval return reaches
`--threshold` (mean over the seeds that do, and how many), and the training time of the
job (its chunks' wall time, compiling included, all of its vmapped seeds together). Below
each task x model, whether tape batching's final running best is >= every segment
length's, at the table's three decimals. Arms are told apart by every config key that
varies within a task x model (`--label` to choose; runs that differ elsewhere are never
pooled). `--commands` lists the command that made each run directory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

from rlmem.results import (
    Curves,
    find_runs,
    first_reach_cell,
    load_panels,
    mean_ci_cell,
    order_key,
    step_unit,
)
from rlmem.rundir import HYDRA_SUBDIR

CELL = ("env.name", "memory.name")  # a table block: one task x one memory model


def _minutes(curve: tuple[np.ndarray, list[np.ndarray]] | None) -> str:
    if curve is None:
        return "-"
    return f"{np.mean([np.sum(s) for s in curve[1]]) / 60:.1f} min"


def tape_verdict(best: Curves) -> str:
    """Whether the tape arm's mean final running best is >= every segment arm's.

    Compared at the table's precision (three decimals): a float32 sum of CartPole's 200
    rewards of 0.005 is 0.99975 in one run and 0.99999 in another, and both are solved.
    """
    finals = {name: round(float(np.mean([s[-1] for s in best[name][1]])), 3) for name in best}
    tape = [n for n in finals if n.split(",")[0] == "tape"]
    segments = [n for n in finals if n.startswith("segment_l")]
    if len(tape) != 1 or not segments:
        return ""
    beaten = [n for n in segments if finals[n] > finals[tape[0]]]
    if not beaten:
        return f"tape >= every segment length: yes ({finals[tape[0]]:.3f})"
    shown = ", ".join(f"{n} {finals[n]:.3f}" for n in sorted(beaten, key=order_key))
    return f"tape >= every segment length: no (tape {finals[tape[0]]:.3f}; higher: {shown})"


def results_table(runs: list[Path], label: str = "auto", threshold: float = 0.9,
                  seed: int = 0) -> str:
    """The markdown table (and verdict lines) for `runs`."""
    rng = np.random.default_rng(seed)
    rows, cols = CELL
    best = load_panels(runs, label, "eval/best_return", rows, cols)
    plain = load_panels(runs, label, "eval/return", rows, cols)
    try:
        times = load_panels(runs, label, "perf/chunk_seconds", rows, cols)
    except ValueError:  # runs written before perf/* existed
        times = {}
    unit = step_unit(runs)
    out = [f"| task | memory | arm | seeds | final running-best eval return (95% CI) "
           f"| final eval return (95% CI) | first {unit[:-1]} >= {threshold:g} (seeds) "
           "| training time per job |", "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for cell in sorted(best):
        for name in sorted(best[cell], key=order_key):
            finals = np.array([s[-1] for s in best[cell][name][1]])
            plain_finals = np.array([s[-1] for s in plain[cell][name][1]])
            out.append(
                f"| {cell[0]} | {cell[1]} | {name} | {len(finals)} | {mean_ci_cell(finals, rng)} "
                f"| {mean_ci_cell(plain_finals, rng)} "
                f"| {first_reach_cell(*plain[cell][name], threshold, thousands=True)} "
                f"| {_minutes(times.get(cell, {}).get(name))} |")
        if verdict := tape_verdict(best[cell]):
            verdicts.append(f"- {cell[0]} x {cell[1]}: {verdict}")
    return "\n".join(out + ([""] + verdicts if verdicts else []))


def commands(runs: list[Path]) -> str:
    """`python train.py <overrides>` for each run directory, from `.hydra/overrides.yaml`."""
    lines = []
    for run in runs:
        path = run / HYDRA_SUBDIR / "overrides.yaml"
        if path.exists():
            overrides = yaml.safe_load(path.read_text()) or []
            lines.append(f"- `{run}`: `python train.py {' '.join(overrides)}`")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run dirs or sweep dirs")
    parser.add_argument("--label", default="auto",
                        help="config keys telling arms apart (default: every key that "
                             "varies within a task x model)")
    parser.add_argument("--threshold", type=float, default=0.9,
                        help="eval return whose first crossing is reported (default 0.9)")
    parser.add_argument("--commands", action="store_true",
                        help="also list the command of every run directory")
    args = parser.parse_args()
    runs = find_runs(args.paths)
    print(results_table(runs, args.label, args.threshold))
    if args.commands:
        print("\n" + commands(runs))


if __name__ == "__main__":
    main()
