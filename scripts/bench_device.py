"""One-shot device benchmark: one command, one markdown table, a hard time limit.

Table sections (each one function returning the cells it measures; `SECTIONS` lists them):

* `paper`: the paper protocol's training rate, `+experiment=paper/repeat_first`
  (RepeatFirstEasy, FFM, tape batching, Double Dueling DQN: one episode + one update on
  1,000 transitions per epoch, 20 greedy eval episodes every 10 epochs) with
  `algo.random_epochs=0` so that every epoch trains and `algo.buffer_capacity=100000`:
  epochs/s summed over the seeds, with 1 and 10 vmapped seeds (`loop.run_chunk` timed after
  a warm-up call). And the K x S vectorised sweep (`sweep.vmap`: K = 4 configurations x
  the most seeds, in one program).
* `memory`: every model of `rlmem.memory.MEMORY_MODELS` at its default (paper) sizes:
  one jitted `grad` of `sum(y ** 2)` w.r.t. the parameters over one tape of T steps
  (input size 32, about 1% of steps start an episode), T in {1k, 10k, 100k}, scan in
  {associative, sequential} (GRU, LSTM and MLP only have the sequential one).
* `envs`: `rlmem.envs.VecEnv` env steps/s (resets of the finished envs only, default
  `resets_per_step`)
  for RepeatFirstEasy and PositionOnlyCartPoleEasy, N in {1k, 4k, 16k, 64k} envs stepped
  `2**22 / N` times with random actions inside one jitted `lax.scan`.
* `returns`: `discounted_returns` and `gae` (`rlmem.memory.returns`) over one tape of 10k
  episodes (lengths uniform in [1, 100], about 505k steps), both scans.

Every cell is timed as the best of up to `--repeats` calls after one warm-up call (which
compiles, or loads from the persistent compilation cache). A cell's timed calls stop
early once they have taken `--cell-seconds` in all.

The time budget (`--budget-seconds`, default 420, counted from the process start): the
sections run cheapest first (returns, envs, paper, memory), each with a share of what is
left by weight (`RUN_ORDER`), so time one leaves unused goes to the later ones. A cell
starts only if its section's share has time left and, when the same setting ran at a
smaller size, its estimated cost (that cell's compile time + the calls scaled by size)
fits; otherwise it is reported as "skipped (budget)". Memory cells run all models at
one T before any at the next. A watchdog ends the process at `--hard-limit-seconds`
(default: the budget + 40 s), whatever is running, after printing the table with every
unfinished cell skipped: the whole run stays under 8 minutes on any device.

Output: the command, `jax.devices()` and jax version first, progress on stderr, then one
markdown table (section | setting | value | unit); `--out` also writes it as JSON (`rows`:
section, setting, value (null unless measured), unit, status, warm-up and best call
seconds, timed calls). Exit status 1 if a cell failed (the table is printed anyway).

    python scripts/bench_device.py                  # the full run: under 8 minutes
    python scripts/bench_device.py --quick          # tiny sizes, for CPU and CI
    python scripts/bench_device.py --out device.json --sections memory --models ffm lru
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

START = time.monotonic()

import jax  # noqa: E402  (imported after START: the budget counts jax's start-up)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from rlmem.compile_cache import enable_compilation_cache  # noqa: E402
from rlmem.memory import MEMORY_MODELS  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf"
HARD_MARGIN_S = 40.0  # default hard limit = budget + this
SEQUENTIAL_ONLY = {"gru", "lstm", "mlp"}  # memory models with one evaluation order
MEMORY_INPUT_SIZE = 32
ENVS = ("RepeatFirstEasy", "PositionOnlyCartPoleEasy")
GAMMA, LAM = 0.99, 0.95
SKIPPED = "skipped (budget)"


@dataclass(frozen=True)
class Sizes:
    """What one run measures (`FULL`, or `QUICK` with --quick)."""

    epoch_periods: int  # eval periods (10 epochs each) per timed run_chunk call
    seeds: tuple[int, ...]  # num_seeds settings of the paper protocol
    buffer: int  # replay capacity of the paper-protocol runs
    lengths: tuple[int, ...]  # memory tape lengths T
    models: tuple[str, ...]  # memory models
    num_envs: tuple[int, ...]  # VecEnv sizes N
    env_steps_per_call: int  # N * steps per timed VecEnv call (at least 16 steps)
    episodes: int  # episodes on the returns tape
    max_episode_length: int  # their lengths are uniform in [1, this]


FULL = Sizes(epoch_periods=10, seeds=(1, 10), buffer=100_000,
             lengths=(1_000, 10_000, 100_000), models=tuple(sorted(MEMORY_MODELS)),
             num_envs=(1024, 4096, 16384, 65536), env_steps_per_call=2 ** 22,
             episodes=10_000, max_episode_length=100)
QUICK = Sizes(epoch_periods=1, seeds=(1, 2), buffer=10_000,
              lengths=(100, 1_000), models=tuple(sorted(MEMORY_MODELS)),
              num_envs=(64, 256), env_steps_per_call=2 ** 14,
              episodes=1_000, max_episode_length=20)


# -- cells and their timing ----------------------------------------------------------------

Prepared = tuple[Callable[[], Any], Callable[[float], float]]


@dataclass(eq=False)
class Cell:
    """One row of the table.

    `prepare()` builds what the cell times and returns `(call, to_value)`: `call()` runs
    the measured work once (the runner blocks on its result), `to_value(seconds)` turns the
    best call time into the reported value. `previous`: the same setting at a smaller size,
    whose calls do `1 / ratio` of this cell's work (for `estimate`).
    """

    section: str
    setting: str
    unit: str
    prepare: Callable[[], Prepared] | None
    previous: Cell | None = None
    ratio: float = 1.0
    # pending | running | ok | skipped (budget) | not built yet | error: <type>: <message>
    status: str = "pending"
    value: float | None = None
    warmup_s: float | None = None  # prepare + the first (compiling) call
    best_s: float | None = None
    repeats: int = 0  # timed calls after the warm-up
    note: str = ""  # why it was skipped

    def row(self) -> dict:
        return {"section": self.section, "setting": self.setting, "value": self.value,
                "unit": self.unit, "status": self.status, "warmup_s": self.warmup_s,
                "best_s": self.best_s, "repeats": self.repeats, "note": self.note}


def estimate(cell: Cell, repeats: int, cell_seconds: float) -> float | None:
    """Seconds `cell` should take, from `cell.previous`: its compile time (warm-up minus
    one call), then a warm-up call and the timed calls, each `ratio` x its best call.
    None when there is nothing to go by."""
    before = cell.previous
    if before is None or before.status != "ok":
        return None
    call = before.best_s * cell.ratio
    timed = min(repeats, max(1, math.ceil(cell_seconds / max(call, 1e-9))))
    return max(before.warmup_s - before.best_s, 0.0) + call * (1 + timed)


def time_cell(cell: Cell, repeats: int, cell_seconds: float) -> None:
    """Warm up once, then keep the best of up to `repeats` calls (fewer once the timed
    calls have taken `cell_seconds`)."""
    begin = time.perf_counter()
    call, to_value = cell.prepare()
    jax.block_until_ready(call())
    cell.warmup_s = time.perf_counter() - begin
    best, spent = math.inf, 0.0
    for i in range(max(repeats, 1)):
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        took = time.perf_counter() - t0
        best, spent, cell.repeats = min(best, took), spent + took, i + 1
        if spent >= cell_seconds:
            break
    cell.best_s, cell.value, cell.status = best, float(to_value(best)), "ok"


# -- (a) the paper protocol ----------------------------------------------------------------


SWEEP_VMAP = "{algo.optim.learning_rate:[1e-4,3e-4],algo.gamma:[0.9,0.99]}"  # K = 4


def paper_experiment(num_seeds: int, buffer: int, *extra: str):
    from hydra import compose, initialize_config_dir

    from rlmem.config import build

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[
            "+experiment=paper/repeat_first", "memory=ffm", "batching=tape",
            "algo.random_epochs=0", f"algo.buffer_capacity={buffer}", "logger=none",
            f"num_seeds={num_seeds}", *extra,
        ])
    return build(cfg)


def paper_cells(sizes: Sizes) -> list[Cell]:
    cells = [Cell("paper", f"repeat_first ffm tape, num_seeds={n} "
                           f"({sizes.epoch_periods * 10} epochs per call)",
                  "epochs/s (all seeds)", functools.partial(paper_prepare, sizes, n))
             for n in sizes.seeds]
    return cells + sweep_cells(sizes)


def paper_prepare(sizes: Sizes, num_seeds: int, *extra: str) -> Prepared:
    """Time `run_chunk` of the paper protocol: epochs/s summed over every run."""
    exp = paper_experiment(num_seeds, sizes.buffer, *extra)
    loop, periods = exp.loop, sizes.epoch_periods
    epochs = periods * loop.settings.eval_interval
    holder = [exp.init_state()]

    def call():
        holder[0], metrics = loop.run_chunk(holder[0], periods)  # donates the state
        return holder[0].iterations, metrics

    return call, lambda sec: len(exp.runs) * epochs / sec


def sweep_cells(sizes: Sizes) -> list[Cell]:
    """The K x S vectorised sweep (`sweep.vmap`, K = 4 members: two learning rates x two
    gammas) x S seeds in one compiled program: epochs/s summed over all K x S runs."""
    seeds = max(sizes.seeds)
    return [Cell("paper", f"K x S vectorised sweep: K=4 (lr x gamma) x S={seeds} seeds",
                 "epochs/s (all runs)",
                 functools.partial(paper_prepare, sizes, seeds, f"sweep.vmap={SWEEP_VMAP}"))]


# -- (b) memory models ---------------------------------------------------------------------


@functools.cache
def memory_params(name: str):
    from rlmem.memory import make_memory

    model = make_memory(name, scan="sequential")
    carry = model.initialize_carry()
    x0 = jnp.zeros((2, MEMORY_INPUT_SIZE), jnp.float32)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), x0, jnp.zeros(2, bool), carry)
    return params, carry


@functools.cache
def memory_tape(length: int):
    rng = np.random.default_rng(length)
    x = rng.normal(size=(length, MEMORY_INPUT_SIZE)).astype(np.float32)
    start = rng.random(length) < 0.01
    start[0] = True
    return jax.device_put(x), jax.device_put(start)


def memory_cells(sizes: Sizes) -> list[Cell]:
    from rlmem.memory import make_memory

    cells, previous = [], {}
    for length in sizes.lengths:  # every model at one length before any at the next
        for name in sizes.models:
            scans = ("sequential",) if name in SEQUENTIAL_ONLY else ("associative", "sequential")
            for scan in scans:
                def prepare(name=name, scan=scan, length=length) -> Prepared:
                    model = make_memory(name, scan=scan)
                    params, carry = memory_params(name)
                    x, start = memory_tape(length)

                    def loss(p):
                        y, _ = model.apply(p, x, start, carry)
                        return jnp.sum(y ** 2)

                    grad = jax.jit(jax.grad(loss))
                    return (lambda: grad(params)), lambda sec: sec * 1e3

                cell = Cell("memory", f"{name} {scan}, T={length:,}", "ms per fwd+bwd", prepare)
                if (name, scan) in previous:
                    before, before_length = previous[(name, scan)]
                    cell.previous, cell.ratio = before, length / before_length
                previous[(name, scan)] = (cell, length)
                cells.append(cell)
    return cells


# -- (c) vectorised envs -------------------------------------------------------------------


def env_cells(sizes: Sizes) -> list[Cell]:
    cells, previous = [], {}
    for n in sizes.num_envs:
        steps = max(16, sizes.env_steps_per_call // n)
        for env_name in ENVS:
            def prepare(env_name=env_name, n=n, steps=steps) -> Prepared:
                from rlmem.envs import VecEnv, make

                env, params = make(env_name)
                venv = VecEnv(env, params, n)
                sample = jax.vmap(venv.action_space().sample)

                def body(state, key):
                    act_key, step_key = jax.random.split(key)
                    obs, state, reward, *_ = venv.step(step_key, state,
                                                       sample(jax.random.split(act_key, n)))
                    # Sink the observations too: CartPole's reward is constant, and with
                    # only it kept live XLA would drop the physics from the program.
                    return state, reward.sum() + obs.sum()

                @jax.jit
                def run(key):
                    _, state = venv.reset(key)
                    _, out = jax.lax.scan(body, state, jax.random.split(key, steps))
                    return out.sum()

                key = jax.random.PRNGKey(0)
                return (lambda: run(key)), lambda sec: n * steps / sec

            cell = Cell("envs", f"VecEnv {env_name}, N={n:,} ({steps:,} steps per call)",
                        "env steps/s", prepare)
            if env_name in previous:
                before, before_work = previous[env_name]
                cell.previous, cell.ratio = before, n * steps / before_work
            previous[env_name] = (cell, n * steps)
            cells.append(cell)
    return cells


# -- (d) returns and GAE -------------------------------------------------------------------


@functools.cache
def returns_tape(episodes: int, max_length: int):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, max_length + 1, size=episodes)
    total = int(lengths.sum())
    terminated = np.zeros(total, bool)
    terminated[np.cumsum(lengths) - 1] = True
    reward, value, next_value = rng.normal(size=(3, total)).astype(np.float32)
    tape = (reward, value, next_value, terminated, np.zeros(total, bool))
    return tuple(jax.device_put(a) for a in tape)


def _returns(reward, value, next_value, terminated, truncated, strategy):
    from rlmem.memory.returns import discounted_returns

    return discounted_returns(reward, terminated, truncated, GAMMA, next_value,
                              strategy=strategy)


def _gae(reward, value, next_value, terminated, truncated, strategy):
    from rlmem.memory.returns import gae

    return gae(reward, value, next_value, terminated, truncated, GAMMA, LAM, strategy=strategy)


def returns_cells(sizes: Sizes) -> list[Cell]:
    cells = []
    steps = len(returns_tape(sizes.episodes, sizes.max_episode_length)[0])
    for fn_name, fn in (("returns", _returns), ("gae", _gae)):
        for strategy in ("associative", "sequential"):
            def prepare(fn=fn, strategy=strategy) -> Prepared:
                tape = returns_tape(sizes.episodes, sizes.max_episode_length)
                jitted = jax.jit(functools.partial(fn, strategy=strategy))
                return (lambda: jitted(*tape)), lambda sec: sec * 1e3

            cells.append(Cell("returns", f"{fn_name} {strategy}, {sizes.episodes:,} episodes "
                                         f"({steps:,} steps)", "ms per call", prepare))
    return cells


# The table's sections, in table order.
SECTIONS: dict[str, Callable[[Sizes], list[Cell]]] = {
    "paper": paper_cells,
    "memory": memory_cells,
    "envs": env_cells,
    "returns": returns_cells,
}
# The order sections run in, and their weights: a section gets weight / (sum of the
# weights of it and the sections after it) of the time left when it starts.
RUN_ORDER: dict[str, float] = {"returns": 0.05, "envs": 0.15, "paper": 0.25, "memory": 0.55}


# -- running against the budget ------------------------------------------------------------


class Run:
    """Runs cells section by section within the budget; prints and saves the table once."""

    def __init__(self, sections: dict[str, list[Cell]], budget_s: float, repeats: int,
                 cell_seconds: float, out: str | None, header: dict):
        self.sections, self.budget_s = sections, budget_s
        self.repeats, self.cell_seconds = repeats, cell_seconds
        self.out, self.header = out, header
        self.lock = threading.Lock()
        self.finished = False

    def elapsed(self) -> float:
        return time.monotonic() - START

    def cells(self) -> list[Cell]:
        return [c for cells in self.sections.values() for c in cells]

    def run(self) -> None:
        names = [n for n in RUN_ORDER if n in self.sections]
        names += [n for n in self.sections if n not in names]
        for i, name in enumerate(names):
            weights = [RUN_ORDER.get(n, 1.0) for n in names[i:]]
            left = max(self.budget_s - self.elapsed(), 0.0)
            deadline = self.elapsed() + left * weights[0] / sum(weights)
            for cell in self.sections[name]:
                if cell.status == "pending":
                    self.run_cell(cell, deadline)

    def run_cell(self, cell: Cell, deadline: float) -> None:
        now = self.elapsed()
        before = cell.previous
        if before is not None and before.status.startswith(("error", "skipped")):
            cell.status = (SKIPPED if before.status == SKIPPED
                           else "skipped (failed at a smaller size)")
        else:
            guess = estimate(cell, self.repeats, self.cell_seconds)
            if now >= deadline or (guess is not None and now + guess > deadline):
                cell.status = SKIPPED
                if guess is not None:
                    cell.note = f"estimated {guess:.0f} s, {deadline - now:.0f} s left"
        if cell.status != "pending":
            log(f"[{now:6.1f}s] {cell.section} | {cell.setting} | {cell.status}"
                + (f" ({cell.note})" if cell.note else ""))
            return
        cell.status = "running"
        try:
            time_cell(cell, self.repeats, self.cell_seconds)
        except Exception as err:  # one failing cell (e.g. out of memory) is reported
            cell.status = f"error: {type(err).__name__}: {' '.join(str(err).split())[:300]}"
        log(f"[{self.elapsed():6.1f}s] {cell.section} | {cell.setting} | "
            + (f"{fmt(cell.value)} {cell.unit} (warm-up {cell.warmup_s:.1f} s, "
               f"best of {cell.repeats})" if cell.status == "ok" else cell.status))

    def finish(self, note: str | None = None) -> bool:
        """Print the table and write the JSON, once (the watchdog and main thread race)."""
        with self.lock:
            if self.finished:
                return False
            self.finished = True
            for cell in self.cells():
                if cell.status == "running":
                    cell.note = "the hard limit ended it"
                if cell.status in ("pending", "running"):
                    cell.status = SKIPPED
            rows = [c.row() for c in self.cells()]
            elapsed = self.elapsed()
            if note:
                print(f"\n{note}")
            print(f"\nelapsed: {elapsed:.1f} s (budget {self.budget_s:.0f} s)\n")
            print(markdown(rows), flush=True)
            if self.out:
                out = {**self.header, "elapsed_s": elapsed, "note": note, "rows": rows}
                Path(self.out).write_text(json.dumps(out, indent=1) + "\n")
            return True


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return str(value)
    if value >= 1e6:
        return f"{value / 1e6:,.2f}M"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def markdown(rows: Sequence[dict]) -> str:
    lines = ["| section | setting | value | unit |", "|---|---|---:|---|"]
    for r in rows:
        value = fmt(r["value"]) if r["status"] == "ok" else r["status"].split(":")[0]
        lines.append(f"| {r['section']} | {r['setting']} | {value} | {r['unit']} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (T 100/1k, N 64/256, 10 epochs, 2 seeds, 1k "
                             "episodes): for CPU and CI")
    parser.add_argument("--budget-seconds", type=float, default=420.0,
                        help="time the sections share, from the process start (default 420)")
    parser.add_argument("--hard-limit-seconds", type=float, default=None,
                        help="end the process here whatever runs (default: budget + "
                             f"{HARD_MARGIN_S:.0f})")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per cell after the warm-up, best kept "
                             "(default 3; --quick 1)")
    parser.add_argument("--cell-seconds", type=float, default=3.0,
                        help="stop a cell's timed calls once they have taken this long")
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--models", nargs="+", choices=sorted(MEMORY_MODELS), default=None,
                        help="memory models (default: all)")
    parser.add_argument("--out", help="also write the table as JSON to this file")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.hard_limit_seconds is None:
        args.hard_limit_seconds = args.budget_seconds + HARD_MARGIN_S
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.models:
        sizes = dataclasses.replace(sizes, models=tuple(args.models))
    enable_compilation_cache()

    command = shlex.join(["python", *sys.argv])
    devices = [str(d) for d in jax.devices()]
    header = {"command": command, "jax_version": jax.__version__,
              "backend": jax.default_backend(), "devices": devices, "quick": args.quick,
              "budget_s": args.budget_seconds, "hard_limit_s": args.hard_limit_seconds,
              "repeats": args.repeats, "sizes": dataclasses.asdict(sizes)}
    print(f"command: {command}")
    print(f"devices: {', '.join(devices)} (backend {jax.default_backend()})")
    print(f"jax {jax.__version__}, python {sys.version.split()[0]}; "
          f"{'quick' if args.quick else 'full'} sizes; budget {args.budget_seconds:.0f} s, "
          f"hard limit {args.hard_limit_seconds:.0f} s; best of up to {args.repeats} "
          "after a warm-up", flush=True)

    sections = {name: SECTIONS[name](sizes) for name in SECTIONS if name in args.sections}
    run = Run(sections, args.budget_seconds, args.repeats, args.cell_seconds, args.out, header)

    def hard_limit() -> None:
        if run.finish(note=f"hard limit: stopped at {run.elapsed():.0f} s"):
            os._exit(0)

    watchdog = threading.Timer(max(args.hard_limit_seconds - run.elapsed(), 0.0), hard_limit)
    watchdog.daemon = True
    watchdog.start()
    run.run()
    watchdog.cancel()
    if not run.finish():  # the watchdog got there first and is ending the process
        time.sleep(60)
    return int(any(c.status.startswith("error") for c in run.cells()))


if __name__ == "__main__":
    sys.exit(main())
