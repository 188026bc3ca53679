"""Run-directory policy: one process per run directory, refused starts, the recorded config,
and how `train.py` reports a run that cannot start (one line, exit status 2)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rlmem.checkpoint import CheckpointCorruptError, Checkpointer
from rlmem.data.tape import is_replay_store
from rlmem.rundir import (
    LOCK_FILE,
    RunDirInUseError,
    RunDirLockedError,
    contents,
    corrupt_name,
    lock_run_dir,
    open_checkpoints,
    prepare_run_dir,
    restore_config,
)
from tests.tiny_run import ROOT, TOTAL_STEPS, reference_run, train_cmd  # noqa: F401  (fixture)

# A child process that holds the lock on argv[1] until killed.
_HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from rlmem.rundir import lock_run_dir
lock = lock_run_dir(sys.argv[1])
print("locked", flush=True)
time.sleep(600)
"""


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER.format(root=str(ROOT)), str(run_dir)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "locked\n"
    return proc


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()


# ------------------------------------------------------------------------------ the lock
def test_second_process_is_refused_until_the_holder_dies(tmp_path):
    holder = _hold_lock(tmp_path)
    try:
        with pytest.raises(RunDirLockedError, match=rf"in use by another rlmem process "
                                                    rf"\(PID {holder.pid} on "):
            lock_run_dir(tmp_path)
    finally:
        _kill(holder)  # SIGKILL: no clean-up ran, the OS dropped the lock
    with lock_run_dir(tmp_path) as lock:
        assert (tmp_path / LOCK_FILE).read_text().split()[0] == str(os.getpid())
        assert lock_run_dir(tmp_path) is lock  # re-entrant within the process
        lock.release()
    holder = _hold_lock(tmp_path)  # released: another process can take it
    _kill(holder)


# ------------------------------------------------------------------------------ starts
def test_prepare_run_dir(tmp_path):
    (tmp_path / ".hydra").mkdir()  # Hydra writes this before the job: not a "used" dir
    (tmp_path / "checkpoints" / "config").mkdir(parents=True)  # nor a recorded config
    prepare_run_dir(tmp_path, resume=False, overwrite=False)
    ckpt = Checkpointer(tmp_path / "checkpoints", interval=1, async_save=False)
    ckpt.save(1, {"x": np.ones(1)})
    ckpt.close()
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "seed": 0}\n')
    prepare_run_dir(tmp_path, resume=True, overwrite=False)  # resume: fine
    with pytest.raises(FileExistsError, match=r"checkpoints, metrics.jsonl\) but checkpoint"):
        prepare_run_dir(tmp_path, resume=False, overwrite=False)
    assert (tmp_path / "checkpoints" / "1").is_dir()  # refusing touches nothing
    prepare_run_dir(tmp_path, resume=False, overwrite=True)
    names = sorted(p.name.split(".old-")[0] for p in tmp_path.iterdir() if ".old-" in p.name)
    assert names == ["checkpoints", "metrics.jsonl"]
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.jsonl").exists()
    prepare_run_dir(tmp_path, resume=False, overwrite=False)  # now unused again


def _corrupt_run(run_dir: Path) -> None:
    """A run whose checkpoints (steps 1 and 2) are all unreadable, with metrics."""
    ckpt = Checkpointer(run_dir / "checkpoints", interval=1, async_save=False)
    for step in (1, 2):
        ckpt.save(step, {"x": np.full(3, step)})
    ckpt.close()
    for step in (1, 2):
        shutil.rmtree(run_dir / "checkpoints" / str(step) / "manifest")
    (run_dir / "metrics.jsonl").write_text('{"step": 2, "seed": 0}\n')


def test_all_checkpoints_corrupt_is_refused_unless_overwrite(tmp_path):
    _corrupt_run(tmp_path)
    like = {"x": np.zeros(3, np.int64)}
    kwargs = dict(resume=True, overwrite=False, interval=1)
    with pytest.raises(CheckpointCorruptError, match=r"no valid checkpoint(.|\n)*"
                                                     r"set checkpoint.overwrite=true"), \
            pytest.warns(UserWarning, match="moving it to"):
        open_checkpoints(tmp_path, like, **kwargs)
    # The next start: no silent training from step 0 under the old metrics.
    with pytest.raises(RunDirInUseError, match=r"no valid checkpoint left: every one was "
                                               r"found corrupt.*corrupt-1, corrupt-2.*"
                                               r"checkpoint.overwrite=true"):
        open_checkpoints(tmp_path, like, **kwargs)
    kept = sorted(p.name for p in tmp_path.iterdir())
    ckpt, restored = open_checkpoints(tmp_path, like, **{**kwargs, "overwrite": True})
    assert restored is None and ckpt.latest_step() is None
    ckpt.close()
    moved = sorted(p.name.split(".old-")[0] for p in tmp_path.iterdir() if ".old-" in p.name)
    assert moved == ["checkpoints", "metrics.jsonl"] and kept == ["checkpoints",
                                                                  "metrics.jsonl", LOCK_FILE]
    # Every refusal released the lock: another process can take it.
    _kill(_hold_lock(tmp_path))


