"""scripts/bench_device.py: the one-shot device benchmark runs, reports and keeps its budget.

Speed is never asserted: only that every section is there, measured cells hold finite
positive values, and cells that cannot be afforded are reported as skipped. The full
`--quick` run compiles ~45 programs (about 1.5 min on 2 CPU cores with a warm compilation
cache, 5+ min cold), so it is marked slow; the default tests run the CLI on one cheap
section and check the budget logic in-process.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import pytest

from rlmem.memory import MEMORY_MODELS

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_device.py"
SECTIONS = ("paper", "memory", "envs", "returns")
SEQUENTIAL_ONLY = {"gru", "lstm", "mlp"} & set(MEMORY_MODELS)
MEMORY_CELLS = 2 * len(MEMORY_MODELS) - len(SEQUENTIAL_ONLY)  # per tape length


def load_script():
    if "bench_device" not in sys.modules:  # dataclasses look their module up by name
        spec = importlib.util.spec_from_file_location("bench_device", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_device"] = module
        spec.loader.exec_module(module)
    return sys.modules["bench_device"]


def run_script(tmp_path: Path, *args: str, timeout: float) -> tuple[dict, str]:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), *args, "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| section | setting | value | unit |" in proc.stdout
    assert "command: python" in proc.stdout and "devices:" in proc.stdout
    return json.loads(out.read_text()), proc.stdout


def check_measured(row: dict) -> None:
    assert row["status"] == "ok", row
    assert isinstance(row["value"], float) and math.isfinite(row["value"]) and row["value"] > 0
    assert row["best_s"] > 0 and row["repeats"] >= 1


def is_sweep(row: dict) -> bool:
    return row["section"] == "paper" and row["setting"].startswith("K x S")


def check_quick_run(data: dict, stdout: str) -> None:
    rows = data["rows"]
    assert [r["section"] for r in rows] == sorted(
        (r["section"] for r in rows), key=SECTIONS.index)  # the table's order
    assert {r["section"] for r in rows} == set(SECTIONS)
    assert data["quick"] and data["devices"] and data["jax_version"]
    assert len([r for r in rows if is_sweep(r)]) == 1
    for row in rows:
        check_measured(row)
    by_section = {name: [r["setting"] for r in rows if r["section"] == name]
                  for name in SECTIONS}
    assert sum("num_seeds=1 " in s for s in by_section["paper"]) == 1
    assert sum("num_seeds=2 " in s for s in by_section["paper"]) == 1
    memory = by_section["memory"]
    assert {s.split("T=")[1] for s in memory} == {"100", "1,000"}
    assert len(memory) == 2 * MEMORY_CELLS
    both_scans = len(MEMORY_MODELS) - len(SEQUENTIAL_ONLY)
    assert sum("associative" in s for s in memory) == 2 * both_scans
    assert len(by_section["envs"]) == 4 and sum("N=256 " in s for s in by_section["envs"]) == 2
    assert len(by_section["returns"]) == 4


@pytest.mark.slow
def test_quick_run_measures_every_section(tmp_path):
    # A generous budget so that a cold compilation cache on a slow machine skips nothing.
    data, stdout = run_script(tmp_path, "--quick", "--budget-seconds", "1500", timeout=1700)
    check_quick_run(data, stdout)


def test_quick_returns_section_runs_from_the_command_line(tmp_path):
    data, _ = run_script(tmp_path, "--quick", "--sections", "returns", "--budget-seconds",
                         "600", timeout=600)
    rows = data["rows"]
    assert [r["section"] for r in rows] == ["returns"] * 4
    for row in rows:
        check_measured(row)
    assert data["command"].startswith("python ") and "--quick" in data["command"]


def test_zero_budget_skips_every_cell_and_still_prints_the_table(tmp_path):
    data, stdout = run_script(tmp_path, "--budget-seconds", "0", timeout=300)
    rows = data["rows"]
    assert {r["section"] for r in rows} == set(SECTIONS)
    for row in rows:
        assert row["status"] == "skipped (budget)" and row["value"] is None, row
    # the full sizes: 3 lengths, 4 env sizes x 2 envs, 10k episodes
    assert len([r for r in rows if r["section"] == "memory"]) == 3 * MEMORY_CELLS
    assert len([r for r in rows if r["section"] == "envs"]) == 8
    assert "10,000 episodes" in stdout


def test_hard_limit_ends_the_run_with_the_table(tmp_path):
    # Building and compiling the paper-protocol loop takes longer than 4 s from the
    # process start, so the watchdog fires mid-cell and reports what is left as skipped.
    data, stdout = run_script(tmp_path, "--quick", "--sections", "paper",
                              "--hard-limit-seconds", "4", timeout=300)
    assert data["elapsed_s"] < 4 + 10
    statuses = [r["status"] for r in data["rows"]]
    assert "pending" not in statuses and "running" not in statuses
    if data["note"] is not None:
        assert data["note"].startswith("hard limit") and "hard limit" in stdout
        assert statuses[0] == "skipped (budget)"


def test_budget_logic_skips_unaffordable_and_failed_follow_ups(tmp_path):
    bench = load_script()

    def cheap():
        return (lambda: jnp.ones(3).sum()), (lambda sec: 1.0 / sec)

    def broken():
        raise RuntimeError("out of memory, say")

    ok = bench.Cell("a", "small", "calls/s", cheap)
    huge = bench.Cell("a", "huge", "calls/s", cheap, previous=ok, ratio=1e12)
    bad = bench.Cell("b", "bad", "calls/s", broken)
    after_bad = bench.Cell("b", "after bad", "calls/s", cheap, previous=bad, ratio=10)
    todo = bench.Cell("b", "todo", "calls/s", None)
    todo.status = "not built yet"
    out = tmp_path / "run.json"
    run = bench.Run({"a": [ok, huge], "b": [bad, after_bad, todo]}, budget_s=1e6, repeats=3,
                    cell_seconds=1.0, out=str(out), header={"command": "test"})
    run.run()
    assert ok.status == "ok" and ok.value > 0 and 1 <= ok.repeats <= 3
    assert huge.status == "skipped (budget)" and huge.note.startswith("estimated")
    assert bad.status.startswith("error: RuntimeError: out of memory")
    assert after_bad.status == "skipped (failed at a smaller size)"
    assert todo.status == "not built yet"
    assert run.finish() and not run.finish()  # printed and saved exactly once
    rows = json.loads(out.read_text())["rows"]
    assert [r["status"].split(":")[0] for r in rows] == [
        "ok", "skipped (budget)", "error", "skipped (failed at a smaller size)",
        "not built yet"]
    table = bench.markdown(rows)
    assert table.count("\n") == len(rows) + 1 and "| b | bad | error | calls/s |" in table


def test_estimate_scales_the_previous_call_and_keeps_its_compile_time():
    bench = load_script()
    before = bench.Cell("m", "T=1k", "ms", None, status="ok", warmup_s=5.0, best_s=1.0)
    cell = bench.Cell("m", "T=10k", "ms", None, previous=before, ratio=10)
    # compile 4 s + warm-up call 10 s + one timed call (10 s already exceed cell_seconds)
    assert bench.estimate(cell, repeats=3, cell_seconds=3.0) == pytest.approx(24.0)
    assert bench.estimate(before, repeats=3, cell_seconds=3.0) is None
