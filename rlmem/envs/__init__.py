"""POPGym in pure JAX, gymnax envs, POPGym Arcade (optional), wrappers and the
optimistic-reset vector env.

    env, params = rlmem.envs.make("RepeatFirstEasy")         # flat float32 obs, Discrete
    venv = rlmem.envs.VecEnv(env, params, num_envs=64)
"""

from rlmem.envs.arcade import ARCADE_IDS
from rlmem.envs.registry import FAMILIES, POPGYM_IDS, make, make_unwrapped
from rlmem.envs.vector import VecEnv, VecEnvState
from rlmem.envs.wrappers import completed_episode_means, image_shape

__all__ = [
    "ARCADE_IDS",
    "FAMILIES",
    "POPGYM_IDS",
    "VecEnv",
    "VecEnvState",
    "completed_episode_means",
    "image_shape",
    "make",
    "make_unwrapped",
]
