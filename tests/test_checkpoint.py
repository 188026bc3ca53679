"""Checkpoints: bit-exact round trips, refusals, corruption fallback, kills during a save."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.checkpoint import (
    CheckpointCorruptError,
    Checkpointer,
    CheckpointMismatchError,
)
from rlmem.data.tape import TapeStore, init_store, is_replay_store
from rlmem.types import Transition

ROOT = Path(__file__).resolve().parents[1]


@struct.dataclass
class Agent:
    params: dict
    store: TapeStore
    key: jax.Array


def _transition() -> Transition:
    return Transition(
        obs=jnp.zeros(3), action=jnp.int32(0), reward=jnp.float32(0), next_obs=jnp.zeros(3),
        terminated=jnp.bool_(False), truncated=jnp.bool_(False), start=jnp.bool_(False),
        mask=jnp.bool_(False))


def make_state(step: int, big: int = 200_000) -> dict:
    """A loop-like state whose every leaf depends on `step` (so steps are distinguishable)."""
    rng = np.random.default_rng(step)
    store = init_store(16, 2, _transition())
    store = store.replace(ep_id=jnp.asarray(rng.integers(0, 9, store.ep_id.shape), jnp.int32),
                          steps=jnp.int32(step))
    return {
        "agent": Agent(
            params={"w": rng.standard_normal((4, 5)).astype(np.float32),
                    "b": rng.standard_normal(5).astype(np.float64)},
            store=store,
            key=jax.random.key(step),  # typed key
        ),
        "raw_key": np.asarray(jax.random.PRNGKey(step)),  # uint32 [2] legacy key
        "done": rng.integers(0, 2, 7).astype(bool),
        "counter": np.int64(step),
        "big": rng.standard_normal(big).astype(np.float32),
    }


def assert_tree_equal(a, b) -> None:
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert jax.random.key_impl(x) == jax.random.key_impl(y)
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def test_round_trip_bit_exact(tmp_path):
    ckpt = Checkpointer(tmp_path, interval=10, keep=2, fingerprint={"memory": {"name": "ffm"}})
    for step in (10, 20, 30):
        assert ckpt.save(step, make_state(step, big=1_000_000), meta={"ids": {"0": "abc"}})
    ckpt.wait()
    assert ckpt.all_steps() == [20, 30]  # keep=2
    restored, meta = ckpt.restore(make_state(0, big=1_000_000))
    assert meta == {"ids": {"0": "abc"}}
    assert_tree_equal(restored, make_state(30, big=1_000_000))
    older, _ = ckpt.restore(make_state(0, big=1_000_000), step=20)
    assert_tree_equal(older, make_state(20, big=1_000_000))
    ckpt.close()
    # A new Checkpointer (a resumed process) sees the same steps.
    again = Checkpointer(tmp_path, interval=10, keep=2, fingerprint={"memory": {"name": "ffm"}})
    assert again.latest_step() == 30
    again.close()


@settings(max_examples=8)
@given(
    shape=st.lists(st.integers(0, 4), max_size=3),
    dtype=st.sampled_from(["float32", "float64", "int8", "int32", "uint32", "bool", "float16"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_round_trip_any_leaf(tmp_path_factory, shape, dtype, seed):
    rng = np.random.default_rng(seed)
    leaf = (rng.standard_normal(shape) * 100).astype(dtype)
    ckpt = Checkpointer(tmp_path_factory.mktemp("any"), interval=1, async_save=False)
    tree = {"x": leaf, "nested": [leaf[..., None]]}
    ckpt.save(1, tree)
    restored, _ = ckpt.restore(jax.tree.map(np.zeros_like, tree))
    assert_tree_equal(restored, tree)
    ckpt.close()


def test_should_save_and_growing_steps(tmp_path):
    ckpt = Checkpointer(tmp_path, interval=100, async_save=False)
    assert ckpt.should_save(100) and not ckpt.should_save(99)
    state = {"x": np.ones(2)}
    assert not ckpt.save(50, state)
    assert ckpt.save(50, state, force=True)  # e.g. the final checkpoint
    assert not ckpt.should_save(99) and ckpt.should_save(120)
    with pytest.raises(ValueError, match="step must grow"):
        ckpt.save(50, state, force=True)
    ckpt.close()
    with pytest.raises(ValueError, match="interval"):
        Checkpointer(tmp_path, interval=0)
    with pytest.raises(ValueError, match="keep"):
        Checkpointer(tmp_path, interval=1, keep=0)


def test_refuses_other_config_and_shapes(tmp_path):
    ckpt = Checkpointer(tmp_path, interval=1, fingerprint={"memory": {"name": "ffm"}, "x": 1},
                        async_save=False)
    ckpt.save(1, make_state(1))
    ckpt.close()

    other = Checkpointer(tmp_path, interval=1, fingerprint={"memory": {"name": "lru"}, "x": 1})
    with pytest.raises(CheckpointMismatchError, match=r"memory\.name: checkpoint 'ffm', this"):
        other.restore(make_state(0))
    other.close()

    same = Checkpointer(tmp_path, interval=1, fingerprint={"memory": {"name": "ffm"}, "x": 1})
    bigger = make_state(0)
    bigger["agent"] = bigger["agent"].replace(params={**bigger["agent"].params,
                                                      "w": np.zeros((4, 6), np.float32)})
    with pytest.raises(CheckpointMismatchError, match=r"\['w'\]: shape \[4, 5\] in the checkp"):
        same.restore(bigger)
    retyped = make_state(0)
    retyped["counter"] = np.int32(0)
    with pytest.raises(CheckpointMismatchError, match="dtype int64 in the checkpoint, int32"):
        same.restore(retyped)
    extra = {**make_state(0), "new": np.zeros(1)}
    with pytest.raises(CheckpointMismatchError, match=r"\['new'\]: in this run's state, not in"):
        same.restore(extra)
    assert same.all_steps() == [1]  # refusing never moves or deletes the checkpoint
    same.close()


def _state_files(step_dir: Path) -> list[Path]:
    return sorted((p for p in (step_dir / "state").rglob("*") if p.is_file()),
                  key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_latest_falls_back(tmp_path, damage):
    ckpt = Checkpointer(tmp_path, interval=1, keep=3, async_save=False)
    for step in (1, 2):
        ckpt.save(step, make_state(step))
    biggest = _state_files(tmp_path / "2")[-1]
    data = biggest.read_bytes()
    if damage == "truncate":
        biggest.write_bytes(data[: len(data) // 2])
    else:  # flip bytes in the middle of the largest data file
        mid = len(data) // 2
        biggest.write_bytes(data[:mid] + bytes(b ^ 0xFF for b in data[mid:mid + 64])
                            + data[mid + 64:])
    with pytest.raises(CheckpointCorruptError, match="step 2"):
        ckpt.restore(make_state(0), step=2)  # an explicit step never falls back
    with pytest.warns(UserWarning, match="corrupt-2"):
        restored, _ = ckpt.restore(make_state(0))
    assert_tree_equal(restored, make_state(1))
    assert (tmp_path / "corrupt-2").is_dir()  # moved aside, not deleted
    assert ckpt.latest_step() == 1
    ckpt.save(2, make_state(2))  # the run can go on and save that step again
    restored, _ = ckpt.restore(make_state(0))
    assert_tree_equal(restored, make_state(2))
    ckpt.close()


def test_all_corrupt_raises(tmp_path):
    ckpt = Checkpointer(tmp_path, interval=1, async_save=False)
    ckpt.save(1, make_state(1))
    shutil.rmtree(tmp_path / "1" / "manifest")
    with pytest.raises(CheckpointCorruptError, match="no valid checkpoint"), \
            pytest.warns(UserWarning):
        ckpt.restore(make_state(0))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ckpt.restore(make_state(0))
    ckpt.close()


def test_corrupt_metadata_warning_is_short(tmp_path):
    """A _METADATA with a bad byte made Orbax's UnicodeDecodeError quote the whole file."""
    ckpt = Checkpointer(tmp_path, interval=1, async_save=False)
    for step in (1, 2):
        ckpt.save(step, {f"leaf{i}": np.full(3, i) for i in range(300)})
    metadata = tmp_path / "2" / "state" / "_METADATA"
    assert metadata.stat().st_size > 20_000
    metadata.write_bytes(b"\xff" + metadata.read_bytes()[1:])
    with pytest.warns(UserWarning) as caught:
        ckpt.restore({f"leaf{i}": np.zeros(3, int) for i in range(300)})
    message = str(caught[0].message)
    assert "step 2" in message and "UnicodeDecodeError" in message and len(message) < 600
    ckpt.close()


