"""LPIPS (AlexNet) for the evaluation, only when its weights are already on disk: nothing is downloaded."""

from __future__ import annotations

import torch

from aenerf_ns.utils.offline_weights import alexnet_weights_path


def lpips_metric(device: torch.device | str = "cpu"):
    """(LPIPS module, None) when AlexNet weights are in the torch hub cache, else (None, reason)."""
    weights = alexnet_weights_path()
    if not weights.is_file():
        return None, f"skipped: LPIPS needs AlexNet weights at {weights} (not downloaded at run time)"
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    return LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True).to(device).eval(), None
