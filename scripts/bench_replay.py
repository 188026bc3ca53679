"""Benchmark the tape store and its samplers against a numpy TapeBuffer-style loop.

Prints markdown tables:
  1. cost of `add` ([num_envs, T] chunk) and of one sample vs capacity, with the jitted
     TBB / SBB samplers and a numpy buffer that loops over sampled episodes in Python (the
     reference implementation's idea, rewritten here) measured side by side;
  2. the same vs batch size at one capacity;
  3. the memory footprint of a 4M-transition store for the paper's observation sizes;
  4. prioritised vs uniform replay vs capacity (`--prioritised`: only this table): `add`
     with the priority bookkeeping, prioritised TBB (episodes drawn by priority) and R2D2
     sequences (drawn by priority) beside their uniform samplers on the same store, and a
     priority update of one batch's units; O(log capacity) shows as a near-constant cost.

    .venv/bin/python scripts/bench_replay.py --quick
    .venv/bin/python scripts/bench_replay.py --capacities 10000 100000 1000000 4000000
    .venv/bin/python scripts/bench_replay.py --prioritised --capacities 10000 100000 1000000 4000000
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from rlmem.data import add, init_store, sample_segments, sample_tape
from rlmem.data import priority as pr
from rlmem.data.prioritised_sampler import sample_segments_prioritised, sample_tape_prioritised
from rlmem.types import Transition

# Paper obs sizes: popgym Flatten one-hot + Antialias flag + PreviousAction one-hot if used.
PAPER_OBS = {
    "RepeatFirst": 4 + 1,
    "RepeatPrevious": 4 + 1,
    "CountRecall": 4 + 1 + 27,
    "Pos/NoisyPos/Vel CartPole": 2 + 1 + 2,
    "Autoencode": 6 + 1 + 4,
    "MineSweeper": 3 + 1 + 8,
    "MultiarmedBandit": 2 + 1 + 10,
}


def example(obs_dim: int) -> Transition:
    b = jnp.bool_(False)
    return Transition(
        obs=jnp.zeros(obs_dim),
        action=jnp.int32(0),
        reward=jnp.float32(0),
        next_obs=jnp.zeros(obs_dim),
        terminated=b,
        truncated=b,
        start=b,
        mask=b,
    )


def random_chunk(rng: np.random.Generator, num_envs: int, t: int, obs_dim: int, mean_ep: int):
    ends = rng.random((num_envs, t)) < 1.0 / mean_ep
    start = np.zeros_like(ends)
    start[:, 1:] = ends[:, :-1]
    obs = rng.standard_normal((num_envs, t, obs_dim), dtype=np.float32)
    return Transition(
        obs=obs,
        action=rng.integers(0, 4, (num_envs, t), dtype=np.int32),
        reward=rng.standard_normal((num_envs, t), dtype=np.float32),
        next_obs=obs,
        terminated=ends,
        truncated=np.zeros_like(ends),
        start=start,
        mask=np.ones_like(ends),
    )


class NumpyTapeBuffer:
    """The reference TapeBuffer idea: one circular numpy tape + a Python list of episode
    starts; sampling loops over drawn episodes and concatenates their slices."""

    def __init__(self, capacity: int, obs_dim: int, seed: int = 0):
        self.capacity, self.t = capacity, 0
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.action = np.zeros(capacity, np.int32)
        self.reward = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, bool)
        self.starts: list[int] = []  # absolute times of episode starts, oldest first
        self.rng = np.random.default_rng(seed)

    def add(self, tr: Transition) -> None:
        """tr: one stream's chunk, leaves [T, ...] (streams are added one after another)."""
        n = len(tr.reward)
        idx = (self.t + np.arange(n)) % self.capacity
        self.obs[idx], self.next_obs[idx] = tr.obs, tr.next_obs
        self.action[idx], self.reward[idx], self.terminated[idx] = (
            tr.action,
            tr.reward,
            tr.terminated,
        )
        new = self.t + np.flatnonzero(tr.start | (self.t + np.arange(n) == 0))
        self.starts.extend(new.tolist())
        self.t += n
        oldest = self.t - self.capacity
        while self.starts and self.starts[0] < oldest:
            self.starts.pop(0)

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        parts, total = [], 0
        while total < batch_size:
            k = int(self.rng.integers(len(self.starts)))
            end = self.starts[k + 1] if k + 1 < len(self.starts) else self.t
            idx = np.arange(self.starts[k], end) % self.capacity
            parts.append(idx)
            total += len(idx)
        idx = np.concatenate(parts)[:batch_size]
        return {
            "obs": self.obs[idx],
            "next_obs": self.next_obs[idx],
            "action": self.action[idx],
            "reward": self.reward[idx],
            "terminated": self.terminated[idx],
        }


