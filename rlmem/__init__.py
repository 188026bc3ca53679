"""rlmem: recurrent reinforcement learning with memoroids, end to end in JAX."""

__version__ = "0.1.0"
