"""Metrics: the local jsonl and W&B offline runs, read back and checked, across resumes."""

from __future__ import annotations

import contextlib
import json
import math
import struct
import time
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.metrics import (
    METRICS_FILE,
    REJECTED_FILE,
    RUN_IDS_FILE,
    MetricsLogger,
    read_metrics,
)

CONFIG = {"env": {"name": "RepeatFirstEasy"}, "memory": {"name": "ffm", "trace": 64},
          "seed": 3, "num_seeds": 2}


# ------------------------------------------------------------------ W&B's own file format
def wandb_records(path: Path):
    """Records of a ``.wandb`` file, decoded with W&B's protobufs.

    The file is W&B's LevelDB-style log: a 7-byte header (``:W&B``, key, version), then
    32 KiB blocks of chunks ``crc32 u32 | length u16 | type u8 | data`` where type
    FULL=1, FIRST=2, MIDDLE=3, LAST=4 reassembles one serialised `Record`.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32 * 1024
    assert data[:4] == b":W&B", f"{path} is not a W&B log"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        assert zlib.crc32(bytes([kind]) + chunk) == crc, f"bad chunk checksum in {path}"
        pos += 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            yield record


def wait_for_wandb_files(run_dir: Path, count: int, timeout: float = 30.0) -> None:
    """`run.finish()` hands the last records to W&B's service process, which writes them a
    moment later: wait until `count` offline run files each end with their exit record."""
    deadline = time.monotonic() + timeout
    while True:
        paths = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
        try:
            done = [any(r.WhichOneof("record_type") == "exit" for r in wandb_records(p))
                    for p in paths]
        except (AssertionError, struct.error):  # a file caught mid-write
            done = [False]
        if len(paths) == count and all(done):
            return
        assert time.monotonic() < deadline, f"W&B wrote {sum(done)}/{count} run files"
        time.sleep(0.1)


def read_wandb(run_dir: Path) -> dict[str, dict]:
    """Per W&B run id (over all its offline files, resumed ones included): the run record
    fields, the config and the history as a list of `(step, {key: value})`."""
    runs: dict[str, dict] = defaultdict(lambda: {"history": [], "config": {}})
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        for rec in wandb_records(path):
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                run = runs[rec.run.run_id]
                run.update(group=rec.run.run_group, tags=list(rec.run.tags),
                           name=rec.run.display_name, project=rec.run.project)
                run["config"].update({i.key: json.loads(i.value_json)
                                      for i in rec.run.config.update})
                current = run
            elif kind == "history":
                items = {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                         for i in rec.history.item}
                current["history"].append(
                    (rec.history.step.num,
                     {k: v for k, v in items.items() if not k.startswith("_")}))
    return dict(runs)


# ------------------------------------------------------------------ local file
def test_jsonl_rows_per_seed(tmp_path):
    with MetricsLogger(tmp_path, num_seeds=2, config=CONFIG, mode="disabled",
                       seeds=[3, 4]) as logger:
        logger.log(10, {"train/loss": np.array([0.5, 0.25]), "perf/sps": 100.0,
                        "eval/return": np.array([np.nan, 1.0]),
                        "collect/episodes": np.array([1, 2], np.int32),
                        "eval/best": np.array([-np.inf, 1.0])})
        logger.log(20, {"train/loss": np.array([0.125, 0.0])})
    assert read_metrics(tmp_path / METRICS_FILE) == [
        {"step": 10, "seed": 3, "train/loss": 0.5, "perf/sps": 100.0, "eval/return": None,
         "collect/episodes": 1, "eval/best": None},
        {"step": 10, "seed": 4, "train/loss": 0.25, "perf/sps": 100.0, "eval/return": 1.0,
         "collect/episodes": 2, "eval/best": 1.0},
        {"step": 20, "seed": 3, "train/loss": 0.125},
        {"step": 20, "seed": 4, "train/loss": 0.0},
    ]
    assert not (tmp_path / "wandb").exists() and not (tmp_path / RUN_IDS_FILE).exists()


@settings(max_examples=15)
@given(
    steps=st.lists(st.integers(0, 50), min_size=1, max_size=12),
    cut=st.integers(0, 12),
    torn=st.binary(max_size=20).filter(lambda b: b"\n" not in b),
)
def test_resume_never_duplicates(tmp_path_factory, steps, cut, torn):
    """Log, 'crash' (optionally leaving a torn line), reopen, log again: each step once,
    with the value first logged, in increasing order (plain-Python reference below)."""
    run_dir = tmp_path_factory.mktemp("resume")
    first, second = steps[:cut], steps[cut:]
    with MetricsLogger(run_dir, num_seeds=2, config=CONFIG, mode="disabled") as logger:
        for s in first:
            logger.log(s, {"train/x": np.array([s, -s], np.float32)})
    with open(run_dir / METRICS_FILE, "ab") as f:
        f.write(torn)
    with MetricsLogger(run_dir, num_seeds=2, config=CONFIG, mode="disabled") as logger:
        for s in second:
            logger.log(s, {"train/x": np.array([s, -s], np.float32)})
    expected, last = [], -1
    for s in steps:  # reference: a step is kept when it exceeds every earlier kept step
        if s > last:
            expected += [{"step": s, "seed": 0, "train/x": float(s)},
                         {"step": s, "seed": 1, "train/x": float(-s)}]
            last = s
    assert read_metrics(run_dir / METRICS_FILE) == expected
    assert (run_dir / METRICS_FILE).read_bytes().endswith(b"\n") or not expected


def test_incomplete_last_step_is_dropped(tmp_path):
    path = tmp_path / METRICS_FILE
    rows = [{"step": 1, "seed": 0, "a": 1}, {"step": 1, "seed": 1, "a": 2},
            {"step": 2, "seed": 0, "a": 3}]  # killed before seed 1 of step 2
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 3, "se')
    logger = MetricsLogger(tmp_path, num_seeds=2, config=CONFIG, mode="disabled")
    assert logger.last_step == 1
    logger.log(2, {"a": np.array([5, 6])})
    logger.close()
    assert [(r["step"], r["a"]) for r in read_metrics(path)] == [(1, 1), (1, 2), (2, 5), (2, 6)]


def _rows(*steps: int, seeds=(0, 1)) -> bytes:
    return b"".join(json.dumps({"step": s, "seed": i, "a": s + i}).encode() + b"\n"
                    for s in steps for i in seeds)


def _row(step: int, seed: int) -> bytes:
    return json.dumps({"step": step, "seed": seed, "a": step + seed}).encode() + b"\n"


BAD_LINES = {
    "torn line ending in a newline": b'{"step": 20, "se\n',
    "garbage bytes (invalid UTF-8)": b"\xff\xfe\x00garbage\x9c\n",
    "invalid JSON": b"{not json}\n",
    "JSON that is not a row": b"[1, 2, 3]\n",
    "a repeated (step, member, seed)": _row(10, 1),
}


@pytest.mark.parametrize("kind", list(BAD_LINES))
def test_repair_keeps_every_complete_row(tmp_path, kind):
    """A bad line in the middle: the reopen keeps every complete row, sets the line aside
    (not deleted) in metrics.jsonl.rejected, and reading the file does not crash."""
    path, bad = tmp_path / METRICS_FILE, BAD_LINES[kind]
    path.write_bytes(_rows(10) + bad + _rows(20, 30))
    with pytest.warns(UserWarning, match="skipped 1 unreadable line") if kind != \
            "a repeated (step, member, seed)" else contextlib.nullcontext():
        assert [r["step"] for r in read_metrics(path)] == [10, 10] + [10] * (
            kind == "a repeated (step, member, seed)") + [20, 20, 30, 30]
    logger = MetricsLogger(tmp_path, num_seeds=2, config=CONFIG, mode="disabled")
    assert logger.last_step == 30
    logger.log(40, {"a": np.array([40, 41])})
    logger.close()
    assert path.read_bytes() == _rows(10, 20, 30, 40)
    rejected = (tmp_path / REJECTED_FILE).read_bytes()
    assert rejected.startswith(b"# ") and rejected.endswith(b"\n" + bad)
    why = kind if kind == "a repeated (step, member, seed)" else "not a complete JSON row"
    assert f"set aside from metrics.jsonl on reopen: {why}\n".encode() in rejected


def test_repair_after_resume_step_relogs(tmp_path):
    """Resuming from the checkpoint at step 20: the rows after it (30, and 40 torn at the
    end) are set aside and logged again; a torn line of the checkpoint's own step keeps the
    other seed's row (it cannot be logged again), which was dropped for good before."""
    path = tmp_path / METRICS_FILE
    path.write_bytes(_rows(10) + _row(20, 0) + b'{"step": 20, "seed": 1, "a\n' + _rows(30)
                     + _row(40, 0) + b'{"step": 40, "se')
    logger = MetricsLogger(tmp_path, num_seeds=2, config=CONFIG, mode="disabled",
                           resume_step=20)
    assert logger.last_step == 20 and logger.wandb_step == 40
    for step in (20, 30, 40):  # the resumed run logs from 30 on (20 is skipped)
        logger.log(step, {"a": np.array([step, step + 1])})
    logger.close()
    assert path.read_bytes() == _rows(10) + _row(20, 0) + _rows(30, 40)
    rejected = (tmp_path / REJECTED_FILE).read_bytes()
    assert b"after the checkpoint at step 20" in rejected and _rows(30) + _row(40, 0) in rejected
    # Reopened again (e.g. killed before re-logging): W&B still knows it had step 40.
    again = MetricsLogger(tmp_path, num_seeds=2, config=CONFIG, mode="disabled", resume_step=0)
    assert again.last_step is None and again.wandb_step == 40 and path.read_bytes() == b""
    again.close()


