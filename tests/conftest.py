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


SMALL_MODEL = dict(
    num_coarse_samples=6,
    num_importance_samples=6,
    hidden_dim=32,
    num_layers=2,
    audio_code_dim=8,
    reference_feature_dim=8,
    aggregation_dim=16,
    condition_dim=8,
    warper_hidden_dim=16,
    hash_levels=4,
    hash_log2_size=10,
    hash_max_resolution=64,
)
"""AE-NeRF model settings small enough for a model test to run in a second or two on a CPU."""


@pytest.fixture
def small_model() -> dict:
    """A fresh copy of `SMALL_MODEL`."""
    return dict(SMALL_MODEL)


@pytest.fixture
def dataset_copy(sample_dataset, tmp_path) -> Path:
    """A private copy of the sample dataset that a test may damage."""
    dst = tmp_path / "copy"
    shutil.copytree(sample_dataset, dst, ignore=shutil.ignore_patterns("cache"))
    return dst
