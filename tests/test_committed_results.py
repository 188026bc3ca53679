"""The evidence in docs/results.md is what the committed runs say: its one-table is
regenerated from `results/paper` and must appear there verbatim (a rerun of a cell, an
edited number or a dropped run shows up here, not in a reader's reproduction)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rlmem.results import find_runs

ROOT = Path(__file__).resolve().parents[1]


def test_the_one_table_regenerates_from_the_committed_runs():
    spec = importlib.util.spec_from_file_location("results_table",
                                                  ROOT / "scripts" / "results_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.results_table(find_runs([ROOT / "results" / "paper"])).strip()
    docs = (ROOT / "docs" / "results.md").read_text()
    assert table.splitlines()[0] in docs  # the header: the table is there at all
    missing = [line for line in table.splitlines() if line not in docs.splitlines()]
    assert not missing, ("docs/results.md differs from `python scripts/results_table.py "
                         "results/paper` in:\n" + "\n".join(missing))
    assert table in docs
