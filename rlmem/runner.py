"""The Python driver between compiled chunks: resume, progress, logging, checkpoints.

    exp = rlmem.config.build(cfg)
    summary = run(exp, run_dir)

Everything inside a chunk is one jitted call (`rlmem.loop.Loop.run_chunk`); between chunks
this module draws the progress bar, logs every period's metrics per seed
(`rlmem.metrics.MetricsLogger`), and saves the whole loop state every
`checkpoint.interval` env steps, every `checkpoint.every_minutes` of wall-clock time and
at the end (`rlmem.checkpoint.Checkpointer`). SIGINT/SIGTERM stop the run after the chunk
in flight with a checkpoint (`rlmem.stopping`). A run directory that already holds a
checkpoint is resumed from it when `checkpoint.resume`.
With several local devices the seed axis of the state is sharded over them
(`rlmem.sharding`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, TextIO

import jax
import jax.numpy as jnp
import numpy as np

from rlmem.config import ConfigError, Experiment
from rlmem.config_checks import STATE_METRICS
from rlmem.errors import RunError
from rlmem.footprint import estimate
from rlmem.loop import LoopState
from rlmem.progress import Progress
from rlmem.sharding import keep_sharded, shard_seeds
from rlmem.stopping import StopRequest


def fingerprint(resumable: dict, state: LoopState) -> dict[str, Any]:
    """What a checkpoint must match to be restored: the config's resumable part
    (`Experiment.resumable_config`) plus the state's leaf shapes (a different model or
    store size changes them)."""
    leaves = jax.tree_util.tree_leaves_with_path(state)
    return {**resumable, "state_shapes": {
        jax.tree_util.keystr(path): [list(x.shape), str(x.dtype)] for path, x in leaves
    }}


def periods_per_chunk(total_periods: int, wanted: int) -> int:
    """The largest divisor of `total_periods` that is <= `wanted`, so every chunk has the
    same static length and the loop compiles once."""
    wanted = max(1, min(wanted, total_periods))
    return max(d for d in range(1, wanted + 1) if total_periods % d == 0)


# `loop.chunk_periods=null`: every run starts with one-period chunks (the first progress
# line comes one period after compiling) and, once a chunk has been timed, grows them only
# as far as needed to keep the host's time between chunks (logs, progress; the device
# waits) under AUTO_CHUNK_OVERHEAD of the run, and never past AUTO_CHUNK_SECONDS of
# training per chunk nor AUTO_CHUNK_MAX periods. Each size compiles once (and is cached).
AUTO_CHUNK_OVERHEAD = 0.02
AUTO_CHUNK_SECONDS = 5.0
AUTO_CHUNK_MAX = 100


def auto_chunk(periods_left: int, period_seconds: float, host_seconds: float) -> int:
    """Periods per chunk for the rest of a run, from one timed chunk: `period_seconds` of
    compiled training per period, `host_seconds` of Python between two chunks."""
    wanted = host_seconds / (AUTO_CHUNK_OVERHEAD * max(period_seconds, 1e-9))
    wanted = min(wanted, AUTO_CHUNK_SECONDS / max(period_seconds, 1e-9), AUTO_CHUNK_MAX)
    return periods_per_chunk(max(periods_left, 1), max(1, int(np.ceil(wanted))))


def _stopped_early(exp: Experiment, state: LoopState) -> bool:
    """Whether every run's early-stop metric (`early_stop.metric`, read from the state:
    the latest evaluation or its running best) has reached `early_stop.at_least`."""
    if exp.early_stop is None:
        return False
    metric, at_least = exp.early_stop
    return bool(np.all(state_metric(state, metric) >= at_least))  # NaN (none yet): False


def state_metric(state: LoopState, name: str) -> np.ndarray:
    """`[R]` the runs' values of a metric the loop state holds (`STATE_METRICS`)."""
    return np.asarray(getattr(state, STATE_METRICS[name]))


class DivergenceError(RunError):
    """A seed's loss, gradients or parameters became NaN/inf; nothing of it was saved."""

    exit_code = 1  # a failure at run time, not a refusal


