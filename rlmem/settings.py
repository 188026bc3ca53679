"""The run's typed settings outside the compiled loop: checkpoints and logging.

Built once by `rlmem.config.build` from `checkpoint.*` and `logger.*` with every null
resolved, carried by the `Experiment`, and read by `rlmem.runner` (which reads no raw
config keys). The loop's own settings are `rlmem.loop.LoopSettings`; the algorithm's are
its constructor arguments (`rlmem.agents`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckpointSettings:
    """`checkpoint.*`.

    Attributes:
      interval: steps of the run's step axis between checkpoints (null in the config: the
        run's length, i.e. only the final one).
      every_minutes: wall-clock minutes after which the next chunk's end is checkpointed
        as well (None: steps only).
      keep: checkpoints kept.
      resume: resume from the run directory's latest checkpoint if there is one.
      overwrite: with `resume=False`, allow starting over in a directory with checkpoints.
      exclude_replay: leave the replay store out of checkpoints.
    """

    interval: int
    every_minutes: float | None
    keep: int
    resume: bool
    overwrite: bool
    exclude_replay: bool


@dataclass(frozen=True)
class LoggerSettings:
    """`logger.*`.

    Attributes:
      mode: W&B mode, "offline", "online" or "disabled" (`logger=none`).
      project: W&B project.
      group: W&B group (null in the config: env-memory-batching-algo plus the job's
        arm-setting overrides, `rlmem.config.default_group`).
      tags: W&B tags: the run's names, then `logger.tags`.
      name: W&B run name prefix (None: W&B's).
    """

    mode: str
    project: str
    group: str
    tags: tuple[str, ...]
    name: str | None
