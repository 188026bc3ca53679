"""POPGym Arcade through rlmem (rlmem/envs/arcade.py) against the popgym-arcade package.

The package is optional and not in the test extra (it must be installed with `--no-deps`,
see rlmem/envs/arcade.py), so every test that needs it is skipped, with the reason, where
it is absent; the missing-package errors are tested everywhere. With the package: the ids,
shapes and episode lengths of every `conf/env/arcade_*.yaml` are the package's, a whole
MineSweeper stream through `rlmem.envs.make` equals the package's own env on the same keys,
the conv encoder reads the pixels, and a short PQN run trains on one Arcade env.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

import rlmem.envs
from rlmem import config as rc
from rlmem.envs import arcade
from tests.compose import compose_cfg

CONF = Path(__file__).resolve().parents[2] / "conf" / "env"
ARCADE_YAMLS = sorted(CONF.glob("arcade_*.yaml"))
INSTALL_HINT = r'pip install -e "\.\[arcade\]"'


@pytest.fixture
def package():
    """The `popgym_arcade` module; skips (saying why) where it cannot run."""
    module = pytest.importorskip(
        "popgym_arcade",
        reason="the optional popgym-arcade package is not installed (pip install -e "
               "\".[arcade]\" && pip install --no-deps \"popgym-arcade>=0.0.7\")",
    )
    if why := arcade.unavailable():
        pytest.skip(why)
    return module


# ---------------------------------------------------------------------------------------
# without the package
# ---------------------------------------------------------------------------------------
def test_missing_package_errors_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "popgym_arcade", None)  # `import` raises ImportError
    with pytest.raises(ImportError, match=INSTALL_HINT):
        rlmem.envs.make("ArcadeCountRecallEasy")
    with pytest.raises(rc.ConfigError,
                       match=r"env\.name='ArcadeCountRecallEasy' .*" + INSTALL_HINT):
        rc.validate(compose_cfg("env=arcade_count_recall_easy"))


def test_every_arcade_yaml_is_an_arcade_id():
    names = [OmegaConf.load(path).name for path in ARCADE_YAMLS]
    assert sorted(names) == sorted(arcade.ARCADE_IDS)
    assert all(OmegaConf.load(p).kwargs.partial_obs for p in ARCADE_YAMLS)  # the POMDPs


# ---------------------------------------------------------------------------------------
# with the package
# ---------------------------------------------------------------------------------------
def package_episode_length(game, params) -> int:
    """The package's time limit: each game keeps it under one of these names (the env's
    first: CartPole's params carry gymnax's unused default, 1)."""
    for owner in (game, params):
        for attr in ("max_steps_in_episode", "max_episode_length"):
            if hasattr(owner, attr):
                return int(getattr(owner, attr))
    raise AssertionError(f"{type(game).__name__} has no episode length")


def test_ids_are_the_package_ones(package):
    from popgym_arcade.registration import REGISTERED_ENVIRONMENTS

    assert set(arcade.ARCADE_IDS) == {arcade.PREFIX + name for name in REGISTERED_ENVIRONMENTS}


def test_yaml_shapes_and_lengths_are_the_package_ones(package):
    """Every `conf/env/arcade_*.yaml` builds; its flat observation is the package's image
    plus the first-step flag, its actions and `max_episode_length` are the package's."""
    for path in ARCADE_YAMLS:
        option = OmegaConf.load(path)
        kwargs = OmegaConf.to_container(option.kwargs)
        env, params = rlmem.envs.make(option.name, antialias=option.antialias, **kwargs)
        game, game_params = package.make(option.name.removeprefix(arcade.PREFIX), **kwargs)
        h, w, c = game.observation_space(game_params).shape
        assert rlmem.envs.image_shape(env, params) == (h, w, c) == (128, 128, 3), path.name
        assert env.observation_space(params).shape == (h * w * c + 2,), path.name
        assert env.num_actions == game.action_space(game_params).n, path.name
        assert option.max_episode_length == package_episode_length(game, game_params), path.name


