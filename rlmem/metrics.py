"""Per-seed metrics to Weights & Biases and to ``run_dir/metrics.jsonl``.

    logger = MetricsLogger(run_dir, num_seeds=3, config=cfg, mode="offline",
                           group="repeat_first_easy-ffm-tape-dqn", tags=("ffm", "tape"))
    logger.log(env_steps, {"train/loss": loss, "eval/return": ret})   # values [num_seeds]
    logger.close()

* **One W&B run per seed**, all in `group`, each carrying the full config plus
  ``run_seed``. Offline by default (no network needed; upload later with
  ``wandb sync run_dir/wandb/offline-run-*``), ``mode="online"`` streams, ``"disabled"``
  turns W&B off. Run ids live in ``run_dir/wandb_runs.json`` so a resumed run continues
  the same W&B runs.
* **metrics.jsonl** gets one JSON line per seed and logged step:
  ``{"step": 5000, "seed": 3, "train/loss": 0.12, "eval/return": null, ...}``. Non-finite
  values (NaN = "no data yet", inf) are written as ``null`` and left out of W&B.
* **Resume safety.** Each step's lines go out in one ``write`` on an ``O_APPEND`` file, so
  a line is whole or absent; a torn tail (a kill mid-write) is cut off when the file is
  reopened, together with a last step missing some seeds. A step <= the last step in the
  file is skipped (the jsonl is written before W&B, so W&B may miss the step of a kill, but
  never gets one twice). When a run resumes from a checkpoint older than its last logged
  step, the steps in between keep their first values; with the replay store checkpointed,
  resumed runs are bit-identical, so those values are the ones the resumed run computes.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MODES = ("offline", "online", "disabled")
METRICS_FILE = "metrics.jsonl"
RUN_IDS_FILE = "wandb_runs.json"


def _scalar(value: Any) -> float | int | bool | None:
    """A JSON scalar; non-finite floats become None."""
    item = np.asarray(value).item()
    if isinstance(item, float) and not math.isfinite(item):
        return None
    return item


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The whole lines of a ``metrics.jsonl`` (a torn last line is ignored)."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_bytes()
    whole = text[: text.rfind(b"\n") + 1]
    return [json.loads(line) for line in whole.splitlines() if line.strip()]


def _repair(path: Path, num_seeds: int) -> int | None:
    """Cut a torn tail and an incomplete last step off `path`; return its last step."""
    if not path.exists():
        return None
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1  # bytes up to the last complete line
    lines = data[:keep].splitlines(keepends=True)
    rows = [json.loads(line) for line in lines if line.strip()]
    if rows:
        last = rows[-1]["step"]
        tail = sum(1 for row in rows if row["step"] == last)
        if tail < num_seeds:  # killed between seeds of one step: drop the partial step
            keep -= sum(len(line) for line in lines[len(lines) - tail:])
            rows = rows[: len(rows) - tail]
    if keep != len(data):
        with open(path, "r+b") as f:
            f.truncate(keep)
    return max((row["step"] for row in rows), default=None)


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)  # readers see the old or the new file, never a half-written one


class MetricsLogger:
    """Logs `[num_seeds]` metrics per step to W&B (one run per seed) and ``metrics.jsonl``.

    Args:
      run_dir: the run directory; gets ``metrics.jsonl``, ``wandb_runs.json``, ``wandb/``.
      num_seeds: seeds trained side by side (the leading axis of every logged value).
      config: the composed config (JSON-able dict), attached to every W&B run.
      mode: "offline" (default; no network), "online", or "disabled" (no W&B, jsonl only).
      project, group, tags, name: W&B project, group (e.g. the experiment or sweep), tags,
        and a run-name prefix (runs are named ``<name or group>-seed<seed>``).
      seeds: the seed of each index (default ``0..num_seeds-1``).
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        num_seeds: int,
        config: dict,
        mode: str = "offline",
        project: str = "rlmem",
        group: str | None = None,
        tags: Sequence[str] = (),
        name: str | None = None,
        seeds: Sequence[int] | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"logger mode must be one of {MODES}, got mode={mode!r}")
        if not isinstance(num_seeds, int) or num_seeds < 1:
            raise ValueError(f"num_seeds must be an int >= 1, got num_seeds={num_seeds!r}")
        seeds = list(range(num_seeds)) if seeds is None else [int(s) for s in seeds]
        if len(seeds) != num_seeds:
            raise ValueError(f"seeds must have num_seeds={num_seeds} entries, got {seeds}")
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.num_seeds, self.seeds, self.mode = num_seeds, seeds, mode
        self.path = self.run_dir / METRICS_FILE
        self.last_step = _repair(self.path, num_seeds)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.runs: list[Any] = []
        if mode != "disabled":
            self.runs = self._start_wandb(config, project, group, tuple(tags), name)

    def _start_wandb(self, config: dict, project: str, group: str | None,
                     tags: tuple[str, ...], name: str | None) -> list[Any]:
        import wandb  # imported here: `logger=none` runs never pay for it

        ids_path = self.run_dir / RUN_IDS_FILE
        ids = json.loads(ids_path.read_text())["runs"] if ids_path.exists() else {}
        missing = [s for s in self.seeds if str(s) not in ids]
        if missing:
            ids.update({str(s): secrets.token_hex(4) for s in missing})
            # Persist before starting the runs: a kill right after still resumes them.
            _write_json_atomic(ids_path, {"project": project, "group": group, "runs": ids})
        settings = wandb.Settings(console="off", x_disable_stats=True, quiet=True,
                                  x_save_requirements=False)
        runs = []
        for seed in self.seeds:
            runs.append(wandb.init(
                project=project,
                group=group,
                tags=list(tags),
                name=f"{name or group}-seed{seed}" if (name or group) else None,
                id=ids[str(seed)],
                resume="allow",
                dir=str(self.run_dir),
                mode=self.mode,
                config={**config, "run_seed": seed},
                reinit="create_new",  # one live run per seed in this process
                settings=settings,
            ))
        return runs

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Log `metrics` at `step` for every seed; a step <= the last logged one is skipped.

        Args:
          step: the x-axis value (env steps); must grow from call to call.
          metrics: namespaced names ("train/loss", "eval/return", "collect/...",
            "perf/...") to `[num_seeds]` arrays or scalars (the same for every seed).
        """
        step = int(step)
        if self._fd is None:
            raise RuntimeError("MetricsLogger.log called after close()")
        if self.last_step is not None and step <= self.last_step:
            return
        columns: dict[str, np.ndarray] = {}
        for key, value in metrics.items():
            arr = np.asarray(value)
            if arr.ndim == 0:
                arr = np.broadcast_to(arr, (self.num_seeds,))
            if arr.shape != (self.num_seeds,):
                raise ValueError(
                    f"metric {key!r} has shape {arr.shape}; expected a scalar or "
                    f"[num_seeds]=({self.num_seeds},)")
            columns[str(key)] = arr
        rows = [
            {"step": step, "seed": seed, **{k: _scalar(v[i]) for k, v in columns.items()}}
            for i, seed in enumerate(self.seeds)
        ]
        data = "".join(json.dumps(row) + "\n" for row in rows).encode()
        while data:  # one write() in practice; loop only on a short write
            data = data[os.write(self._fd, data):]
        self.last_step = step
        for run, row in zip(self.runs, rows, strict=False):  # no runs when disabled
            # commit=True: W&B otherwise holds a row until the next step, and a kill right
            # after this call would drop it from the W&B run (the jsonl has it already).
            run.log({k: v for k, v in row.items()
                     if k not in ("step", "seed") and v is not None}, step=step, commit=True)

    def close(self) -> None:
        """Finish the W&B runs and close the file (idempotent)."""
        for run in self.runs:
            run.finish()
        self.runs = []
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
