"""The Python driver between compiled chunks: resume, progress, logging, checkpoints.

    exp = rlmem.config.build(cfg)
    summary = run(exp, run_dir)

Everything inside a chunk is one jitted call (`rlmem.loop.Loop.run_chunk`); between chunks
this module draws the progress bar, logs every period's metrics per seed
(`rlmem.metrics.MetricsLogger`), and saves the whole loop state every
`checkpoint.interval` env steps and at the end (`rlmem.checkpoint.Checkpointer`). A run
directory that already holds a checkpoint is resumed from it when `checkpoint.resume`.
With several local devices the seed axis of the state is sharded over them
(`rlmem.sharding`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TextIO

import jax
import jax.numpy as jnp
import numpy as np

from rlmem.config import Experiment
from rlmem.loop import LoopState
from rlmem.progress import Progress
from rlmem.sharding import keep_sharded, shard_seeds

# Keys that do not change what a checkpoint holds: a run may be resumed with other values.
RUN_ONLY_KEYS = {
    "loop": ("iterations", "chunk_periods"),
    "eval": ("interval", "episodes", "max_steps"),
    "checkpoint": None,
    "logger": None,
}


def fingerprint(config: dict, state: LoopState) -> dict[str, Any]:
    """What a checkpoint must match to be restored: the config minus run-only keys, plus
    the state's leaf shapes (a different model or store size changes them)."""
    fp: dict[str, Any] = {}
    for key, value in config.items():
        if key in RUN_ONLY_KEYS and RUN_ONLY_KEYS[key] is None:
            continue
        if key in RUN_ONLY_KEYS:
            value = {k: v for k, v in value.items() if k not in RUN_ONLY_KEYS[key]}
        fp[key] = value
    leaves = jax.tree_util.tree_leaves_with_path(state)
    fp["state_shapes"] = {
        jax.tree_util.keystr(path): [list(x.shape), str(x.dtype)]
        for path, x in leaves
    }
    return fp


def periods_per_chunk(total_periods: int, wanted: int) -> int:
    """The largest divisor of `total_periods` that is <= `wanted`, so every chunk has the
    same static length and the loop compiles once."""
    wanted = max(1, min(wanted, total_periods))
    return max(d for d in range(1, wanted + 1) if total_periods % d == 0)


def batching_label(batching: dict) -> str:
    """`tape`, or `segment_l<L>` (the preset's name) so W&B groups keep lengths apart."""
    if batching["mode"] == "segment":
        return f"segment_l{batching['segment_length']}"
    return str(batching["mode"])


def _log_chunk(logger, metrics: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
    """Log each period of a chunk at its env step; `metrics[name]` is `[S, P]`."""
    steps = metrics["counters/env_steps"][0]
    for p, step in enumerate(steps):
        row = {name: value[:, p] for name, value in metrics.items()}
        if p == len(steps) - 1:
            row.update(extra)
        logger.log(int(step), row)


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
      A summary: per-seed arrays `[S]` of the final `eval_return`, `best_eval_return`,
      the first evaluation's return of this call `first_eval_return` (None if nothing
      ran), plus `env_steps`, `run_dir` and the final `state` (a vmapped `LoopState`).
    """
    from rlmem.checkpoint import Checkpointer, prepare_run_dir
    from rlmem.metrics import MetricsLogger

    say = (lambda msg: print(msg, file=stream, flush=True)) if stream else (
        lambda msg: print(msg, flush=True)
    )
    cfg, loop = exp.config, exp.loop
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_cfg, log_cfg = cfg["checkpoint"], cfg["logger"]
    say(f"rlmem: run directory {run_dir.resolve()}")

    prepare_run_dir(run_dir, ckpt_cfg["resume"], ckpt_cfg["overwrite"])
    state = loop.init(exp.seeds)
    checkpointer = Checkpointer(
        run_dir / "checkpoints",
        interval=ckpt_cfg["interval"] or exp.total_env_steps,
        keep=ckpt_cfg["keep"],
        fingerprint=fingerprint(cfg, state),
        exclude_replay=ckpt_cfg["exclude_replay"],
    )
    if ckpt_cfg["resume"] and checkpointer.latest_step() is not None:
        restored, _meta = checkpointer.restore(state)
        state = jax.tree.map(jnp.asarray, restored)
        say(f"rlmem: resumed from checkpoint at env step {checkpointer.latest_step()}")
    state, sharding, placement = shard_seeds(state, len(exp.seeds))
    if placement:
        say(f"rlmem: {placement}")

    names = (cfg["env"]["name"], cfg["memory"]["name"], batching_label(cfg["batching"]),
             cfg["algo"]["name"])
    logger = MetricsLogger(
        run_dir,
        num_seeds=len(exp.seeds),
        config=cfg,
        mode=log_cfg["mode"],
        project=log_cfg["project"],
        group=log_cfg["group"] or "-".join(map(str, names)),
        tags=tuple(names) + tuple(log_cfg["tags"]),
        name=log_cfg["name"],
        seeds=exp.seeds,
    )

    interval = cfg["eval"]["interval"]
    total_periods = exp.iterations // interval
    done_periods = int(np.asarray(state.iterations)[0]) // interval
    chunk = periods_per_chunk(total_periods, cfg["loop"]["chunk_periods"])
    steps_per_period = interval * loop.settings.steps_per_iteration
    bar = Progress(exp.total_env_steps, initial=done_periods * steps_per_period,
                   stream=stream, enabled=progress)
    first_eval = None
    last_saved = None
    if done_periods < total_periods:
        say(f"rlmem: training {len(exp.seeds)} seed(s) for {exp.total_env_steps} env steps "
            f"each; compiling the training loop first ...")
    try:
        while done_periods < total_periods:
            n = min(chunk, total_periods - done_periods)
            t0 = time.perf_counter()
            state, metrics = loop.run_chunk(state, n)
            state = keep_sharded(state, sharding)  # no recompile from a changed placement
            metrics = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
            elapsed = time.perf_counter() - t0
            done_periods += n
            steps = done_periods * steps_per_period
            if first_eval is None:
                first_eval = metrics["eval/return"][:, 0]
            per_seed_rate = n * steps_per_period / elapsed
            _log_chunk(logger, metrics, {"perf/steps_per_second": per_seed_rate,
                                         "perf/chunk_seconds": elapsed})
            bar.update(steps, float(np.mean(metrics["eval/return"][:, -1])))
            # The Checkpointer copies the leaves to host before returning, so the next
            # chunk may donate (reuse) the device buffers while an async save writes.
            if checkpointer.save(steps, state, meta={"env_steps": steps}):
                last_saved = steps
        final_steps = done_periods * steps_per_period
        if last_saved != final_steps and checkpointer.latest_step() != final_steps:
            checkpointer.save(final_steps, state, meta={"env_steps": final_steps}, force=True)
    finally:
        bar.close()
        checkpointer.close()
        logger.close()

    eval_return = np.asarray(state.eval_return)
    best = np.asarray(state.best_eval_return)
    for i, seed in enumerate(exp.seeds):
        say(f"rlmem: seed {seed}: eval return {eval_return[i]:.4f} (best {best[i]:.4f})")
    contents = [n for n in ("metrics.jsonl", "checkpoints/", "wandb/", ".hydra/")
                if (run_dir / n.rstrip("/")).exists()]
    say(f"rlmem: outputs in {run_dir.resolve()} ({', '.join(contents)})")
    return {
        "eval_return": eval_return,
        "best_eval_return": best,
        "first_eval_return": first_eval,
        "env_steps": int(np.asarray(state.env_steps)[0]),
        "run_dir": run_dir,
        "state": state,
    }