def test_a_stream_equals_the_package_env_on_the_same_keys(package):
    """MineSweeperEasy (32-step limit) for 48 steps through `rlmem.envs.make` (previous
    action and first-step flag appended) and the package's own env, both reset with the
    same key whenever the episode ends: pixels (/255), appended features, rewards and ends
    are equal, and the time limit ends episodes as terminations."""
    kwargs = {"partial_obs": True}
    env, params = rlmem.envs.make("ArcadeMineSweeperEasy", previous_action=True, **kwargs)
    game, game_params = package.make("MineSweeperEasy", **kwargs)
    num_actions = game.action_space(game_params).n
    size = int(np.prod(game.observation_space(game_params).shape))

    def flat(pixels, prev_action, first):
        return jnp.concatenate([pixels.reshape(-1).astype(jnp.float32) / 255.0,
                                jax.nn.one_hot(prev_action, num_actions),
                                jax.nn.one_hot(first, 2)])

    @jax.jit
    def streams(key):
        key_reset, key_run = jax.random.split(key)
        obs, state = env.reset_env(key_reset, params)
        pixels, game_state = game.reset_env(key_reset, game_params)

        def step(carry, key):
            state, game_state = carry
            key_act, key_step, key_reset = jax.random.split(key, 3)
            action = jax.random.randint(key_act, (), 0, num_actions)
            obs, state, reward, terminated, _ = env.step_env(key_step, state, action, params)
            truncated = env.is_truncated(state, params)
            pixels, game_state, game_reward, done, _ = game.step_env(
                key_step, game_state, action, game_params)
            ours = (obs, reward, terminated, truncated)
            theirs = (flat(pixels, action, 0), game_reward, done)
            reset_obs, reset_state = env.reset_env(key_reset, params)
            reset_pixels, reset_game = game.reset_env(key_reset, game_params)
            carry = jax.tree.map(lambda a, b: jnp.where(done, a, b),
                                 (reset_state, reset_game), (state, game_state))
            after = (reset_obs, flat(reset_pixels, 0, 1))
            return carry, (ours, theirs, after, done)

        first = (obs, flat(pixels, 0, 1))
        _, out = jax.lax.scan(step, (state, game_state), jax.random.split(key_run, 48))
        return first, out

    first, ((obs, reward, terminated, truncated), (want_obs, want_reward, done),
            (reset_obs, want_reset_obs), ends) = streams(jax.random.key(3))
    assert obs.shape == (48, size + num_actions + 2)
    np.testing.assert_array_equal(first[0], first[1])
    np.testing.assert_array_equal(obs, want_obs)
    np.testing.assert_array_equal(reward, want_reward)
    np.testing.assert_array_equal(terminated, done)
    assert not truncated.any()
    ends = np.asarray(ends)
    np.testing.assert_array_equal(np.asarray(reset_obs)[ends], np.asarray(want_reset_obs)[ends])
    assert ends.any()  # at least the 32-step limit ended an episode
    assert 0.0 < obs[:, :size].mean() < 1.0  # real pixels, scaled to [0, 1]


def test_games_written_for_stable_gymnax_step(package):
    """CartPole (like NoisyCartPole, Skittles, Breakout, Tetris) defines only the old
    `is_terminal` hook, which gymnax >= 1.0's `discount` no longer calls: through rlmem it
    steps, and its end is `is_terminal`."""
    env, params = rlmem.envs.make("ArcadeCartPoleEasy", partial_obs=True)
    game = env.unwrapped.game

    @jax.jit
    def one_step(key):
        _, state = env.reset_env(key, params)
        _, state, reward, terminated, _ = env.step_env(key, state, 0, params)
        return reward, terminated, game.is_terminal(state.env_state, params)

    reward, terminated, want = one_step(jax.random.key(0))
    assert reward.dtype == jnp.float32 and bool(terminated) == bool(want)


def test_conv_encoder_reads_arcade_pixels(package):
    """PQN's network with the conv encoder on real Arcade observations: shapes only."""
    from rlmem.agents.networks import ConvEncoder, NetworkSettings, init_params, q_network
    from rlmem.memory import make_memory

    env, params = rlmem.envs.make("ArcadeNavigatorEasy", partial_obs=True)
    shape = rlmem.envs.image_shape(env, params)
    settings = NetworkSettings(hidden_size=16, encoder="conv", image_shape=shape)
    net = q_network(make_memory("mlp", output_size=16), env.num_actions,
                    settings.hidden_size, settings.num_blocks, settings.image_shape)
    obs_size = env.observation_space(params).shape[0]
    net_params = jax.eval_shape(lambda k: init_params(net, k, obs_size), jax.random.key(0))
    obs, _ = env.reset_env(jax.random.key(1), params)
    obs = jnp.stack([obs] * 5)  # [T, F]
    q, _ = jax.eval_shape(net.apply, net_params, obs, jnp.ones(5, bool), net.initialize_carry())
    assert q.shape == (5, env.num_actions)
    features = jax.eval_shape(
        lambda o: ConvEncoder(16, shape).init_with_output(jax.random.key(0), o)[0], obs)
    assert features.shape == (5, 16)


def test_short_pqn_run_on_an_arcade_env(package, tmp_path):
    """`python train.py algo=pqn env=arcade_autoencode_easy algo.network.encoder=conv`
    in miniature (AutoEncode compiles fastest; ~60 s on 2 CPU cores, mostly compiling):
    two envs, two 16-step rollouts, one evaluation; it runs, counts its steps and reports
    finite returns."""
    from rlmem.runner import run

    exp = rc.build(compose_cfg(
        "algo=pqn", "env=arcade_autoencode_easy", "algo.network.encoder=conv",
        "algo.network.hidden_size=16", "algo.network.num_blocks=1", "algo.update_epochs=1",
        "memory=ffm", "memory.trace_size=4", "memory.context_size=2", "memory.output_size=16",
        "loop.num_envs=2", "loop.rollout_steps=16", "loop.iterations=2", "eval.interval=2",
        "eval.episodes=1", "eval.max_steps=16", "logger=none",
    ))
    assert exp.algo.network.image_shape == (128, 128, 3)
    summary = run(exp, tmp_path, stream=open("/dev/null", "w"))  # noqa: SIM115
    assert int(np.asarray(summary["env_steps"]).max()) == 2 * 2 * 16
    assert np.isfinite(summary["eval_return"]).all()
