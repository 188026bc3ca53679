"""`python -m rlmem.configs` lists every group, option and key with its YAML comment, and
`train.py --help` points to it."""

from __future__ import annotations

import subprocess
import sys

import yaml

from rlmem.configs import CONF, keys, listing
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
    assert "python -m rlmem.configs" in out.stdout and "memory: ffm, gla" in out.stdout
