"""Benchmark the jitted training loop on the paper's RepeatFirstEasy / FFM / DQN setting.

Three tables, each measured side by side in one run:

1. Wall time per training epoch (collect one episode + one update on 1,000 transitions)
   against the update alone (the floor), and against the paper's reference implementation
   (about 3 epochs/s on 2 CPU cores: a number quoted, not measured here).
2. Tape-based (TBB) vs segment-based batching (SBB, L = 10, 20, 50, 100): wall time of the
   same number of updates (and of whole epochs).
3. Env steps per second of the whole loop with num_seeds = 1, 4, 10 (vmapped seeds).
4. The paper's protocol *with* its random phase (half the epochs random, as the paper),
   vmapped seeds against one seed: the random phase must cost no updates for any seed.
5. `loop.rollout=episode` (the presets' one whole episode per iteration) against
   `loop.rollout=steps` (a fixed max-length window): the while-loop's cost on a
   fixed-length task, and what one iteration costs on a variable-length one.

    python scripts/bench_training.py --quick                  # a subset, a few minutes
    python scripts/bench_training.py --epochs 20 --repeats 1  # all three tables (~7 min)
    python scripts/bench_training.py --epochs 200 --seeds 1 4 10 16
    python scripts/bench_training.py --tables rollout            # one table

Most of the wall time is compiling (one loop per configuration); the timings themselves
exclude compilation (each configuration runs once before it is timed).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import jax
from hydra import compose, initialize_config_dir

from rlmem.compile_cache import enable_compilation_cache
from rlmem.config import build

CONF = Path(__file__).resolve().parents[1] / "conf"
REFERENCE_EPOCHS_PER_S = 3.0  # the paper's reference code on 2 CPU cores (quoted in the issue)


def experiment(*overrides: str, buffer: int, task: str = "repeat_first"):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[
            f"+experiment=paper/{task}", f"algo.buffer_capacity={buffer}",
            "algo.random_epochs=0", "logger=none", *overrides,
        ])
    return build(cfg)


def block(tree):
    return jax.block_until_ready(tree)


def time_chunks(loop, state, periods: int, repeats: int) -> tuple[float, object]:
    """Seconds per call of `run_chunk(state, periods)`, after one compile-and-fill call."""
    state, _ = block(loop.run_chunk(state, periods))  # compile + fill the store
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, _ = block(loop.run_chunk(state, periods))
        best = min(best, time.perf_counter() - t0)
    return best, state


def time_updates(exp, state, updates: int, repeats: int) -> float:
    """Seconds for `updates` DQN updates alone (sample + loss + optimiser), on a filled store."""
    algo = exp.algo
    one = jax.tree.map(lambda x: x[0], state.algo)

    @jax.jit
    def run(s, key):
        return jax.lax.scan(algo.update, s, jax.random.split(key, updates))

    block(run(one, jax.random.PRNGKey(0)))
    best = float("inf")
    for i in range(repeats):
        t0 = time.perf_counter()
        block(run(one, jax.random.PRNGKey(i + 1)))
        best = min(best, time.perf_counter() - t0)
    return best


def epoch_table(args) -> list[str]:
    exp = experiment(f"eval.interval={args.epochs}", "eval.episodes=1", buffer=args.buffer)
    loop = exp.loop
    t_chunk, state = time_chunks(loop, loop.init([0]), 1, args.repeats)
    epoch = t_chunk / args.epochs
    update = time_updates(exp, state, args.epochs, args.repeats) / args.epochs
    paper = experiment(buffer=args.buffer)  # eval every 10 epochs, 20 episodes
    t_paper, _ = time_chunks(paper.loop, paper.loop.init([0]), args.epochs // 10, args.repeats)
    epoch_eval = t_paper / args.epochs
    rows = [
        "| measurement | ms / epoch | epochs / s | vs update alone | vs reference (3 epochs/s) |",
        "|---|---|---|---|---|",
    ]
    for name, sec in [
        ("update alone (1,000-transition tape, the floor)", update),
        ("epoch: collect 1 episode + 1 update", epoch),
        ("epoch incl. the paper's eval (20 greedy episodes / 10 epochs)", epoch_eval),
    ]:
        rows.append(f"| {name} | {sec * 1e3:.2f} | {1 / sec:.1f} | {sec / update:.2f}x | "
                    f"{(1 / sec) / REFERENCE_EPOCHS_PER_S:.1f}x |")
    return rows


def batching_table(args) -> list[str]:
    rows = [
        f"| batching | {args.epochs} updates alone (s) | vs TBB "
        f"| {args.epochs} epochs (s) | vs TBB |",
        "|---|---|---|---|---|",
    ]
    modes = [("TBB (tape)", ["batching=tape"])] + [
        (f"SBB L={L}", ["batching=segment", f"batching.segment_length={L}"])
        for L in args.lengths
    ]
    base_u = base_e = None
    for name, overrides in modes:
        exp = experiment(f"eval.interval={args.epochs}", "eval.episodes=1", *overrides,
                         buffer=args.buffer)
        t_epochs, state = time_chunks(exp.loop, exp.loop.init([0]), 1, args.repeats)
        t_updates = time_updates(exp, state, args.epochs, args.repeats)
        base_u, base_e = base_u or t_updates, base_e or t_epochs
        rows.append(f"| {name} | {t_updates:.3f} | {t_updates / base_u:.2f}x | "
                    f"{t_epochs:.3f} | {t_epochs / base_e:.2f}x |")
    return rows


def seeds_table(args) -> list[str]:
    rows = ["| num_seeds | env steps / s (all seeds) | per seed | vs 1 seed |", "|---|---|---|---|"]
    base = None
    for n in args.seeds:
        exp = experiment(f"eval.interval={args.epochs}", "eval.episodes=1",
                         f"num_seeds={n}", buffer=args.buffer)
        sec, _ = time_chunks(exp.loop, exp.loop.init(exp.seeds), 1, args.repeats)
        rate = n * args.epochs * exp.loop.settings.steps_per_iteration / sec
        base = base or rate
        rows.append(f"| {n} | {rate:,.0f} | {rate / n:,.0f} | {rate / base:.2f}x |")
    return rows


def protocol_table(args) -> list[str]:
    """Wall time of `E` random + `E` training epochs (eval every `E`), by num_seeds."""
    e = args.epochs
    rows = ["| num_seeds | wall time (s) | vs 1 seed | per seed vs 1 seed |",
            "|---|---|---|---|"]
    base = None
    for n in args.seeds:
        exp = experiment(f"algo.random_epochs={e}", f"loop.iterations={2 * e}",
                         f"eval.interval={e}", "eval.episodes=1", f"num_seeds={n}",
                         buffer=args.buffer)
        block(exp.loop.run_chunk(exp.loop.init(exp.seeds), 2))  # compile
        best = float("inf")
        for _ in range(args.repeats):
            state = block(exp.loop.init(exp.seeds))
            t0 = time.perf_counter()
            block(exp.loop.run_chunk(state, 2))
            best = min(best, time.perf_counter() - t0)
        base = base or best
        rows.append(f"| {n} | {best:.2f} | {best / base:.2f}x | {best / base / n:.2f}x |")
    return rows


def rollout_table(args) -> list[str]:
    rows = ["| task | loop.rollout | ms / iteration | env steps / iteration | vs steps |",
            "|---|---|---|---|---|"]
    for task in ("repeat_first", "position_only_cartpole"):
        base = None
        for mode in ("steps", "episode"):
            exp = experiment(f"eval.interval={args.epochs}", "eval.episodes=1",
                             f"loop.rollout={mode}", buffer=args.buffer, task=task)
            sec, state = time_chunks(exp.loop, exp.loop.init([0]), 1, args.repeats)
            chunks = args.repeats + 1  # mean env steps per iteration over every chunk run
            per_iter = int(state.env_steps[0]) / (chunks * args.epochs)
            base = base or sec
            rows.append(f"| {task} | {mode} | {sec / args.epochs * 1e3:.2f} | "
                        f"{per_iter:.1f} | {sec / base:.2f}x |")
    return rows


TABLES = {
    "epoch": ("Epoch time (RepeatFirstEasy, FFM, tape, DQN)", epoch_table),
    "batching": ("TBB vs SBB, same number of updates", batching_table),
    "seeds": ("Throughput vs num_seeds", seeds_table),
    "protocol": ("The paper's protocol incl. its random phase, vmapped seeds", protocol_table),
    "rollout": ("loop.rollout: one episode vs a fixed window (FFM, tape, DQN)", rollout_table),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="20 epochs, 1 repeat, L in {20, 100}, seeds in {1, 4}")
    parser.add_argument("--epochs", type=int, default=100, help="epochs/updates per timing")
    parser.add_argument("--repeats", type=int, default=3, help="timings per cell (best kept)")
    parser.add_argument("--buffer", type=int, default=100_000, help="replay capacity")
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 20, 50, 100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4, 10])
    parser.add_argument("--tables", nargs="+", choices=list(TABLES), default=list(TABLES))
    args = parser.parse_args()
    if args.quick:  # about 4 minutes on a busy 2-core machine, most of it compiling
        args.epochs, args.repeats, args.lengths, args.seeds = 20, 1, [20, 100], [1, 4]
    enable_compilation_cache()
    print(f"machine: {platform.machine()} {platform.system()}, jax {jax.__version__} "
          f"({jax.default_backend()}), epochs per timing {args.epochs}, "
          f"replay capacity {args.buffer}\n")
    for title, table in (TABLES[name] for name in args.tables):
        print(f"### {title}\n")
        print("\n".join(table(args)) + "\n", flush=True)


if __name__ == "__main__":
    main()
