"""The paper's training epoch, side by side: the reference implementation against rlmem.

One **epoch** is the paper's (PAPER.md): collect one episode of RepeatFirstEasy, then one
Double DQN update on a 1,000-transition tape (TBB) with FFM (trace 64, context 4, output
256), plus the evaluation cadence (20 greedy episodes every 10 epochs), averaged over whole
10-epoch blocks so every block holds exactly one evaluation. Only training epochs are timed:
both sides first play `--random-epochs` episodes of uniform random actions (the random
phase, which runs no update) and nothing is timed until the compiled programs exist.

* **reference**: the paper's own code (`tape_dqn.py` with
  `experiments/repeat_first_easy/tape_ffm.yaml`, only `collect.random_epochs` changed so
  the random phase is short), run unchanged in a subprocess by the interpreter given as
  `--reference-python` (the reference needs equinox, popgym and gymnasium, not rlmem's
  environment). A stand-in for its `tqdm` progress bar stamps the time at the start of
  every epoch; that is the only thing added. This script fetches and installs nothing:
  give it a checkout (`--reference /path/to/memory-monoids`) and an interpreter that can
  run it.
* **rlmem**: `+experiment=paper/repeat_first memory=ffm batching=tape` (one whole episode
  per iteration, `loop.rollout=episode`), the same number of random epochs, then
  `run_chunk` over `--epochs` training epochs (`--epochs / 10` evaluation periods).

Each side's figure is the best of `--repeats` consecutive blocks of `--epochs` epochs; with
`--rounds 2` the two sides run alternately twice (load on a shared machine then hits both)
and the best block of every round counts.

    python scripts/bench_reference.py --reference /tmp/memory-monoids \\
        --reference-python /tmp/refvenv/bin/python
    python scripts/bench_reference.py --reference ... --reference-python ... --quick
    python scripts/bench_reference.py ... --breakdown   # also rlmem without the evaluation

The reference's environment (the versions of its requirements_freeze.txt, on CPU):

    python -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install "jax[cpu]==0.4.19" \\
        equinox==0.11.1 optax==0.1.7 chex==0.1.82 jaxtyping==0.2.21 typeguard==2.13.3 \\
        popgym==1.0.4 gymnasium==0.29.1 "numpy<2" scipy==1.11.4 pyyaml tqdm
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONF = Path(__file__).resolve().parents[1] / "conf"
REFERENCE_CONFIG = "experiments/repeat_first_easy/tape_ffm.yaml"
REFERENCE_SCRIPT = "tape_dqn.py"

# Runs inside the reference's interpreter: the reference's tape_dqn.py, unchanged, with a
# stand-in for tqdm that stamps the start of every epoch and stops the run after the last
# timed one. Prints one JSON line: the jax version and every epoch's seconds.
REFERENCE_DRIVER = r"""
import json, os, runpy, sys, time

reference, config_out, random_epochs, stop_after, seed = sys.argv[1:6]
random_epochs, stop_after, seed = int(random_epochs), int(stop_after), int(seed)
import yaml
with open(os.path.join(reference, "experiments/repeat_first_easy/tape_ffm.yaml")) as f:
    config = yaml.safe_load(f)
config["collect"]["random_epochs"] = random_epochs
config["seed"] = seed
with open(config_out, "w") as f:
    yaml.safe_dump(config, f)

stamps = []

class Stop(Exception):
    pass

class Progress:  # tape_dqn.py calls update() once at the start of every epoch
    def __init__(self, *args, **kwargs):
        pass
    def update(self, n=1):
        stamps.append(time.perf_counter())
        if len(stamps) > stop_after:
            raise Stop
    def set_description(self, *args, **kwargs):
        pass

import tqdm
tqdm.tqdm = Progress
sys.path.insert(0, reference)
os.chdir(reference)
sys.argv = ["tape_dqn.py", config_out]
try:
    runpy.run_path("tape_dqn.py", run_name="__main__")
except Stop:
    pass
