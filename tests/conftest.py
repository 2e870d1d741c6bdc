"""Shared fixtures: a small synthetic dataset generated once per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory) -> Path:
    """A 3-second, 48-pixel synthetic identity (75 frames at 25 fps). Treat as read-only."""
    from aenerf_ns.synthetic_dataset import write_synthetic_sample

    root = tmp_path_factory.mktemp("synthetic")
    metas = write_synthetic_sample(root, identities=1, seconds=3.0, resolution=48)
    return metas[0].root


@pytest.fixture
def dataset_copy(sample_dataset, tmp_path) -> Path:
    """A private copy of the sample dataset that a test may damage."""
    dst = tmp_path / "copy"
    shutil.copytree(sample_dataset, dst, ignore=shutil.ignore_patterns("cache"))
    return dst
