"""Run-directory policy: what lives where, one process at a time, what may start where.

This module is the one place that spells the run directory's names (the constants and
`corrupt_name` / `aside_name` below); `rlmem.checkpoint`, `rlmem.metrics` and the runner
import them.

    <run_dir>/
      rlmem.lock                  the lock: held (flock) by the process running the run
      .hydra/                     Hydra's record of the config (rewritten at every start)
      checkpoints/<step>/         Orbax checkpoints (`rlmem.checkpoint`)
      checkpoints/corrupt-<step>/ checkpoints found corrupt, moved aside
      checkpoints/config/         the Hydra files of the config that wrote the checkpoints
      metrics.jsonl               one JSON row per seed and step (`rlmem.metrics`)
      metrics.jsonl.rejected      lines taken out of metrics.jsonl on repair (never deleted)
      wandb_runs.json, wandb/     the W&B run ids and offline runs

* **One process per run directory.** `lock_run_dir` takes an exclusive `flock` on
  ``rlmem.lock`` (and writes its PID there); a second process is refused with
  `RunDirLockedError` naming the holder. The OS drops the lock when the holder dies,
  however it dies, so a SIGKILLed run never blocks its own resume.
* **Nothing is mixed or overwritten by accident.** `prepare_run_dir` refuses a fresh start
  in a directory that holds a run, and a resume of a run whose every checkpoint was found
  corrupt (it would train from step 0 under the old metrics), unless
  ``checkpoint.overwrite=true``: then the old files are renamed ``<name>.old-<unix time>``.
* **The recorded config describes the checkpoints.** Hydra rewrites ``.hydra/`` before a
  run can be checked; the process that writes a run's checkpoints keeps a copy of its
  Hydra files in ``checkpoints/config/`` (with its first checkpoint) and `restore_config`
  puts them back when a start is refused.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rlmem.errors import RunError

LOCK_FILE = "rlmem.lock"
HYDRA_SUBDIR = ".hydra"
CHECKPOINT_SUBDIR = "checkpoints"
CONFIG_SUBDIR = "config"  # in checkpoints/: the config that wrote them
CORRUPT_PREFIX = "corrupt-"  # in checkpoints/: corrupt-<step>, a step moved aside
METRICS_FILE = "metrics.jsonl"
REJECTED_FILE = "metrics.jsonl.rejected"
RUN_IDS_FILE = "wandb_runs.json"
WANDB_SUBDIR = "wandb"  # W&B's own name: `wandb.init(dir=run_dir)` writes here
# What makes a run directory "used": a fresh run must not mix with these.
RUN_STATE_FILES = (CHECKPOINT_SUBDIR, METRICS_FILE, REJECTED_FILE, RUN_IDS_FILE)
# A run's outputs as its last message lists them (`contents`); folders end in "/".
OUTPUTS = (METRICS_FILE, f"{CHECKPOINT_SUBDIR}/", f"{WANDB_SUBDIR}/", f"{HYDRA_SUBDIR}/")


def corrupt_name(step: int) -> str:
    """The name a corrupt checkpoint step directory is moved aside to, in checkpoints/."""
    return f"{CORRUPT_PREFIX}{step}"


def aside_name(name: str, stamp: int) -> str:
    """The name a used run file or folder is moved aside to (`checkpoint.overwrite`)."""
    return f"{name}.old-{stamp}"


def contents(run_dir: str | Path) -> list[str]:
    """Which of `OUTPUTS` `run_dir` holds, in that order (folders with a trailing "/")."""
    return [name for name in OUTPUTS if (Path(run_dir) / name.rstrip("/")).exists()]


class RunDirLockedError(RunError):
    """Another process holds the run directory."""


class RunDirInUseError(RunError, FileExistsError):
    """The run directory holds a run that this start may not continue or replace."""


# ------------------------------------------------------------------------------ lock
class RunLock:
    """This process's exclusive lock on a run directory (see `lock_run_dir`).

    Re-entrant within the process: every `lock_run_dir` of a held directory returns the
    same object, and the lock is dropped when each has been released. `hydra_files`
    (relative path -> text) is the Hydra record of the config this process runs;
    `record_config` writes it (once) as the config of the run's checkpoints.
    """

    def __init__(self, run_dir: Path, fd: int | None):
        self.run_dir, self._fd, self._depth = run_dir, fd, 1
        self.hydra_files: Mapping[str, str] | None = None
        self.recorded = False

    def record_config(self) -> None:
        """Keep this process's Hydra files in ``checkpoints/config/`` and put them back in
        place (a refused process may have overwritten them); called with the first
        checkpoint this process writes."""
        if self.recorded or not self.hydra_files:
            return
        snapshot = self.run_dir / CHECKPOINT_SUBDIR / CONFIG_SUBDIR
        for rel, text in self.hydra_files.items():
            _write_atomic(snapshot / Path(rel).name, text)
            _write_atomic(self.run_dir / rel, text)
        self.recorded = True

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            _HELD.pop(self.run_dir, None)
            if self._fd is not None:
                os.close(self._fd)  # drops the flock
                self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


_HELD: dict[Path, RunLock] = {}


def lock_run_dir(run_dir: str | Path) -> RunLock:
    """Take the exclusive lock on `run_dir` (created if missing); release it when done.

    Raises:
      RunDirLockedError: another process holds it; the message names its PID and host.
    """
    run_dir = Path(run_dir).resolve()
    held = _HELD.get(run_dir)
    if held is not None:
        held._depth += 1
        return held
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            os.close(fd)  # e.g. a file system without flock: run, but say so
            warnings.warn(f"cannot lock {run_dir} ({err.strerror}); make sure no other "
                          "process uses this run directory", stacklevel=2)
            lock = _HELD[run_dir] = RunLock(run_dir, None)
            return lock
        holder = os.pread(fd, 200, 0).decode(errors="replace").split()
        os.close(fd)
        who = (f"PID {holder[0]} on {holder[1]}" if len(holder) >= 2
               else "a process that has not written its PID yet")
        raise RunDirLockedError(
            f"{run_dir} is in use by another rlmem process ({who}); two processes on one "
            "run directory corrupt it. Wait for that run to end, stop it, or choose "
            "another hydra.run.dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    lock = _HELD[run_dir] = RunLock(run_dir, fd)
    return lock


# ------------------------------------------------------------------------------ starts
def _steps(ckpt: Path) -> list[str]:
    return [p.name for p in ckpt.iterdir() if p.is_dir() and p.name.isdigit()]


def _used(directory: Path) -> list[Path]:
    used = []
    for name in RUN_STATE_FILES:
        path = directory / name
        if path.is_dir():
            if any(p.name != CONFIG_SUBDIR for p in path.iterdir()):
                used.append(path)
        elif path.exists():
            used.append(path)
    return used


def _move_aside(paths: list[Path]) -> None:
    stamp = int(time.time())
    for path in paths:
        path.rename(path.with_name(aside_name(path.name, stamp)))


def prepare_run_dir(directory: str | Path, resume: bool, overwrite: bool = False) -> None:
    """Check that a run may start in `directory`; call it before building the Checkpointer.

    A directory is "used" when it holds checkpoints, ``metrics.jsonl`` or
    ``wandb_runs.json`` (Hydra's ``.hydra/``, the log file and the lock do not count).

    Args:
      directory: the run directory.
      resume: `checkpoint.resume`: continue the run from its latest checkpoint, or from
        step 0 if it never wrote one; refused when checkpoints were written but all were
        found corrupt (`checkpoints/corrupt-*` and no valid step).
      overwrite: `checkpoint.overwrite`: start fresh where a start is refused; the old
        files are renamed ``<name>.old-<unix time>`` (never deleted), so the new run
        neither mixes checkpoint steps nor skips metric steps nor reuses W&B runs.

    Raises:
      RunDirInUseError: (a `FileExistsError`) a refused start, without `overwrite`.
    """
    directory = Path(directory)
    used = _used(directory)
    if resume:
        ckpt = directory / CHECKPOINT_SUBDIR
        corrupt = sorted(p.name for p in ckpt.glob(f"{CORRUPT_PREFIX}*")) if ckpt.is_dir() else []
        if not corrupt or _steps(ckpt):
            return
        if not overwrite:
            raise RunDirInUseError(
                f"{directory} has no valid checkpoint left: every one was found corrupt and "
                f"moved aside ({', '.join(corrupt)}), so a resume would train from step 0 "
                "under the old metrics. Set checkpoint.overwrite=true to move the old files "
                "aside and start again from step 0, or choose another hydra.run.dir")
    elif used and not overwrite:
        raise RunDirInUseError(
            f"{directory} already holds a run ({', '.join(p.name for p in used)}) but "
            "checkpoint.resume=false; resume it (checkpoint.resume=true), pick a new "
            "hydra.run.dir, or set checkpoint.overwrite=true to move the old files aside")
    _move_aside(used)


def open_checkpoints(
    run_dir: str | Path,
    like: Any,
    *,
    resume: bool,
    overwrite: bool,
    exclude: Callable[[Any], bool] | None = None,
    exclude_replay: bool = False,
    **checkpointer_args: Any,
) -> tuple[Any, Any]:
    """Lock `run_dir`, check the start (`prepare_run_dir`) and open its checkpoints.

    `exclude` (subtrees left out of the checkpoints) and the other `checkpointer_args` go
    to `rlmem.checkpoint.Checkpointer`; `exclude_replay=True` (the config's
    `checkpoint.exclude_replay`) is `exclude=rlmem.data.tape.is_replay_store`.

    Returns `(checkpointer, restored)`: a `rlmem.checkpoint.Checkpointer` on
    ``run_dir/checkpoints`` that holds the lock until its `close()` (and records the
    config with its first save, see `RunLock.record_config`), and the state restored from
    its latest valid checkpoint into `like`'s shape, or None for a start from step 0. If
    every checkpoint turns out corrupt, `overwrite` starts from step 0 with the old files
    moved aside; otherwise `CheckpointCorruptError` is raised.
    """
    from rlmem.checkpoint import CheckpointCorruptError, Checkpointer

    if exclude_replay:
        if exclude is not None:
            raise TypeError("open_checkpoints takes exclude or exclude_replay=True, not both")
        from rlmem.data.tape import is_replay_store as exclude
    checkpointer_args["exclude"] = exclude
    run_dir = Path(run_dir)
    lock = lock_run_dir(run_dir)
    try:
        prepare_run_dir(run_dir, resume, overwrite)
        ckpt = Checkpointer(run_dir / CHECKPOINT_SUBDIR, run_lock=lock, **checkpointer_args)
    except BaseException:
        lock.release()
        raise
    try:
        if resume and ckpt.latest_step() is not None:
            try:
                return ckpt, ckpt.restore(like)[0]
            except CheckpointCorruptError:
                if not overwrite:
                    raise
            lock_run_dir(run_dir)  # held across the re-open
            ckpt.close()
            try:
                prepare_run_dir(run_dir, resume, overwrite)  # moves the corrupt run aside
                ckpt = Checkpointer(run_dir / CHECKPOINT_SUBDIR, run_lock=lock,
                                    **checkpointer_args)
            except BaseException:
                lock.release()
                raise
        return ckpt, None
    except BaseException:
        ckpt.close()
        raise


# ------------------------------------------------------------------------------ config
def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)  # readers see the old or the new file, never half of one


def restore_config(run_dir: str | Path, hydra_subdir: str = HYDRA_SUBDIR) -> bool:
    """Put the config of the run's checkpoints back into ``<run_dir>/<hydra_subdir>/``
    (after a refused start overwrote it); False when no copy was recorded."""
    snapshot = Path(run_dir) / CHECKPOINT_SUBDIR / CONFIG_SUBDIR
    files = sorted(p for p in snapshot.glob("*.yaml")) if snapshot.is_dir() else []
    for path in files:
        _write_atomic(Path(run_dir) / hydra_subdir / path.name, path.read_text())
    return bool(files)
