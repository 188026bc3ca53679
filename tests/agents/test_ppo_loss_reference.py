"""`ppo_loss` against a plain float64 numpy transcription of the PPO paper's objective.

Schulman et al. 2017, eq. (7) and (9), with the conventions `ppo_loss` documents: the
PPO2 value clip (reusing `clip_eps`) under a 0.5 factor, an entropy bonus, and advantages
normalised by the mean and population std of the masked entries. Masked-out entries hold
large junk values: they must not move any number.
"""

from __future__ import annotations

import jax
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.agents.ppo import ppo_loss


def numpy_ppo_loss(logits, value, action, mask, old_log_prob, old_value, advantage, target,
                   clip_eps, vf_coef, ent_coef, normalize_advantage):
    """Everything over the masked transitions only (selected, not weighted)."""
    f64 = lambda x: np.asarray(x, np.float64)[mask]  # noqa: E731
    logits, value, old_log_prob = f64(logits), f64(value), f64(old_log_prob)
    old_value, advantage, target = f64(old_value), f64(advantage), f64(target)
    action = np.asarray(action)[mask]

    shifted = logits - logits.max(axis=1, keepdims=True)
    log_pi = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # [m, A]
    pi = np.exp(log_pi)
    if normalize_advantage:
        advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)

    ratio = np.exp(log_pi[np.arange(len(action)), action] - old_log_prob)
    clipped_ratio = np.clip(ratio, 1 - clip_eps, 1 + clip_eps)
    policy_loss = -np.mean(np.minimum(ratio * advantage, clipped_ratio * advantage))

    value_clipped = old_value + np.clip(value - old_value, -clip_eps, clip_eps)
    value_loss = 0.5 * np.mean(np.maximum((value - target) ** 2, (value_clipped - target) ** 2))

    entropy = np.mean(-(pi * log_pi).sum(axis=1))
    return {
        "loss": policy_loss + vf_coef * value_loss - ent_coef * entropy,
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": np.mean(ratio - 1 - np.log(ratio)),
        "clip_frac": np.mean(np.abs(ratio - 1) > clip_eps),
    }


M, NUM_ACTIONS = 24, 4  # fixed shapes, one compile; the mask sets how many are real

# clip_eps, vf_coef and ent_coef are traced: one compiled loss serves every example.
jitted_loss = jax.jit(ppo_loss, static_argnames="normalize_advantage")


@st.composite
def loss_inputs(draw):
    m, num_actions = M, NUM_ACTIONS
    mask = np.asarray(draw(st.lists(st.booleans(), min_size=m, max_size=m)))
    mask[draw(st.integers(0, m - 1))] = True  # at least one real transition
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    normal = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    logits = 2.0 * normal(m, num_actions)
    action = rng.integers(0, num_actions, m).astype(np.int32)
    log_pi = np.asarray(jax.nn.log_softmax(logits))[np.arange(m), action]
    # Behaviour log-probs and values off by up to ~1: ratios from ~0.4 to ~2.7, so both
    # clips bind for some transitions and not for others.
    old_log_prob = log_pi + normal(m)
    value = normal(m)
    old_value = value + 0.5 * normal(m)
    arrays = dict(logits=logits, value=value, action=action, mask=mask,
                  old_log_prob=old_log_prob, old_value=old_value,
                  advantage=normal(m), target=normal(m))
    for name in ("logits", "value", "old_log_prob", "old_value", "advantage", "target"):
        junk = 10.0 * normal(*arrays[name].shape)
        keep = mask if arrays[name].ndim == 1 else mask[:, None]
        arrays[name] = np.where(keep, arrays[name], junk)
    arrays["action"] = np.where(mask, action, num_actions - 1 - action)
    settings_ = dict(
        clip_eps=draw(st.sampled_from([0.05, 0.1, 0.2, 0.3, 0.5])),
        vf_coef=draw(st.floats(0.0, 2.0)),
        ent_coef=draw(st.floats(0.0, 0.1)),
        normalize_advantage=draw(st.booleans()),
    )
    return arrays, settings_


@settings(max_examples=60, deadline=None)
@given(loss_inputs())
def test_ppo_loss_matches_numpy(inputs):
    arrays, kw = inputs
    loss, metrics = jitted_loss(**arrays, **kw)
    expected = numpy_ppo_loss(**arrays, **kw)
    got = {"loss": loss, **metrics}
    assert set(got) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(float(got[name]), value, rtol=1e-5, atol=1e-5, err_msg=name)


def test_ratio_one_gives_zero_policy_loss_and_no_clipping():
    """At the behaviour policy the surrogate is -mean(normalised advantage) = 0."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(16, 3)).astype(np.float32)
    action = rng.integers(0, 3, 16).astype(np.int32)
    log_pi = np.asarray(jax.nn.log_softmax(logits))[np.arange(16), action]
    value = rng.normal(size=16).astype(np.float32)
    _, metrics = ppo_loss(logits, value, action, np.ones(16, bool), log_pi, value,
                          rng.normal(size=16).astype(np.float32), np.zeros(16, np.float32),
                          clip_eps=1e-6, vf_coef=0.5, ent_coef=0.01)
    assert float(metrics["clip_frac"]) == 0.0
    assert abs(float(metrics["policy_loss"])) < 1e-6
    np.testing.assert_allclose(metrics["value_loss"], 0.5 * np.mean(value**2), rtol=1e-6)