def test_fresh_start_sets_old_rows_aside(tmp_path):
    """No checkpoint to resume from (resume_step=0): a run killed before its first checkpoint
    starts over and logs every step again."""
    (tmp_path / METRICS_FILE).write_bytes(_rows(10, 20))
    with MetricsLogger(tmp_path, num_seeds=2, config=CONFIG, mode="disabled",
                       resume_step=0) as logger:
        assert logger.last_step is None
        logger.log(10, {"a": np.array([10, 11])})
    assert (tmp_path / METRICS_FILE).read_bytes() == _rows(10)


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="mode="):
        MetricsLogger(tmp_path, num_seeds=1, config={}, mode="cloud")
    with pytest.raises(ValueError, match="num_seeds=2"):
        MetricsLogger(tmp_path, num_seeds=2, config={}, mode="disabled", seeds=[1])
    logger = MetricsLogger(tmp_path, num_seeds=2, config={}, mode="disabled")
    with pytest.raises(ValueError, match=r"'train/loss' has shape \(3,\)"):
        logger.log(1, {"train/loss": np.zeros(3)})
    logger.close()
    with pytest.raises(RuntimeError, match="after close"):
        logger.log(2, {"train/loss": 0.0})


# ------------------------------------------------------------------ W&B offline
def test_wandb_offline_runs_per_seed_and_resume(tmp_path):
    kwargs = dict(num_seeds=2, config=CONFIG, mode="offline", project="rlmem-test",
                  group="repeat_first-ffm", tags=("ffm", "tape"), seeds=[3, 4])
    logger = MetricsLogger(tmp_path, **kwargs)
    for step in (10, 20):
        logger.log(step, {"train/loss": np.array([step, step + 1.0]),
                          "eval/return": np.array([np.nan, 0.5])})
    logger.close()
    ids = json.loads((tmp_path / RUN_IDS_FILE).read_text())["runs"]
    assert sorted(ids) == ["3", "4"] and ids["3"] != ids["4"]

    # Resume from a checkpoint at step 10: a new logger on the same run dir continues the
    # same W&B runs; step 20 is logged again to the jsonl (the same values: a resumed run
    # is bit-identical) but W&B, which had it, does not get it twice.
    logger = MetricsLogger(tmp_path, **kwargs, resume_step=10)
    assert logger.last_step == 10
    for step in (20, 30):
        logger.log(step, {"train/loss": np.array([step, step + 1.0]) if step == 20
                          else np.array([-1.0, -2.0])})
    logger.close()
    assert json.loads((tmp_path / RUN_IDS_FILE).read_text())["runs"] == ids

    wait_for_wandb_files(tmp_path, count=4)  # 2 seeds x (first run + resumed run)
    runs = read_wandb(tmp_path)
    assert sorted(runs) == sorted(ids.values())  # one W&B run per seed, ids reused
    for i, seed in enumerate((3, 4)):
        run = runs[ids[str(seed)]]
        assert run["group"] == "repeat_first-ffm" and run["project"] == "rlmem-test"
        assert set(run["tags"]) == {"ffm", "tape"}
        assert run["name"] == f"repeat_first-ffm-seed{seed}"
        assert run["config"]["memory"] == CONFIG["memory"] and run["config"]["run_seed"] == seed
        history = run["history"]
        assert [step for step, _ in history] == [10, 20, 30]  # each step exactly once
        assert history[0][1]["train/loss"] == 10.0 + i
        assert history[1][1]["train/loss"] == 20.0 + i
        assert history[2][1]["train/loss"] == [-1.0, -2.0][i]
        # NaN means "no data": left out of W&B, null in the jsonl.
        assert ("eval/return" in history[0][1]) == (seed == 4)
    rows = read_metrics(tmp_path / METRICS_FILE)
    assert [(r["step"], r["seed"]) for r in rows] == [
        (10, 3), (10, 4), (20, 3), (20, 4), (30, 3), (30, 4)]
    assert all(math.isclose(r["train/loss"], h[1]["train/loss"])
               for r in rows for h in runs[ids[str(r["seed"])]]["history"]
               if h[0] == r["step"])


