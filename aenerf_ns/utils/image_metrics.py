"""Image quality metrics that need no downloaded weights: PSNR, region PSNR and SSIM."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor


def to_uint8(image: Float[Tensor, "*batch 3"]) -> np.ndarray:
    """A [0, 1] float image as uint8 (rounded), on the CPU, for PNGs and video frames."""
    return (image.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def psnr(pred: Float[Tensor, "*batch 3"], gt: Float[Tensor, "*batch 3"]) -> Tensor:
    """Peak signal-to-noise ratio in dB for images in [0, 1]."""
    mse = torch.mean((pred - gt) ** 2)
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


def masked_psnr(pred: Float[Tensor, "h w 3"], gt: Float[Tensor, "h w 3"], mask: Bool[Tensor, "h w"]) -> Tensor:
    """PSNR over the pixels where `mask` is true (e.g. the lower face)."""
    if not mask.any():
        raise ValueError("masked_psnr needs at least one pixel in the mask")
    mse = torch.mean((pred[mask] - gt[mask]) ** 2)
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


def ssim(pred: Float[Tensor, "h w 3"], gt: Float[Tensor, "h w 3"], window: int = 11, sigma: float = 1.5) -> Tensor:
    """Structural similarity (Wang et al. 2004) with a Gaussian window, averaged over pixels and channels."""
    coords = torch.arange(window, dtype=pred.dtype, device=pred.device) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(3, 1, window, window)
    x = pred.permute(2, 0, 1)[None]
    y = gt.permute(2, 0, 1)[None]

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, kernel, groups=3)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.mean()