import jax
seconds = [b - a for a, b in zip(stamps, stamps[1:])]
print(json.dumps({"jax": jax.__version__, "epoch_seconds": seconds}))
"""


def reference_epochs(args, stop_after: int) -> tuple[str, list[float]]:
    """(jax version, seconds of every epoch 1..stop_after) of one reference run."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        cmd = [args.reference_python, "-c", REFERENCE_DRIVER, str(args.reference),
               str(Path(tmp) / "config.yaml"), str(args.random_epochs), str(stop_after),
               str(args.seed)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env,
                              timeout=args.timeout)
    if done.returncode != 0:
        sys.exit(f"the reference run failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["jax"], result["epoch_seconds"]


def reference_blocks(args) -> tuple[str, list[float], dict[str, float]]:
    """Seconds per epoch of each timed block, and the split into eval / other epochs."""
    warmup = 10  # the first training epochs compile the update and the evaluation
    first = args.random_epochs + warmup  # index of the first timed epoch (0-based)
    total = first + args.epochs * args.repeats
    version, secs = reference_epochs(args, total)
    blocks = [secs[first + i * args.epochs: first + (i + 1) * args.epochs]
              for i in range(args.repeats)]
    timed = secs[first:total]
    # Epoch k (1-based) evaluates when k % 10 == 0 (tape_dqn.py's eval cadence).
    evals = [s for i, s in enumerate(timed, start=first + 1) if i % 10 == 0]
    others = [s for i, s in enumerate(timed, start=first + 1) if i % 10 != 0]
    split = {"no eval": sum(others) / len(others), "eval": sum(evals) / len(evals)}
    return version, [sum(b) / len(b) for b in blocks], split


def rlmem_experiment(args, *overrides: str):
    from hydra import compose, initialize_config_dir

    from rlmem.config import build

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[
            "+experiment=paper/repeat_first", "memory=ffm", "batching=tape",
            f"algo.random_epochs={args.random_epochs}", f"seed={args.seed}", "logger=none",
            *([f"algo.buffer_capacity={args.buffer}"] if args.buffer else []), *overrides,
        ])
    return build(cfg)


def rlmem_blocks(args, *overrides: str, interval: int = 10) -> list[float]:
    """Seconds per epoch of each timed block of rlmem's compiled loop."""
    import jax

    loop = rlmem_experiment(args, f"eval.interval={interval}", *overrides).loop
    state = loop.init([args.seed])
    periods = args.epochs // interval
    # The random phase, in chunks of the timed size (one compiled program).
    for _ in range(-(-args.random_epochs // args.epochs)):
        state, _ = jax.block_until_ready(loop.run_chunk(state, periods))
    blocks = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        state, _ = jax.block_until_ready(loop.run_chunk(state, periods))
        blocks.append((time.perf_counter() - t0) / args.epochs)
    return blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True,
                        help="a checkout of the reference implementation (memory-monoids)")
    parser.add_argument("--reference-python", default=sys.executable,
                        help="an interpreter with the reference's requirements")
    parser.add_argument("--epochs", type=int, default=100,
                        help="training epochs per timed block (a multiple of 10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks per side and round")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run both sides alternately this many times")
    parser.add_argument("--random-epochs", type=int, default=100,
                        help="random-action episodes played first (a multiple of --epochs)")
    parser.add_argument("--buffer", type=int, default=None,
                        help="rlmem replay capacity (default: the preset's 4,000,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--breakdown", action="store_true",
                        help="also time rlmem with one 1-episode evaluation per block")
    parser.add_argument("--quick", action="store_true", help="--epochs 20 --repeats 2")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds allowed to one reference run")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.repeats, args.random_epochs = 20, 2, 20
    if args.epochs % 10 or args.random_epochs % args.epochs:
        parser.error("--epochs must be a multiple of 10 and --random-epochs of --epochs")
    for needed in (REFERENCE_SCRIPT, REFERENCE_CONFIG):
        if not (args.reference / needed).is_file():
            parser.error(f"{args.reference} has no {needed}: not a memory-monoids checkout")

    import jax

    from rlmem.compile_cache import enable_compilation_cache

    enable_compilation_cache()
    ref_blocks, ours, plain = [], [], []
    split: dict[str, float] = {}
    ref_jax = "?"
    for _ in range(args.rounds):
        ref_jax, blocks, split = reference_blocks(args)
        ref_blocks += blocks
        ours += rlmem_blocks(args)
        if args.breakdown:
            plain += rlmem_blocks(args, "eval.episodes=1", interval=args.epochs)
    ref, mine = min(ref_blocks), min(ours)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; reference: jax {ref_jax} "
          f"(its own interpreter); rlmem: jax {jax.__version__} ({jax.default_backend()})")
    print(f"RepeatFirstEasy / FFM 64x4->256 / tape batching / Double Dueling DQN; "
          f"{args.random_epochs} random epochs first; best of {len(ours)} blocks of "
          f"{args.epochs} training epochs per side\n")
    print("| implementation | ms / epoch | epochs / s | vs reference |")
    print("|---|---|---|---|")
    for name, sec in [("reference (memory-monoids tape_dqn.py)", ref),
                      ("rlmem (run_chunk)", mine)]:
        print(f"| {name} | {sec * 1e3:.1f} | {1 / sec:.1f} | {ref / sec:.2f}x |")
    print()
    print("every block (ms / epoch): reference "
          + ", ".join(f"{b * 1e3:.1f}" for b in ref_blocks)
          + "; rlmem " + ", ".join(f"{b * 1e3:.1f}" for b in ours))
    print(f"reference, last round: {split['no eval'] * 1e3:.1f} ms per epoch without "
          f"evaluation, {split['eval'] * 1e3:.1f} ms per epoch that evaluates")
    if plain:
        print(f"rlmem without the paper's evaluation (1 episode per block): "
              f"{min(plain) * 1e3:.1f} ms / epoch")


if __name__ == "__main__":
    main()
