"""Where pretrained weights are looked for on disk. Nothing here downloads: absent weights are reported."""

from __future__ import annotations

from pathlib import Path

import torch

ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"
"""torchvision's AlexNet checkpoint name, which LPIPS (alex) loads from the torch hub cache."""


def alexnet_weights_path() -> Path:
    """Where LPIPS (alex) looks for torchvision's AlexNet weights: the torch hub cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS
