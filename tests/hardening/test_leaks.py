"""Resident memory stays flat over many model loads and generate calls."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("leak_worker.py")
MiB = 1024 * 1024
# A leaked model (a 17 MiB mapping, or its 32000-token vocabulary) or context shows in the
# first few cycles; these allow about 80 KiB per load/close and 8 KiB per generate call
# for allocator noise. Measured on the tiny model: +0.3 MiB and +0.0 MiB.
LOAD_CYCLES, LOAD_BOUND = 200, 16 * MiB
GENERATE_CALLS, GENERATE_BOUND = 1000, 8 * MiB


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc/self/statm")
def test_rss_is_flat_over_loads_and_generations(tiny_model_path: Path) -> None:
    """RSS grows < 16 MiB over 200 load/close cycles and < 8 MiB over 1,000 generate calls."""
    proc = subprocess.run([sys.executable, str(WORKER), str(tiny_model_path),
                           str(LOAD_CYCLES), str(GENERATE_CALLS)],
                          capture_output=True, text=True, check=True)
    rss = json.loads(proc.stdout.strip().splitlines()[-1])
    assert rss["after_loads"] - rss["before_loads"] < LOAD_BOUND, rss
    assert rss["after_generates"] - rss["before_generates"] < GENERATE_BOUND, rss
