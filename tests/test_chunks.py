"""`loop.chunk_periods=null`: one-period chunks first (progress one period after compiling),
then chunks sized from one timed chunk; the chunking never changes what is trained."""

from __future__ import annotations

import io

import pytest

from rlmem import runner
from rlmem.config import build
from rlmem.runner import AUTO_CHUNK_MAX, auto_chunk, run
from tests.compose import compose_cfg
from tests.tiny_run import (
    TINY,
    TOTAL_STEPS,
    leaf_checksums,
    read_metrics,
    reference_run,  # noqa: F401  (session fixture)
)


@pytest.mark.parametrize(("left", "period_s", "host_s", "expected"), [
    (100, 1.0, 0.001, 1),      # host time is 0.1% of a period: one period per chunk
    (100, 0.01, 0.001, 5),     # 10% of a period: 5 periods bring it to 2%
    (100, 0.001, 0.01, AUTO_CHUNK_MAX),  # capped
    (97, 0.01, 0.001, 1),      # 97 is prime: equal chunks need size 1 (no other compile)
    (96, 0.01, 0.001, 4),      # the largest divisor of 96 up to 5
    (1000, 1.0, 10.0, 5),      # a few seconds of training per chunk at most
    (3, 0.001, 0.1, 3),        # never more than what is left
])
def test_auto_chunk_rules(left, period_s, host_s, expected):
    assert auto_chunk(left, period_s, host_s) == expected


def test_auto_chunks_grow_once_and_leave_results_unchanged(tmp_path, reference_run,  # noqa: F811
                                                           monkeypatch):
    monkeypatch.setattr(runner, "AUTO_CHUNK_OVERHEAD", 1e-12)  # any host time: grow
    monkeypatch.setattr(runner, "AUTO_CHUNK_SECONDS", 1e12)
    stream = io.StringIO()
    run(build(compose_cfg(*TINY, "loop.chunk_periods=null")), tmp_path, progress=False,
        stream=stream)
    said = stream.getvalue()
    assert "compiled and ran the first chunk (1 evaluation period(s))" in said
    assert "rlmem: 6 evaluation periods per chunk from here" in said  # 8 periods: 1, 1, 6
    assert read_metrics(tmp_path) == read_metrics(reference_run)
    assert leaf_checksums(tmp_path, TOTAL_STEPS) == leaf_checksums(reference_run, TOTAL_STEPS)
