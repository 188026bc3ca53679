"""Per-seed metrics to Weights & Biases and to ``run_dir/metrics.jsonl``.

    logger = MetricsLogger(run_dir, num_seeds=3, config=cfg, mode="offline",
                           group="repeat_first_easy-ffm-tape-dqn", tags=("ffm", "tape"))
    logger.log(env_steps, {"train/loss": loss, "eval/return": ret})   # values [num_seeds]
    logger.close()

* **One W&B run per seed**, all in `group`, each carrying the full config plus
  ``run_seed``. In a vectorised sweep (`rlmem.sweep`) one per member and seed, grouped
  by member (``<group>-<member label>``), each carrying its member's config. Offline by
  default (no network needed; upload later with
  ``wandb sync run_dir/wandb/offline-run-*``), ``mode="online"`` streams, ``"disabled"``
  turns W&B off. Run ids live in ``run_dir/wandb_runs.json`` so a resumed run continues
  the same W&B runs.
* **metrics.jsonl** gets one JSON line per seed and logged step:
  ``{"step": 5000, "seed": 3, "train/loss": 0.12, "eval/return": null, ...}``; a sweep's
  rows also carry ``"member": k`` and the member's values under their config keys
  (``"algo.gamma": 0.9``). Non-finite
  values (NaN = "no data yet", inf) are written as ``null`` and left out of W&B.
* **Resume safety.** Each step's lines go out in one ``write`` on an ``O_APPEND`` file, so
  a line is normally whole or absent. When the file is reopened it is repaired: every
  complete row is kept, and what cannot stay is moved (never deleted) to
  ``metrics.jsonl.rejected`` under a ``#`` note saying why: lines that are not a whole JSON
  row (torn, garbage, invalid UTF-8), repeated ``(step, seed)`` rows, and, given
  `resume_step` (the step of the checkpoint the run resumes from), every row after it,
  which the resumed run logs again (bit-identical with the replay store checkpointed, so
  with the same values); without `resume_step`, a last step missing some seeds. A step
  <= the last step kept is skipped. W&B gets a step only if it exceeds every step ever
  written to the jsonl (rows set aside included): the jsonl is written first, so W&B may
  miss the step of a kill, but never gets one twice.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlmem.checks import positive_int
from rlmem.rundir import METRICS_FILE, REJECTED_FILE, RUN_IDS_FILE
from rlmem.sweep import Run, member_config

MODES = ("offline", "online", "disabled")
__all__ = ["METRICS_FILE", "MODES", "REJECTED_FILE", "RUN_IDS_FILE", "MetricsLogger",
           "read_metrics"]


def _scalar(value: Any) -> float | int | bool | None:
    """A JSON scalar; non-finite floats become None."""
    item = np.asarray(value).item()
    if isinstance(item, float) and not math.isfinite(item):
        return None
    return item


def _parse(line: bytes) -> dict[str, Any] | None:
    """The row of a complete line (a JSON object with int `step` and `seed`, and an int
    `member` if any, ended by a newline), or None."""
    if not line.endswith(b"\n"):
        return None
    try:
        row = json.loads(line.decode("utf-8"))
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return None
    ok = (isinstance(row, dict) and all(type(row.get(k)) is int for k in ("step", "seed"))
          and type(row.get("member", 0)) is int)
    return row if ok else None


def _identity(row: dict[str, Any]) -> tuple[int, int, int]:
    """What a row is the row of: `(step, member, seed)` (member -1 outside a sweep)."""
    return row["step"], row.get("member", -1), row["seed"]


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The complete rows of a ``metrics.jsonl``, in file order; a torn last line (still
    being written) is ignored, other unreadable lines are skipped with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    rows, bad = [], 0
    for line in path.read_bytes().splitlines(keepends=True):
        row = _parse(line)
        if row is not None:
            rows.append(row)
        elif line.strip() and line.endswith(b"\n"):
            bad += 1
    if bad:
        warnings.warn(f"{path}: skipped {bad} unreadable line(s)", stacklevel=2)
    return rows


def _max_step(path: Path) -> int | None:
    """The largest step of the complete rows in `path` (None: none or no file)."""
    if not path.exists():
        return None
    steps = [row["step"] for line in path.read_bytes().splitlines(keepends=True)
             if (row := _parse(line)) is not None]
    return max(steps, default=None)


def _repair(path: Path, rejected: Path, num_seeds: int,
            resume_step: int | None) -> tuple[int | None, int]:
    """Repair `path` in place (see the module docstring; set-aside lines go to
    `rejected`); return its last kept step and the largest step ever written."""
    ever = _max_step(rejected)
    if not path.exists():
        return None, -1 if ever is None else ever
    kept: list[tuple[dict, bytes]] = []
    aside: list[tuple[str, bytes]] = []
    seen: set[tuple[int, int, int]] = set()
    for line in path.read_bytes().splitlines(keepends=True):
        if not line.strip():
            continue
        row = _parse(line)
        if row is None:
            aside.append(("not a complete JSON row", line))
            continue
        step, key = row["step"], _identity(row)
        ever = step if ever is None else max(ever, step)
        if key in seen:
            aside.append(("a repeated (step, member, seed)", line))
        elif resume_step is not None and step > resume_step:
            aside.append((f"after the checkpoint at step {resume_step}; logged again", line))
        else:
            kept.append((row, line))
            seen.add(key)
    if resume_step is None and kept:  # without a checkpoint to go by: the caller re-logs
        last, tail = kept[-1][0]["step"], 0  # a last step that misses seeds
        while tail < len(kept) and kept[-1 - tail][0]["step"] == last:
            tail += 1
        if tail < num_seeds:
            aside.extend(("an incomplete last step; logged again", line)
                         for _, line in kept[-tail:])
            kept = kept[:-tail]
    if aside:
        note = time.strftime("%Y-%m-%d %H:%M:%S")
        out, reason = [], None
        for why, line in aside:
            if why != reason:
                out.append(f"# {note} set aside from {path.name} on reopen: {why}\n".encode())
                reason = why
            out.append(line if line.endswith(b"\n") else line + b"\n")
        with open(rejected, "ab") as f:
            f.write(b"".join(out))
            f.flush()
            os.fsync(f.fileno())  # on disk before the lines leave metrics.jsonl
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(b"".join(line for _, line in kept))
        os.replace(tmp, path)
    steps = [row["step"] for row, _ in kept] + ([resume_step] if resume_step else [])
    return max(steps, default=None), -1 if ever is None else ever


def _member_columns(run: Run) -> dict[str, Any]:
    """A sweep run's identity columns: `member` and the member's values by config key."""
    if run.member is None:
        return {}
    return {"member": run.member.index, **run.member.values}


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
      runs: instead of `seeds`, each index's `rlmem.sweep.Run` (seed and sweep member).
      resume_step: the step of the checkpoint the run resumes from (0: from scratch);
        the rows after it are set aside and logged again. None: keep every complete row.
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
        runs: Sequence[Run] | None = None,
        resume_step: int | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"logger mode must be one of {MODES}, got mode={mode!r}")
        positive_int("num_seeds", num_seeds)
        if runs is None:
            seeds = list(range(num_seeds)) if seeds is None else [int(s) for s in seeds]
            runs = [Run(seed) for seed in seeds]
        runs, seeds = list(runs), [run.seed for run in runs]
        if len(runs) != num_seeds:
            raise ValueError(f"seeds must have num_seeds={num_seeds} entries, got {seeds}")
        keys = [run.key for run in runs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"every run needs its own seed or sweep member, got {keys}")
        self.run_ids = runs
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.num_seeds, self.seeds, self.mode = num_seeds, seeds, mode
        self.path = self.run_dir / METRICS_FILE
        self.last_step, self.wandb_step = _repair(
            self.path, self.run_dir / REJECTED_FILE, num_seeds, resume_step)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.wandb_runs: list[Any] = []
        if mode != "disabled":
            self.wandb_runs = self._start_wandb(config, project, group, tuple(tags), name)

    def _start_wandb(self, config: dict, project: str, group: str | None,
                     tags: tuple[str, ...], name: str | None) -> list[Any]:
        import wandb  # imported here: `logger=none` runs never pay for it

        ids_path = self.run_dir / RUN_IDS_FILE
        ids = json.loads(ids_path.read_text())["runs"] if ids_path.exists() else {}
        missing = [run.key for run in self.run_ids if run.key not in ids]
        if missing:
            ids.update({key: secrets.token_hex(4) for key in missing})
            # Persist before starting the runs: a kill right after still resumes them.
            _write_json_atomic(ids_path, {"project": project, "group": group, "runs": ids})
        settings = wandb.Settings(console="off", x_disable_stats=True, quiet=True,
                                  x_save_requirements=False)
        runs = []
        for run in self.run_ids:
            member, prefix, group_of, extra = run.member, name or group, group, {}
            if member is not None:  # grouped by member; each named and configured as it
                group_of = f"{group}-{member.label}" if group else member.label
                prefix = f"{prefix}-{member.label}" if prefix else member.label
                extra = {"sweep_member": member.index}
            runs.append(wandb.init(
                project=project,
                group=group_of,
                tags=list(tags),
                name=f"{prefix}-seed{run.seed}" if prefix else None,
                id=ids[run.key],
                resume="allow",
                dir=str(self.run_dir),
                mode=self.mode,
                config={**member_config(config, member), "run_seed": run.seed, **extra},
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
            {"step": step, "seed": run.seed, **_member_columns(run),
             **{k: _scalar(v[i]) for k, v in columns.items()}}
            for i, run in enumerate(self.run_ids)
        ]
        data = "".join(json.dumps(row) + "\n" for row in rows).encode()
        while data:  # one write() in practice; loop only on a short write
            data = data[os.write(self._fd, data):]
        self.last_step = step
        if step <= self.wandb_step:  # W&B had it before a repair set it aside
            return
        self.wandb_step = step
        for run, one, row in zip(self.wandb_runs, self.run_ids, rows, strict=False):
            # (no W&B runs when disabled) commit=True: W&B otherwise holds a row until the
            # next step, and a kill right after this call would drop it from the W&B run
            # (the jsonl has it already). Only metrics: the run's identity columns are in
            # its W&B config.
            identity = {"step", "seed", *_member_columns(one)}
            run.log({k: v for k, v in row.items() if k not in identity and v is not None},
                    step=step, commit=True)

    def close(self) -> None:
        """Finish the W&B runs and close the file (idempotent)."""
        for run in self.wandb_runs:
            run.finish()
        self.wandb_runs = []
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
