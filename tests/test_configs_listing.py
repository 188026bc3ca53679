"""`python -m rlmem.configs` lists every group, option and key with its YAML comment, and
`train.py --help` points to it."""

from __future__ import annotations

import subprocess
import sys

import yaml

from rlmem.configs import CONF, keys, listing, unknown_key_hints
from tests.tiny_run import ROOT


def test_every_top_level_and_default_algo_key_is_listed_with_its_comment():
    text = listing()
    config = yaml.safe_load((CONF / "config.yaml").read_text())
    for section, values in config.items():
        if section in ("defaults", "hydra"):
            continue
        names = [f"{section}.{k}" for k in values] if isinstance(values, dict) else [section]
        for name in names:
            assert f"\n  {name} = " in text, name
    assert ("  loop.iterations = 600  # collect+learn iterations" in text)
    assert "  algo.optim.learning_rate = 1.0e-4  # AdamW learning rate after warm-up" in text
    assert "dqn*, ppo" in text and "+experiment=paper/<task>:" in text
    assert "+experiment=r2d2/<task>:" in text
    only_algo = listing("algo")
    assert "algo.gamma = 0.99  # discount" in only_algo and "loop.iterations" not in only_algo


def test_keys_follow_nesting(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("a: 1  # one\nb:\n  c: two  # nested\n  d:\n    e: 3\nf: 4\n")
    assert keys(path) == [("a", "1", "one"), ("b", "", ""), ("b.c", "two", "nested"),
                          ("b.d", "", ""), ("b.d.e", "3", ""), ("f", "4", "")]


def test_train_help_points_to_the_listing():
    out = subprocess.run([sys.executable, str(ROOT / "train.py"), "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "python -m rlmem.configs" in out.stdout
    groups = dict(line.split(": ", 1) for line in out.stdout.splitlines()
                  if line.startswith(("memory: ", "algo: ")))
    assert {"ffm", "lru", "gla"} <= set(groups["memory"].split(", "))
    assert set(groups["algo"].split(", ")) == {"dqn", "ppo", "pqn", "r2d2"}


def test_hints_name_the_options_that_own_a_refused_key():
    hints = unknown_key_hints(["algo=ppo", "algo.random_epochs=5", "algo.gamma=0.9",
                               "memory=lru", "memory.trace_size=4", "+algo.other=1"])
    assert hints == [
        "algo.random_epochs is a key of algo=dqn, not of algo=ppo: select algo=dqn, or drop "
        "algo.random_epochs",
        "memory.trace_size is a key of memory=ffm, memory=sffm, not of memory=lru: select one "
        "of memory=ffm, memory=sffm, or drop memory.trace_size",
    ]
    assert unknown_key_hints(["algo.optim.learnin_rate=1"]) == [
        "algo.optim.learnin_rate is not a key of algo=dqn (did you mean "
        "algo.optim.learning_rate, algo.optim.warmup_updates?)"]
    assert unknown_key_hints(["algo=nope", "algo.gamma=1"]) == []  # Hydra's own message


def test_train_prints_the_hint_after_hydras_refusal():
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "algo=ppo",
                           "algo.random_epochs=5", "logger=none"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "not in struct" in proc.stderr  # Hydra's message, then the hint
    assert proc.stderr.rstrip().endswith(
        "rlmem: hint: algo.random_epochs is a key of algo=dqn, not of algo=ppo: select "
        "algo=dqn, or drop algo.random_epochs")
