"""What a sweep job pays to compile: cold cache, warm cache, swept scalars, a changed shape.

    python scripts/bench_sweep.py --quick      # tiny networks (about a minute on 2 CPU cores)
    python scripts/bench_sweep.py              # the default network sizes (FFM 64x4, 256 wide)

Every row is a fresh process (as a sweep job is) sharing one persistent compilation cache
directory that starts empty. Each process builds the config, calls `run_chunk` for one
period twice, and reports the first call (compile or cache load, plus one period) and the
second (one period). Rows run one after another in this order:

1. `learning_rate=1e-4` with the empty cache: a real compile;
2. the same config again: loaded from the cache;
3. `learning_rate=3e-3, adam_eps=1e-6, weight_decay=0.1`: the optimiser scalars are data
   (the loop state's `hparams`), so the program is the same and comes from the cache;
4. `gamma=0.5`: data as well (every sweepable hyper-parameter is), from the cache;
5. `batch_size=32`: a different array shape, so a new program is compiled.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["memory.trace_size=4", "memory.context_size=2", "memory.output_size=8",
         "algo.network.hidden_size=8"]
COMMON = ["algo.batch_size=64", "algo.buffer_capacity=2000", "algo.random_epochs=0",
          "algo.optim.warmup_updates=2", "eval.interval=5", "eval.episodes=2", "logger=none"]
ROWS = [
    ("lr 1e-4, empty cache", ["algo.optim.learning_rate=1e-4"]),
    ("lr 1e-4 again", ["algo.optim.learning_rate=1e-4"]),
    ("lr 3e-3, eps 1e-6, wd 0.1", ["algo.optim.learning_rate=3e-3", "algo.optim.adam_eps=1e-6",
                                   "algo.optim.weight_decay=0.1"]),
    ("gamma 0.5", ["algo.optim.learning_rate=1e-4", "algo.gamma=0.5"]),
    ("batch 32", ["algo.optim.learning_rate=1e-4", "algo.batch_size=32"]),
]


def child(overrides: list[str]) -> None:
    """One sweep job's compile: build, then time two one-period `run_chunk` calls."""
    import jax
    from hydra import compose, initialize_config_dir

    from rlmem.compile_cache import enable_compilation_cache
    from rlmem.config import build

    enable_compilation_cache()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        exp = build(compose("config", overrides=overrides))
    state = exp.loop.init(exp.seeds)
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        state, metrics = exp.loop.run_chunk(state, 1)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - t0)
    print("RESULT " + json.dumps(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny networks")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    base = COMMON + (QUICK if args.quick else [])
    print("| job | first run_chunk call (s) | steady call (s) | compile or load (s) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "RLMEM_JAX_CACHE": cache}
        for name, extra in ROWS:
            out = subprocess.run(
                [sys.executable, __file__, "--child", *base, *extra],
                cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
            first, steady = json.loads(out.split("RESULT ", 1)[1])
            print(f"| {name} | {first:.2f} | {steady:.3f} | {first - steady:.2f} |", flush=True)


if __name__ == "__main__":
    main()