def _periods_left(iterations: int, done: int, interval: int) -> int:
    """Evaluation periods still to run; refuses an `eval.interval` that cannot land on
    `loop.iterations` from where a resumed run stands (checkpoints and logs are named by
    the step reached, so the last period must end exactly there)."""
    if done >= iterations:
        return 0
    if (iterations - done) % interval:
        nearest = done + interval * -(-(iterations - done) // interval)
        raise ConfigError(
            f"eval.interval={interval} cannot continue this run: its checkpoint stands at "
            f"iteration {done}, and loop.iterations={iterations} is {iterations - done} "
            f"iterations further, not a multiple of {interval}; choose loop.iterations = "
            f"{done} + a multiple of {interval} (e.g. {nearest}) "
            "or keep the run's eval.interval"
        )
    return (iterations - done) // interval


def _divergence(state, loop, runs) -> tuple[np.ndarray, str] | None:
    """`(env step at detection [R], -1 where finite; message)` if any run went
    non-finite, else None."""
    metric = np.asarray(state.nonfinite_metric)
    hit = np.flatnonzero(metric >= 0)
    if not hit.size:
        return None
    names = loop.nonfinite_names
    env_step = np.asarray(state.nonfinite_env_step)
    what = lambda i: ("the parameters" if names[metric[i]] == "params"
                      else f"train/{names[metric[i]]}")
    lines = [f"{runs[i].label}: {what(i)} became non-finite by env step {int(env_step[i])}"
             for i in hit]
    message = (
        "training diverged (NaN/inf); the run stopped without saving the diverged state:\n  "
        + "\n  ".join(lines)
        + "\nlower algo.optim.learning_rate or check the reward scale; the latest checkpoint "
        "(if any) holds a state from before"
    )
    return np.where(metric >= 0, env_step, -1), message


def _periods_before(metrics: dict[str, np.ndarray], diverged) -> int:
    """How many of a chunk's periods to log: all, or those that ended before the first
    seed's divergence was detected (`counters/env_steps` is `[S, P]`)."""
    num = metrics["eval/return"].shape[1]
    if diverged is None:
        return num
    at = diverged[0][:, None]
    clean = np.all((at < 0) | (metrics["counters/env_steps"] < at), axis=0)  # [P]
    return num if clean.all() else int(np.argmin(clean))


def _log_chunk(logger, settings, metrics: dict[str, np.ndarray], num: int,
               extra: dict[str, Any]) -> None:
    """Log the first `num` periods of a chunk at their step (`settings.step_of`);
    `metrics[name]` is `[S, P]`, `extra` values `[S]` go with the chunk's last period."""
    iterations = metrics["counters/iterations"][0]
    for p in range(num):
        row = {name: value[:, p] for name, value in metrics.items()}
        if p == metrics["eval/return"].shape[1] - 1:
            row.update(extra)
        logger.log(settings.step_of(int(iterations[p])), row)


def run(
    exp: Experiment,
    run_dir: str | Path,
    *,
    stream: TextIO | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train `exp` in `run_dir` (resuming from its latest checkpoint if configured).

    Args:
      exp: the built experiment (`rlmem.config.build`).
      run_dir: the run directory (Hydra's): checkpoints/, metrics.jsonl, wandb/.
      stream: where messages and the progress bar go (default stdout).
      progress: force the progress bar on/off (default: only on a TTY).

    Returns:
      A summary: per-run arrays `[R]` (`exp.runs`) of the final `eval_return`, `best_eval_return`,
      the first evaluation's return of this call `first_eval_return` (None if nothing
      ran), plus `env_steps` (`[S]`), `run_dir` and the final `state` (a vmapped `LoopState`).
    """
    from rlmem.metrics import MetricsLogger
    from rlmem.rundir import contents, open_checkpoints

    say = (lambda msg: print(msg, file=stream, flush=True)) if stream else (
        lambda msg: print(msg, flush=True)
    )
    loop, ckpt = exp.loop, exp.checkpoint
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    say(f"rlmem: run directory {run_dir.resolve()}")

    footprint = estimate(exp)  # abstract shapes: nothing allocated or compiled yet
    say(f"rlmem: {footprint.summary()}")
    if exp.check_memory and (message := footprint.error()):
        raise ConfigError(message)
    state = exp.init_state()
    # rlmem.rundir: locks run_dir (until checkpointer.close()), refuses a start that would
    # mix or lose runs, restores the latest valid checkpoint (None: start from step 0).
    checkpointer, restored = open_checkpoints(
        run_dir, state, resume=ckpt.resume, overwrite=ckpt.overwrite,
        interval=ckpt.interval,
        keep=ckpt.keep,
        fingerprint=fingerprint(exp.resumable_config, state),
        exclude_replay=ckpt.exclude_replay,
    )
    settings = loop.settings
    unit = settings.step_unit
    logger = bar = None
    stop = StopRequest(say).__enter__()  # SIGINT/SIGTERM: stop after the chunk in flight
    try:  # from here on the checkpointer (and with it the run-directory lock) is closed
        resume_step = 0 if restored is None else checkpointer.latest_step()
        if restored is not None:
            state = jax.tree.map(jnp.asarray, restored)
            say(f"rlmem: resumed from checkpoint at {unit[:-1]} {resume_step}")
        else:
            say("rlmem: no checkpoint to resume from, starting fresh" if ckpt.resume else
                "rlmem: starting fresh (checkpoint.resume=false)")
        done_iterations = int(np.asarray(state.iterations)[0])
        # Refused before the metrics file is touched.
        periods_left = _periods_left(exp.iterations, done_iterations, settings.eval_interval)
        if periods_left and _stopped_early(exp, state):
            say(f"rlmem: early stop: every run's {exp.early_stop[0]} had reached "
                f"{exp.early_stop[1]:g} at {unit[:-1]} {resume_step}; nothing to do "
                "(early_stop.at_least=null continues the run)")
            periods_left = 0
        state, sharding, placement = shard_seeds(state, len(exp.runs))
        if placement:
            say(f"rlmem: {placement}")

        logger = MetricsLogger(  # rows after resume_step are set aside and logged again
            run_dir, num_seeds=len(exp.runs), config=exp.config, runs=exp.runs,
            resume_step=resume_step, **dataclasses.asdict(exp.logger),
        )
        auto = exp.chunk_periods is None  # sized after the first timed chunk
        chunk = 1 if auto else periods_per_chunk(max(periods_left, 1), exp.chunk_periods)
        chunks_done = 0
        bar = Progress(exp.total_steps, initial=settings.step_of(done_iterations),
                       stream=stream, enabled=progress, unit=unit.split()[-1])
        first_eval = last_saved = None
        saved_at = time.monotonic()  # of the latest checkpoint (or the start)
        first_chunk = True
        if periods_left:
            what = (f"{len(exp.members)} sweep members x {len(exp.runs) // len(exp.members)}"
                    f" seed(s)" if exp.members else f"{len(exp.runs)} seed(s)")
            say(f"rlmem: training {what} for {exp.total_steps} {unit} each; compiling the "
                "training loop first ...")
        while periods_left:
            n = min(chunk, periods_left)
            t0 = time.perf_counter()
            env_steps_before = np.asarray(state.env_steps).copy()  # state is donated below
            state, metrics = loop.run_chunk(state, n)
            state = keep_sharded(state, sharding)  # no recompile from a changed placement
            metrics = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
            elapsed = time.perf_counter() - t0
            host_start = time.perf_counter()
            if first_chunk:  # compiling (or loading from the cache) is most of it
                say(f"rlmem: compiled and ran the first chunk ({n} evaluation period(s)) "
                    f"in {elapsed:.1f} s")
                first_chunk = False
            periods_left -= n
            diverged = _divergence(state, loop, exp.runs)
            good = _periods_before(metrics, diverged)
            if first_eval is None and good:
                first_eval = metrics["eval/return"][:, 0]
            env_steps = metrics["counters/env_steps"][:, -1] - env_steps_before
            extra = {"perf/steps_per_second": env_steps / elapsed,
                     "perf/chunk_seconds": np.full(len(exp.runs), elapsed)}
            stop_early = bool(periods_left) and diverged is None and _stopped_early(exp, state)
            if stop_early:
                extra["early_stop/stopped"] = np.ones(len(exp.runs))
            _log_chunk(logger, settings, metrics, good, extra)
            if diverged is not None:
                raise DivergenceError(diverged[1])
            steps = settings.step_of(int(metrics["counters/iterations"][0, -1]))
            bar.update(steps, float(np.mean(metrics["eval/return"][:, -1])))
            # The Checkpointer copies the leaves to host before returning, so the next
            # chunk may donate (reuse) the device buffers while an async save writes.
            chunks_done += 1
            if auto and chunks_done == 2 and periods_left:  # the first timing w/o compiling
                chunk = auto_chunk(periods_left, elapsed / n, time.perf_counter() - host_start)
                if chunk > 1:
                    bar.note(f"rlmem: {chunk} evaluation periods per chunk from here (a "
                             f"period trains in {elapsed / n:.3g} s; loop.chunk_periods=null)")
            minutes = ckpt.every_minutes
            due = minutes is not None and time.monotonic() - saved_at >= 60 * minutes
            stopping = stop.signum is not None and periods_left > 0
            if checkpointer.save(steps, state, meta={"env_steps": steps},
                                 force=due or stopping):
                last_saved, saved_at = steps, time.monotonic()
            if stopping:  # closing the checkpointer and the logger (below) flushes both
                raise stop.error(steps, exp.total_steps, unit)
            if stop_early:  # the final save below checkpoints this step
                bar.note(f"rlmem: early stop: every run's {exp.early_stop[0]} reached "
                         f"{exp.early_stop[1]:g} by {unit[:-1]} {steps} of {exp.total_steps}")
                break
        final_steps = settings.step_of(int(np.asarray(state.iterations)[0]))
        if last_saved != final_steps and checkpointer.latest_step() != final_steps:
            checkpointer.save(final_steps, state, meta={"env_steps": final_steps}, force=True)
    finally:
        stop.__exit__()
        if bar is not None:
            bar.close()
        checkpointer.close()
        if logger is not None:
            logger.close()

    eval_return = np.asarray(state.eval_return)
    best = np.asarray(state.best_eval_return)
    for i, one in enumerate(exp.runs):
        say(f"rlmem: {one.label}: eval return {eval_return[i]:.4f} (best {best[i]:.4f})")
    say(f"rlmem: outputs in {run_dir.resolve()} ({', '.join(contents(run_dir))})")
    return {
        "eval_return": eval_return,
        "best_eval_return": best,
        "first_eval_return": first_eval,
        "env_steps": np.asarray(state.env_steps),
        "run_dir": run_dir,
        "state": state,
        "objective": float(np.mean(state_metric(state, exp.objective))),
    }
