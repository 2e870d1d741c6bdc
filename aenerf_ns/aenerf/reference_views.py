"""Reference scheme: pixel-aligned features from a few reference frames of the identity.

A shallow CNN without downsampling turns each reference image into a dense feature map; every 3D sample
point is projected into each reference view (pinhole, nerfstudio/OpenGL camera-to-world poses) and the
features under it are read bilinearly. `project_points` and `sample_reference_features` are plain
functions with explicit tensor contracts; `ReferenceEncoder` is the CNN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn


def project_points(
    points: Float[Tensor, "P 3"],
    camera_to_worlds: Float[Tensor, "L 3 4"],
    intrinsics: Float[Tensor, "L 4"],
) -> tuple[Float[Tensor, "P L 2"], Float[Tensor, "P L"]]:
    """Pixel coordinates (u right, v down; pixel centres at +0.5) and depth of points in each view.

    Poses are camera-to-world with the camera looking down its -z axis and y up (nerfstudio/OpenGL), the
    same convention `Cameras.generate_rays` uses, so projecting a point on a pixel's ray returns that pixel.
    Depth is distance along the viewing axis (negative means behind the camera).
    """
    rot = camera_to_worlds[:, :3, :3]  # (L, 3, 3)
    centre = camera_to_worlds[:, :3, 3]  # (L, 3)
    local = torch.einsum("lji,plj->pli", rot, points[:, None, :] - centre[None])  # R^T (x - t)
    depth = -local[..., 2]
    safe = torch.where(depth.abs() < 1e-6, torch.full_like(depth, 1e-6), depth)
    fx, fy, cx, cy = intrinsics.unbind(-1)
    u = cx + fx * local[..., 0] / safe
    v = cy - fy * local[..., 1] / safe
    return torch.stack([u, v], -1), depth


def view_directions(points: Float[Tensor, "P 3"], camera_to_worlds: Float[Tensor, "L 3 4"]) -> Float[Tensor, "P L 3"]:
    """Unit directions from each reference camera's centre to each point (the reference ray direction)."""
    d = points[:, None, :] - camera_to_worlds[None, :, :3, 3]
    return d / d.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def sample_reference_features(
    feature_maps: Float[Tensor, "L C H W"],
    pixels: Float[Tensor, "P L 2"],
) -> Float[Tensor, "P L C"]:
    """Bilinear read of each view's feature map at continuous pixel coordinates (zeros outside the image)."""
    _, _, h, w = feature_maps.shape
    scale = pixels.new_tensor([2.0 / w, 2.0 / h])
    grid = (pixels * scale - 1.0).permute(1, 0, 2)[:, :, None, :]  # (L, P, 1, 2), align_corners=False units
    sampled = F.grid_sample(feature_maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return sampled[..., 0].permute(2, 0, 1)  # (P, L, C)


class ReferenceEncoder(nn.Module):
    """Shallow CNN that keeps full resolution: image (0..1 RGB) -> per-pixel features.

    Three 3x3 convolutions (receptive field 7x7) with ReLU between; the raw RGB is appended to the
    output so the features always carry the reference colour itself.
    """

    def __init__(self, feature_dim: int = 32, hidden_dim: int = 32) -> None:
        super().__init__()
        if feature_dim <= 3:
            raise ValueError("reference feature_dim must exceed 3 (RGB is part of it)")
        self.net = nn.Sequential(
            nn.Conv2d(3, hidden_dim, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_dim, feature_dim - 3, 3, padding=1),
        )
        self.out_dim = feature_dim

    def forward(self, images: Float[Tensor, "L H W 3"]) -> Float[Tensor, "L C H W"]:
        x = images.permute(0, 3, 1, 2)
        return torch.cat([self.net(x * 2.0 - 1.0), x], 1)
