"""scripts/gpu/bench.sh: the offline install and the benchmark it runs, at tiny size on this machine's CPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu" / "bench.sh"
REQUIREMENTS = ROOT / "scripts" / "gpu" / "requirements.txt"
OTHER_VERSIONS = {"fpsample"}
"""Packages whose carried version differs from the development install on purpose (no cp312 wheel of it)."""


def _pins(path: Path = REQUIREMENTS) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            assert pinned, f"{line!r} in {path.name} is not pinned"
            pins[name] = pinned
    return pins


def test_carried_wheels_match_the_tested_versions():
    """The GPU machine gets the versions the test suite runs with, so a dependency upgrade cannot drift apart:
    constraints.txt pins the development install to the carried versions, and this Python holds them."""
    pins = _pins()
    constraints = _pins(ROOT / "constraints.txt")
    assert {"nerfstudio", "tyro", "viser", "librosa", "nerfacc", "gsplat"} <= set(pins)
    for name, pinned in pins.items():
        if name in OTHER_VERSIONS:
            continue
        assert constraints.get(name) == pinned, f"{name}: carried {pinned}, constraints.txt {constraints.get(name)}"
        try:
            installed = version(name)
        except PackageNotFoundError:
            pytest.fail(f"{name} is carried to the GPU machine but not installed here")
        assert installed == pinned, f"{name}: carried {pinned}, tested {installed}"


@pytest.mark.slow
def test_run_installs_offline_and_benchmarks(tmp_path):
    """`bench.sh run` with an empty wheel folder (this Python has every package): the project installs into SITE
    without the network, and `aenerf-bench --gpu` trains, scores and counts network evaluations of full-size aenerf."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        SITE=str(tmp_path / "site"),
        OUTPUT=str(tmp_path / "bench"),
        PIP_NO_INDEX="1",
        PYTHONWARNINGS="ignore",
    )
    cmd = ["bash", str(SCRIPT), "run", str(wheels), "--methods", "aenerf", "--budget-steps", "2"]
    cmd += ["--eval-frames", "2", "--resolution", "32", "--scaling"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.search(r"torch \S+ on CPU", run.stdout)
    assert (tmp_path / "site" / "aenerf_ns" / "aenerf" / "aenerf_model.py").is_file()
    report = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert report["settings"]["small"] is False  # the --gpu profile: full-size methods
    result = report["methods"]["aenerf"]
    assert result["steps"] == 2 and result["network_evaluations"]["points_per_pixel"]["warper"] <= 1.0
    assert "Network evaluations per 512x512 frame" in run.stdout


def test_run_without_the_wheel_folder_says_so(tmp_path):
    run = subprocess.run(["bash", str(SCRIPT), "run", str(tmp_path / "none")], capture_output=True, text=True)
    assert run.returncode == 2 and "no wheel folder" in run.stderr and "bench.sh wheels" in run.stderr
