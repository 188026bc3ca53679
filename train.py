"""Train an agent: `python train.py [group=option ...] [key=value ...]`.

    python train.py                                     # RepeatFirstEasy, FFM, tape, DQN
    python train.py env=count_recall_easy memory=lru batching=segment batching.segment_length=20
    python train.py +experiment=paper/repeat_first      # the paper's settings for one task
    python train.py -m memory=ffm,lru batching=tape,segment seed='range(0,10)'

The composed config is validated before anything is compiled (rlmem/config.py); outputs
(config, metrics.jsonl, checkpoints/, wandb/) go to the Hydra run directory, and running
again with the same `hydra.run.dir=...` resumes from its latest checkpoint.
"""

from __future__ import annotations

import logging

import hydra
import numpy as np
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Build, train, and return the mean (over seeds) best eval return, for sweepers."""
    from rlmem.compile_cache import enable_compilation_cache
    from rlmem.config import build, hydra_run_dir
    from rlmem.runner import run

    # Hydra sets the root logger to INFO; JAX's backend probing would then fill the log.
    logging.getLogger("jax").setLevel(logging.WARNING)
    enable_compilation_cache()
    experiment = build(cfg)
    summary = run(experiment, hydra_run_dir())
    return float(np.mean(summary["best_eval_return"]))


if __name__ == "__main__":
    main()
