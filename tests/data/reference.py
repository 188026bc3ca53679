"""A plain-Python model of the tape store and random chunk streams to drive both.

The reference keeps every transition ever written, per stream, as a list of episodes
(lists of absolute times). It knows which episodes the real store must still hold: those
whose first transition lies in the last `C` steps of the stream. Each generated transition
is tagged `obs = [stream, time]` and `extras["h"] = [stream + 0.5, time + 0.25]`, so a
sampled entry tells exactly where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from rlmem.data import add, init_store
from rlmem.types import Transition

# (num_envs, stream_capacity, chunk_len) drawn by the property tests: few shapes, few compiles.
SHAPES = [(1, 4, 1), (3, 12, 4), (2, 6, 6)]
EXAMPLE = Transition(
    obs=jnp.zeros(2),
    action=jnp.int32(0),
    reward=jnp.float32(0),
    next_obs=jnp.zeros(2),
    terminated=jnp.bool_(False),
    truncated=jnp.bool_(False),
    start=jnp.bool_(False),
    mask=jnp.bool_(True),
)
EXTRAS = {"h": jnp.zeros(2)}
add_jit = jax.jit(add)


@dataclass
class ReferenceStore:
    num_envs: int
    stream_capacity: int
    # clock[e] = transitions written to stream e (streams may advance by different amounts).
    clock: list[int] = field(default_factory=list)
    # episodes[e] = list of [start_time, length]; the last one may still be running.
    episodes: list[list[list[int]]] = field(default_factory=list)
    terminated: list[dict[int, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.clock = [0] * self.num_envs
        self.episodes = [[] for _ in range(self.num_envs)]
        self.terminated = [{} for _ in range(self.num_envs)]

    @property
    def steps(self) -> int:
        """The common clock of streams that all advanced together."""
        assert len(set(self.clock)) == 1, f"streams have different clocks {self.clock}"
        return self.clock[0]

    def add(self, start: np.ndarray, terminated: np.ndarray, length=None) -> None:
        """start, terminated: [E, T] bool; stream e keeps its first length[e] steps."""
        for e in range(self.num_envs):
            n = start.shape[1] if length is None else int(length[e])
            for i in range(n):
                t = self.clock[e] + i
                if start[e, i] or t == 0:
                    self.episodes[e].append([t, 0])
                self.episodes[e][-1][1] += 1
                self.terminated[e][t] = bool(terminated[e, i])
            self.clock[e] += n

    def valid_episodes(self) -> dict[tuple[int, int], tuple[int, bool]]:
        """(stream, start_time) -> (length, running) for every episode the store must hold."""
        out = {}
        for e, eps in enumerate(self.episodes):
            oldest = self.clock[e] - self.stream_capacity
            for k, (t0, n) in enumerate(eps):
                if t0 >= oldest:
                    out[(e, t0)] = (n, k == len(eps) - 1)
        return out

    def episode_of(self, e: int, t: int) -> tuple[int, int, bool] | None:
        """(start, length, running) of the valid episode holding time t, or None."""
        for (s, t0), (n, running) in self.valid_episodes().items():
            if s == e and t0 <= t < t0 + n:
                return t0, n, running
        return None


def make_stream(rng: np.random.Generator, num_envs: int, total: int, p_end: float):
    """Flags for `total` steps per stream: start[t+1] == terminated[t] | truncated[t].

    Returns start, terminated, truncated: [E, total] bool. The first step of a stream is a
    start only sometimes (a store may begin mid-episode); the last step's end is random.
    """
    ends = rng.random((num_envs, total)) < p_end
    term = ends & (rng.random((num_envs, total)) < 0.5)
    trunc = ends & ~term
    start = np.zeros((num_envs, total), bool)
    start[:, 1:] = ends[:, :-1]
    start[:, 0] = rng.random(num_envs) < 0.5
    return start, term, trunc


def make_chunk(start, term, trunc, t0: int, t1: int, obs_dim: int = 2):
    """The Transition [E, t1 - t0] for steps t0..t1-1 and its extras, tagged by origin."""
    e = start.shape[0]
    streams = np.broadcast_to(np.arange(e)[:, None], (e, t1 - t0)).astype(np.float32)
    times = np.broadcast_to(np.arange(t0, t1)[None, :], (e, t1 - t0)).astype(np.float32)
    obs = np.stack([streams, times], -1)
    if obs_dim > 2:
        obs = np.concatenate([obs, np.zeros(obs.shape[:2] + (obs_dim - 2,), np.float32)], -1)
    chunk = Transition(
        obs=obs,
        action=(times % 3).astype(np.int32),
        reward=times * 0.5,
        next_obs=obs + 1.0,
        terminated=term[:, t0:t1],
        truncated=trunc[:, t0:t1],
        start=start[:, t0:t1],
        mask=np.ones((e, t1 - t0), bool),
    )
    extras = {"h": np.stack([streams + 0.5, times + 0.25], -1)}
    return chunk, extras


def fill(shape, seed: int, num_chunks: int, p_end: float, ragged: bool = False,
         priority_period: int | None = None):
    """A store of `shape` (SHAPES entry) and a ReferenceStore fed the same random chunks.

    `ragged`: each chunk keeps a random prefix of 0..T real steps per stream (as when the
    loop collects whole episodes); the padding after it holds junk tagged with time -1,
    which must never be written. `priority_period`: the store keeps replay priorities
    (`rlmem.data.init_store`).

    Returns (store, reference, (start, terminated, truncated) flags [E, total]).
    """
    e, c, chunk_len = shape
    store = init_store(e * c, e, EXAMPLE, EXTRAS, priority_period)
    rng = np.random.default_rng(seed)
    total = chunk_len * num_chunks
    flags = make_stream(rng, e, total, p_end)
    ref = ReferenceStore(e, c)
    for i in range(num_chunks):
        if not ragged:
            t0, t1 = i * chunk_len, (i + 1) * chunk_len
            chunk, extras = make_chunk(*flags, t0, t1, obs_dim=store.data.obs.shape[-1])
            store = add_jit(store, chunk, extras)
            ref.add(flags[0][:, t0:t1], flags[1][:, t0:t1])
            continue
        length = rng.integers(0, chunk_len + 1, e)
        rows = [_ragged_row(flags, s, ref.clock[s], int(length[s]), chunk_len,
                            store.data.obs.shape[-1]) for s in range(e)]
        chunk, extras = jax.tree.map(lambda *xs: np.concatenate(xs), *rows)
        store = add_jit(store, chunk, extras, length)
        ref.add(chunk.start, chunk.terminated, length)
    return store, ref, flags


def _ragged_row(flags, stream: int, t0: int, n: int, chunk_len: int, obs_dim: int):
    """Stream `stream`'s steps t0..t0+n-1 then junk up to `chunk_len`, as a [1, T] chunk."""
    one = tuple(f[stream:stream + 1] for f in flags)
    chunk, extras = make_chunk(*one, t0, t0 + n, obs_dim=obs_dim)
    obs = chunk.obs.copy()
    obs[..., 0] = stream
    chunk = chunk.replace(obs=obs, next_obs=obs + 1.0)
    extras["h"][..., 0] = stream + 0.5
    pad = chunk_len - n

    def junk(x):
        x = np.asarray(x)
        filler = np.full((1, pad) + x.shape[2:], -1, x.dtype) if x.dtype != bool else (
            np.ones((1, pad) + x.shape[2:], bool))
        return np.concatenate([x, filler], axis=1)

    return jax.tree.map(junk, chunk), jax.tree.map(junk, extras)


def small_store():
    """Three streams of capacity 12 holding 8 steps; episode lengths 1, 2, 3, 2 (running) |
    4, 2, 1, 1 (running) | 5, 3 (running)."""
    starts = np.zeros((3, 12), bool)
    starts[0, [0, 1, 3, 6]] = True
    starts[1, [0, 4, 6, 7]] = True
    starts[2, [0, 5, 8]] = True
    ends = np.zeros_like(starts)
    ends[:, :-1] = starts[:, 1:]
    flags = (starts, ends, np.zeros_like(starts))
    store = init_store(36, 3, EXAMPLE, EXTRAS)
    for t0 in (0, 4):
        store = add_jit(store, *make_chunk(*flags, t0, t0 + 4))
    return store, flags
