"""Benchmark: forward + backward time of every registered memory model over one tape.

For each model (paper sizes by default) and tape length T, the time of one jitted
`grad` of `sum(y ** 2)` with respect to the parameters, for the associative scan and the
sequential fold side by side (both in the same run, on the same data). Tapes hold random
episodes (about 1% of steps start one). GRU, LSTM and MLP have one evaluation order only.
The machine's load is not controlled: compare ratios within one run, not across runs.

Usage:
  python scripts/bench_memory.py                       # T in 1,000 and 10,000
  python scripts/bench_memory.py --lengths 1000 10000 100000 --models ffm lru
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from rlmem.memory import MEMORY_MODELS, make_memory, memory_class

INPUT_SIZE = 32
SEQUENTIAL_ONLY = {"gru", "lstm", "mlp"}  # no associative evaluation order


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up (compiling) call."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - begin)
    return float(np.median(times))


def step_fn(model):
    def loss(params, x, start, carry):
        y, _ = model.apply(params, x, start, carry)
        return jnp.sum(y**2)

    return jax.jit(jax.grad(loss))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--models", nargs="+", default=sorted(MEMORY_MODELS))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    print(f"backend: {jax.default_backend()}, jax {jax.__version__}, input size {INPUT_SIZE}")
    print("| model | T | associative (ms) | sequential (ms) | assoc / seq |")
    print("|---|---:|---:|---:|---:|")
    for name in args.models:
        try:
            memory_class(name)
        except ImportError as err:
            print(f"| {name} | — | not importable ({err}) | | |")
            continue
        models = {s: make_memory(name, scan=s) for s in ("associative", "sequential")}
        has_associative = name not in SEQUENTIAL_ONLY
        carry = models["sequential"].initialize_carry()
        x0 = np.zeros((2, INPUT_SIZE), np.float32)
        params = models["sequential"].init(jax.random.PRNGKey(0), x0, np.zeros(2, bool), carry)
        grads = {s: step_fn(m) for s, m in models.items()}
        for length in args.lengths:
            x = rng.normal(size=(length, INPUT_SIZE)).astype(np.float32)
            start = rng.random(length) < 0.01
            run = lambda s: timed(lambda: grads[s](params, x, start, carry), args.repeats)
            seq = run("sequential")
            assoc = run("associative") if has_associative else float("nan")
            assoc_text = f"{assoc * 1e3:.1f}" if has_associative else "—"
            ratio = f"{assoc / seq:.2f}" if has_associative else "—"
            print(f"| {name} | {length:,} | {assoc_text} | {seq * 1e3:.1f} | {ratio} |",
                  flush=True)


if __name__ == "__main__":
    main()
