"""Test-wide set-up: persistent compilation cache and hypothesis profiles."""

import os

from hypothesis import HealthCheck, settings

from rlmem.compile_cache import enable_compilation_cache

enable_compilation_cache(os.environ.get("RLMEM_JAX_CACHE"))

# JIT compiles make the first example slow; deadlines would only measure the compiler.
settings.register_profile(
    "default",
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
