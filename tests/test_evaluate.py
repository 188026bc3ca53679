"""python -m rlmem.evaluate: restores a run's checkpoint, plays greedy episodes on fresh env
seeds (the same episodes the training loop's evaluation plays, given its key), saves them,
and refuses a config whose algorithm state differs."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from rlmem import evaluate as ev
from rlmem.checkpoint import Checkpointer
from tests.tiny_run import (
    TOTAL_STEPS,
    reference_run,  # noqa: F401  (session fixture)
)


def test_restored_state_is_the_final_checkpoint(reference_run):  # noqa: F811
    restored = ev.restore_run(reference_run)
    assert restored.step == TOTAL_STEPS and len(restored.exp.runs) == 2
    saved, _ = Checkpointer(reference_run / "checkpoints", interval=1, fingerprint=None,
                            async_save=False).restore(restored.exp.init_state())
    for a, b in zip(jax.tree.leaves(restored.state.algo.params),
                    jax.tree.leaves(saved.algo.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_greedy_episodes_match_the_loops_evaluation(reference_run):  # noqa: F811
    restored = ev.restore_run(reference_run)
    loop, state = restored.exp.loop, restored.state
    algo = jax.tree.map(lambda x: x[0], state.algo)
    hparams = jax.tree.map(lambda x: x[0], state.hparams)
    key = jax.random.key(7)
    mine = ev.greedy_episodes(loop, algo, hparams, key, loop.settings.eval_episodes,
                              loop.settings.eval_max_steps)
    theirs = loop.evaluate(algo, key, hparams)
    np.testing.assert_allclose(float(np.mean(mine["return"])), float(theirs["return"]),
                               rtol=1e-6, atol=1e-6)
    assert float(np.mean(mine["length"])) == float(theirs["length"])
    # the recorded steps: rewards sum to the returns, masks to the lengths
    np.testing.assert_allclose(np.sum(mine["reward"] * mine["mask"], axis=1), mine["return"])


def test_cli_prints_saves_and_refuses_another_network(reference_run, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "episodes.npz"
    assert ev.main([str(reference_run), "--episodes", "3", "--save", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"at env step {TOTAL_STEPS}, 3 greedy episodes per run" in printed
    assert "rlmem: seed 0: return " in printed and "rlmem: seed 1: return " in printed
    saved = np.load(out)
    assert saved["returns"].shape == (2, 3) and saved["mask"].shape[:2] == (2, 3)
    assert saved["obs"].shape[:3] == saved["mask"].shape

    assert ev.main([str(reference_run), "memory.output_size=16"]) == 2
    assert "lacks the algorithm's state at .algo" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ev.main([str(reference_run), "--episodes", "0"])
