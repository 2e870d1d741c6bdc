"""Where pretrained weights are looked for on disk. Nothing here downloads: absent weights are reported."""

from __future__ import annotations

import os
from pathlib import Path

import torch

ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"
"""torchvision's AlexNet checkpoint name, which LPIPS (alex) loads from the torch hub cache."""


def alexnet_weights_path() -> Path:
    """Where LPIPS (alex) looks for torchvision's AlexNet weights: the torch hub cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS


SYNCNET_WEIGHTS = "syncnet_v2.model"
"""SyncNet's released weights (joonson/syncnet_python, about 52 MB), used for LSE-C / LSE-D."""
SYNCNET_WEIGHTS_ENV = "AENERF_SYNCNET_WEIGHTS"
"""Environment variable naming another SyncNet weights file."""


def syncnet_weights_path() -> Path:
    """Where LSE-C / LSE-D look for SyncNet's weights: $AENERF_SYNCNET_WEIGHTS when set, else the package cache.

    The default is ~/.cache/aenerf_ns/syncnet_v2.model; a set variable is returned even when its file is absent,
    so that the skip reason names the file the user asked for.
    """
    named = os.environ.get(SYNCNET_WEIGHTS_ENV, "").strip()
    if named:
        return Path(named).expanduser()
    return Path.home() / ".cache" / "aenerf_ns" / SYNCNET_WEIGHTS
