"""scripts/plot_runs.py and the run reading it builds on (rlmem.results): grouping,
pooling refusals, facets, sweep members, the x axis's unit."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given

from rlmem import results

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "plot_runs.py"


@pytest.fixture(scope="module")
def plot_runs():
    spec = importlib.util.spec_from_file_location("plot_runs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("rollout, unit", [("episode", "episodes"), ("steps", "env steps")])
def test_step_unit_follows_loop_rollout(plot_runs, tmp_path, rollout, unit):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(f"loop:\n  rollout: {rollout}\n")
    assert results.step_unit([run]) == unit


def test_vmap_sweep_dirs_split_into_members(plot_runs, tmp_path):
    """A vectorised sweep's run dir holds several members: grouping by a swept key (or
    two keys) gives one group per member value with every seed in it."""
    import json

    import yaml

    run = tmp_path / "sweep"
    (run / ".hydra").mkdir(parents=True)
    config = {"algo": {"gamma": 0.99, "optim": {"learning_rate": 1e-4}},
              "batching": {"mode": "tape"},
              "sweep": {"vmap": {"algo.gamma": [0.9, 0.5]}}}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    rows = [{"step": step, "seed": seed, "member": member, "algo.gamma": gamma,
             "eval/return": member + step / 100 + seed}
            for step in (10, 20) for member, gamma in ((0, 0.9), (1, 0.5)) for seed in (0, 1)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    curves = results.load_curves(results.find_runs([run]), "algo.gamma", "eval/return")
    assert sorted(curves) == ["0.5", "0.9"]
    steps, series = curves["0.5"]
    assert list(steps) == [10, 20] and [list(s) for s in series] == [[1.1, 1.2], [2.1, 2.2]]
    two = results.load_curves([run], "algo.gamma,batching", "eval/return")
    assert sorted(two) == ["0.5 / tape", "0.9 / tape"]
    with pytest.raises(ValueError, match="--metric='eval/retrun' is not logged"):
        results.load_curves([run], "algo.gamma", "eval/retrun")


def _fake_run(path, config, values):
    """A run dir with `config` and one seed whose `eval/return` is `values` at steps 1, 2."""
    import json

    import yaml

    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    rows = [{"step": i + 1, "seed": 0, "eval/return": v} for i, v in enumerate(values)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_default_groups_by_every_key_that_varies_and_never_pools(plot_runs, tmp_path):
    """A two-axis R2D2 ablation (burn-in x initial state) next to a tape run: the default
    label separates all five arms; a label that hides an axis is refused."""
    base = {"env": {"name": "RepeatFirstEasy"}, "algo": {"name": "dqn"}, "seed": 0,
            "logger": {"mode": "offline"}}
    _fake_run(tmp_path / "tape", {**base, "batching": {"mode": "tape"}}, [0.0, 1.0])
    for burn_in in (0, 10):
        for initial in ("zeros", "stored"):
            segment = {"mode": "segment", "segment_length": 20, "burn_in": burn_in,
                       "initial_state": initial}
            _fake_run(tmp_path / f"s{burn_in}{initial}", {**base, "batching": segment,
                                                          "seed": burn_in}, [0.5, 0.5])
    runs = results.find_runs([tmp_path])
    curves = results.load_curves(runs, "auto", "eval/return")
    assert sorted(curves, key=results.order_key) == [
        "tape", "segment_l20", "segment_l20_b10", "segment_l20_b10_stored",
        "segment_l20_stored"]  # the batching label names every axis of the ablation
    assert results.load_curves(runs, "batching", "eval/return").keys() == curves.keys()
    assert sorted(["segment_l20_b5 / a", "segment_l20 / b", "segment_l10_b5 / a", "other",
                   "tape / b", "tape / a"], key=results.order_key) == [
        "tape / a", "tape / b", "segment_l10_b5 / a", "segment_l20 / b", "segment_l20_b5 / a",
        "other"]
    with pytest.raises(ValueError, match="would pool runs that differ in batching.burn_in"):
        results.load_curves(runs, "env.name", "eval/return")
    with pytest.raises(ValueError, match="is a section, not a value; name one of its keys: "
                                         "env.name"):
        results.load_curves(runs, "env", "eval/return")
    assert plot_runs.default_title(base, "eval/return").startswith(
        "RepeatFirstEasy, dqn, ? iterations: eval/return")


def test_facets_split_a_two_axis_sweep_into_panels(plot_runs, tmp_path):
    """memory x batching x burn-in: rows by memory, columns by burn-in, lines by batching;
    no panel pools runs, a key named nowhere is still refused, and the figure is drawn."""
    base = {"env": {"name": "RepeatFirstEasy"}, "algo": {"name": "dqn"}, "seed": 0}
    for memory in ("ffm", "lru"):
        _fake_run(tmp_path / memory / "tape", {**base, "memory": {"name": memory},
                                               "batching": {"mode": "tape"}}, [0.0, 1.0])
        for burn_in in (0, 5):
            segment = {"mode": "segment", "segment_length": 20, "burn_in": burn_in}
            _fake_run(tmp_path / memory / f"s{burn_in}",
                      {**base, "memory": {"name": memory}, "batching": segment},
                      [0.25, 0.5 + burn_in / 10])
    runs = results.find_runs([tmp_path])
    panels = results.load_panels(runs, "auto", "eval/return", rows="memory.name")
    assert sorted(panels) == [("ffm", ""), ("lru", "")]
    assert sorted(panels[("lru", "")], key=results.order_key) == [
        "tape", "segment_l20", "segment_l20_b5"]
    grid = results.load_panels(runs, "batching", "eval/return", rows="memory.name",
                                 cols="batching.burn_in")
    assert sorted(grid) == [("ffm", "-"), ("ffm", "0"), ("ffm", "5"), ("lru", "-"),
                            ("lru", "0"), ("lru", "5")]
    steps, series = grid[("lru", "5")]["segment_l20_b5"]
    assert list(steps) == [1, 2] and [list(s) for s in series] == [[0.25, 1.0]]
    with pytest.raises(ValueError, match="would pool runs that differ in memory.name"):
        results.load_panels(runs, "batching", "eval/return", cols="batching.burn_in")
    out = tmp_path / "grid.svg"
    table = plot_runs.plot_panels(grid, "eval/return", out, "t", rows="memory.name",
                                  cols="batching.burn_in")
    assert out.stat().st_size > 0
    assert ("| memory.name=lru, batching.burn_in=5: segment_l20_b5 | 1 | 1.000 [1.000, 1.000] |"
            in table)
    configs = [results.run_config(r) for r in runs] + [{"env": {"name": "RepeatPreviousEasy"},
                                                          "algo": {"name": "dqn"}}]
    assert plot_runs.default_title(configs, "eval/return") == (
        "dqn, ? iterations: eval/return, mean and 95% CI over seeds")  # the envs differ


def test_vline_from_the_config_per_panel_and_columns_with_their_own_x(plot_runs, tmp_path):
    """Two tasks whose random phases end at different episodes: `--vline algo.random_epochs`
    puts each panel's line (and its "mean after" column) where that task's phase ends; a
    panel whose runs disagree, or lack the key, is refused; an empty panel is drawn."""
    def run(name, env, random_epochs, memory, values):
        config = {"env": {"name": env}, "memory": {"name": memory},
                  "algo": {"name": "dqn", "random_epochs": random_epochs},
                  "batching": {"mode": "tape"}}
        _fake_run(tmp_path / name, config, values)

    run("short", "RepeatFirstEasy", 1, "ffm", [0.0, 0.5, 1.0])  # after step 1: 0.75
    run("long", "CountRecallEasy", 2, "ffm", [0.0, 0.5, 1.0, 0.0])  # after step 2: 0.5
    run("long_lru", "CountRecallEasy", 2, "lru", [0.0, 0.0, 1.0, 1.0])  # no RepeatFirst lru
    runs = results.find_runs([tmp_path])
    lines = results.panel_values(runs, "algo.random_epochs", rows="memory.name",
                                 cols="env.name")
    assert lines == {("ffm", "RepeatFirstEasy"): 1.0, ("ffm", "CountRecallEasy"): 2.0,
                     ("lru", "CountRecallEasy"): 2.0}
    panels = results.load_panels(runs, "batching", "eval/return", rows="memory.name",
                                 cols="env.name")
    out = tmp_path / "grid.png"
    table = plot_runs.plot_panels(panels, "eval/return", out, "t", vline=lines,
                                  rows="memory.name", cols="env.name", sharex="col",
                                  vline_name="algo.random_epochs", smooth=2)
    assert out.stat().st_size > 0  # the table below reads raw values, smoothing or not
    assert "| mean over steps after algo.random_epochs (95% CI) |" in table
    assert ("| memory.name=ffm, env.name=RepeatFirstEasy: tape | 1 | 1.000 [1.000, 1.000] "
            "| 1.000 [1.000, 1.000] | 0.750 [0.750, 0.750] |") in table
    assert ("| memory.name=ffm, env.name=CountRecallEasy: tape | 1 | 0.000 [0.000, 0.000] "
            "| 1.000 [1.000, 1.000] | 0.500 [0.500, 0.500] |") in table
    with pytest.raises(ValueError, match="must have one value in each panel; the figure "
                                         r"has \['1', '2'\]"):
        results.panel_values(runs, "algo.random_epochs")
    with pytest.raises(ValueError, match=r"CountRecallEasy has \['-'\]"):
        results.panel_values(runs, "algo.train_epochs", cols="env.name")
    with pytest.raises(ValueError, match="'env.name' is 'CountRecallEasy' in CountRecallEasy, "
                                         "not a number"):
        results.panel_values(runs, "env.name", cols="env.name")


def test_one_seed_twice_is_refused_not_pooled(tmp_path):
    """The same config and seed in two run dirs (a rerun, a copy, two code versions) would
    be pooled as two samples; it is refused, naming both runs. Different seeds pool."""
    config = {"env": {"name": "RepeatFirstEasy"}, "algo": {"name": "dqn"},
              "batching": {"mode": "tape"}, "seed": 0}
    _fake_run(tmp_path / "a", config, [0.0, 1.0])
    _fake_run(tmp_path / "b", config, [0.0, 0.5])
    runs = results.find_runs([tmp_path])
    with pytest.raises(ValueError, match=r"group 'tape' has seed 0 twice, from .*a and .*b"):
        results.load_curves(runs, "batching", "eval/return")
    (tmp_path / "b" / "metrics.jsonl").write_text(
        (tmp_path / "b" / "metrics.jsonl").read_text().replace('"seed": 0', '"seed": 1'))
    _, series = results.load_curves(runs, "batching", "eval/return")["tape"]
    assert sorted(list(s) for s in series) == [[0.0, 0.5], [0.0, 1.0]]


def test_runs_of_an_older_version_compare_in_todays_terms(tmp_path):
    """A run recorded before the optimiser block and `algo.td_loss` existed differs from
    today's default run in no key (its keys are completed and moved), and from a
    `td_loss=mean_abs` run in that key alone; without its group choices a run is taken as
    recorded, and a key it lacks tells it apart ("-")."""
    import json

    import yaml

    def run(name, config, overrides):
        path = tmp_path / name
        (path / ".hydra").mkdir(parents=True)
        (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
        if overrides is not None:
            (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        (path / "metrics.jsonl").write_text(json.dumps(
            {"step": 1, "seed": 0, "eval/return": 0.0}) + "\n")
        return path

    today = results.run_config(run("new", {"algo": {"name": "dqn"}}, []))
    old_algo = {k: v for k, v in today["algo"].items() if k not in ("td_loss", "optim")}
    old_algo["learning_rate"] = today["algo"]["optim"]["learning_rate"]
    old = run("old", {**today, "algo": old_algo}, [])
    ablation = run("abl", {**today, "algo": {**today["algo"], "td_loss": "mean_abs"}},
                   ["algo.td_loss=mean_abs"])
    configs = [results.run_config(p) for p in (old, tmp_path / "new", ablation)]
    assert results.varying_keys(configs) == ["algo.td_loss"]
    assert results.varying_keys(configs[:2]) == []
    bare = run("bare", {"algo": {"name": "dqn"}}, None)  # no overrides.yaml: as recorded
    assert results.varying_keys([results.run_config(bare), {"algo": {"name": "dqn",
                                                                      "gamma": 0.9}}]) == [
        "algo.gamma"]


def test_an_algorithms_own_keys_fold_into_its_name():
    """DQN and PPO runs differ in every key only one of them has: the automatic label is
    the algorithm's name, plus a key that also varies between runs of one algorithm."""
    dqn = {"algo": {"name": "dqn", "target_delay": 200, "optim": {"learning_rate": 1e-4}}}
    ppo = {"algo": {"name": "ppo", "clip_eps": 0.2, "optim": {"learning_rate": 1e-4}}}
    assert results.auto_label([dqn, ppo]) == "algo.name"
    other = {"algo": {**dqn["algo"], "optim": {"learning_rate": 3e-4}}}
    assert results.auto_label([dqn, ppo, other]) == "algo.name,algo.optim.learning_rate"


@given(values=hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12),
                         elements=st.floats(-10, 10)),
       window=st.integers(1, 15))
def test_smoothing_is_each_seeds_trailing_mean(plot_runs, values, window):
    """Against a plain loop: point s is the mean of points max(0, s - window + 1) .. s."""
    expected = np.array([[np.mean(row[max(0, s - window + 1):s + 1]) for s in range(len(row))]
                         for row in values])
    np.testing.assert_allclose(plot_runs.trailing_mean(values, window), expected, atol=1e-9)


def test_smoothing_rejects_an_empty_window(plot_runs):
    with pytest.raises(ValueError, match="--smooth=0"):
        plot_runs.trailing_mean(np.zeros((2, 3)), 0)
