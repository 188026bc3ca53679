"""Train an agent: `python train.py [group=option ...] [key=value ...]`.

    python train.py                                     # RepeatFirstEasy, FFM, tape, DQN
    python train.py env=count_recall_easy memory=lru batching=segment batching.segment_length=20
    python train.py +experiment=paper/repeat_first      # the paper's settings for one task
    python train.py -m memory=ffm,lru batching=tape,segment seed='range(0,10)'

The composed config is validated before anything is compiled (rlmem/config.py); outputs
(config, metrics.jsonl, checkpoints/, wandb/) go to the Hydra run directory, and running
again with the same `hydra.run.dir=...` resumes from its latest checkpoint.

A run that cannot start or go on (a config error, a run directory in use by another
process, a checkpoint that does not match, no valid checkpoint left, a disk that is full)
ends with one ``rlmem: error: <message>`` on stderr and exit status 2 (refused) or 1
(failed while running); ``HYDRA_FULL_ERROR=1`` adds the traceback. SIGINT (Ctrl-C) or
SIGTERM stop it after the chunk in flight with a checkpoint, one ``rlmem: stopped: ...``
line and exit status 130 / 143; a second Ctrl-C aborts at once. A refused start leaves
``.hydra/`` describing the run's checkpoints, not the refused command.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

import hydra
from omegaconf import DictConfig, OmegaConf


def _hydra_files(cfg: DictConfig) -> dict[str, str]:
    """The files Hydra wrote to ``<run_dir>/<output_subdir>/`` for this job, made again
    from memory (as `hydra.core.utils.run_job` writes them), so another process that
    rewrote them meanwhile cannot change what this one records."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    if hc.output_subdir is None:
        return {}
    return {
        f"{hc.output_subdir}/config.yaml": OmegaConf.to_yaml(cfg),
        f"{hc.output_subdir}/hydra.yaml": OmegaConf.to_yaml(HydraConfig.instance().cfg),
        f"{hc.output_subdir}/overrides.yaml": OmegaConf.to_yaml(hc.overrides.task),
    }


def _fail(err: BaseException, code: int) -> None:
    """Report `err` in one message (traceback only with HYDRA_FULL_ERROR=1) and exit.

    A run stopped by a signal (`rlmem.stopping.RunStopped`) ends the whole process, sweep
    included: the signal was meant for all of it."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import CompactHydraException
    from hydra.types import RunMode

    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        traceback.print_exception(err)
    message = f"rlmem: {getattr(err, 'verb', 'error')}: {err}"
    if HydraConfig.get().mode == RunMode.MULTIRUN and not hasattr(err, "verb"):
        message += f" (job {HydraConfig.get().job.num}: {HydraConfig.get().runtime.output_dir})"
        # Hydra records the failed job, runs the others and reports this message at the end.
        raise CompactHydraException(message) from err
    print(message, file=sys.stderr, flush=True)
    sys.exit(code)


_STARTED = False  # Hydra composed the config and called `main` (not an override error)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Build, train, and return `sweep.objective`'s mean over the runs, for sweepers
    (Optuna: `hydra/sweeper=rlmem_optuna`)."""
    global _STARTED
    _STARTED = True
    # Hydra sets the root logger to INFO; JAX's backend probing would then fill the log.
    logging.getLogger("jax").setLevel(logging.WARNING)
    from hydra.core.hydra_config import HydraConfig

    from rlmem.compile_cache import enable_compilation_cache
    from rlmem.config import ConfigError, build, hydra_run_dir
    from rlmem.errors import RunError
    from rlmem.rundir import lock_run_dir, restore_config
    from rlmem.runner import run

    run_dir, files = hydra_run_dir(), _hydra_files(cfg)
    lock = None
    try:
        try:
            # Held until the process ends: refuses a second process before anything is
            # built (the runner takes the same lock when called on its own).
            lock = lock_run_dir(run_dir)
            lock.hydra_files = files
            enable_compilation_cache()
            summary = run(build(cfg, HydraConfig.get().overrides.task), run_dir)
        finally:
            if (lock is None or not lock.recorded) and files:
                # This process wrote no checkpoint: the config on record stays the one
                # that wrote the run's checkpoints (none recorded yet: leave Hydra's).
                restore_config(run_dir, HydraConfig.get().output_subdir)
            if lock is not None:
                lock.release()
    except (ConfigError, RunError) as err:
        _fail(err, getattr(err, "exit_code", 2))
    except OSError as err:  # e.g. a full disk or a permission, in the OS's words
        _fail(err, 1)
    except KeyboardInterrupt:  # Ctrl-C before training started (then rlmem.stopping acts)
        print("rlmem: interrupted before training started; nothing was saved",
              file=sys.stderr, flush=True)
        sys.exit(130)
    return summary["objective"]


def _main() -> None:
    """`main`, plus a hint when Hydra refused an override before the run began (a key of
    another algorithm or memory model: Hydra only says it is "not in struct")."""
    try:
        main()
    except SystemExit as exit_:
        if exit_.code == 1 and not _STARTED:
            from rlmem.configs import unknown_key_hints

            for hint in unknown_key_hints(sys.argv[1:]):
                print(f"rlmem: hint: {hint}", file=sys.stderr, flush=True)
        raise


if __name__ == "__main__":
    _main()
