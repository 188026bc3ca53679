"""JAX's persistent compilation cache, switched on for tests, runs and benchmarks.

Compiling the training loop dominates short runs on CPU; the on-disk cache makes the
second run of the same configuration start in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

DEFAULT_DIR = Path(os.environ.get("RLMEM_JAX_CACHE", Path.home() / ".cache" / "rlmem" / "jax"))


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path:
    """Point JAX's persistent compilation cache at `path` (default `~/.cache/rlmem/jax`).

    The directory can also be chosen with the `RLMEM_JAX_CACHE` environment variable.
    Returns the directory used.
    """
    cache_dir = Path(path) if path is not None else DEFAULT_DIR
    cache_dir.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(cache_dir))
    # Cache everything that took noticeable time; tiny kernels are cheaper to recompile.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return cache_dir