def test_failed_restore_leaves_no_read_behind(monkeypatch):
    """A restore failing on one leaf left the other leaves' tensorstore reads awaited in a
    closed event loop: each printed `RuntimeError: Event loop is closed` (as an unraisable
    exception) when it finished."""
    import asyncio

    import tensorstore as ts
    from orbax.checkpoint._src import asyncio_utils  # what Orbax runs its reads with

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: unraisable.append(u.exc_value))
    promise, read = ts.Promise.new()  # a read that finishes when we say so

    async def fail():
        raise ValueError("corrupt leaf")

    async def restore():
        await asyncio.gather(read, fail())

    with pytest.raises(ValueError, match="corrupt leaf"):
        asyncio_utils.run_sync(restore())
    promise.set_result(0)  # the other read finishes after the failure
    assert unraisable == []


# A child process whose files may not exceed 200 kB (so a save fails like on a full disk).
_SMALL_DISK = """
import resource, signal, sys
sys.path.insert(0, {root!r})
import numpy as np
from rlmem.checkpoint import Checkpointer, CheckpointSaveError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
ckpt = Checkpointer(sys.argv[1], interval=1, async_save=sys.argv[2] == "async")
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
try:
    ckpt.save(7, {{"x": np.random.default_rng(0).standard_normal(300_000)}})
    ckpt.wait()  # an asynchronous save reports here
except CheckpointSaveError as err:
    print(err)
ckpt.close()  # does not raise it again
"""


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_failed_save_says_why(tmp_path, mode):
    proc = subprocess.run(
        [sys.executable, "-c", _SMALL_DISK.format(root=str(ROOT)), str(tmp_path), mode],
        capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == f"could not write checkpoint step 7 to {tmp_path}: File too large\n"
    # Orbax's own records of the failure: one short line each, no tracebacks.
    assert "Traceback" not in proc.stderr
    assert all(len(line) < 400 for line in proc.stderr.splitlines()), proc.stderr


def test_exclude_replay(tmp_path):
    ckpt = Checkpointer(tmp_path, interval=1, exclude=is_replay_store, async_save=False)
    ckpt.save(1, make_state(1))
    fresh = make_state(0)
    restored, _ = ckpt.restore(fresh)
    assert_tree_equal(restored["agent"].store, fresh["agent"].store)  # the like tree's store
    restored["agent"] = restored["agent"].replace(store=make_state(1)["agent"].store)
    assert_tree_equal(restored, make_state(1))  # everything else restored
    small = sum(f.stat().st_size for f in (tmp_path / "1").rglob("*") if f.is_file())
    ckpt.close()
    # A checkpoint without the store cannot silently restore into a run that wants it.
    full = Checkpointer(tmp_path, interval=1)
    with pytest.raises(CheckpointMismatchError,
                       match=r"excludes state\['agent'\]\.store \(a TapeStore, \d+ leaves\)"):
        full.restore(make_state(0))
    full.close()
    assert small > 0


def test_exclude_replay_restores_a_full_checkpoint(tmp_path):
    """Switching exclude_replay on for a resumed run: the saved store is ignored."""
    full = Checkpointer(tmp_path, interval=1, async_save=False)
    full.save(1, make_state(1))
    full.close()
    lean = Checkpointer(tmp_path, interval=1, exclude=is_replay_store)
    fresh = make_state(0)
    restored, _ = lean.restore(fresh)
    lean.close()
    assert_tree_equal(restored["agent"].store, fresh["agent"].store)
    assert_tree_equal(restored["big"], make_state(1)["big"])


# A child process saving ever-newer states as fast as it can (asynchronously, keep=2).
_SAVER = """
import sys
sys.path.insert(0, {root!r})
from tests.test_checkpoint import make_state
from rlmem.checkpoint import Checkpointer
ckpt = Checkpointer(sys.argv[1], interval=1, keep=2)
step = 0 if ckpt.latest_step() is None else ckpt.latest_step()
while True:
    step += 1
    ckpt.save(step, make_state(step, big=2_000_000))
    print(step, flush=True)
"""


def _kill_during_saves(directory: Path, delay: float) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _SAVER.format(root=str(ROOT)), str(directory)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    try:
        # Step 2 printed means step 1 is committed (Orbax finishes one async save before
        # starting the next); then kill at an arbitrary moment of the save loop.
        for line in proc.stdout:
            if int(line) >= 2:
                break
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()


def _check_latest_valid(directory: Path) -> int:
    ckpt = Checkpointer(directory, interval=1, keep=2)
    step = ckpt.latest_step()
    assert step is not None
    restored, _ = ckpt.restore(make_state(0, big=2_000_000))
    assert_tree_equal(restored, make_state(step, big=2_000_000))
    ckpt.close()
    leftovers = [p.name for p in directory.iterdir() if "tmp" in p.name]
    assert leftovers == []  # half-written saves were cleaned up on open
    return step


@pytest.mark.parametrize("delay", [0.05, 0.37])
def test_kill_during_save_leaves_valid_checkpoint(tmp_path, delay):
    _kill_during_saves(tmp_path, delay)
    _check_latest_valid(tmp_path)


@pytest.mark.slow
def test_kill_during_save_many_times(tmp_path):
    rng = np.random.default_rng(0)
    last = 0
    for _ in range(8):
        _kill_during_saves(tmp_path, float(rng.uniform(0, 1.0)))
        step = _check_latest_valid(tmp_path)
        assert step >= last
        last = step


@struct.dataclass
class _LoopStateBeforeIssue12:
    """`rlmem.loop.LoopState`'s fields while the loop still counted episodes itself."""

    algo: dict
    env_state: dict
    obs: np.ndarray
    start: np.ndarray
    carry: np.ndarray
    key: np.ndarray
    eval_key: np.ndarray
    episode_return: np.ndarray
    episode_length: np.ndarray
    env_steps: np.ndarray
    episodes: np.ndarray
    iterations: np.ndarray
    eval_return: np.ndarray
    best_eval_return: np.ndarray
    nonfinite_metric: np.ndarray
    nonfinite_env_step: np.ndarray


def test_checkpoint_with_the_loops_old_episode_counters_is_refused(tmp_path):
    """The loop's own `episode_return`/`episode_length` left `LoopState` (the envs'
    `EpisodeStatistics` count episodes); a checkpoint written before is refused with the
    mismatch message (a `RunError`: train.py prints it as one line), not a traceback."""
    import dataclasses

    from rlmem.errors import RunError
    from rlmem.loop import LoopState
    from rlmem.runner import fingerprint

    fields = {f.name: np.zeros(2, np.float32) for f in dataclasses.fields(_LoopStateBeforeIssue12)}
    fields["algo"] = {"w": np.ones(3, np.float32)}
    fields["env_state"] = {"t": np.zeros(2, np.int32)}
    old = _LoopStateBeforeIssue12(**fields)
    fields["hparams"] = {"gamma": np.full(2, 0.99, np.float32)}  # (added after issue 12)
    now = LoopState(**{f.name: fields[f.name] for f in dataclasses.fields(LoopState)})
    ckpt = Checkpointer(tmp_path, interval=1, async_save=False, fingerprint=fingerprint({}, old))
    ckpt.save(1, old)
    ckpt.close()
    again = Checkpointer(tmp_path, interval=1, fingerprint=fingerprint({}, now))
    with pytest.raises(CheckpointMismatchError) as info:
        again.restore(now)
    again.close()
    assert isinstance(info.value, RunError)
    message = str(info.value)
    for name in ("episode_return", "episode_length"):
        assert f"state.{name}: in the checkpoint, not in this run's state" in message
        assert f"fingerprint.state_shapes..{name}: in the checkpoint" in message
