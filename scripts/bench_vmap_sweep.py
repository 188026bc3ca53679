"""K hyper-parameter settings x S seeds: one vectorised sweep against separate processes.

    python scripts/bench_vmap_sweep.py           # the paper's RepeatFirst/FFM/TBB, K=4 x S=2
    python scripts/bench_vmap_sweep.py --quick   # tiny networks and a short run (smoke test)

The same K x S runs (K = 4: two learning rates x two gammas; S seeds), trained three ways,
each row `train.py` end to end (process start, config, compile or cache load, training,
metrics and the final checkpoint), one row after another on the same machine:

1. `vmap`: one process, `sweep.vmap=...` x `num_seeds=S` (one compiled program);
2. `K jobs x S seeds`: K processes one after another (what `-m` over the K settings does),
   each vmapping its S seeds;
3. `K x S jobs`: K x S processes, one run each.

Each row starts from its own empty persistent compilation cache, so its first process
compiles and the rest of its processes load that program from the cache, as a real
sweep on a fresh machine would. Printed: wall seconds per row and the ratio to row 1.
The schedule is the paper protocol shortened to `--iterations` epochs, `--random` of them
random (the replay capacity cut to 100k transitions: it does not change the time).
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VALUES = {"algo.optim.learning_rate": [1e-4, 3e-4], "algo.gamma": [0.9, 0.99]}
QUICK = ["memory.trace_size=4", "memory.context_size=2", "memory.output_size=8",
         "algo.network.hidden_size=8", "algo.batch_size=200", "eval.episodes=4"]


def vmap_override() -> str:
    """`sweep.vmap={key:[v, ...], ...}` for `VALUES`."""
    items = ",".join(f"{key}:[{','.join(map(str, values))}]" for key, values in VALUES.items())
    return f"sweep.vmap={{{items}}}"


def train(overrides: list[str], run_dir: Path, cache: str) -> float:
    """Wall seconds of one `train.py` process (which must succeed)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={run_dir}"],
        cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "RLMEM_JAX_CACHE": cache})
    if proc.returncode:
        raise SystemExit(f"train.py failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny networks, short run")
    parser.add_argument("--seeds", type=int, default=2, help="S, seeds per setting")
    parser.add_argument("--iterations", type=int, default=300, help="epochs per run")
    parser.add_argument("--random", type=int, default=100, help="random-phase epochs")
    args = parser.parse_args()
    if args.quick:
        args.iterations, args.random = 40, 20
    base = ["+experiment=paper/repeat_first", "memory=ffm", "batching=tape", "logger=none",
            f"loop.iterations={args.iterations}", f"algo.random_epochs={args.random}",
            "algo.buffer_capacity=100000", "checkpoint.interval=null",
            *(QUICK if args.quick else [])]
    settings = [dict(zip(VALUES, combo, strict=True))
                for combo in itertools.product(*VALUES.values())]
    as_overrides = lambda setting: [f"{k}={v}" for k, v in setting.items()]
    k, s = len(settings), args.seeds
    rows = [
        (f"vmap: 1 process, K={k} members x S={s} seeds",
         [base + [vmap_override(), f"num_seeds={s}"]]),
        (f"K={k} jobs x S={s} seeds each", [base + as_overrides(x) + [f"num_seeds={s}"]
                                            for x in settings]),
        (f"K x S = {k * s} jobs, one run each",
         [base + as_overrides(x) + [f"seed={i}"] for x in settings for i in range(s)]),
    ]
    print(f"command: python scripts/bench_vmap_sweep.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"runs: {k} x {s}, {args.iterations} epochs each ({args.random} random)\n")
    print("| how | processes | wall (s) | vs vmap |")
    print("|---|---|---|---|")
    first = None
    for name, jobs in rows:
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
            wall = sum(train(job, Path(out) / str(i), cache) for i, job in enumerate(jobs))
        first = first or wall
        print(f"| {name} | {len(jobs)} | {wall:.1f} | {wall / first:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
