"""Stopping and resuming: SIGTERM/SIGINT finish the chunk in flight, checkpoint, and exit
with one line; the same command resumes bit-exactly. Checkpoints by wall-clock time."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from rlmem.config import ConfigError, build
from rlmem.runner import run
from rlmem.stopping import RunStopped, StopRequest
from tests.compose import compose_cfg
from tests.tiny_run import (
    ROOT,
    STEPS_PER_CHUNK,
    TINY_BASE,
    TOTAL_STEPS,
    checkpoint_steps,
    leaf_checksums,
    read_metrics,
    reference_run,  # noqa: F401  (session fixture)
    run_ok,
    train_cmd,
)

# train.py with every chunk's logging slowed down by a second (test-only; rlmem knows
# nothing of it), so that a signal reliably lands while chunks are still to come.
_SLOW = """
import runpy, sys, time
import rlmem.runner as runner
log_chunk = runner._log_chunk
def slow_log_chunk(*args, **kwargs):
    log_chunk(*args, **kwargs)
    time.sleep(1.0)
runner._log_chunk = slow_log_chunk
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signal handlers need the main thread")
def test_first_signal_asks_to_stop_and_restores_the_default_action():
    said = []
    before = signal.getsignal(signal.SIGINT)
    with StopRequest(said.append) as stop:
        assert stop.signum is None
        os.kill(os.getpid(), signal.SIGINT)  # delivered at the next bytecode
        time.sleep(0.01)
        assert stop.signum == signal.SIGINT
        assert said and "SIGINT received: finishing this chunk" in said[0]
        # a second one would now kill the process at once (the default action)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        err = stop.error(510, 2040, "env steps")
    assert signal.getsignal(signal.SIGINT) is before  # restored
    assert isinstance(err, RunStopped) and err.exit_code == 130
    assert str(err) == ("SIGINT: stopped at env step 510 of 2040; checkpoint saved, run the "
                        "same command to resume")


def test_sigterm_checkpoints_and_the_same_command_resumes_exactly(reference_run,  # noqa: F811
                                                                  tmp_path):
    run_dir = tmp_path / "run"
    cmd = train_cmd(run_dir, "checkpoint.interval=null")  # no checkpoint but the stop's
    with open(tmp_path / "stopped.log", "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", _SLOW, *cmd[1:]], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while not (run_dir / "metrics.jsonl").exists() or not read_metrics(run_dir):
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        finally:
            proc.kill()
    log = (tmp_path / "stopped.log").read_text()
    assert proc.returncode == 128 + signal.SIGTERM, log
    assert "no checkpoint to resume from, starting fresh" in log
    assert "compiled and ran the first chunk (1 evaluation period(s)) in" in log
    assert "SIGTERM received: finishing this chunk" in log
    (stopped_at,) = checkpoint_steps(run_dir)
    assert STEPS_PER_CHUNK <= stopped_at < TOTAL_STEPS
    assert f"rlmem: stopped: SIGTERM: stopped at env step {stopped_at} of {TOTAL_STEPS}" in log
    assert max(row["step"] for row in read_metrics(run_dir)) == stopped_at

    stdout = run_ok(cmd)
    assert f"resumed from checkpoint at env step {stopped_at}" in stdout
    assert read_metrics(run_dir) == read_metrics(reference_run)
    assert leaf_checksums(run_dir, TOTAL_STEPS) == leaf_checksums(reference_run, TOTAL_STEPS)


def test_checkpoints_by_wall_clock_time(tmp_path):
    """`checkpoint.every_minutes` saves at the end of the first chunk past the interval
    (here: every chunk) although the step interval never comes."""
    exp = build(compose_cfg(*TINY_BASE, "memory=mlp", "memory.output_size=8",
                            "loop.iterations=20", "checkpoint.interval=null",
                            "checkpoint.every_minutes=1e-9", "checkpoint.keep=10"))
    run(exp, tmp_path, progress=False, stream=io.StringIO())
    assert checkpoint_steps(tmp_path) == [STEPS_PER_CHUNK * k for k in (1, 2, 3, 4)]
    exp = build(compose_cfg(*TINY_BASE, "memory=mlp", "memory.output_size=8",
                            "loop.iterations=20", "checkpoint.interval=null"))
    run(exp, tmp_path / "b", progress=False, stream=io.StringIO())
    assert checkpoint_steps(tmp_path / "b") == [4 * STEPS_PER_CHUNK]  # the final one only


def test_early_stop_checkpoints_records_and_stays_stopped(tmp_path):
    """Every run's eval/best_return >= -1 after the first chunk (returns are in [-1, 1]):
    the run stops there with a checkpoint and `early_stop/stopped` in its last rows; the
    same command again does nothing; without the target it trains on to the end."""
    tiny = (*TINY_BASE, "memory=mlp", "memory.output_size=8", "loop.iterations=20",
            "num_seeds=2", "checkpoint.interval=null")
    stream = io.StringIO()
    run(build(compose_cfg(*tiny, "early_stop.at_least=-1")), tmp_path, progress=False,
        stream=stream)
    assert "early stop: every run's eval/best_return reached -1 by env step 255" in (
        stream.getvalue())
    assert checkpoint_steps(tmp_path) == [STEPS_PER_CHUNK]
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [STEPS_PER_CHUNK] * 2
    assert [r["early_stop/stopped"] for r in rows] == [1, 1]

    stream = io.StringIO()
    run(build(compose_cfg(*tiny, "early_stop.at_least=-1")), tmp_path, progress=False,
        stream=stream)
    assert "had reached -1 at env step 255; nothing to do" in stream.getvalue()
    assert read_metrics(tmp_path) == rows and checkpoint_steps(tmp_path) == [STEPS_PER_CHUNK]

    run(build(compose_cfg(*tiny)), tmp_path, progress=False, stream=io.StringIO())
    assert checkpoint_steps(tmp_path)[-1] == 4 * STEPS_PER_CHUNK
    assert not any("early_stop/stopped" in r for r in read_metrics(tmp_path)[2:])

    never = tmp_path / "never"
    run(build(compose_cfg(*tiny, "early_stop.metric=eval/return", "early_stop.at_least=2")),
        never, progress=False, stream=io.StringIO())
    assert checkpoint_steps(never) == [4 * STEPS_PER_CHUNK]
    with pytest.raises(ConfigError, match="early_stop.metric='train/loss' is not allowed"):
        build(compose_cfg(*tiny, "early_stop.metric=train/loss", "early_stop.at_least=1"))
