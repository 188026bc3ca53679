"""Exact resume through `train.py`: a run SIGKILLed mid-training and again during a
checkpoint write, then resumed with the same command, logs the same metrics, step for step
and bit for bit, as the same run left alone, and ends in a bit-identical training state.

The kills are real (`SIGKILL` of a `train.py` process). To land them at known moments the
killed processes run `train.py` under a small test-only hook (`_HOOKED` below, set up in
the child before `train.py` starts; nothing in rlmem knows about it):

* ``pause_after_save``: after each committed checkpoint, sleep (the kill comes while the
  run is between chunks, with one checkpoint on disk);
* ``stall_commit``: Orbax's final rename of the first checkpoint written in this process
  never happens (its temporary directory is complete but uncommitted), so the kill lands
  inside a checkpoint write, after that chunk's metrics were already logged.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.tiny_run import (
    PRIORITISED,
    ROOT,
    STEPS_PER_CHUNK,
    SWEEP,
    TOTAL_STEPS,
    checkpoint_steps,
    leaf_checksums,
    prioritised_reference_run,  # noqa: F401  (session fixture)
    read_metrics,
    reference_run,  # noqa: F401  (session fixture)
    run_ok,
    sweep_reference_run,  # noqa: F401  (session fixture)
    train_cmd,
)

_HOOKED = """
import asyncio, os, runpy, sys, time
import rlmem.checkpoint as ck
from orbax.checkpoint._src.path import atomicity

mode = os.environ["RLMEM_TEST_HOOK"]
if mode == "pause_after_save":
    save = ck.Checkpointer.save
    def paused_save(self, *args, **kwargs):
        saved = save(self, *args, **kwargs)
        if saved:
            self.wait()  # committed on disk
            print("HOOK: checkpoint committed, pausing", flush=True)
            time.sleep(600)
        return saved
    ck.Checkpointer.save = paused_save
elif mode == "stall_commit":
    async def stalled_finalize(self):
        print("HOOK: checkpoint written, commit stalled", flush=True)
        await asyncio.sleep(600)
    atomicity.AtomicRenameTemporaryPath.finalize = stalled_finalize
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _tmp_dirs(run_dir: Path) -> list[str]:
    ckpt = run_dir / "checkpoints"
    return [p.name for p in ckpt.iterdir() if "tmp" in p.name] if ckpt.is_dir() else []


def _kill_when(cmd: list[str], hook: str, ready: Callable[[], bool], log: Path) -> None:
    """Start `cmd` (train.py) under `hook`, SIGKILL it as soon as `ready()` holds."""
    hooked = [sys.executable, "-c", _HOOKED, *cmd[1:]]
    with open(log, "w") as out:
        proc = subprocess.Popen(hooked, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "RLMEM_TEST_HOOK": hook})
        try:
            deadline = time.monotonic() + 600
            while not ready():
                assert proc.poll() is None, f"exited before the kill:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "timed out waiting to kill"
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("kind", ["seeds", "sweep"])
def test_killed_and_resumed_run_is_bit_identical(kind, request, tmp_path):
    """Two seeds, or a vectorised sweep of two members (`SWEEP`): every run resumes."""
    reference_run = request.getfixturevalue(  # noqa: F811
        "reference_run" if kind == "seeds" else "sweep_reference_run")
    run_dir = tmp_path / "run"
    cmd = train_cmd(run_dir, *(SWEEP if kind == "sweep" else ()))

    # 1. Killed mid-training, once its first checkpoint is committed.
    _kill_when(cmd, "pause_after_save", lambda: bool(checkpoint_steps(run_dir)),
               tmp_path / "kill1.log")
    assert checkpoint_steps(run_dir) == [STEPS_PER_CHUNK]

    # 2. Resumed, then killed inside its first checkpoint write (metrics already logged).
    _kill_when(cmd, "stall_commit", lambda: bool(_tmp_dirs(run_dir)), tmp_path / "kill2.log")
    assert "resumed from checkpoint at env step 255" in (tmp_path / "kill2.log").read_text()
    assert checkpoint_steps(run_dir) == [STEPS_PER_CHUNK]  # the stalled one never committed
    assert _tmp_dirs(run_dir), "the kill should leave a half-written checkpoint behind"
    logged = max(row["step"] for row in read_metrics(run_dir))
    # Logged past the last committed checkpoint (the resume must skip those rows); on a
    # loaded machine the run may log one more chunk before the kill lands.
    assert logged >= 2 * STEPS_PER_CHUNK

    # 3. The same command again, undisturbed, to the end.
    stdout = run_ok(cmd)
    assert f"resumed from checkpoint at env step {STEPS_PER_CHUNK}" in stdout
    assert not _tmp_dirs(run_dir)  # the half-written checkpoint was cleaned up

    got, want = read_metrics(run_dir), read_metrics(reference_run)
    identity = lambda rows: [(r["step"], r.get("member"), r["seed"]) for r in rows]
    assert identity(got) == identity(want)
    if kind == "sweep":  # every row names its member and the member's learning rate
        assert {(r["member"], r["algo.optim.learning_rate"]) for r in got} == {
            (0, 1e-4), (1, 3e-3)}
    for a, b in zip(got, want, strict=True):
        assert a == b, f"step {a['step']} seed {a['seed']} differs from the uninterrupted run"
    assert checkpoint_steps(run_dir)[-1] == TOTAL_STEPS
    assert leaf_checksums(run_dir, TOTAL_STEPS) == leaf_checksums(reference_run, TOTAL_STEPS)


def test_prioritised_replay_resumes_bit_identically(prioritised_reference_run,  # noqa: F811
                                                    tmp_path):
    """A prioritised run killed after its first checkpoint and resumed ends with the
    uninterrupted run's metrics and state, priorities (sum-tree, max, count) included."""
    run_dir = tmp_path / "run"
    cmd = train_cmd(run_dir, *PRIORITISED)
    _kill_when(cmd, "pause_after_save", lambda: bool(checkpoint_steps(run_dir)),
               tmp_path / "kill.log")
    assert f"resumed from checkpoint at env step {STEPS_PER_CHUNK}" in run_ok(cmd)
    assert read_metrics(run_dir) == read_metrics(prioritised_reference_run)
    assert leaf_checksums(run_dir, TOTAL_STEPS) == leaf_checksums(prioritised_reference_run,
                                                                  TOTAL_STEPS)


def test_finished_run_rerun_does_nothing(reference_run):  # noqa: F811
    """Re-running a finished run's command resumes at its end: nothing logged twice."""
    before = (reference_run / "metrics.jsonl").read_text()
    stdout = run_ok(train_cmd(reference_run))
    assert f"resumed from checkpoint at env step {TOTAL_STEPS}" in stdout
    assert (reference_run / "metrics.jsonl").read_text() == before
    assert checkpoint_steps(reference_run)[-1] == TOTAL_STEPS