def timeit(fn, repeats: int) -> float:
    """Median seconds of `fn()` (results blocked on), after one warm-up call."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


add_donated = jax.jit(add, donate_argnums=0)
tape_jit = jax.jit(sample_tape, static_argnames=("batch_size",))
segments_jit = jax.jit(sample_segments, static_argnames=("num_segments", "segment_length"))


INNER = 20


@functools.partial(jax.jit, static_argnums=2)
def tape_loop(store, key, batch_size):
    def body(i, acc):
        batch = sample_tape(store, jax.random.fold_in(key, i), batch_size)
        return acc + batch.transition.reward[-1]

    return jax.lax.fori_loop(0, INNER, body, 0.0)


@functools.partial(jax.jit, static_argnums=(2, 3))
def segment_loop(store, key, num_segments, segment_length):
    def body(i, acc):
        batch = sample_segments(store, jax.random.fold_in(key, i), num_segments, segment_length)
        return acc + batch.transition.reward[-1, -1]

    return jax.lax.fori_loop(0, INNER, body, 0.0)


@functools.partial(jax.jit, static_argnums=2)
def tape_prioritised_loop(store, key, batch_size):
    def body(i, acc):
        batch, _ = sample_tape_prioritised(store, jax.random.fold_in(key, i), batch_size)
        return acc + batch.transition.reward[-1]

    return jax.lax.fori_loop(0, INNER, body, 0.0)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def segment_prioritised_loop(store, key, num_segments, segment_length, period):
    def body(i, acc):
        batch, _ = sample_segments_prioritised(store, jax.random.fold_in(key, i), num_segments,
                                               segment_length, 0, period)
        return acc + batch.transition.reward[-1, -1]

    return jax.lax.fori_loop(0, INNER, body, 0.0)


@functools.partial(jax.jit, donate_argnums=0)
def update_loop(pri, key):
    """`INNER` priority updates of `B` random leaves (a batch's units)."""
    n = pri.tree.nodes.shape[0] // 2

    def body(i, pri):
        k1, k2 = jax.random.split(jax.random.fold_in(key, i))
        leaf = jax.random.randint(k1, (1000,), 0, n)
        value = jax.random.uniform(k2, (1000,))
        return pr.set_priorities(pri, leaf, value, jnp.ones(1000, bool), 0.9)

    return jax.lax.fori_loop(0, INNER, body, pri)


def prioritised_row(capacity: int, args, rng) -> str:
    """One capacity of table 4: uniform and prioritised side by side on the same stores."""
    seg, period = args.segment_length, max(1, args.segment_length // 2)
    stores = {}
    for name, unit in (("uniform", None), ("episodes", pr.EPISODE_UNITS), ("sequences", period)):
        store = init_store(capacity, args.num_envs, example(args.obs_dim), priority_period=unit)
        per_stream = capacity // args.num_envs
        t_fill = min(per_stream, 4096)
        fill_rng = np.random.default_rng(1)  # the same episodes in all three stores
        for _ in range(-(-per_stream // t_fill)):
            store = add_donated(store, random_chunk(fill_rng, args.num_envs, t_fill,
                                                    args.obs_dim, args.mean_episode))
        stores[name] = store
    chunk = random_chunk(rng, args.num_envs, args.chunk, args.obs_dim, args.mean_episode)
    t_add = {}
    for name in stores:
        def do_add(name=name):
            stores[name] = add_donated(stores[name], chunk)
            return stores[name].steps
        t_add[name] = timeit(do_add, args.repeats)
    key, b, n_seg = jax.random.key(0), args.batch_size, max(1, args.batch_size // seg)
    r = args.repeats
    t_tbb = timeit(lambda: tape_loop(stores["episodes"], key, b), r) / INNER
    t_tbb_p = timeit(lambda: tape_prioritised_loop(stores["episodes"], key, b), r) / INNER
    t_sbb = timeit(lambda: segment_loop(stores["sequences"], key, n_seg, seg), r) / INNER
    t_sbb_p = timeit(lambda: segment_prioritised_loop(stores["sequences"], key, n_seg, seg,
                                                      period), r) / INNER
    state = {"pri": stores["episodes"].priorities}

    def do_update():
        state["pri"] = update_loop(state["pri"], key)
        return state["pri"].max_leaf

    t_upd = timeit(do_update, r) / INNER
    cells = [f"{capacity:,}", us(t_add["uniform"]), us(t_add["episodes"]),
             us(t_add["sequences"]), us(t_tbb), us(t_tbb_p), f"{t_tbb_p / t_tbb:.2f}x",
             us(t_sbb), us(t_sbb_p), f"{t_sbb_p / t_sbb:.2f}x", us(t_upd)]
    return "| " + " | ".join(cells) + " |"


def filled(capacity: int, args, rng):
    store = init_store(capacity, args.num_envs, example(args.obs_dim))
    buf = NumpyTapeBuffer(capacity, args.obs_dim)
    per_stream = capacity // args.num_envs
    t_fill = min(per_stream, 4096)
    for _ in range(-(-per_stream // t_fill)):
        chunk = random_chunk(rng, args.num_envs, t_fill, args.obs_dim, args.mean_episode)
        store = add_donated(store, chunk)
        # The numpy buffer holds one tape; filling per-stream slices keeps episodes whole.
        buf.add(jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), chunk))
    return store, buf


def bench_point(store, buf, batch_size: int, args, rng):
    chunk = random_chunk(rng, args.num_envs, args.chunk, args.obs_dim, args.mean_episode)
    state = {"store": store}

    def do_add():
        state["store"] = add_donated(state["store"], chunk)
        return state["store"].steps

    t_add = timeit(do_add, args.repeats)
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), chunk)
    t_add_np = timeit(lambda: buf.add(flat), args.repeats)
    key = jax.random.key(0)
    t_tbb = timeit(lambda: tape_jit(state["store"], key, batch_size=batch_size), args.repeats)
    n_seg = max(1, batch_size // args.segment_length)
    t_sbb = timeit(
        lambda: segments_jit(state["store"], key, n_seg, segment_length=args.segment_length),
        args.repeats,
    )
    t_np = timeit(lambda: buf.sample(batch_size), args.repeats)
    # Inside the training loop the samplers run within one jitted call: per-sample cost
    # of `INNER` samples in a fori_loop, without Python dispatch.
    t_tbb_in = timeit(lambda: tape_loop(state["store"], key, batch_size), args.repeats) / INNER
    t_sbb_in = (
        timeit(lambda: segment_loop(state["store"], key, n_seg, args.segment_length), args.repeats)
        / INNER
    )
    return state["store"], t_add, t_add_np, t_tbb, t_sbb, t_np, t_tbb_in, t_sbb_in


def us(x: float) -> str:
    return f"{x * 1e6:,.0f}"


def table_row(name, t_add, t_add_np, t_tbb, t_sbb, t_np, t_tbb_in, t_sbb_in) -> str:
    cells = [name, us(t_add), us(t_add_np), us(t_tbb), us(t_tbb_in), us(t_sbb), us(t_sbb_in)]
    cells += [us(t_np), f"{t_np / t_tbb:.1f}x", f"{t_np / t_tbb_in:.1f}x"]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small capacities and batches")
    p.add_argument(
        "--capacities", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 4_000_000]
    )
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 1000, 10_000])
    p.add_argument("--batch-size", type=int, default=1000, help="B for the capacity sweep")
    p.add_argument("--batch-capacity", type=int, default=1_000_000, help="capacity, B sweep")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--chunk", type=int, default=64, help="T of each added [num_envs, T] chunk")
    p.add_argument("--obs-dim", type=int, default=8)
    p.add_argument("--mean-episode", type=int, default=50)
    p.add_argument("--segment-length", type=int, default=10)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--prioritised", action="store_true",
                   help="only table 4: prioritised vs uniform replay vs capacity")
    args = p.parse_args()
    if args.quick:
        args.capacities, args.batch_sizes = [10_000, 100_000], [100, 1000]
        args.batch_capacity, args.repeats = 100_000, 10
    rng = np.random.default_rng(0)
    if args.prioritised:
        print(f"jax {jax.__version__} on {jax.default_backend()}; num_envs={args.num_envs}, "
              f"chunk T={args.chunk}, obs_dim={args.obs_dim}, mean episode "
              f"{args.mean_episode}; B = {args.batch_size}, sequences L="
              f"{args.segment_length} every {max(1, args.segment_length // 2)} steps; "
              f"median of {args.repeats}, samples timed {INNER} to a jitted loop "
              "(microseconds)\n")
        print("| capacity | add uniform | add, episode priorities | add, sequence priorities "
              "| TBB uniform | TBB prioritised | ratio | SBB uniform | R2D2 prioritised "
              "| ratio | priority update (B units) |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|")
        for cap in args.capacities:
            print(prioritised_row(cap, args, rng), flush=True)
        return
    print(
        f"jax {jax.__version__} on {jax.default_backend()}; num_envs={args.num_envs}, "
        f"chunk T={args.chunk}, obs_dim={args.obs_dim}, mean episode {args.mean_episode}, "
        f"SBB L={args.segment_length}, N=B/L; median of {args.repeats} (microseconds)\n"
    )
    head = (
        "| {} | add jax | add numpy | TBB jax call | TBB jax in jit | SBB jax call "
        "| SBB jax in jit | TBB numpy loop | numpy loop / TBB call | numpy loop / TBB in jit |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    print(f"Sweep over capacity (B = {args.batch_size}):\n")
    print(head.format("capacity"))
    for cap in args.capacities:
        store, buf = filled(cap, args, rng)
        row = bench_point(store, buf, args.batch_size, args, rng)[1:]
        print(table_row(f"{cap:,}", *row))
        del store, buf
    print(f"\nSweep over batch size (capacity = {args.batch_capacity:,}):\n")
    print(head.format("B"))
    store, buf = filled(args.batch_capacity, args, rng)
    for b in args.batch_sizes:
        store, *row = bench_point(store, buf, b, args, rng)
        print(table_row(f"{b:,}", *row))
    del store, buf
    print("\nMemory of a 4,000,000-transition store (shapes only, nothing allocated):\n")
    print("| task | obs dim F | store MiB | bytes / transition |\n|---|---|---|---|")
    for task, f in PAPER_OBS.items():
        shapes = jax.eval_shape(lambda f=f: init_store(4_000_000, args.num_envs, example(f)))
        nbytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes))
        print(f"| {task} | {f} | {nbytes / 2**20:,.0f} | {nbytes / 4_000_000:.0f} |")


if __name__ == "__main__":
    main()