def test_wandb_offline_run_per_sweep_member_and_seed(tmp_path):
    """A vectorised sweep: one W&B run per member x seed, grouped by member and carrying
    the member's config; jsonl rows carry `member` and the swept values, and rows of
    different members at the same step and seed are not repeats."""
    from rlmem.sweep import members, runs

    config = {**CONFIG, "algo": {"gamma": 0.99}}
    sweep_runs = runs([3], members({"algo.gamma": [0.9, 0.5]}))
    kwargs = dict(num_seeds=2, config=config, mode="offline", project="rlmem-test",
                  group="g", runs=sweep_runs)
    logger = MetricsLogger(tmp_path, **kwargs)
    logger.log(10, {"train/loss": np.array([1.0, 2.0])})
    logger.close()
    ids = json.loads((tmp_path / RUN_IDS_FILE).read_text())["runs"]
    assert sorted(ids) == ["m0-s3", "m1-s3"]
    MetricsLogger(tmp_path, **kwargs, resume_step=10).close()  # nothing set aside
    assert not (tmp_path / REJECTED_FILE).exists()
    assert read_metrics(tmp_path / METRICS_FILE) == [
        {"step": 10, "seed": 3, "member": 0, "algo.gamma": 0.9, "train/loss": 1.0},
        {"step": 10, "seed": 3, "member": 1, "algo.gamma": 0.5, "train/loss": 2.0},
    ]
    wait_for_wandb_files(tmp_path, count=4)
    wandb_runs = read_wandb(tmp_path)
    for key, gamma, loss in (("m0-s3", 0.9, 1.0), ("m1-s3", 0.5, 2.0)):
        run = wandb_runs[ids[key]]
        assert run["group"] == f"g-algo.gamma={gamma}"
        assert run["name"] == f"g-algo.gamma={gamma}-seed3"
        assert run["config"]["algo"] == {"gamma": gamma}
        assert run["config"]["sweep_member"] == int(key[1])
        assert run["history"] == [(10, {"train/loss": loss})]  # identity columns: config