def test_all_corrupt_with_overwrite_starts_over_at_once(tmp_path):
    _corrupt_run(tmp_path)
    with pytest.warns(UserWarning, match="moving it to"):
        ckpt, restored = open_checkpoints(tmp_path, {"x": np.zeros(3, np.int64)},
                                          resume=True, overwrite=True, interval=1)
    assert restored is None and ckpt.all_steps() == []
    assert not (tmp_path / "metrics.jsonl").exists()
    ckpt.close()


def test_config_recorded_with_the_first_save_and_restored(tmp_path):
    with lock_run_dir(tmp_path) as lock:
        lock.hydra_files = {".hydra/config.yaml": "memory: ffm\n"}
        ckpt = Checkpointer(tmp_path / "checkpoints", interval=1, async_save=False,
                            run_lock=lock_run_dir(tmp_path))
        assert not lock.recorded
        ckpt.save(1, {"x": np.ones(1)})
        ckpt.close()
        assert lock.recorded
    assert (tmp_path / "checkpoints" / "config" / "config.yaml").read_text() == "memory: ffm\n"
    (tmp_path / ".hydra" / "config.yaml").write_text("memory: lru\n")  # a refused start
    assert restore_config(tmp_path)
    assert (tmp_path / ".hydra" / "config.yaml").read_text() == "memory: ffm\n"
    assert not restore_config(tmp_path / "elsewhere")


def test_contents_lists_the_outputs_present(tmp_path):
    assert contents(tmp_path) == []
    (tmp_path / "metrics.jsonl").write_text("")
    (tmp_path / ".hydra").mkdir()
    assert contents(tmp_path) == ["metrics.jsonl", ".hydra/"]
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "wandb").mkdir()
    assert contents(tmp_path) == ["metrics.jsonl", "checkpoints/", "wandb/", ".hydra/"]
    assert corrupt_name(12) == "corrupt-12"


def test_open_checkpoints_exclude_replay_means_the_replay_predicate(tmp_path):
    like = {"x": np.zeros(3, np.int64)}
    ckpt, restored = open_checkpoints(tmp_path, like, resume=False, overwrite=False,
                                      interval=1, exclude_replay=True)
    assert ckpt.exclude is is_replay_store and restored is None
    ckpt.close()
    ckpt, _ = open_checkpoints(tmp_path, like, resume=True, overwrite=False, interval=1)
    assert ckpt.exclude is None
    ckpt.close()
    with pytest.raises(TypeError, match="not both"):
        open_checkpoints(tmp_path, like, resume=True, overwrite=False, interval=1,
                         exclude=is_replay_store, exclude_replay=True)


# ------------------------------------------------------------------------------ train.py
def _train(run_dir: Path, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(train_cmd(run_dir, *overrides), cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env or {})})


def _recorded_run(run_dir: Path) -> str:
    """A run directory whose checkpoints' config is on record (as a first save leaves it)."""
    snapshot = run_dir / "checkpoints" / "config"
    snapshot.mkdir(parents=True)
    for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
        (snapshot / name).write_text(f"# the run's {name}\n")
    return "# the run's config.yaml\n"


def test_train_py_refusals_are_one_line_and_keep_the_config(tmp_path):
    """A config error and a locked run directory: exit status 2, one line on stderr, no
    traceback, and `.hydra/` still describes the run's checkpoints."""
    recorded = _recorded_run(tmp_path)
    proc = _train(tmp_path, "loop.iterations=0")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith("rlmem: error: loop.iterations")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert (tmp_path / ".hydra" / "config.yaml").read_text() == recorded

    holder = _hold_lock(tmp_path)
    try:
        proc = _train(tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    finally:
        _kill(holder)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("rlmem: error: ") and f"(PID {holder.pid} on " in last
    assert "Traceback" in proc.stderr  # HYDRA_FULL_ERROR=1 asks for it
    assert (tmp_path / ".hydra" / "config.yaml").read_text() == recorded


def test_train_py_refused_resume_keeps_the_config(reference_run, tmp_path):  # noqa: F811
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    before = {p.name: p.read_text() for p in (run_dir / ".hydra").iterdir()}
    assert before["config.yaml"] == (run_dir / "checkpoints/config/config.yaml").read_text()
    proc = _train(run_dir, "memory.output_size=16")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith(f"rlmem: error: checkpoint step {TOTAL_STEPS} in ")
    assert "does not match this run:\n  fingerprint.memory.output_size: checkpoint 8, this " \
           "run 16\n" in proc.stderr and "Traceback" not in proc.stderr
    assert {p.name: p.read_text() for p in (run_dir / ".hydra").iterdir()} == before


@pytest.mark.slow
def test_train_py_all_checkpoints_corrupt(reference_run, tmp_path):  # noqa: F811
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    for step_dir in (run_dir / "checkpoints").iterdir():
        if step_dir.name.isdigit():
            shutil.rmtree(step_dir / "manifest")
    proc = _train(run_dir)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "rlmem: error: no valid checkpoint in " in proc.stderr
    proc = _train(run_dir)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.count("\n") == 1 and "every one was found corrupt" in proc.stderr
